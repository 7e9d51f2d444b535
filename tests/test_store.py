"""The contact store on every backend: atomic upserts, re-delivery, updates, and the derived next-repeat data
(and the SQLite schema's migrations)."""

from __future__ import annotations

import ast
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_utils import Database

from bot.storage import ContactStore, open_store, sqlite_migrations
from bot.storage.sqlite_migrations import migrations
from metrics.records import Contact
from tests.builders import contact as build_contact
from tests.builders import valid
from tests.store_support import assert_candidates_mirror_contacts, expected_next_repeats, sqlite_url, stored_contacts

T0 = 1_780_000_000  # 2026-05-28, epoch seconds


def contact(cid: str, customer: str, start: int, end: int | None = None, **fields: Any) -> Contact:
    return build_contact(cid, customer, T0 + start, None if end is None else T0 + end, **fields)


def next_repeat(store: ContactStore, cid: str) -> int | None:
    row = store.get_contact("api", cid)
    assert row is not None
    value = row["next_repeat_us"]
    return None if value is None else (value // 1_000_000) - T0


def test_insert_then_redeliver_is_unchanged(store: ContactStore) -> None:
    batch = [contact("a", "k1", 0, 60), contact("b", "k1", 100, 160)]
    assert store.upsert(batch).as_dict() == {"accepted": 2, "inserted": 2, "updated": 0, "unchanged": 0, "stale": 0}
    assert store.upsert(batch).as_dict() == {"accepted": 2, "inserted": 0, "updated": 0, "unchanged": 2, "stale": 0}
    assert store.count_contacts() == 2


def test_same_key_twice_in_one_batch_is_inserted_then_updated(store: ContactStore) -> None:
    counts = store.upsert([contact("a", "k1", 0), contact("a", "k1", 5), contact("a", "k1", 5)])
    assert (counts.inserted, counts.updated, counts.unchanged) == (1, 1, 1)
    row = store.get_contact("api", "a")
    assert row is not None and row["started_us"] == (T0 + 5) * 1_000_000
    assert store.count_contacts() == 1


def test_an_older_version_changes_nothing_and_is_stale(store: ContactStore) -> None:
    newer = contact("a", "k1", 0, 60, updated_at=T0 + 200, agent="bo")
    older = contact("a", "k1", 0, 30, updated_at=T0 + 100)
    assert store.upsert([newer]).as_dict()["inserted"] == 1
    assert store.upsert([older]).as_dict() == {
        "accepted": 1,
        "inserted": 0,
        "updated": 0,
        "unchanged": 0,
        "stale": 1,
    }
    row = store.get_contact("api", "a")
    assert row is not None and (row["agent"], row["updated_us"]) == ("bo", (T0 + 200) * 1_000_000)
    # The same version again replaces (last delivered wins); so does a record with no version at all.
    same_time = contact("a", "k1", 0, 45, updated_at=T0 + 200)
    unversioned = contact("a", "k1", 0, 50)
    counts = store.upsert([same_time, unversioned])
    assert (counts.updated, counts.stale) == (2, 0)
    row = store.get_contact("api", "a")
    assert row is not None and row["updated_us"] is None and row["ended_us"] == (T0 + 50) * 1_000_000


def test_versions_within_one_batch_apply_in_order(store: ContactStore) -> None:
    """A new key delivered newest first: the first is inserted, the older one after it is stale."""
    counts = store.upsert(
        [contact("a", "k1", 0, updated_at=T0 + 9), contact("a", "k1", 5, updated_at=T0 + 3), contact("b", "k1", 7)]
    )
    assert counts.as_dict() == {"accepted": 3, "inserted": 2, "updated": 0, "unchanged": 0, "stale": 1}
    row = store.get_contact("api", "a")
    assert row is not None and row["started_us"] == T0 * 1_000_000
    assert next_repeat(store, "a") == 7


def test_source_scopes_the_id(store: ContactStore) -> None:
    counts = store.upsert([contact("a", "k1", 0), contact("a", "k1", 0, source="genesys")])
    assert counts.inserted == 2
    assert store.get_contact("genesys", "a") is not None


def test_raw_record_keeps_unknown_fields(store: ContactStore) -> None:
    store.upsert([contact("a", "k1", 0, wrapup_code="W42", sentiment=0.7)])
    row = store.get_contact("api", "a")
    assert row is not None
    assert '"wrapup_code":"W42"' in row["raw"] and '"sentiment":0.7' in row["raw"]


def test_next_repeat_is_first_repeatable_contact_strictly_after(store: ContactStore) -> None:
    store.upsert(
        [
            contact("first", "k1", 0, 60),
            contact("same-instant", "k1", 0, 30),
            contact("outbound", "k1", 50, direction="outbound"),
            contact("leg", "k1", 70, parent_id="first"),
            contact("back", "k1", 3600),
            contact("other-customer", "k2", 10),
        ]
    )
    assert next_repeat(store, "first") == 3600  # not the same-instant one, the callback or the transfer leg
    assert next_repeat(store, "same-instant") == 3600
    assert next_repeat(store, "leg") == 3600  # a transfer leg is counted for its agent, so it has one
    assert next_repeat(store, "outbound") is None  # no metric counts an outbound contact: nothing derived
    assert next_repeat(store, "back") is None
    assert next_repeat(store, "other-customer") is None


def test_out_of_order_arrival_fixes_earlier_contacts(store: ContactStore) -> None:
    store.upsert([contact("late", "k1", 7200)])
    store.upsert([contact("early", "k1", 0)])
    assert next_repeat(store, "early") == 7200
    store.upsert([contact("middle", "k1", 3600)])
    assert next_repeat(store, "early") == 3600
    assert next_repeat(store, "middle") == 7200


def test_changed_customer_fixes_both_customers(store: ContactStore) -> None:
    store.upsert([contact("a", "k1", 0), contact("b", "k1", 100), contact("c", "k2", 0)])
    assert next_repeat(store, "a") == 100 and next_repeat(store, "c") is None
    counts = store.upsert([contact("b", "k2", 100)])
    assert counts.updated == 1
    assert next_repeat(store, "a") is None
    assert next_repeat(store, "c") == 100


def test_changed_start_and_direction_fix_derived_data(store: ContactStore) -> None:
    store.upsert([contact("a", "k1", 0), contact("b", "k1", 100)])
    store.upsert([contact("b", "k1", -100)])  # b now starts before a
    assert next_repeat(store, "a") is None and next_repeat(store, "b") == 0
    store.upsert([contact("a", "k1", 0, direction="outbound")])
    assert next_repeat(store, "b") is None


def test_failed_batch_writes_nothing(store: ContactStore) -> None:
    store.upsert([contact("a", "k1", 0)])

    def batch_that_breaks() -> Any:
        yield contact("b", "k1", 100)
        yield contact("a", "k9", 5)
        raise RuntimeError("connection to the platform dropped")

    with pytest.raises(RuntimeError):
        store.upsert(batch_that_breaks())
    assert store.count_contacts() == 1
    assert store.get_contact("api", "b") is None
    row = store.get_contact("api", "a")
    assert row is not None and row["customer_id"] == "k1" and row["next_repeat_us"] is None


def test_open_store_picks_the_backend_by_the_url_scheme(tmp_path: Path) -> None:
    store = open_store(sqlite_url(tmp_path / "by-url.db"))
    try:
        assert store.count_contacts() == 0 and (tmp_path / "by-url.db").exists()
    finally:
        store.close()
    for url, scheme in (("mysql://db/acr", "mysql"), ("acr.db", "acr.db"), ("", "")):
        with pytest.raises(ValueError) as refused:
            open_store(url)
        assert str(refused.value) == (
            f"{scheme!r} is not a supported database; use sqlite:///path/to/acr.db or "
            "postgresql://user:password@host:port/dbname"
        )


def test_schema_is_migrated_once_and_recorded(db_path: Path) -> None:
    open_store(sqlite_url(db_path)).close()
    store = open_store(sqlite_url(db_path))  # reopening applies nothing twice
    store.close()
    with sqlite3.connect(db_path) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
        assert names and len(names) == len(set(names))
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_state_their_ddl_as_frozen_text() -> None:
    """A migration imports nothing of the project: changing the code can never change what an old migration did."""
    tree = ast.parse(Path(sqlite_migrations.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "sqlite_utils"}


def test_upgrade_moves_the_candidates_with_their_next_repeats(db_path: Path) -> None:
    """A database of the schema before ``m_metric_contacts`` (next_repeat_us kept on contacts, two candidate
    indexes) keeps every derived value: the candidates move to metric_contacts, the old column and indexes go."""
    db = Database(db_path)
    migrations.apply(db, stop_before="m_metric_contacts")
    rows = [  # (id, customer, agent, direction, started s, next_repeat s) as the previous store wrote them
        ("a", "k1", "maria", "inbound", 0, 100),
        ("b", "k1", "maria", "inbound", 100, None),
        ("c", "k1", "maria", "outbound", 50, 100),
        ("d", "k2", None, "inbound", 0, None),
    ]
    db.conn.executemany(
        "INSERT INTO contacts (source, id, customer_id, agent, channel, direction, tier, escalated, started_us,"
        " raw, next_repeat_us) VALUES ('api', ?, ?, ?, 'phone', ?, 1, 0, ?, '{}', ?)",
        [(i, k, a, d, (T0 + s) * 1_000_000, None if n is None else (T0 + n) * 1_000_000) for i, k, a, d, s, n in rows],
    )
    db.conn.commit()
    db.close()

    store = open_store(sqlite_url(db_path))
    try:
        assert_candidates_mirror_contacts(store)
        assert [next_repeat(store, cid) for cid in "abcd"] == [100, None, None, None]
        with sqlite3.connect(db_path) as conn:
            columns = [row[1] for row in conn.execute("PRAGMA table_info(contacts)")]
            assert "next_repeat_us" not in columns
            indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
            assert not indexes & {"contacts_candidates_time", "contacts_candidates_agent"}
        store.upsert([contact("e", "k1", 50)])  # the maintained path takes over: a's repeat is now e
        assert [next_repeat(store, cid) for cid in "abe"] == [50, None, 100]
        assert_candidates_mirror_contacts(store)
    finally:
        store.close()


# --- the delivery-order property --------------------------------------------------------------------------

_versions = st.fixed_dictionaries(
    {
        "customer_id": st.sampled_from(["k1", "k2", "k3"]),
        "started_at": st.integers(0, 40).map(lambda m: T0 + 60 * m),
        "duration": st.one_of(st.none(), st.integers(0, 3).map(lambda m: 60 * m)),
        "direction": st.sampled_from(["inbound", "inbound", "outbound"]),
        "parent_id": st.sampled_from([None, None, None, "c0"]),
        "resolved": st.sampled_from([None, True, False]),
        "agent": st.sampled_from([None, "ana", "ana", "bo"]),  # without an agent no metric counts it
        "team": st.sampled_from([None, "north", "south"]),
        "queue": st.sampled_from([None, "billing", "tech"]),
        "channel": st.sampled_from(["phone", "chat"]),
        "tier": st.sampled_from([1, 1, 2]),
        "escalated": st.booleans(),
        "updated_at": st.one_of(st.none(), st.integers(0, 4).map(lambda m: T0 + m)),  # the sender's version
    }
)


def _record(cid: str, version: dict[str, Any]) -> dict[str, Any]:
    record = {key: value for key, value in version.items() if key != "duration" and value is not None}
    record["id"] = cid
    if version["duration"] is not None:
        record["ended_at"] = version["started_at"] + version["duration"]
    return record


def _dump(store: ContactStore) -> list[dict[str, Any]]:
    return [
        {key: value for key, value in row.items() if key not in ("pk", "received_at")} for row in stored_contacts(store)
    ]


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    history=st.lists(st.tuples(st.integers(0, 7), _versions), min_size=1, max_size=30),
    cuts=st.lists(st.integers(1, 30), max_size=4),
)
def test_any_delivery_order_gives_the_same_store(
    new_store: Callable[[], ContactStore], history: Any, cuts: Any
) -> None:
    """Deliver versions in any order and batching: the store equals delivering each key's winning version once.

    The winner is the contract's: the last delivered, except that a version older (``updated_at``) than the one
    kept so far is stale and changes nothing.
    """
    delivered = [_record(f"c{key}", version) for key, version in history]
    last_version: dict[str, dict[str, Any]] = {}
    stale = 0
    for record in delivered:
        kept = last_version.get(record["id"], {})
        if "updated_at" in kept and "updated_at" in record and record["updated_at"] < kept["updated_at"]:
            stale += 1
            continue
        last_version[record["id"]] = record
    batches: list[list[dict[str, Any]]] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(delivered)]:
        if cut > start:
            batches.append(delivered[start:cut])
            start = cut

    with closing(new_store()) as streamed, closing(new_store()) as once:
        counted_stale = 0
        for batch in batches:
            counted_stale += streamed.upsert([valid(record) for record in batch]).stale
        assert counted_stale == stale
        final_in_time_order = sorted(last_version.values(), key=lambda r: (r["started_at"], r["id"]))
        once.upsert([valid(record) for record in final_in_time_order])

        assert _dump(streamed) == _dump(once)
        expected = expected_next_repeats(valid(record) for record in last_version.values())
        assert {row["id"]: row["next_repeat_us"] for row in stored_contacts(streamed)} == expected
        assert_candidates_mirror_contacts(streamed)
        assert streamed.count_contacts() == len(last_version)
