"""The PostgreSQL store: the same results as the SQLite store for any delivery, under concurrent writers too.

Runs against TEST_DATABASE_URL (``make test`` starts a throwaway server); skipped, loudly, without one.
"""

from __future__ import annotations

import multiprocessing
import operator
import os
import pickle
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.ingest import ingest_file
from bot.settings import load_settings
from bot.storage import ContactStore, PackedContacts, open_store, postgres_load, postgres_migrations, postgres_rollups
from bot.storage import postgres as postgres_store
from bot.storage.postgres import PostgresContactStore
from bot.storage.postgres_copy import CopyRowPacker, CopyRows
from bot.storage.postgres_metrics import row_count_statements
from bot.storage.postgres_migrations import MIGRATIONS
from bot.storage.schedules import OutboxMessage
from bot.storage.sqlite import SQLiteContactStore
from metrics.engine import MetricReader, MetricSource, RowSpec, Span, compute
from metrics.errors import UserError
from metrics.query import Dimension, Filter, MetricQuery
from metrics.records import ID_MAX_CHARS, Contact, parse_contact
from metrics.timeutil import US_PER_DAY, US_PER_HOUR, load_zone
from metrics.windows import QuickReturns
from tests.store_support import (
    PostgresDatabases,
    as_contact,
    assert_candidates_mirror_contacts,
    expected_next_repeats,
    probe,
    stored_contacts,
)

UTC_ZONE = load_zone("UTC")
T0 = 1_780_000_000  # 2026-05-28, epoch seconds


def contact(cid: str, customer: str, start_hours: float, **fields: Any) -> Contact:
    record: dict[str, Any] = {"id": cid, "customer_id": customer, "agent": "ana", "started_at": T0 + start_hours * 3600}
    record.update(fields)
    parsed = parse_contact(record, UTC_ZONE)
    assert isinstance(parsed, Contact), parsed
    return parsed


def dump(store: ContactStore) -> list[dict[str, Any]]:
    """Every contact with its derived next repeat, as comparable values (booleans as 0/1, no pk or arrival)."""
    return [
        {key: (int(value) if isinstance(value, bool) else value) for key, value in row.items()}
        for row in ({k: v for k, v in row.items() if k not in ("pk", "received_at")} for row in stored_contacts(store))
    ]


def answers(store: ContactStore) -> list[object]:
    """A few metric questions over the stored contacts, counted from contacts."""
    as_of = (T0 + 30 * 24 * 3600) * 1_000_000
    results: list[object] = []
    for metric in ("acr", "tier1"):
        for by in (None, "agent", "day", "channel"):
            query = MetricQuery(metric, US_PER_DAY, T0 * 1_000_000 - US_PER_DAY, as_of, as_of, by=by)
            result = compute(store, query, UTC_ZONE, use_rollups=False)
            results.append((result.total, [(row.key, row.counts) for row in result.rows]))
        hours = MetricQuery(metric, 3 * US_PER_HOUR, T0 * 1_000_000, as_of, T0 * 1_000_000 + 6 * US_PER_HOUR)
        results.append(compute(store, hours, UTC_ZONE, use_rollups=False).total)
    return results


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PostgresContactStore]:
    store = PostgresContactStore(postgres_url)
    yield store
    store.close()


versions = st.tuples(
    st.integers(0, 7),  # key
    st.sampled_from(["k0", "k1", "k2"]),  # customer
    st.integers(0, 12),  # start, hours
    st.sampled_from([None, 0.5, 30]),  # duration, hours
    st.sampled_from(["inbound", "inbound", "outbound"]),
    st.sampled_from([None, None, "p"]),  # parent: a continuation leg
    st.sampled_from(["ana", "ben", None]),  # agent
    st.sampled_from([(1, False, None), (1, True, None), (2, False, True), (1, False, False)]),  # tier, esc., res.
)


def build(version: tuple[Any, ...]) -> Contact:
    key, customer, start, duration, direction, parent, agent, (tier, escalated, resolved) = version
    fields: dict[str, Any] = {"direction": direction, "agent": agent, "tier": tier, "escalated": escalated}
    if duration is not None:
        fields["ended_at"] = T0 + (start + duration) * 3600
    if parent is not None:
        fields["parent_id"] = parent
    if resolved is not None:
        fields["resolved"] = resolved
    return contact(f"c{key}", customer, start, **fields)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(versions, min_size=1, max_size=12), min_size=1, max_size=5))
def test_any_delivery_gives_what_sqlite_gives(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, batches: Any
) -> None:
    """Batch by batch: the same counts, the same stored contacts and next repeats, the same metric answers.
    Every batch is inserted expecting new keys (``expect_new_keys_always``) but the one after a batch that had a
    stored key: both ways of inserting are taken."""
    expect_new_keys_always(monkeypatch)
    folder = tmp_path_factory.mktemp("reference")
    databases = PostgresDatabases(folder)
    pg = PostgresContactStore(databases.fresh_url())
    lite = SQLiteContactStore(folder / "acr.db")
    try:
        for batch in batches:
            contacts = [build(version) for version in batch]
            assert pg.upsert(contacts).as_dict() == lite.upsert(contacts).as_dict()
        assert dump(pg) == dump(lite)
        assert pg.count_contacts() == lite.count_contacts()
        assert answers(pg) == answers(lite)
    finally:
        pg.close()
        lite.close()
        databases.close()


def test_a_large_write_takes_the_window_pass_and_agrees(
    pg: PostgresContactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write above WINDOW_PASS_MIN_ROWS works out next repeats in one window pass: same result, and the same
    quick returns kept beside the candidates (a large write that updates contacts drops and adds candidates that
    are quick returns)."""
    import bot.storage.postgres as postgres_store

    monkeypatch.setattr(postgres_store, "WINDOW_PASS_MIN_ROWS", 5)
    lite = SQLiteContactStore(tmp_path / "acr.db")
    first = [contact(f"a{i}", f"k{i % 3}", i) for i in range(9)]
    moved = [
        *(contact("a4", "k0", -1), contact("a7", "k2", 30, direction="outbound"), contact("new", "k1", 2.5)),
        *(contact("a1", "k1", 1, agent="zed"), contact("a2", "k2", 2, team="other"), contact("a5", "k2", 40)),
    ]
    try:
        for batch in (first, moved, first[:3]):
            assert pg.upsert(batch).as_dict() == lite.upsert(batch).as_dict()
            assert_candidates_mirror_contacts(pg)
        # A write that is small in its first chunk (whose candidates go in with its contacts, with no next repeat)
        # and large by its end: the window pass leaves those candidates in and sets their next repeats; the same
        # with a stored contact updated in its last chunk (the candidates of every written contact dropped first).
        expect_new_keys_always(monkeypatch)
        for name, last in (("b", []), ("c", [contact("a3", "k0", 55)])):
            chunks = [
                [contact(f"{name}{i}", f"k{i % 3}", 50 + i) for i in range(3)],
                [*(contact(f"{name}{i}", f"k{i % 3}", 60 + i) for i in range(3, 7)), *last],
            ]
            with pg.bulk() as writer:
                for chunk in chunks:
                    writer.add(chunk)
            assert writer.counts.as_dict() == lite.upsert([*chunks[0], *chunks[1]]).as_dict()
            assert_candidates_mirror_contacts(pg)
        assert dump(pg) == dump(lite)
        assert_derived_data_exact(pg)
    finally:
        lite.close()


def secondary_indexes(url: str) -> set[str]:
    """The definitions of the indexes of the contacts and their candidates (constraints' ones included)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid IN ('contacts'::regclass, 'metric_contacts'::regclass)"
        ).fetchall()
    return {row[0] for row in rows}


def readable_meanwhile(url: str) -> bool:
    """Whether another process can read the contacts now, or finds them taken by a bulk load."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '200ms'")
        try:
            conn.execute("SELECT count(*) FROM contacts").fetchone()
        except psycopg.errors.LockNotAvailable:
            return False
    return True


def test_an_initial_bulk_load_builds_the_indexes_at_its_end_and_agrees(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load of at least BULK_LOAD_MIN_ROWS and as large as the store takes the tables, drops their secondary
    indexes and builds them at its end: the same contacts and next repeats as SQLite's, and the same indexes after
    a commit, after a load that changed nothing and after a rollback."""
    import bot.storage.postgres as postgres_store

    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    pg = PostgresContactStore(postgres_url)
    lite = SQLiteContactStore(tmp_path / "acr.db")
    indexes = secondary_indexes(postgres_url)
    first = [contact(f"a{i}", f"k{i % 3}", i, direction="outbound" if i == 4 else "inbound") for i in range(9)]
    again = [*first[:6], contact("a6", "k2", 0.5), contact("b", "k0", 3.5), contact("c", "k1", 7.5, resolved=False)]
    try:
        for batch in (first, first, again):
            with pg.bulk(len(batch)) as writer:
                assert not readable_meanwhile(postgres_url)  # the load has the tables
                writer.add(batch[:4])
                writer.add(batch[4:])
            assert writer.counts.as_dict() == lite.upsert(batch).as_dict()
            assert dump(pg) == dump(lite)
            assert secondary_indexes(postgres_url) == indexes
        with pytest.raises(RuntimeError), pg.bulk(20) as writer:
            writer.add([contact("gone", "k1", 1)])
            raise RuntimeError("the import failed half-way")
        assert secondary_indexes(postgres_url) == indexes
        assert dump(pg) == dump(lite)
        assert_derived_data_exact(pg)
    finally:
        pg.close()
        lite.close()


@pytest.mark.parametrize("again", ["in a later chunk", "in the same chunk", "packed", "copy rows", "copy rows later"])
def test_an_initial_load_copies_straight_until_a_key_comes_again_and_agrees(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, again: str
) -> None:
    """An initial load (an empty store) copies its chunks straight into contacts; a key given again (a newer
    version, an identical one, a stale one) sends the chunk, and every later one, the way of any write: the same
    counts, contacts and next repeats as SQLite's, and the candidates' key and indexes are back."""
    import bot.storage.postgres as postgres_store

    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    pg = PostgresContactStore(postgres_url)
    lite = SQLiteContactStore(tmp_path / "acr.db")
    indexes = secondary_indexes(postgres_url)
    first = [contact(f"a{i}", f"k{i % 3}", i, direction="outbound" if i == 4 else "inbound") for i in range(9)]
    newer = contact("a2", "k1", 8.5, updated_at=T0 + 99)
    older = contact("a5", "k2", 0.25, updated_at=T0 - 99)
    repeated = [newer, first[3], older, contact("b", "k0", 3.5), contact("c", "k1", 7.5, resolved=False)]
    chunks = (
        [first[:5], [first[5], newer], first[6:], repeated]
        if again in ("in a later chunk", "copy rows later")
        else [first[:3], [*first[3:], *repeated]]
    )
    pack = pg.row_packer()  # (as the import's reader processes do)
    assert pack is not None
    try:
        with pg.bulk(len(first) + len(repeated)) as writer:
            for chunk in chunks:
                values = [value for row in chunk for value in row]
                writer.add(PackedContacts(values) if again == "packed" else pack(chunk) if "copy" in again else chunk)
        assert writer.counts.as_dict() == lite.upsert([c for chunk in chunks for c in chunk]).as_dict()
        assert dump(pg) == dump(lite)
        assert secondary_indexes(postgres_url) == indexes
        assert_derived_data_exact(pg)
    finally:
        pg.close()
        lite.close()


def test_copy_rows_made_by_a_reader_read_back_as_the_contacts_they_were_made_from() -> None:
    """The binary COPY rows a reader process makes (psycopg's formatter) decode to the same contacts, after the
    trip to the writer (pickled): NULLs, booleans, integers, text beyond ASCII."""
    rows = [
        contact("a1", "k\u00e9", 1, reason="r\u00e9sum\u00e9 \U0001f600", resolved=False),
        contact("a2", "k", 2, ended_at=T0 + 3 * 3600, escalated=True, tier=7, parent_id="a1", updated_at=T0),
        contact("a3", "k", -1e5, direction="outbound", agent=None),
    ]
    pack = CopyRowPacker("2026-05-28T00:00:00.000Z")
    packed = pickle.loads(pickle.dumps(pack(rows)))
    assert isinstance(packed, CopyRows)
    assert (list(packed), len(packed), packed[1], packed.keys_unique) == (rows, 3, rows[1], True)
    assert not pack([*rows, rows[0]]).keys_unique
    # One id from two sources is no repeat; one (source, id) twice, among others, is.
    assert pack([*rows, rows[0]._replace(source="other")]).keys_unique
    assert not pack([*rows, rows[0]._replace(source="other"), rows[1]]).keys_unique


def test_a_parallel_import_streams_what_its_readers_made_and_agrees(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import read by reader processes hands the store binary COPY rows (``row_packer``): an initial load
    streams them into its staging tables as they are, a key that comes again included (settled at the end); a
    later import of the same file decodes them. Both report and store what SQLite does."""
    import bot.storage.postgres as postgres_store

    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    streamed: list[bool] = []
    copied_straight = postgres_store._PostgresBulkWriter._copied_straight

    def spy(writer: Any, contacts: Any) -> bool:
        done = copied_straight(writer, contacts)
        streamed.append(isinstance(contacts, CopyRows) and done)
        return done

    monkeypatch.setattr(postgres_store._PostgresBulkWriter, "_copied_straight", spy)
    lines = [
        orjson.dumps({"id": f"r{n}", "customer_id": f"k{n % 4}", "agent": "ana", "started_at": T0 + n * 600})
        for n in range(40)
    ]
    lines.append(orjson.dumps({"id": "r3", "customer_id": "k1", "agent": "ben", "started_at": T0 + 99}))
    path = tmp_path / "contacts.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    pg = PostgresContactStore(postgres_url)
    lite = SQLiteContactStore(tmp_path / "acr.db")
    try:
        for _ in range(2):  # an initial load, then the same file again (every record unchanged)
            result = ingest_file(pg, str(path), UTC_ZONE, parallel=True, readers=2, block_bytes=200)
            alone = ingest_file(lite, str(path), UTC_ZONE, parallel=False)
            assert (result.counts, result.errors) == (alone.counts, alone.errors)
            assert dump(pg) == dump(lite)
            assert_derived_data_exact(pg)
        assert streamed and all(streamed)  # into the staging tables, the key given again too (settled at the end)
    finally:
        pg.close()
        lite.close()


def test_a_parallel_import_keeps_text_beyond_ascii_whatever_the_client_encoding(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The readers' COPY rows hold UTF-8 text; PostgreSQL reads a COPY in the connection's client encoding. On a
    LATIN1 connection (a LATIN1 database, PGCLIENTENCODING, or the URL's) an initial load stored "José" as
    "JosÃ©", and the same file again counted every record updated. (Found by review.)"""
    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    path = tmp_path / "contacts.jsonl"
    path.write_bytes(
        b"".join(
            orjson.dumps({"id": f"r{n}", "customer_id": f"k{n % 4}", "agent": "Jos\u00e9", "started_at": T0 + n})
            + b"\n"
            for n in range(40)
        )
    )
    store = PostgresContactStore(postgres_url + ("&" if "?" in postgres_url else "?") + "client_encoding=LATIN1")
    try:
        with store.connection() as conn:
            assert conn.info.encoding == "iso8859-1"
        assert store.row_packer() is None  # its readers send PackedContacts, written in the connection's encoding
        first = ingest_file(store, str(path), UTC_ZONE, parallel=True, readers=2, block_bytes=200)
        assert (first.ok, first.counts.inserted) == (True, 40)
        stored = store.get_contact("api", "r1")
        assert stored is not None and stored["agent"] == "Jos\u00e9"
        again = ingest_file(store, str(path), UTC_ZONE, parallel=False)
        assert again.counts.unchanged == 40
    finally:
        store.close()


def test_copy_rows_given_to_a_store_on_another_client_encoding_are_written_row_by_row(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COPY rows made for a UTF-8 store (``row_packer`` offers none on another encoding) and given to a LATIN1
    connection's initial load are not streamed as they are: PostgreSQL would read their UTF-8 as LATIN1."""
    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    rows = [contact(f"c{n}", "k\u00e9", n, agent="Jos\u00e9") for n in range(10)]
    store = PostgresContactStore(postgres_url + ("&" if "?" in postgres_url else "?") + "client_encoding=LATIN1")
    try:
        with store.bulk(len(rows)) as writer:
            writer.add(CopyRowPacker("2026-05-28T00:00:00.000Z")(rows))
        assert writer.counts.inserted == 10
        stored = store.get_contact("api", "c1")
        assert stored is not None and (stored["agent"], stored["customer_id"]) == ("Jos\u00e9", "k\u00e9")
    finally:
        store.close()


@pytest.mark.parametrize("formatter", [True, False], ids=["one-block", "row-by-row"])
@pytest.mark.parametrize("client_encoding", ["UTF8", "LATIN1"])
def test_a_writes_rows_reach_incoming_with_every_value_in_the_connections_encoding(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, formatter: bool, client_encoding: str
) -> None:
    """A write's chunk goes to ``incoming`` as one block of binary COPY data made with the connection's dumpers
    (``write_binary_copy``), or row by row where psycopg lacks its formatter: either way every value arrives as
    given (text beyond ASCII on a LATIN1 connection, NULLs, booleans, the largest tier), new and updated alike."""
    from bot.storage import postgres_copy

    monkeypatch.setattr(postgres_copy, "AVAILABLE", formatter)
    given = [
        contact(
            "c0", "k\u00e9", 1, agent="Jos\u00e9", team="t\u00fc", reason="\u00e7a", tier=2**63 - 1, escalated=True
        ),
        contact("c1", "k1", 2, agent=None, resolved=False, ended_at=T0 + 3 * 3600, updated_at=T0),
        contact("c2", "k1", 3, channel="chat", direction="outbound", parent_id="p\u00e9", resolved=True),
    ]
    store = PostgresContactStore(
        postgres_url + ("&" if "?" in postgres_url else "?") + f"client_encoding={client_encoding}"
    )
    try:
        assert store.upsert(given).inserted == 3
        changed = [given[0]._replace(agent="Mar\u00eda", raw=given[0].raw.replace("Jos", "Mar")), given[1], given[2]]
        counts = store.upsert(changed)
        assert (counts.updated, counts.unchanged) == (1, 2)
        for expected in changed:
            stored = store.get_contact(expected.source, expected.id)
            assert stored is not None
            assert {field: stored[field] for field in Contact._fields} == expected._asdict()
    finally:
        store.close()


def test_an_import_goes_on_without_reader_made_rows_where_psycopg_lacks_its_copy_formatter(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The readers' COPY rows use psycopg's formatter, which is not public API: without it (another psycopg) the
    store offers no packer and an import's readers send ``PackedContacts``, as to SQLite."""
    from bot.storage import postgres_copy

    monkeypatch.setattr(postgres_copy, "AVAILABLE", False)
    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    path = tmp_path / "contacts.jsonl"
    path.write_bytes(
        b"".join(
            orjson.dumps({"id": f"r{n}", "customer_id": f"k{n % 4}", "agent": "ana", "started_at": T0 + n}) + b"\n"
            for n in range(40)
        )
    )
    store = PostgresContactStore(postgres_url)
    try:
        assert store.row_packer() is None
        result = ingest_file(store, str(path), UTC_ZONE, parallel=True, readers=2, block_bytes=200)
        assert (result.ok, result.counts.inserted, store.count_contacts()) == (True, 40, 40)
        assert_derived_data_exact(store)
    finally:
        store.close()


def test_a_bulk_load_gives_its_index_builds_memory_for_the_load_only(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index builds at the end of a bulk load sort in memory (at least 512MB; a server configured for more
    keeps its own), and the setting goes with the load's transaction."""
    import bot.storage.postgres as postgres_store

    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    batch = [contact(f"a{i}", f"k{i % 3}", i) for i in range(9)]
    seen: list[Any] = []
    try:
        for configured in ("64MB", "2GB"):
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(f"ALTER DATABASE {conn.info.dbname} SET maintenance_work_mem = '{configured}'")
            pg = PostgresContactStore(postgres_url)
            try:
                with pg.bulk(len(batch) if configured == "64MB" else 2 * len(batch)) as writer:
                    writer.add(batch)
                    seen.append(writer._conn.execute("SHOW maintenance_work_mem").fetchone())
                with pg.connection() as conn:
                    seen.append(conn.execute("SHOW maintenance_work_mem").fetchone())
            finally:
                pg.close()
    finally:  # (the database is shared by every test: its own setting again)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {conn.info.dbname} RESET maintenance_work_mem")
    assert seen == [("512MB",), ("64MB",), ("2GB",), ("2GB",)]


def test_a_staged_loads_builds_do_not_wait_for_the_disk_and_its_contacts_builds_take_no_workers(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each index build of a staged initial load commits without waiting for the disk (the load's own commit,
    flushed before it returns, comes after them); the contacts' builds, which run beside the candidates' sort,
    take no parallel workers, the candidates' keep the server's. Seen by an event trigger on every build."""
    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        if _first_value(conn, "SHOW is_superuser") != "on":
            pytest.skip("an event trigger needs a superuser (TEST_DATABASE_URL names another role)")
    pg = PostgresContactStore(with_options(postgres_url, "-csynchronous_commit=on"))  # (the test server's: off)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        # (an event trigger is the database's: it notes only this test's schema, where other tests build too)
        schema = _first_value(conn, "SELECT current_schema()")
        conn.execute("CREATE TABLE build_settings (name TEXT, workers TEXT, sync TEXT)")
        conn.execute(
            "CREATE FUNCTION note_build_settings() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"INSERT INTO {schema}.build_settings SELECT split_part(object_identity, '.', 2), "
            "current_setting('max_parallel_maintenance_workers'), current_setting('synchronous_commit') "
            f"FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE INDEX' AND schema_name = '{schema}'; "
            "END $$"
        )
        conn.execute("CREATE EVENT TRIGGER note_builds ON ddl_command_end EXECUTE FUNCTION note_build_settings()")
        default = _first_value(conn, "SHOW max_parallel_maintenance_workers")
        indexes = conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid IN ('contacts'::regclass, 'metric_contacts'::regclass)"
        ).fetchall()
    try:
        with pg.bulk(9) as writer:
            writer.add([contact(f"a{i}", f"k{i % 3}", i) for i in range(9)])
    finally:
        pg.close()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("DROP EVENT TRIGGER note_builds")
            built = conn.execute("SELECT name, workers, sync FROM build_settings ORDER BY name").fetchall()
    assert built == sorted(
        (staged, "0" if staged.startswith("acr_import_contacts") else default, "off")
        for staged in (f"acr_import_{name}" for (name,) in indexes)
    )
    assert len(built) == 7
    assert default != "0"  # (else the test could not tell)


def test_a_staged_load_builds_the_candidates_longest_indexes_first(postgres_url: str) -> None:
    """Once the candidates are filled, the two connections take their widest index (every column included)
    first, then the narrower and the key; the contacts' unique key leads theirs."""
    pg = PostgresContactStore(postgres_url)
    load = postgres_load.StagedLoad.begin(pg._pool, "2s")
    try:
        assert load is not None
        names = [build.name for build in load.builds(postgres_store.load_candidates)]
    finally:
        if load is not None:
            load.close()
        pg.close()
    assert names == [
        "candidates",
        "metric_contacts_time",
        "metric_contacts_agent",
        "metric_contacts_pkey",
        "contacts_source_id_key",
        "contacts_pkey",
        "contacts_customer",
        "contacts_started_brin",
    ]


def test_a_bulk_load_writes_row_by_row_while_another_transaction_holds_the_derive_lock(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load that cannot have the derive lock at once does not wait for it holding the tables (a writer holding
    rows may be waiting for that lock): it leaves the tables to others and writes into the indexes as it goes."""
    import bot.storage.postgres as postgres_store

    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    pg = PostgresContactStore(postgres_url)
    batch = [contact(f"a{i}", f"k{i % 3}", i) for i in range(9)]
    try:
        with psycopg.connect(postgres_url) as holder:
            holder.execute(postgres_store._DERIVE_LOCK)
            with pg.bulk(len(batch)) as writer:
                writer.add(batch)
                assert readable_meanwhile(postgres_url)
                holder.commit()  # the derive step at the end takes the lock now
        assert writer.counts.inserted == 9
        assert_derived_data_exact(pg)
    finally:
        pg.close()


# The store's tables as the catalog describes them (what a staged load's swap must reproduce), schema name left out.
_DESCRIBE = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attcollation::regcollation::text,
            a.attnotnull, a.attidentity, a.attgenerated, pg_get_expr(d.adbin, d.adrelid), a.attstorage::text,
            a.attstattarget
        FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
            LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = current_schema()::regnamespace AND a.attnum > 0 AND NOT a.attisdropped""",
    "relations": """
        SELECT relname, relkind::text, relpersistence::text, reloptions, relacl::text[] FROM pg_class
        WHERE relnamespace = current_schema()::regnamespace""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype::text, conindid::regclass::text,
            pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = current_schema()::regnamespace""",
    "indexes": """
        SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index
        WHERE indrelid::regclass::text IN ('contacts', 'metric_contacts')""",
    "sequences": """
        SELECT pg_get_serial_sequence('contacts', 'pk'), s.seqtypid::regtype::text, s.seqstart, s.seqincrement,
            s.seqmax, s.seqmin, s.seqcache, s.seqcycle
        FROM pg_sequence AS s WHERE s.seqrelid = pg_get_serial_sequence('contacts', 'pk')::regclass""",
}


def describe_tables(url: str) -> dict[str, set[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        schema = _first_value(conn, "SELECT current_schema()")
        return {
            name: {tuple(str(v).replace(f"{schema}.", "") for v in row) for row in conn.execute(query).fetchall()}
            for name, query in _DESCRIBE.items()
        }


def with_options(url: str, options: str) -> str:
    """``url`` whose sessions start with ``options`` too (libpq's ``options``, e.g. ``-cname=value``)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} {options}"
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))  # (libpq reads no + as a space)


def staging_tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE 'acr\\_import\\_%%' AND relkind = 'r'"
            " AND relnamespace = current_schema()::regnamespace ORDER BY 1"
        ).fetchall()
    return [name for (name,) in rows]


def _load_then_die(url: str, rows: list[Contact], when: str) -> None:
    """In a child process: an initial load that dies (as if SIGKILLed: no clean-up of its own) while its rows go
    to the staging tables, or once they are committed there and the candidates and indexes are being built."""
    postgres_store.BULK_LOAD_MIN_ROWS = 5
    if when == "building":
        postgres_store.run_builds = lambda *args: os._exit(9)
    store = PostgresContactStore(url)
    with store.bulk(len(rows)) as writer:
        writer.add(rows[:5])
        if when == "loading":
            os._exit(9)
        writer.add(rows[5:])
    os._exit(0)


@pytest.mark.parametrize("when", ["loading", "building"])
def test_a_killed_staged_load_leaves_the_store_as_it_was_and_the_next_load_swaps_in_tables_as_migrated(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """An initial load stages its rows in tables of its own, builds there on two connections, and swaps them in
    at its commit (``postgres_load``). Killed while loading or building, it leaves the store empty and at most
    staging tables, which the next load drops; that one gives SQLite's result, and the tables it swaps in are the
    migrated ones: every column, constraint, index, sequence and storage option by the same name."""
    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    PostgresContactStore(postgres_url).close()  # (migrated)
    migrated = describe_tables(postgres_url)
    rows = [contact(f"a{i}", f"k{i % 3}", i, direction="outbound" if i == 4 else "inbound") for i in range(12)]
    child = multiprocessing.get_context("fork").Process(target=_load_then_die, args=(postgres_url, rows, when))
    child.start()
    child.join(60)
    assert child.exitcode == 9
    pg = PostgresContactStore(postgres_url)
    lite = SQLiteContactStore(tmp_path / "acr.db")
    try:
        assert (pg.count_contacts(), dump(pg)) == (0, [])
        assert staging_tables(postgres_url) == []  # (the dead load's, dropped as the store opened)
        with pg.bulk(len(rows)) as writer:
            writer.add(rows[:5])
            assert not readable_meanwhile(postgres_url)  # the load has the store's tables
            writer.add(rows[5:])
        assert writer.counts.as_dict() == lite.upsert(rows).as_dict()
        assert dump(pg) == dump(lite)
        assert_derived_data_exact(pg)
        assert describe_tables(postgres_url) == migrated
        with pg.connection() as conn:  # every day with candidates marked for the rollups, as by any load
            marked = conn.execute("SELECT array_agg(utc_day ORDER BY utc_day) FROM metric_rollup_dirty").fetchone()
        assert marked == (
            sorted({row["started_us"] // US_PER_DAY for row in dump(pg) if row["direction"] == "inbound"}),
        )
    finally:
        pg.close()
        lite.close()


def test_a_killed_loads_staging_tables_go_before_an_erasure_not_while_a_load_stages(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed load's staging tables hold its contacts: a server that was already running drops them before it
    erases a customer (or purges), though no initial load will ever come again (found by review)."""
    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    running = PostgresContactStore(postgres_url)  # (open before the load: its opening dropped nothing)
    rows = [contact(f"a{i}", "alice" if i % 2 else f"k{i}", i) for i in range(12)]
    child = multiprocessing.get_context("fork").Process(target=_load_then_die, args=(postgres_url, rows, "building"))
    child.start()
    child.join(60)
    assert child.exitcode == 9
    try:
        assert staging_tables(postgres_url) == ["acr_import_contacts", "acr_import_metric_contacts"]
        running.upsert([contact("w1", "bob", 1), contact("w2", "alice", 2)])  # webhooks go on
        assert running.forget_customer("alice") == 1
        assert staging_tables(postgres_url) == []
    finally:
        running.close()


def test_a_store_opening_while_a_load_stages_leaves_its_tables_alone(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process that opens the store (and would drop a killed load's staging tables) while a load stages
    leaves that load's tables alone: the load ends as SQLite's."""
    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    pg = PostgresContactStore(postgres_url)
    lite = SQLiteContactStore(tmp_path / "acr.db")
    rows = [contact(f"a{i}", f"k{i % 3}", i) for i in range(12)]
    try:
        with pg.bulk(len(rows)) as writer:
            writer.add(rows[:6])
            PostgresContactStore(postgres_url).close()  # another process starts meanwhile
            assert staging_tables(postgres_url) == ["acr_import_contacts", "acr_import_metric_contacts"]
            writer.add(rows[6:])
        assert writer.counts.as_dict() == lite.upsert(rows).as_dict()
        assert dump(pg) == dump(lite)
        assert_derived_data_exact(pg)
    finally:
        pg.close()
        lite.close()


def test_a_staged_load_settles_the_keys_it_was_given_again_as_if_written_in_turn(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A staged initial load copies every chunk, keys given again included, and settles them at its end in
    batches of SETTLE_BATCH keys: each ends as its versions written in turn leave it (a newer one replaces, an
    identical one is unchanged, an older one is stale; one id from two sources is two keys), counted so, and the
    candidates, built before the key found the repeats, are built again: SQLite's counts, contacts and repeats."""
    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    monkeypatch.setattr(postgres_store, "SETTLE_BATCH", 2)
    PostgresContactStore(postgres_url).close()  # (migrated)
    migrated = describe_tables(postgres_url)
    rows = [contact(f"a{i}", f"k{i % 3}", i, updated_at=T0 + 10) for i in range(8)]
    chunks = [
        rows[:4],
        [*rows[4:], contact("b", "k0", 2), contact("b", "k0", 2.5)],  # b twice in one chunk
        [contact("a1", "k2", 9.5, updated_at=T0 + 50), rows[2], contact("a5", "k0", 1, updated_at=T0 - 50)],
        [contact("a6", "k1", 6.5, source="other"), contact("a1", "k1", 0.5, updated_at=T0 + 60), rows[0]],
    ]
    pg = PostgresContactStore(postgres_url)
    lite = SQLiteContactStore(tmp_path / "acr.db")
    pack = pg.row_packer()
    assert pack is not None
    try:
        with pg.bulk(sum(map(len, chunks))) as writer:
            for n, chunk in enumerate(chunks):
                writer.add(pack(chunk) if n % 2 else chunk)
        assert writer.counts.as_dict() == lite.upsert([row for chunk in chunks for row in chunk]).as_dict()
        assert writer.counts.as_dict() == {"accepted": 16, "inserted": 10, "updated": 3, "unchanged": 2, "stale": 1}
        assert dump(pg) == dump(lite)
        assert_derived_data_exact(pg)
        assert describe_tables(postgres_url) == migrated
    finally:
        pg.close()
        lite.close()


def test_a_staged_load_whose_staging_connection_dies_after_its_commit_stands(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staging connection lost once the load committed (its clean-up fails): the load stands as committed,
    and the import lock goes with that connection's session, so the next initial load stages again."""
    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    close, finish_staged = postgres_load.StagedLoad.close, postgres_store._PostgresBulkWriter._finish_staged

    def lose_connection_then_close(load: postgres_load.StagedLoad) -> None:
        with psycopg.connect(postgres_url, autocommit=True) as killer:
            killer.execute("SELECT pg_terminate_backend(%s)", (load.loader.info.backend_pid,))
        close(load)

    staged: list[int] = []

    def spy(writer: Any) -> None:
        staged.append(writer.counts.inserted)
        finish_staged(writer)

    monkeypatch.setattr(postgres_load.StagedLoad, "close", lose_connection_then_close)
    monkeypatch.setattr(postgres_store._PostgresBulkWriter, "_finish_staged", spy)
    pg = PostgresContactStore(postgres_url)
    rows = [contact(f"a{i}", f"k{i % 3}", i) for i in range(9)]
    try:
        with pg.bulk(len(rows)) as writer:
            writer.add(rows)
        assert (staged, pg.count_contacts()) == ([9], 9)
        assert_derived_data_exact(pg)
        monkeypatch.setattr(postgres_load.StagedLoad, "close", close)
        assert sum(pg.forget_customer(customer) for customer in ("k0", "k1", "k2")) == 9
        with pg.bulk(len(rows)) as writer:
            writer.add(rows)
        assert (staged, pg.count_contacts()) == ([9, 9], 9)
        assert_derived_data_exact(pg)
    finally:
        pg.close()


def test_settling_a_key_given_many_times_holds_a_batch_of_its_versions_not_all(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The versions of one key are folded as they come (found by review: all of them were held at once, so a file
    repeating one key a million times needed gigabytes): memory holds SETTLE_BATCH rows."""
    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    monkeypatch.setattr(postgres_store, "SETTLE_BATCH", 20)
    monkeypatch.setattr(postgres_store, "SETTLE_FETCH", 20)
    peaks: list[int] = []
    settle = postgres_store._PostgresBulkWriter._settle

    def measured(self: Any, conn: Any) -> None:
        tracemalloc.start()
        try:
            settle(self, conn)
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    monkeypatch.setattr(postgres_store._PostgresBulkWriter, "_settle", measured)
    pad = "x" * 10_000
    rows = [contact("same", "k0", 1, updated_at=T0 + n % 300, note=f"{n}{pad}") for n in range(600)]
    pg = PostgresContactStore(postgres_url)
    lite = SQLiteContactStore(tmp_path / "acr.db")
    try:
        with pg.bulk(len(rows)) as writer:
            for start in range(0, len(rows), 100):
                writer.add(rows[start : start + 100])
        assert writer.counts.as_dict() == lite.upsert(rows).as_dict()
        assert dump(pg) == dump(lite)
    finally:
        pg.close()
        lite.close()
    assert peaks[0] < 1_500_000, peaks  # (600 versions of 10 kB: 6 MB if held at once)


def test_a_load_that_finds_the_store_busy_keeps_no_staging_and_an_idle_timeout_ends_neither(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a server with idle_in_transaction_session_timeout, a staged load whose chunks come slowly goes on (its
    loader connection is idle between them), and a load that finds the store busy (another write holds the
    derive lock) writes row by row with no staging tables, import lock or idle loader left open all along, and is
    not reported as failed once it committed (found by review)."""
    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    pg = PostgresContactStore(with_options(postgres_url, "-cidle_in_transaction_session_timeout=300"))
    lite = SQLiteContactStore(tmp_path / "acr.db")
    holder = psycopg.connect(postgres_url, autocommit=True)
    rows = [contact(f"a{i}", f"k{i % 3}", i) for i in range(12)]
    try:
        for busy in (False, True):
            if busy:
                for customer in ("k0", "k1", "k2"):  # (empty again: an initial load)
                    pg.forget_customer(customer)
                    lite.forget_customer(customer)
                holder.execute(f"SELECT pg_advisory_lock({postgres_store._DERIVE_LOCK_KEY})")
            with pg.bulk(len(rows)) as writer:
                writer.add(rows[:6])
                assert staging_tables(postgres_url) == (
                    [] if busy else ["acr_import_contacts", "acr_import_metric_contacts"]
                )
                time.sleep(0.6)  # a slow source
                if busy:
                    holder.execute(f"SELECT pg_advisory_unlock({postgres_store._DERIVE_LOCK_KEY})")
                writer.add(rows[6:])
            assert writer.counts.as_dict() == lite.upsert(rows).as_dict()
            assert dump(pg) == dump(lite)
            assert_derived_data_exact(pg)
    finally:
        holder.close()
        pg.close()
        lite.close()


@pytest.mark.parametrize(
    ("change", "probe", "kept"),
    [
        ("CREATE VIEW contact_ids AS SELECT id FROM contacts", "SELECT count(*) FROM contact_ids", (9,)),
        (
            "ALTER TABLE contacts REPLICA IDENTITY FULL",
            "SELECT relreplident FROM pg_class WHERE oid = 'contacts'::regclass",
            ("f",),
        ),
        (
            "ALTER TABLE contacts CLUSTER ON contacts_pkey",
            "SELECT count(*) FROM pg_index WHERE indrelid = 'contacts'::regclass AND indisclustered",
            (1,),
        ),
        (
            "ALTER TABLE metric_contacts SET (fillfactor = 70)",
            "SELECT reloptions FROM pg_class WHERE oid = 'metric_contacts'::regclass",
            (["fillfactor=70"],),
        ),
        (
            "ALTER TABLE contacts ALTER COLUMN customer_id SET (n_distinct = -0.5)",
            "SELECT attoptions FROM pg_attribute WHERE attrelid = 'contacts'::regclass AND attname = 'customer_id'",
            (["n_distinct=-0.5"],),
        ),
    ],
    ids=["view", "replica-identity", "cluster", "storage-option", "column-option"],
)
def test_a_store_whose_tables_a_swap_would_change_loads_in_one_transaction(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str, probe: str, kept: tuple[Any]
) -> None:
    """A DBA's view on the contacts, or a replica identity, a clustering index, a column's option (found by
    review), a grant, a trigger, a storage option... would not survive a swap of the table: such a store's
    initial load goes inside its one transaction, and the addition stays. A key given again (in its second
    chunk) sends that chunk the way of any write: the candidates are still built once, at the load's end."""
    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    expect_new_keys_always(monkeypatch)
    pg = PostgresContactStore(postgres_url)
    lite = SQLiteContactStore(tmp_path / "acr.db")
    rows = [contact(f"a{i}", f"k{i % 3}", i) for i in range(9)]
    chunks = [rows[:5], [*rows[5:], contact("a2", "k1", 8.5, updated_at=T0 + 99)]]
    try:
        with pg.connection() as conn:
            conn.execute(change)
        with pg.bulk(len(rows)) as writer:
            for chunk in chunks:
                writer.add(chunk)
        assert writer.counts.as_dict() == lite.upsert([*chunks[0], *chunks[1]]).as_dict()
        assert dump(pg) == dump(lite)
        assert_derived_data_exact(pg)
        with pg.connection() as conn:
            assert conn.execute(probe).fetchone() == kept
    finally:
        pg.close()
        lite.close()


def test_a_write_waiting_for_a_staged_load_goes_on_into_the_swapped_in_tables(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's write that arrives during an initial load waits for it, then goes into the tables the
    load swapped in, its statements prepared on the old ones (PostgreSQL plans them again): the store is what
    the load and then the write give on SQLite."""
    monkeypatch.setattr(postgres_store, "BULK_LOAD_MIN_ROWS", 5)
    other = PostgresContactStore(postgres_url, max_connections=1)  # (one connection: its statements prepared)
    pg = PostgresContactStore(postgres_url)
    lite = SQLiteContactStore(tmp_path / "acr.db")
    watcher = psycopg.connect(postgres_url, autocommit=True)
    rows = [contact(f"a{i}", f"k{i % 3}", i) for i in range(9)]
    later = [contact("a2", "k1", 8.5, updated_at=T0 + 99), contact("b", "k0", 3.5)]
    try:
        for n in range(7):  # more than psycopg's prepare threshold, then gone again: an empty store
            other.upsert([contact(f"w{n}", "gone", n)])
        assert other.forget_customer("gone") == 7
        with other.connection() as conn:
            assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() != (0,)
        counts: list[dict[str, int]] = []
        waiting = threading.Thread(target=lambda: counts.append(other.upsert(later).as_dict()))
        with pg.bulk(len(rows)) as writer:
            writer.add(rows[:4])
            waiting.start()
            for _ in range(200):
                if watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                ).fetchone() != (0,):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the write did not wait for the load")
            writer.add(rows[4:])
        waiting.join(30)
        lite.upsert(rows)
        assert counts == [lite.upsert(later).as_dict()]
        assert dump(pg) == dump(lite)
        assert_derived_data_exact(pg)
    finally:
        watcher.close()
        other.close()
        pg.close()
        lite.close()


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    groups=st.lists(
        st.tuples(st.booleans(), st.lists(st.lists(versions, min_size=0, max_size=6), min_size=1, max_size=4)),
        min_size=1,
        max_size=4,
    )
)
def test_a_group_written_as_parts_counts_each_part_as_if_written_in_turn(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, groups: Any
) -> None:
    """``add_parts`` (a group commit's requests in one transaction): each part's counts, the stored contacts and
    their next repeats are those of SQLite's writes of the parts in turn, whether the parts share no key (one
    chunk: ``disjoint``, each part's keys moved to a range of its own) or do (one part after another)."""
    expect_new_keys_always(monkeypatch)
    folder = tmp_path_factory.mktemp("reference")
    databases = PostgresDatabases(folder)
    pg = PostgresContactStore(databases.fresh_url())
    lite = SQLiteContactStore(folder / "acr.db")
    try:
        for disjoint, parts in groups:
            contacts = [
                [build((key + 8 * index if disjoint else key, *rest)) for key, *rest in part]
                for index, part in enumerate(parts)
            ]
            with pg.bulk(sum(map(len, contacts))) as writer:
                counts = writer.add_parts(contacts)
            assert [c.as_dict() for c in counts] == [lite.upsert(part).as_dict() for part in contacts]
            assert writer.counts.as_dict() == {
                name: sum(part[name] for part in (c.as_dict() for c in counts)) for name in writer.counts.as_dict()
            }
        assert dump(pg) == dump(lite)
        assert pg.count_contacts() == lite.count_contacts()
        assert answers(pg) == answers(lite)
        assert_derived_data_exact(pg)
    finally:
        pg.close()
        lite.close()
        databases.close()


def expect_new_keys_always(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every chunk is inserted expecting its keys to be new (a plain insert, ``_insert_new``), however small, but
    the one after a chunk that had a stored key (which is inserted with ON CONFLICT)."""
    monkeypatch.setattr(postgres_store, "EXPECT_NEW_MIN_ROWS", 1)
    monkeypatch.setattr(postgres_store, "EXPECT_NEW_PAUSE", 1)


def inserts_seen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The inserts of contacts that the store's writers run from now on, in order: "new" for one expecting new
    keys, "conflict" for one with ON CONFLICT."""
    seen: list[str] = []
    original = psycopg.Connection.execute

    def execute(conn: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(query, str) and "INSERT INTO contacts" in query:
            seen.append("conflict" if "ON CONFLICT (source, id)" in query else "new")
        return original(conn, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    return seen


def test_a_chunk_inserted_expecting_new_keys_that_has_a_stored_one_is_inserted_again_with_on_conflict(
    pg: PostgresContactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk of EXPECT_NEW_MIN_ROWS or more goes in with a plain insert (no key looked up first); where one of
    its keys is stored, that insert fails and nothing of it stays, the chunk goes in with ON CONFLICT (the same
    counts and derived data as any write), and so do the store's next EXPECT_NEW_PAUSE chunks."""
    monkeypatch.setattr(postgres_store, "EXPECT_NEW_PAUSE", 2)
    size = postgres_store.EXPECT_NEW_MIN_ROWS
    seen = inserts_seen(monkeypatch)

    def batch(name: str, rows: int) -> list[Contact]:
        return [contact(f"{name}{i}", f"k{i % 7}", i / 3 + len(name)) for i in range(rows)]

    assert pg.upsert(batch("a", size)).as_dict()["inserted"] == size
    assert pg.upsert(batch("b", size - 1)).as_dict()["inserted"] == size - 1  # (too small to expect new keys)
    assert seen == ["new", "conflict"]
    redelivered = contact("a3", "k3", 1 + 3 / 3)  # stored already (same record): unchanged
    moved = contact("a5", "k0", 0.5)  # stored already, changed: updated
    counts = pg.upsert([*batch("c", size), redelivered, moved]).as_dict()
    assert (counts["inserted"], counts["unchanged"], counts["updated"]) == (size, 1, 1)
    assert seen == ["new", "conflict", "new", "conflict"]
    for name in ("dd", "eee", "ffff"):
        pg.upsert(batch(name, size))
    assert seen[4:] == ["conflict", "conflict", "new"]  # paused for two chunks
    rows = assert_derived_data_exact(pg)
    assert len(rows) == 6 * size - 1
    assert {row["id"]: row["customer_id"] for row in rows}["a5"] == "k0"


def test_writers_inserting_the_same_new_keys_at_once_count_each_key_inserted_once(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stores (as two processes) write the same new keys at once, each expecting them new: one inserts them,
    the other's insert waits for its commit, fails, and goes again with ON CONFLICT (unchanged, or updated where
    its version differs); the derived data is exact."""
    stores = [PostgresContactStore(postgres_url) for _ in range(2)]
    size = 3 * postgres_store.EXPECT_NEW_MIN_ROWS
    start = threading.Barrier(2)
    results: list[dict[str, int]] = []
    failures: list[BaseException] = []

    def write(writer: int) -> None:
        batch = [contact(f"x{i}", f"k{i % 9}", i / 5, agent="ana" if i % 2 else f"agent{writer}") for i in range(size)]
        try:
            start.wait()
            results.append(stores[writer].upsert(batch).as_dict())
        except BaseException as problem:  # surfaced by the main thread
            failures.append(problem)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        assert sorted((r["inserted"], r["unchanged"], r["updated"]) for r in results) == [
            (0, size // 2, size - size // 2),
            (size, 0, 0),
        ]
        assert len(assert_derived_data_exact(stores[0])) == size
    finally:
        for store in stores:
            store.close()


def test_a_write_expects_new_keys_in_a_few_savepoints_only(
    pg: PostgresContactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write of many chunks inserts at most EXPECT_NEW_SAVEPOINTS of them expecting new keys (each in a
    savepoint: a transaction's subtransactions beyond 64 slow every snapshot of every process), the others with
    ON CONFLICT; all of them stand."""
    seen = inserts_seen(monkeypatch)
    chunks = postgres_store.EXPECT_NEW_SAVEPOINTS + 3
    size = postgres_store.EXPECT_NEW_MIN_ROWS
    with pg.bulk() as writer:
        for n in range(chunks):
            writer.add([contact(f"c{n}-{i}", f"k{i % 5}", n + i / 100) for i in range(size)])
    assert seen == ["new"] * postgres_store.EXPECT_NEW_SAVEPOINTS + ["conflict"] * 3
    assert writer.counts.as_dict()["inserted"] == chunks * size
    assert len(assert_derived_data_exact(pg)) == chunks * size


def test_a_failed_bulk_write_stores_nothing(pg: PostgresContactStore) -> None:
    pg.upsert([contact("keep", "k1", 0)])
    with pytest.raises(RuntimeError), pg.bulk() as writer:
        writer.add([contact("gone", "k1", 1), contact("keep", "k2", 5)])
        raise RuntimeError("the import failed half-way")
    rows = dump(pg)
    assert [(row["id"], row["customer_id"], row["next_repeat_us"]) for row in rows] == [("keep", "k1", None)]
    assert pg.count_contacts() == 1


def test_concurrent_writers_of_the_same_customers_equal_one_ordered_delivery(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stores (as two processes would have) write interleaved batches for the same customers at once:
    every derived next repeat is what one ordered delivery of the same contacts gives. Each batch is inserted
    expecting new keys (``expect_new_keys_always``) but the one after a batch that had a stored key."""
    expect_new_keys_always(monkeypatch)
    writers = [PostgresContactStore(postgres_url) for _ in range(2)]
    rounds = 25
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def batches(writer: int) -> list[list[Contact]]:
        result = []
        for r in range(rounds):
            batch = [contact(f"w{writer}-{r}-{i}", f"k{i % 4}", r + (writer + 2 * i) / 10) for i in range(6)]
            if r % 5 == 4:  # and an earlier contact of this writer moves later, to another customer
                batch.append(contact(f"w{writer}-{r - 3}-0", f"k{(r + writer) % 4}", r + 0.05))
            result.append(batch)
        return result

    plans = [batches(0), batches(1)]

    def write(writer: int) -> None:
        try:
            start.wait()
            for batch in plans[writer]:
                writers[writer].upsert(batch)
        except BaseException as problem:  # surfaced by the main thread
            failures.append(problem)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    final: dict[str, Contact] = {}
    for plan in plans:
        for batch in plan:
            for c in batch:
                final[c.id] = c
    lite = SQLiteContactStore(tmp_path / "ordered.db")
    try:
        lite.upsert(sorted(final.values(), key=lambda c: (c.started_us, c.id)))
        assert dump(writers[0]) == dump(lite)
        assert writers[1].count_contacts() == len(final)
    finally:
        lite.close()
        for store in writers:
            store.close()


def assert_derived_data_exact(store: PostgresContactStore) -> list[dict[str, Any]]:
    """Every stored contact's next repeat is what ``metrics.definitions`` gives for the stored contacts, the
    candidates mirror them and the count is right; returns the stored contacts."""
    rows = stored_contacts(store)
    expected = expected_next_repeats(as_contact(row) for row in rows)
    assert {row["id"]: row["next_repeat_us"] for row in rows} == expected
    assert_candidates_mirror_contacts(store)
    assert store.count_contacts() == len(rows)
    return rows


@pytest.mark.parametrize("erase", ["forget", "purge"])
def test_an_erasure_racing_a_write_of_the_same_customer_leaves_exact_next_repeats(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, erase: str
) -> None:
    """The worst order: a write works out its contact's next repeat (a contact about to be erased) and commits
    only after the erasure's delete has run. The erasure's derive step, after that commit, corrects it."""
    import bot.storage.postgres as postgres_store

    pg = PostgresContactStore(postgres_url)
    watcher = psycopg.connect(postgres_url, autocommit=True)
    pg.upsert([contact("old", "k1", 10), contact("other", "k2", 11)])
    derived, release = threading.Event(), threading.Event()
    original_finish = postgres_store._PostgresBulkWriter.finish

    def finish_then_wait(writer: Any) -> None:
        original_finish(writer)  # the derive step ran: the derive lock is held until the commit
        derived.set()
        assert release.wait(30)

    monkeypatch.setattr(postgres_store._PostgresBulkWriter, "finish", finish_then_wait)
    results: dict[str, Any] = {}

    def write() -> None:
        results["write"] = pg.upsert([contact("early", "k1", 5)])

    def erase_now() -> None:
        if erase == "forget":
            results["erased"] = pg.forget_customer("k1")
        else:
            results["erased"] = pg.purge_contacts_before(int((T0 + 10.5 * 3600) * 1_000_000))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert derived.wait(30)
        assert pg.get_contact("api", "early") is None  # not committed yet
        eraser = threading.Thread(target=erase_now)
        eraser.start()
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        for _ in range(300):  # until the erasure has deleted and waits for the derive lock
            row = watcher.execute(waiting).fetchone()
            if row is not None and row[0]:
                break
            threading.Event().wait(0.05)
        else:
            raise AssertionError("the erasure never waited for the derive lock")
    finally:
        release.set()
        writer.join()
    eraser.join()
    monkeypatch.setattr(postgres_store._PostgresBulkWriter, "finish", original_finish)
    try:
        assert results["erased"] == 1  # "old" only: "early" was not committed when the erasure deleted
        rows = assert_derived_data_exact(pg)
        assert [(row["id"], row["next_repeat_us"]) for row in rows] == [("early", None), ("other", None)]
    finally:
        watcher.close()
        pg.close()


def waiting_for_advisory_locks(conn: psycopg.Connection[Any]) -> int:
    """How many transactions of this database wait for an advisory lock (the derive lock, in these tests)."""
    return int(
        _first_value(
            conn,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
    )


def test_a_write_of_new_contacts_corrects_its_early_candidates_by_what_committed_before_its_derive_step(
    postgres_url: str,
) -> None:
    """A write of new contacts adds their candidates before it takes the derive lock, with no next repeat; its own
    derive step sets them over what committed before it. Here another write of the same customer, earlier in the
    queue for the lock, commits in between: the first write's candidate (10 h) could see only the repeat at 20 h
    before the lock, the one that committed meanwhile (15 h) comes first, and only the first write's own derive
    step can set that (the other could not see its rows)."""
    stores = [PostgresContactStore(postgres_url) for _ in range(3)]
    failures: list[BaseException] = []

    def write(store: PostgresContactStore, batch: list[Contact]) -> None:
        try:
            store.upsert(batch)
        except BaseException as problem:  # surfaced by the main thread
            failures.append(problem)

    def until_waiting(conn: psycopg.Connection[Any], count: int) -> None:
        deadline = time.monotonic() + 10
        while waiting_for_advisory_locks(conn) < count:
            assert time.monotonic() < deadline, f"{count} writes never waited for the derive lock"
            time.sleep(0.01)

    try:
        stores[0].upsert([contact("later", "k1", 20)])
        with psycopg.connect(postgres_url, autocommit=True) as watcher, psycopg.connect(postgres_url) as holder:
            holder.execute(postgres_store._DERIVE_LOCK)
            between = threading.Thread(target=write, args=(stores[1], [contact("between", "k1", 15)]))
            between.start()
            until_waiting(watcher, 1)  # its candidate is in (uncommitted): first in the queue for the lock
            first = threading.Thread(target=write, args=(stores[2], [contact("first", "k1", 10)]))
            first.start()
            until_waiting(watcher, 2)  # its candidate is in too (no next repeat yet; 20 h is the only one it sees)
            holder.commit()  # 'between' derives and commits, then 'first' derives
            between.join(10)
            first.join(10)
        assert not failures, failures
        rows = {row["id"]: row["next_repeat_us"] for row in assert_derived_data_exact(stores[0])}
        assert rows["first"] == (T0 + 15 * 3600) * 1_000_000
    finally:
        for store in stores:
            store.close()


def test_erasures_among_concurrent_writers_leave_every_derived_value_exact(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers (as two server processes) write the same customers while a third erases one customer and
    purges old contacts over and over, in small batches: what remains is derived exactly."""
    import bot.storage.postgres as postgres_store

    monkeypatch.setattr(postgres_store, "PURGE_BATCH", 4)
    stores = [PostgresContactStore(postgres_url) for _ in range(3)]
    rounds = 20
    start = threading.Barrier(3)
    writing = [True, True]
    failures: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            start.wait()
            for r in range(rounds):
                batch = [contact(f"w{writer}-{r}-{i}", f"k{i % 4}", r + (writer + 2 * i) / 10) for i in range(6)]
                if r % 4 == 3:  # an earlier contact moves later, to another customer
                    batch.append(contact(f"w{writer}-{r - 2}-1", f"k{(r + writer) % 4}", r + 0.05))
                stores[writer].upsert(batch)
        except BaseException as problem:  # surfaced by the main thread
            failures.append(problem)
        finally:
            writing[writer] = False

    def erase() -> None:
        try:
            start.wait()
            hours = 0
            while any(writing):
                stores[2].forget_customer("k1")
                stores[2].purge_contacts_before(int((T0 + hours * 3600) * 1_000_000))
                hours = min(hours + 1, rounds // 2)
        except BaseException as problem:
            failures.append(problem)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)] + [threading.Thread(target=erase)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not failures
        rows = assert_derived_data_exact(stores[0])
        assert {row["customer_id"] for row in rows} >= {"k0", "k2", "k3"}
        assert stores[2].forget_customer("k1") == sum(row["customer_id"] == "k1" for row in rows)
        # How much of the first 5 hours the eraser left depends on how the threads interleaved (under load it
        # may have purged it all): two more contacts there make the last purge's work certain.
        stores[0].upsert([contact("old-0", "k0", 1), contact("old-2", "k2", 2.5)])
        old = sum(row["started_us"] < (T0 + 5 * 3600) * 1_000_000 for row in dump(stores[0]))
        assert old >= 2
        assert stores[2].purge_contacts_before(int((T0 + 5 * 3600) * 1_000_000)) == old
        remaining = assert_derived_data_exact(stores[1])
        assert all(row["customer_id"] != "k1" and row["started_us"] >= (T0 + 5 * 3600) * 1_000_000 for row in remaining)
    finally:
        for store in stores:
            store.close()


class WithoutRefresh:
    """A store as a MetricSource whose questions never refresh rollups themselves (stale days stay stale)."""

    def __init__(self, store: ContactStore):
        self.store = store

    def metric_reader(self, zone: Any) -> AbstractContextManager[MetricReader]:
        return self.store.metric_reader(zone, refresh_days=0)


def rollup_answers(source: MetricSource | ContactStore, use_rollups: bool) -> list[object]:
    """Questions over whole days and edges (1-day and 3-day windows: rollup windows), by day and by agent."""
    as_of = (T0 + 42 * 24 * 3600) * 1_000_000 + 5 * US_PER_HOUR
    results: list[object] = []
    since = T0 * 1_000_000 - 7 * US_PER_HOUR
    for query in (
        MetricQuery("acr", US_PER_DAY, since, as_of, as_of, by="day"),
        MetricQuery("tier1", 3 * US_PER_DAY, since, as_of, as_of, by="agent"),
        MetricQuery("acr", US_PER_DAY, since, as_of, as_of),
    ):
        result = compute(source, query, UTC_ZONE, use_rollups=use_rollups)
        results.append((result.total, [(row.key, row.counts) for row in result.rows]))
    return results


@pytest.mark.slow
def test_rollups_stay_exact_under_concurrent_writers_and_refreshers(postgres_url: str) -> None:
    """Two stores write the same customers across days while a third refreshes the rollups and asks questions
    (as three processes would): the rollups left behind, with the days they mark stale, answer exactly what
    counting from contacts answers; refreshed, likewise, and nothing is left stale."""
    stores = [PostgresContactStore(postgres_url) for _ in range(3)]
    writing = threading.Event()
    writing.set()
    start = threading.Barrier(3)
    failures: list[BaseException] = []
    rounds = 30
    # The refresher keeps pace: a writer goes on once a whole refresh began after its write (a refresh builds
    # outside any lock, so writers would otherwise outrun it and leave every day stale).
    passes = [0]
    paced = threading.Condition()

    def write(writer: int) -> None:
        try:
            start.wait()
            for r in range(rounds):
                batch = [  # over 40 days, many customers: most days untouched by any one batch
                    contact(
                        f"w{writer}-{r}-{i}",
                        f"k{(r * 8 + i) % 40}",
                        (r * 37 + i * 101 + writer * 11) % 960,
                        agent=("ana", "ben")[i % 2],
                    )
                    for i in range(4)
                ]
                if r % 3 == 2:  # an earlier contact moves to another day and customer
                    batch.append(contact(f"w{writer}-{r - 2}-1", f"k{(r + writer) % 40}", (r * 131) % 960 + 0.5))
                stores[writer].upsert(batch)
                with paced:
                    paced.wait_for(partial(operator.ge, passes, [passes[0] + 2]), timeout=10)
        except BaseException as problem:  # surfaced by the main thread
            failures.append(problem)

    def refresh() -> None:
        try:
            start.wait()
            while writing.is_set():
                stores[2].refresh_rollups(UTC_ZONE)
                rollup_answers(stores[2], use_rollups=True)  # fills its process's cache of decoded rollups
                with paced:
                    passes[0] += 1
                    paced.notify_all()
        except BaseException as problem:
            failures.append(problem)

    stores[0].upsert([contact(f"first-{h}", f"k{h % 40}", h, agent="ana") for h in range(0, 960, 5)])
    stores[0].refresh_rollups(UTC_ZONE)  # every day rolled up before the writes start
    writers = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    refresher = threading.Thread(target=refresh)
    for thread in (*writers, refresher):
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    refresher.join()
    try:
        assert not failures
        counted = rollup_answers(stores[0], use_rollups=False)
        assert 0 <= probe(stores[0]).stale_rollup_days(UTC_ZONE) < 20  # most of the 41 days from the rollups
        for store in stores:  # each with the decoded rollups its own questions cached
            assert rollup_answers(WithoutRefresh(store), use_rollups=True) == counted
        assert stores[0].refresh_rollups(UTC_ZONE) > 0 or probe(stores[0]).stale_rollup_days(UTC_ZONE) == 0
        assert probe(stores[0]).stale_rollup_days(UTC_ZONE) == 0
        for store in stores:
            assert rollup_answers(WithoutRefresh(store), use_rollups=True) == counted
    finally:
        for store in stores:
            store.close()


def test_a_refresh_builds_without_holding_up_writes_and_a_day_written_meanwhile_stays_stale(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh builds the rollups of its days from a snapshot without any lock a write waits for: a write
    (another process's) that marks a day being built goes through meanwhile, and that day stays stale, exact;
    the next refresh rolls it up."""
    refresher, writer = PostgresContactStore(postgres_url), PostgresContactStore(postgres_url)
    real_build = postgres_rollups.build
    writes: list[threading.Thread] = []

    def build(*args: Any, **kwargs: Any) -> postgres_rollups.BuiltDays:
        built = real_build(*args, **kwargs)
        if not writes:  # once, while the first batch is built
            write = threading.Thread(target=writer.upsert, args=([contact("during", "k1", 10, agent="ben")],))
            writes.append(write)
            write.start()
            write.join(timeout=10)
            assert not write.is_alive(), "the write waited for the refresh's build"
        return built

    try:
        writer.upsert([contact("first", "k1", 0)])
        refresher.refresh_rollups(UTC_ZONE)
        writer.upsert([contact(f"c{h}", f"k{h % 2}", h) for h in range(2, 26, 5)])  # two UTC days marked
        assert probe(refresher).stale_rollup_days(UTC_ZONE) == 2
        monkeypatch.setattr(postgres_rollups, "build", build)
        assert refresher.refresh_rollups(UTC_ZONE) == 1  # the day written during the build stays marked
        assert probe(refresher).stale_rollup_days(UTC_ZONE) == 1
        counted = rollup_answers(WithoutRefresh(refresher), use_rollups=False)
        assert rollup_answers(WithoutRefresh(refresher), use_rollups=True) == counted
        assert refresher.refresh_rollups(UTC_ZONE) == 1
        assert probe(refresher).stale_rollup_days(UTC_ZONE) == 0
        assert rollup_answers(WithoutRefresh(refresher), use_rollups=True) == counted
    finally:
        refresher.close()
        writer.close()


def test_a_refresh_whose_days_were_all_written_meanwhile_writes_nothing(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a write marks again every day a refresh built, what was built would be used by no reader: nothing is
    stored, and the rollups' generation (and every process's decoded copies kept under it) stays. (A question's
    own refresh of today, while webhooks keep writing today, is that case.)"""
    refresher, writer = PostgresContactStore(postgres_url), PostgresContactStore(postgres_url)
    real_build = postgres_rollups.build

    def generation() -> str:
        with refresher.connection() as conn:
            return str(_first_value(conn, "SELECT value FROM metric_rollup_state WHERE name = 'generation'"))

    def build(*args: Any, **kwargs: Any) -> postgres_rollups.BuiltDays:
        built = real_build(*args, **kwargs)
        if built.marks:  # the day being built is written again before the build is stored
            writer.upsert([contact(f"during-{len(built.marks)}-{time.monotonic_ns()}", "k1", 3, agent="ben")])
        return built

    try:
        writer.upsert([contact("first", "k1", 0)])
        refresher.refresh_rollups(UTC_ZONE)
        writer.upsert([contact("second", "k1", 2)])  # one UTC day marked
        before = generation()
        monkeypatch.setattr(postgres_rollups, "build", build)
        assert refresher.refresh_rollups(UTC_ZONE) == 0
        assert generation() == before
        assert probe(refresher).stale_rollup_days(UTC_ZONE) == 1
        counted = rollup_answers(WithoutRefresh(refresher), use_rollups=False)
        assert rollup_answers(WithoutRefresh(refresher), use_rollups=True) == counted
        monkeypatch.setattr(postgres_rollups, "build", real_build)
        assert refresher.refresh_rollups(UTC_ZONE) == 1
        assert generation() != before
        assert rollup_answers(WithoutRefresh(refresher), use_rollups=True) == counted
    finally:
        refresher.close()
        writer.close()


def test_a_question_rolls_up_the_stale_day_it_finds_once_the_write_in_progress_commits(
    pg: PostgresContactStore, postgres_url: str
) -> None:
    """A question's refresh builds the stale day, then waits for the derive lock that a write holds (briefly)
    to store it, rather than leave the day stale."""
    pg.upsert([contact("c1", "k1", 1)])
    pg.refresh_rollups(UTC_ZONE)
    pg.upsert([contact("c2", "k1", 2)])
    held = threading.Event()

    def write_in_progress() -> None:
        with psycopg.connect(postgres_url) as conn:  # one transaction, committed on leaving
            conn.execute(postgres_store._DERIVE_LOCK)
            held.set()
            time.sleep(0.3)

    holder = threading.Thread(target=write_in_progress)
    holder.start()
    try:
        assert held.wait(10)
        assert probe(pg).stale_rollup_days(UTC_ZONE) == 1
        rollup_answers(pg, use_rollups=True)
        assert probe(pg).stale_rollup_days(UTC_ZONE) == 0
    finally:
        holder.join()


def test_an_acknowledged_write_is_on_disk(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write's commit does not wait for the disk (it holds the derive lock); ``upsert`` returns only once
    the WAL is flushed past that commit."""
    store = PostgresContactStore(postgres_url, max_connections=1)  # one connection: its session setting is read
    # Where the WAL ended just after the write's commit, kept in the session for this test to read.
    monkeypatch.setattr(
        postgres_store,
        "_FLUSH",
        f"SELECT set_config('acr_test.committed', pg_current_wal_insert_lsn()::text, false); {postgres_store._FLUSH}",
    )
    try:
        with store.connection() as conn:  # the server's default may be off (make test's throwaway server's is):
            conn.execute("SET synchronous_commit = on")  # then the operator chose not to wait, and so does the flush
        store.upsert([contact("c1", "k1", 1)])
        with store.connection() as conn:
            committed = _first_value(conn, "SELECT current_setting('acr_test.committed')")
        with psycopg.connect(postgres_url) as other:
            assert _first_value(other, "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", committed)
    finally:
        store.close()


def _first_value(conn: psycopg.Connection[Any], query: str, *params: object) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def test_migrations_are_recorded_and_applied_once_by_concurrent_openers(postgres_url: str) -> None:
    opened: list[PostgresContactStore] = []
    failures: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(PostgresContactStore(postgres_url))
        except BaseException as problem:
            failures.append(problem)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    for store in opened:
        store.close()
    with psycopg.connect(postgres_url) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == sorted(name for name, _ in MIGRATIONS)


def test_opening_a_store_ignores_the_timeouts_the_database_sets_for_its_clients(postgres_url: str) -> None:
    """A database or role may set statement_timeout or lock_timeout for its clients. A migration runs longer
    (016: about a minute on 10 million contacts), and so does a server's wait for another one's: neither is
    cancelled. Here the wait: another transaction holds the migrations' lock for longer than the timeouts."""
    timed = with_options(postgres_url, "-cstatement_timeout=200 -clock_timeout=200")
    failures: list[BaseException] = []

    def open_one() -> None:
        try:
            PostgresContactStore(timed).close()
        except BaseException as problem:
            failures.append(problem)

    with psycopg.connect(postgres_url) as holder:
        holder.execute(postgres_migrations._LOCK_SQL)  # until this transaction ends
        opener = threading.Thread(target=open_one)
        opener.start()
        time.sleep(0.8)
    opener.join()
    assert not failures


def test_a_store_migrated_past_the_collation_change_keeps_the_statistics_of_customers_and_agents(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 014 changes the collation of contacts.customer_id and metric_contacts.agent, which drops their
    statistics; a store analyzed before it has them again after the migrations (without them the planner took a
    customer to hold 0.5% of a 10M store's contacts and planned each webhook batch 14x slower)."""
    fill_store_migrated_before(postgres_url, "014_customer_and_agent_collate_c", monkeypatch)
    with psycopg.connect(postgres_url) as conn:
        conn.execute("ANALYZE contacts")
        conn.execute("ANALYZE metric_contacts")
    PostgresContactStore(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        analyzed = conn.execute(
            "SELECT tablename, attname FROM pg_stats WHERE schemaname = current_schema() "
            "AND (tablename, attname) IN (('contacts', 'customer_id'), ('metric_contacts', 'agent'))"
        ).fetchall()
    assert sorted(analyzed) == [("contacts", "customer_id"), ("metric_contacts", "agent")]


def fill_store_migrated_before(url: str, migration: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store migrated up to (not including) ``migration``, holding 40 contacts and their candidates, written as
    that schema's store wrote them (by SQL: this version's writer needs the later schema); quick returns among
    them. The later migrations run when the store opens next."""
    import bot.storage.postgres_migrations as migrations

    before = [name for name, _ in MIGRATIONS].index(migration)
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:before])
    PostgresContactStore(url).close()
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO contacts (source, id, customer_id, agent, team, channel, direction, tier, escalated, "
            "started_us, ended_us, raw, received_at) "
            "SELECT 'api', 'c' || i, 'k' || (i % 7), 'agent-' || (i % 3), 'team-' || (i % 2), 'phone', 'inbound', "
            f"1 + i % 2, i % 5 = 0, {T0 * 1_000_000} + i * 3600000000::bigint * (1 + i % 11), "
            f"{T0 * 1_000_000} + i * 3600000000::bigint * (1 + i % 11) + 600000000, '{{}}', 'now' "
            "FROM generate_series(0, 39) AS i"
        )
        conn.execute(postgres_store.load_candidates())
        conn.execute("UPDATE store_stats SET value = 40 WHERE name = 'contacts'")


def test_a_store_migrated_to_the_quick_returns_table_keeps_its_answers_and_its_fix_needs_no_index_entry(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Migration 016 copies the quick returns into their own table (exactly the candidates with a repeat within a
    day), drops the partial index and takes next_repeat_us out of the time index: no index of the candidates
    holds it any more (the fix of a next repeat can be a HOT update), and pages keep room for it (fillfactor).
    The store answers as before, and goes on keeping the copy exact."""
    fill_store_migrated_before(postgres_url, "016_quick_returns_table", monkeypatch)
    pg = PostgresContactStore(postgres_url)
    lite = SQLiteContactStore(tmp_path / "acr.db")
    try:
        lite.upsert(Contact._make(tuple(row[f] for f in Contact._fields)) for row in dump(pg))
        assert_derived_data_exact(pg)
        with pg.connection() as conn:
            quick = _first_value(conn, "SELECT count(*) FROM metric_quick_returns")
            indexed = conn.execute(
                "SELECT i.indexrelid::regclass::text FROM pg_index AS i JOIN pg_attribute AS a "
                "ON a.attrelid = i.indrelid AND a.attname = 'next_repeat_us' "
                "WHERE i.indrelid = 'metric_contacts'::regclass "
                "AND (a.attnum = ANY(i.indkey) OR pg_get_expr(i.indpred, i.indrelid) LIKE '%next_repeat_us%')"
            ).fetchall()
            options = _first_value(conn, "SELECT reloptions FROM pg_class WHERE oid = 'metric_contacts'::regclass")
        assert quick > 0 and indexed == [] and options == ["fillfactor=85"]

        def quick_returns(store: ContactStore) -> list[list[int]]:
            as_of = (T0 + 30 * 24 * 3600) * 1_000_000
            bounds = (10 * 60_000_000, US_PER_HOUR, 6 * US_PER_HOUR)
            return [
                store.quick_returns(QuickReturns("acr", (), T0 * 1_000_000, as_of, as_of, bounds)),
                store.quick_returns(QuickReturns("tier1", (("team", "team-1"),), T0 * 1_000_000, as_of, as_of, bounds)),
            ]

        assert (answers(pg), quick_returns(pg)) == (answers(lite), quick_returns(lite))
        later = [contact(f"n{i}", f"k{i % 7}", 200 + i / 4) for i in range(20)]
        pg.upsert(later)
        lite.upsert(later)
        assert_derived_data_exact(pg)
        assert (answers(pg), quick_returns(pg)) == (answers(lite), quick_returns(lite))
    finally:
        pg.close()
        lite.close()


def test_the_fix_of_a_next_repeat_is_a_hot_update(postgres_url: str) -> None:
    """A webhook batch sets the next repeat of its customers' earlier candidates: as a HOT update (no new index
    entry), which is what migration 016 is for. Read from PostgreSQL's own counts of the table's updates, so it
    fails when an index holds next_repeat_us again (none is HOT) or the pages keep no room for the new versions
    (fillfactor 100: a fifth is not). The room is the fillfactor's 15% plus what pruning frees of the versions
    earlier writes left: a write finds it for the few rows of each page it updates (nearly all of them: 74,305
    of 74,315 in a 2-server bench run), not for every row of a page at once."""
    # A database of its own: pruning (which frees the room) waits for the oldest snapshot of the same database,
    # and the other tests' schemas share theirs (in the full suite, 65 of 400 were HOT).
    name = f"acr_hot_{os.getpid()}_{time.monotonic_ns()}"
    parts = urlsplit(postgres_url)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "options"])
    own_url = urlunsplit(parts._replace(path=f"/{name}", query=query))
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        _count_hot_fixes(own_url)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _count_hot_fixes(postgres_url: str) -> None:
    store = PostgresContactStore(postgres_url)
    try:
        store.upsert([contact(f"a{i}", f"k{i}", i / 600) for i in range(400)])  # some pages of candidates
        for write in range(10):  # a later contact of each customer, as webhooks bring them: each write's
            later = range(write, 400, 10)  # customers' earlier candidates are spread over those pages
            store.upsert([contact(f"b{i}", f"k{i}", 30 + i / 600) for i in later])
    finally:
        store.close()  # its backends exit, and report their counts
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while True:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            updated, hot = conn.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'metric_contacts'::regclass"
            ).fetchone() or (0, 0)
            if updated >= 400 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert updated == 400 and hot >= 0.9 * updated, (updated, hot)  # 381 here; 0 or 312 with either fault


def test_counting_from_contacts_reads_only_the_time_index(postgres_url: str) -> None:
    """What the rollups leave of a question (its edges) is counted by time, with any breakdown or filter but an
    agent's (which has its own index): by the time index, which holds every column a question filters or breaks
    down by, but not next_repeat_us (migration 016: the fix of a next repeat then writes no index entry), read
    from the table for each row the index finds. The plan is asked with every other way forbidden."""
    store = PostgresContactStore(postgres_url)
    try:
        store.upsert([contact(f"c{h}", f"k{h % 5}", h, team="blue", queue="q", reason="r") for h in range(48)])
    finally:
        store.close()
    as_of = (T0 + 3 * 24 * 3600) * 1_000_000
    span = Span(T0 * 1_000_000, T0 * 1_000_000 + 5 * US_PER_HOUR)
    groups: tuple[Dimension | None, ...] = (None, "agent", "team", "queue", "channel", "reason")
    filters: tuple[tuple[Filter, str], ...] = (("team", "blue"), ("queue", "q"), ("channel", "phone"), ("reason", "r"))
    specs = [RowSpec("acr", US_PER_DAY, as_of, (), group, (span,)) for group in groups]
    specs += [
        RowSpec(metric, US_PER_DAY, as_of, (condition,), None, (span,))
        for metric in ("acr", "tier1")
        for condition in (*filters, ("tier", "1"))
    ]
    specs.append(RowSpec("tier1", US_PER_DAY, as_of, (("team", "blue"),), "agent", (span,), ("agent", ("ana",))))
    with psycopg.connect(postgres_url) as conn:
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_bitmapscan = off")
        for spec in specs:
            for _, sql, params in row_count_statements(spec):
                plan = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()
                assert plan is not None
                scans = [(node["Node Type"], node.get("Index Name")) for node in plan_nodes(plan[0][0]["Plan"])]
                by_agent = spec.among is not None  # an agent's few contacts: by its own index
                expected = ("Index Scan", "metric_contacts_agent" if by_agent else "metric_contacts_time")
                assert [scan for scan in scans if "Scan" in scan[0]] == [expected], (spec, scans)


def test_a_small_writes_derive_step_reaches_stored_rows_by_key(postgres_url: str) -> None:
    """A webhook batch's derive step probes the contacts and candidates it joins by key, whatever the planner
    expects of its few rows: it never reads a whole table (on a store of 28,000 candidates, hashing all of them
    for the fix took 16 of a batch's 56 ms, and more as the store grows)."""
    store = PostgresContactStore(postgres_url)
    try:
        store.upsert([contact(f"c{i}", f"k{i % 300}", i / 10) for i in range(3000)])
    finally:
        store.close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("ANALYZE contacts, metric_contacts")
        for statement in postgres_store._TEMP_TABLES:
            conn.execute(statement)
        conn.execute("INSERT INTO written SELECT pk, customer_id, started_us FROM contacts ORDER BY pk DESC LIMIT 40")
        steps = postgres_store._derive_steps(updated=True, rows=40, contacts_added=0)
        for statement in steps[1:3]:  # the candidates of the changed contacts dropped; the next repeats
            plan = conn.execute(f"EXPLAIN (FORMAT JSON) {statement}").fetchone()
            assert plan is not None
            scans = {
                node.get("Relation Name") for node in plan_nodes(plan[0][0]["Plan"]) if node["Node Type"] == "Seq Scan"
            }
            assert not scans & {"contacts", "metric_contacts"}, statement


def test_the_written_table_keeps_no_toast_table_and_takes_the_longest_customer_ids(pg: PostgresContactStore) -> None:
    """Every commit empties each temporary table's TOAST table and builds its index again (~0.2 ms): ``written``,
    which every write fills, has none (its customer ids are kept in line); the longest customer ids a record may
    have go through it, in any script."""
    customers = ["k" * ID_MAX_CHARS, "\u00e9" * ID_MAX_CHARS, "\U0001f600" * ID_MAX_CHARS]
    counts = pg.upsert([contact(f"c{i}", customers[i % 3], i) for i in range(60)])
    assert counts.as_dict()["inserted"] == 60
    assert {row["customer_id"] for row in assert_derived_data_exact(pg)} == set(customers)
    with pg.connection() as conn:  # (a pooled connection: its temporary tables made as the writers' are)
        toast = "SELECT reltoastrelid <> 0 FROM pg_class WHERE oid = %s::regclass"
        assert conn.execute(toast, ("pg_temp.written",)).fetchone() == (False,)
        assert conn.execute(toast, ("pg_temp.incoming",)).fetchone() == (True,)  # (a raw record has no size limit)


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def test_open_store_picks_postgresql_by_scheme_and_unix_socket_urls_work(postgres_url: str) -> None:
    for url in (postgres_url, postgres_url.replace("postgresql://", "postgres://", 1)):
        store = open_store(url)
        try:
            assert isinstance(store, PostgresContactStore)
            store.upsert([contact("a", "k", 0)])
            assert store.count_contacts() == 1
        finally:
            store.close()


def test_the_password_never_appears_in_the_error() -> None:
    url = "postgresql://acr:s3cret-pw@127.0.0.1:1/acr?connect_timeout=2"
    with pytest.raises(ConnectionError) as caught:
        open_store(url)
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert message.startswith("cannot connect to PostgreSQL at postgresql://acr:***@127.0.0.1:1/acr")


def test_settings_accept_postgresql_and_name_an_unknown_scheme_without_its_password() -> None:
    assert load_settings(database_url="postgresql://u:p@db:5432/acr").database_url.startswith("postgresql://")
    with pytest.raises(UserError) as caught:
        load_settings(database_url="mysql://u:hunter2@db/acr")
    assert "hunter2" not in str(caught.value)
    assert str(caught.value).startswith("DATABASE_URL: 'mysql' is not a supported database")


def test_one_claim_per_message_across_processes(postgres_url: str) -> None:
    """Two stores enqueue the same key and race to claim it: stored once, claimed once."""
    stores = [PostgresContactStore(postgres_url) for _ in range(2)]
    try:
        message = OutboxMessage("digest:1:2026-05-28", "C1", "hello")
        fresh = [store.outbox().enqueue([message], 1) for store in stores]
        assert sorted(fresh) == [[False], [True]]
        claims: list[bool] = []
        barrier = threading.Barrier(2)

        def claim(store: PostgresContactStore) -> None:
            barrier.wait()
            claims.append(store.outbox().begin_attempt(message.key, 2))

        threads = [threading.Thread(target=claim, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claims) == [False, True]
        entry = stores[1].outbox().outbox_entry(message.key)
        assert entry is not None and entry.status == "sending" and entry.attempts == 1
    finally:
        for store in stores:
            store.close()
