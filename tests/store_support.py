"""The store backends the tests run on, and the test-only readers of a store (a probe per backend).

``STORE_BACKENDS`` feeds the ``databases``, ``database_url``, ``store`` and ``new_store`` fixtures
(tests/conftest.py): each backend hands out fresh, empty databases for one test. A backend on a server reads
``TEST_DATABASE_URL`` (``external_url``) and is skipped, saying how to run it, without one. Adding a backend:
one line in ``STORE_BACKENDS`` (an external one also in ``EXTERNAL``) and one in ``PROBES``.

The production port (``bot.storage.ContactStore``) has no way to list every contact or to ask how stale the
rollups are: only tests need that, so a probe reads it from the backend's own tables.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from datetime import tzinfo
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from bot.storage import ContactStore, postgres_rollups
from bot.storage.postgres import PostgresContactStore
from bot.storage.sqlite import SQLiteContactStore
from bot.storage.sqlite_metrics import METRIC_CONTACTS_COLUMNS
from bot.storage.sqlite_raw import RawCodec
from bot.storage.sqlite_rollups import stale_days
from metrics.definitions import is_handled_inbound, next_repeat_us
from metrics.records import Contact
from metrics.windows import QUICK_RETURN_US

TEST_DATABASE_URL = "TEST_DATABASE_URL"


class Databases(Protocol):
    """Fresh, empty databases of one backend for one test."""

    def fresh_url(self) -> str:
        """The URL of a new, empty database (the store migrates it when opened)."""
        ...

    def close(self) -> None:
        """Drop what the test made (after its stores are closed)."""
        ...


class SQLiteDatabases:
    """New SQLite files in the test's own directory; the first is ``tmp_path / "acr.db"`` (the ``db_path``)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.made = 0

    def fresh_url(self) -> str:
        self.made += 1
        return sqlite_url(self.folder / ("acr.db" if self.made == 1 else f"acr-{self.made}.db"))

    def close(self) -> None:
        """Nothing to do: pytest removes the test's directory."""


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def sqlite_path(database_url: str) -> Path:
    """The file of a SQLite URL; a test about SQLite's own file is skipped on the other backends."""
    if not database_url.startswith("sqlite:///"):
        pytest.skip("about SQLite's own file")
    return Path(database_url.removeprefix("sqlite:///"))


def skip_reason(scheme: str) -> str:
    return f"{scheme} store tests skipped: set {TEST_DATABASE_URL}={scheme}://... (make test starts a server)"


ROLLUP_BACKENDS = ("sqlite:///", "postgresql://", "postgres://")  # URL prefixes of the backends that keep rollups
NO_ROLLUPS = "about the metric rollups, which this backend does not keep (its answers are still tested)"


def needs_rollups(store_or_url: ContactStore | str) -> None:
    """Skip a test of the metric rollups themselves on a backend that keeps none (its answers are still tested)."""
    url = store_or_url if isinstance(store_or_url, str) else None
    if (url is not None and not url.startswith(ROLLUP_BACKENDS)) or (
        url is None and not isinstance(store_or_url, (SQLiteContactStore, PostgresContactStore))
    ):
        pytest.skip(NO_ROLLUPS)


def external_url(scheme: str) -> str:
    """``TEST_DATABASE_URL`` when it names a ``scheme`` server; else the test is skipped, saying how to run it."""
    url = os.environ.get(TEST_DATABASE_URL, "")
    if not url.startswith(f"{scheme}://"):
        pytest.skip(skip_reason(scheme))
    return url


class PostgresDatabases:
    """A new schema per database on the server of TEST_DATABASE_URL (``make test`` starts a throwaway one), as a
    URL whose ``options`` put every table there; dropped at the end of the test."""

    def __init__(self, folder: Path):
        self.server = external_url("postgresql")
        self.schemas: list[str] = []

    def fresh_url(self) -> str:
        import psycopg

        schema = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        self.schemas.append(schema)
        return with_search_path(self.server, schema)

    def close(self) -> None:
        import psycopg

        if self.schemas:
            with psycopg.connect(self.server, autocommit=True) as conn:
                for schema in self.schemas:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")


def with_search_path(url: str, schema: str) -> str:
    """``url`` with every table in ``schema`` (libpq's ``options=-csearch_path=...``)."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


# Backend id (the test id) -> its databases for one test (given the test's tmp_path).
STORE_BACKENDS: dict[str, Callable[[Path], Databases]] = {
    "sqlite": SQLiteDatabases,
    "postgresql": PostgresDatabases,
}
EXTERNAL: frozenset[str] = frozenset({"postgresql"})  # backends that need a server named by TEST_DATABASE_URL


def as_contact(row: Mapping[str, Any]) -> Contact:
    """A stored contact (as ``stored_contacts`` lists it) as the Contact it was stored from."""
    return Contact._make(row[field] for field in Contact._fields)


def expected_next_repeats(contacts: Iterable[Contact]) -> dict[str, int | None]:
    """By id, each contact's next repeat as ``metrics.definitions`` states it; None for one the metrics do not
    count (the store keeps it only for those)."""
    everyone = list(contacts)
    by_customer: dict[str, list[Contact]] = {}
    for c in everyone:
        by_customer.setdefault(c.customer_id, []).append(c)
    return {c.id: next_repeat_us(c, by_customer[c.customer_id]) if is_handled_inbound(c) else None for c in everyone}


class StoreProbe(Protocol):
    """Reads what only tests need from a store's backend."""

    def contacts(self) -> list[dict[str, Any]]:
        """Every stored contact as ``get_contact`` gives it, ordered by (source, id)."""
        ...

    def stale_rollup_days(self, zone: tzinfo) -> int:
        """Days the metric rollups still have to rebuild for ``zone`` (-1: not built for this zone)."""
        ...

    def assert_derived_data_consistent(self) -> None:
        """The backend's derived candidate data holds exactly the counted contacts, with their current values."""
        ...


# A contact with the derived next repeat of its candidate row (None for one the metrics do not count).
_SQLITE_CONTACTS = (
    "SELECT c.*, m.next_repeat_us FROM contacts AS c "
    "LEFT JOIN metric_contacts AS m ON m.started_us = c.started_us AND m.pk = c.pk ORDER BY c.source, c.id"
)


class SQLiteProbe:
    """Reads the store's file through a read-only connection of its own."""

    def __init__(self, store: SQLiteContactStore):
        self.path = store.path

    def _connect(self) -> closing[sqlite3.Connection]:
        return closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True))

    def contacts(self) -> list[dict[str, Any]]:
        with self._connect() as conn:
            cursor = conn.execute(_SQLITE_CONTACTS)
            names = [d[0] for d in cursor.description]
            contacts = [dict(zip(names, row, strict=True)) for row in cursor]
            raws = RawCodec()  # long raws are stored compressed
            for contact in contacts:
                contact["raw"] = raws.unpack(conn, contact["raw"])
            return contacts

    def stale_rollup_days(self, zone: tzinfo) -> int:
        with self._connect() as conn:
            return stale_days(conn, zone)

    def assert_derived_data_consistent(self) -> None:
        with self._connect() as conn:
            stored = {
                row[1]: row for row in conn.execute(f"SELECT {', '.join(METRIC_CONTACTS_COLUMNS)} FROM metric_contacts")
            }
        expected = {
            row["pk"]: tuple(row[column] for column in METRIC_CONTACTS_COLUMNS)
            for row in self.contacts()
            if is_handled_inbound(as_contact(row))
        }
        assert stored == expected


_POSTGRES_CONTACTS = (
    "SELECT c.*, m.next_repeat_us FROM contacts AS c LEFT JOIN metric_contacts AS m ON m.pk = c.pk "
    "ORDER BY c.source, c.id"
)
_QUICK_RETURN_COLUMNS = (
    "started_us", "pk", "end_us", "next_repeat_us", "tier", "escalated", "resolved", "agent", "team", "queue",
    "channel", "reason",
)  # fmt: skip
_POSTGRES_CANDIDATE_COLUMNS = (
    "pk", "started_us", "end_us", "tier", "escalated", "resolved", "agent", "team", "queue", "channel",
)  # fmt: skip


class PostgresProbe:
    """Reads the store's schema through a connection of its own."""

    def __init__(self, store: PostgresContactStore):
        self.url = store.url

    def contacts(self) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            return conn.execute(_POSTGRES_CONTACTS).fetchall()

    def stale_rollup_days(self, zone: tzinfo) -> int:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return postgres_rollups.stale_days(conn, zone)

    def assert_derived_data_consistent(self) -> None:
        import psycopg

        columns = ", ".join(_POSTGRES_CANDIDATE_COLUMNS)
        with psycopg.connect(self.url) as conn:
            stored = set(conn.execute(f"SELECT {columns} FROM metric_contacts").fetchall())
            expected = set(
                conn.execute(
                    f"SELECT {columns} FROM contacts WHERE direction = 'inbound' AND agent IS NOT NULL"
                ).fetchall()
            )
        assert stored == expected
        assert_quick_returns_exact(self.url)


def assert_quick_returns_exact(url: str) -> None:
    """PostgreSQL's copy of the quick returns (metric_quick_returns) holds exactly the candidates it stands for,
    with every column (EXCEPT both ways, in one snapshot)."""
    import psycopg

    columns = ", ".join(_QUICK_RETURN_COLUMNS)
    with psycopg.connect(url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        candidates = f"SELECT {columns} FROM metric_contacts WHERE next_repeat_us <= end_us + {QUICK_RETURN_US}"
        copies = f"SELECT {columns} FROM metric_quick_returns"
        missing = conn.execute(f"{candidates} EXCEPT ALL {copies}").fetchall()
        extra = conn.execute(f"{copies} EXCEPT ALL {candidates}").fetchall()
    assert (missing, extra) == ([], [])


# Store class -> its probe.
PROBES: dict[type, Callable[[Any], StoreProbe]] = {
    SQLiteContactStore: SQLiteProbe,
    PostgresContactStore: PostgresProbe,
}


def probe(store: ContactStore) -> StoreProbe:
    """The test-only reader of ``store``'s backend."""
    return PROBES[type(store)](store)


def stored_contacts(store: ContactStore) -> list[dict[str, Any]]:
    """Every stored contact with its derived next repeat, ordered by (source, id)."""
    return probe(store).contacts()


def assert_candidates_mirror_contacts(store: ContactStore) -> None:
    """The derived candidate data holds exactly the counted contacts, with their current values."""
    probe(store).assert_derived_data_consistent()
