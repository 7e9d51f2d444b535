"""The store's bulk write path on every backend, and SQLite's fast path (insert-first chunks, conflict replay,
deferred index builds, set-based refresh).

Checked against a naive model: the last version of each (source, id) wins, counts follow delivery order, and
every contact's next_repeat_us is recomputed from scratch in plain Python.
"""

from __future__ import annotations

import re
import sqlite3
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_utils import Database

import bot.storage.sqlite as sqlite_store
from bot.storage import BulkWriter, ContactStore, PackedContacts, open_store
from bot.storage.sqlite import (
    BULK_LOAD_CACHE_KIB,
    KEY_INDEX,
    ROWS_PER_INSERT,
    WRITER_CACHE_KIB,
    SQLiteBulkWriter,
    SQLiteContactStore,
)
from bot.storage.sqlite_migrations import migrations
from metrics.records import Contact
from metrics.timeutil import load_zone
from tests.builders import contact as build_contact
from tests.store_support import (
    as_contact,
    assert_candidates_mirror_contacts,
    expected_next_repeats,
    sqlite_url,
    stored_contacts,
)

UTC_ZONE = load_zone("UTC")
T0 = 1_780_000_000


def contact(contact_id: str, customer: str, start: int, **fields: Any) -> Contact:
    return build_contact(contact_id, customer, T0 + start, **{"agent": "ana", **fields})


def contact_indexes(where: Path | BulkWriter) -> set[str]:
    """The SQLite indexes of ``contacts``: committed in the file at ``where``, or inside a write transaction."""
    sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'contacts' AND sql IS NOT NULL"
    if isinstance(where, Path):
        with closing(sqlite3.connect(where)) as conn:
            return {name for (name,) in conn.execute(sql)}
    assert isinstance(where, SQLiteBulkWriter)
    return {name for (name,) in where.connection.execute(sql)}


def cache_kib(where: ContactStore | BulkWriter) -> int:
    """The page cache of the SQLite store's writer connection (KiB)."""
    if isinstance(where, SQLiteBulkWriter):
        conn = where.connection
    else:
        assert isinstance(where, SQLiteContactStore)
        conn = where._writer
    return -int(conn.execute("PRAGMA cache_size").fetchone()[0])


def snapshot(store: ContactStore) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in ("received_at", "pk")} for row in stored_contacts(store)]


@pytest.fixture
def small_bulk_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "BULK_LOAD_MIN_ROWS", 5)


def chunks(items: list[Contact], size: int) -> Iterator[list[Contact]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def test_bulk_load_builds_the_same_store_as_row_by_row(tmp_path: Path, small_bulk_threshold: None) -> None:
    batch = [contact(f"c{i}", f"k{i % 7}", (i * 37) % 500, direction="outbound" if i % 11 == 0 else "inbound")
             for i in range(60)]  # fmt: skip
    batch.append(contact("c3", "k9", 5))  # a key repeated within the batch: inserted, then updated
    stores = {}
    for mode in ("rows", "bulk"):
        path = tmp_path / f"{mode}.db"
        store = open_store(sqlite_url(path))
        indexes = contact_indexes(path)
        with store.bulk(len(batch) if mode == "bulk" else 0) as writer:
            if mode == "bulk":
                assert KEY_INDEX in indexes
                assert contact_indexes(writer) == set()  # deferred for the load, the key index too (empty store)...
                assert cache_kib(writer) == WRITER_CACHE_KIB  # (no index takes every row: no larger cache)
            for part in chunks(batch, 8):
                writer.add(part)
        assert contact_indexes(path) == indexes  # ...and built again before the commit
        assert cache_kib(store) == WRITER_CACHE_KIB
        assert isinstance(store, SQLiteContactStore)
        assert store._writer.execute("PRAGMA threads").fetchone()[0] == 0  # (the builds' sorting threads: gone)
        assert (writer.counts.inserted, writer.counts.updated, writer.counts.unchanged) == (60, 1, 0)
        stores[mode] = snapshot(store)
        store.close()
    assert stores["rows"] == stores["bulk"]
    expected = expected_next_repeats({c.id: c for c in batch}.values())  # the last version of c3
    assert {row["id"]: row["next_repeat_us"] for row in stores["bulk"]} == expected


def test_a_small_write_keeps_its_temporary_data_in_memory_and_an_import_in_files(db_path: Path) -> None:
    """A webhook group (a known, small number of rows) sorts and journals in memory: with temporary files, each
    multi-row INSERT spilled its statement journal to one (SQLite keeps 64 KiB in memory), and the derive step's
    temporary tables went through one too (the writer's SQL: 179 against 149 ms for 2,000 CTRs). An import, or a
    write of unknown size, keeps them in files, so its sorts do not grow memory. The derived data is exact across
    the switches (the temporary tables are made again)."""
    store = open_store(sqlite_url(db_path))
    batch = [contact(f"c{i}", f"k{i % 3}", (i * 37) % 500) for i in range(12)]
    modes = []
    try:
        for expected, part in ((3, batch[:3]), (0, batch[3:6]), (sqlite_store.BULK_LOAD_MIN_ROWS, batch[6:9]),
                               (3, batch[9:])):  # fmt: skip
            with store.bulk(expected) as writer:
                assert isinstance(writer, SQLiteBulkWriter)
                modes.append(writer.connection.execute("PRAGMA temp_store").fetchone()[0])
                writer.add(part)
        assert modes == [2, 1, 1, 2]  # MEMORY, FILE, FILE, MEMORY
        assert {row["id"]: row["next_repeat_us"] for row in stored_contacts(store)} == expected_next_repeats(batch)
        assert_candidates_mirror_contacts(store)
    finally:
        store.close()


def test_a_failed_bulk_load_restores_everything(db_path: Path, small_bulk_threshold: None) -> None:
    store = open_store(sqlite_url(db_path))
    store.upsert([contact("keep", "k1", 0)])
    indexes = contact_indexes(db_path)
    with pytest.raises(RuntimeError), store.bulk(1000) as writer:
        writer.add([contact(f"n{i}", "k1", i + 1) for i in range(20)])
        assert cache_kib(writer) == BULK_LOAD_CACHE_KIB
        raise RuntimeError("the file had an invalid record")
    assert contact_indexes(db_path) == indexes
    assert cache_kib(store) == WRITER_CACHE_KIB  # memory back to what a server's writer keeps
    assert [row["id"] for row in stored_contacts(store)] == ["keep"]
    assert store.count_contacts() == 1
    assert store.get_contact("api", "keep")["next_repeat_us"] is None  # type: ignore[index]
    store.close()


def test_bulk_load_into_a_small_table_fixes_old_and_new_customers(
    store: ContactStore, small_bulk_threshold: None
) -> None:
    store.upsert([contact("a", "old", 0), contact("b", "old", 100), contact("c", "other", 50)])
    assert store.get_contact("api", "a")["next_repeat_us"] == (T0 + 100) * 1_000_000  # type: ignore[index]
    moved = [contact("b", "new", 100), contact("d", "other", 20)] + [contact(f"x{i}", f"z{i}", i) for i in range(10)]
    counts = store.upsert(moved)  # a Sequence: the store expects 12 rows, more than the 3 stored
    assert (counts.inserted, counts.updated, counts.unchanged) == (11, 1, 0)
    rows = snapshot(store)
    assert {r["id"]: r["next_repeat_us"] for r in rows} == expected_next_repeats(map(as_contact, rows))
    assert store.get_contact("api", "a")["next_repeat_us"] is None  # type: ignore[index]


versions = st.builds(
    lambda key, customer, start, outbound, leg, agent: (key, customer, start, outbound, leg, agent),
    st.integers(0, 9),
    st.sampled_from(["k1", "k2", "k3"]),
    st.integers(0, 30),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["ana", "ana", "bo", None]),  # without an agent no metric counts it
)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=st.lists(versions, max_size=12),
    batch=st.lists(versions, min_size=1, max_size=30),
    chunk=st.integers(1, 7),
    bulk=st.booleans(),
    flat=st.booleans(),
    rows_per_insert=st.sampled_from([1, 2, 3, 100]),
)
def test_counts_and_next_repeat_match_a_naive_model(
    new_store: Callable[[], ContactStore],
    before: list[tuple[int, str, int, bool, bool, str | None]],
    batch: list[tuple[int, str, int, bool, bool, str | None]],
    chunk: int,
    bulk: bool,
    flat: bool,
    rows_per_insert: int,
) -> None:
    def build(key: int, customer: str, start: int, outbound: bool, leg: bool, agent: str | None) -> Contact:
        extra: dict[str, Any] = {"direction": "outbound" if outbound else "inbound", "agent": agent}
        if leg:
            extra["parent_id"] = "p"
        return contact(f"id{key}", customer, start, **extra)

    store = new_store()
    sqlite_store.ROWS_PER_INSERT = rows_per_insert  # multi-row INSERTs: whole statements and the remainder
    try:
        model: dict[str, Contact] = {}
        for item in before:
            model[f"id{item[0]}"] = build(*item)
        store.upsert(list(model.values()))
        expected = [0, 0, 0]
        with store.bulk(10**6 if bulk else 0) as writer:
            for part in chunks([build(*item) for item in batch], chunk):
                for c in part:
                    old = model.get(c.id)
                    expected[0 if old is None else 2 if old.raw == c.raw else 1] += 1
                    model[c.id] = c
                if flat:  # as the import's reader process sends them
                    writer.add(PackedContacts([value for c in part for value in c]))
                else:
                    writer.add(part)
        counts = writer.counts
        assert [counts.inserted, counts.updated, counts.unchanged] == expected
        rows = snapshot(store)
        assert {r["id"]: (r["customer_id"], r["started_us"], r["raw"]) for r in rows} == {
            k: (c.customer_id, c.started_us, c.raw) for k, c in model.items()
        }
        assert {r["id"]: r["next_repeat_us"] for r in rows} == expected_next_repeats(model.values())
        assert_candidates_mirror_contacts(store)
        assert store.count_contacts() == len(model)
    finally:
        sqlite_store.ROWS_PER_INSERT = ROWS_PER_INSERT
        store.close()


def test_flat_values_must_be_whole_rows(store: ContactStore) -> None:
    values = list(contact("a", "k", 0))
    with pytest.raises(ValueError, match="not whole rows"), store.bulk() as writer:
        writer.add(PackedContacts(values[:-1]))
    assert store.count_contacts() == 0


@pytest.mark.parametrize("settle_rows", [sqlite_store.SETTLE_ROWS, 2], ids=["one-page", "a-key-a-page"])
def test_an_initial_load_settles_keys_repeated_across_chunks_as_row_by_row(
    tmp_path: Path, small_bulk_threshold: None, settle_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Into an empty store the bulk load adds rows without the key index and settles repeated keys at the end: a
    CTR re-sent in a later chunk (newer, the same, or older by updated_at) ends as the keyed path leaves it. The
    keys are settled a page at a time, their rows read a part at a time (here also one key a page, two rows a part:
    a key's versions folded across parts)."""
    monkeypatch.setattr(sqlite_store, "SETTLE_ROWS", settle_rows)

    def version(cid: str, customer: str, start: int, updated: int, **fields: Any) -> Contact:
        return contact(cid, customer, start, updated_at=T0 + 10_000 + updated, **fields)

    batch = [version(f"c{i}", f"k{i % 5}", i * 10, 0) for i in range(40)]
    batch += [
        version("c1", "k1", 11, 5),  # newer: an update (it moves too)
        version("c2", "k2", 20, 0),  # the same: unchanged
        version("c3", "k3", 30, -5),  # older: stale
        version("c1", "k9", 12, 3, agent="bo"),  # older than the update before it: stale
        version("c4", "k4", 40, 9, agent="bo"),  # newer, then again the same: updated, unchanged
        version("c4", "k4", 40, 9, agent="bo"),
        version("c5", "k0", 50, 1),  # two newer versions of one key in one chunk, in order: two updates
        version("c5", "k0", 55, 2, direction="outbound"),
    ]
    results = {}
    for mode in ("keyed", "keyless"):
        path = tmp_path / f"{mode}.db"
        store = open_store(sqlite_url(path))
        with store.bulk(len(batch) if mode == "keyless" else 0) as writer:
            for part in chunks(batch, 8):  # the repeats come in later chunks than their first version
                writer.add(PackedContacts([value for c in part for value in c]))
                assert (KEY_INDEX in contact_indexes(writer)) == (mode == "keyed")
        assert KEY_INDEX in contact_indexes(path)
        counts = writer.counts
        results[mode] = ((counts.inserted, counts.updated, counts.unchanged, counts.stale), snapshot(store))
        assert store.count_contacts() == 40
        assert_candidates_mirror_contacts(store)
        # Each kept version's next repeat as the definitions state it (an updated row's candidate, made by the
        # update's trigger before its next repeat was known, is replaced by the write's own)
        rows = stored_contacts(store)
        assert {r["id"]: r["next_repeat_us"] for r in rows} == expected_next_repeats(as_contact(r) for r in rows)
        store.close()
    assert results["keyless"][0] == results["keyed"][0] == (40, 4, 2, 2)
    assert results["keyless"][1] == results["keyed"][1]
    by_id = {row["id"]: row for row in results["keyless"][1]}
    assert (by_id["c1"]["customer_id"], by_id["c4"]["agent"], by_id["c5"]["direction"]) == ("k1", "bo", "outbound")
    with closing(sqlite3.connect(tmp_path / "keyless.db")) as conn:  # one row a key, the first one's pk
        assert conn.execute("SELECT pk FROM contacts WHERE id = 'c1'").fetchone()[0] == 2


@pytest.mark.slow
def test_settling_repeated_keys_holds_a_page_of_them_not_all(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that repeats every key (a Connect export with each CTR's first and updated version) must not make the
    import hold every repeated key at once: 500,000 of them took 88 MiB. Python's peak while the load finishes
    (SQLite's own memory aside) stays within a page of keys."""
    monkeypatch.setattr(sqlite_store, "BULK_LOAD_MIN_ROWS", 5)
    monkeypatch.setattr(sqlite_store, "SETTLE_ROWS", 200)
    keys = 20_000
    batch = [contact(f"c{i}", f"k{i % 97}", i, updated_at=T0 + 10_000) for i in range(keys)]
    batch += [contact(f"c{i}", f"k{i % 97}", i, updated_at=T0 + 10_001, agent="bo") for i in range(keys)]
    store = open_store(sqlite_url(db_path))
    try:
        with store.bulk(len(batch)) as writer:
            for part in chunks(batch, 5_000):
                writer.add(PackedContacts([value for c in part for value in c]))
            del part
            tracemalloc.start()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        counts = writer.counts
        assert (counts.inserted, counts.updated, counts.unchanged, counts.stale) == (keys, keys, 0, 0)
        assert store.count_contacts() == keys
        assert store.get_contact("api", "c7")["agent"] == "bo"  # type: ignore[index]
        assert peak < 1_000_000, peak  # every key held at once: ~3 MB here
    finally:
        tracemalloc.stop()
        store.close()


def test_a_store_that_had_contacts_before_the_key_index_keeps_its_key_constraint(
    db_path: Path, small_bulk_threshold: None
) -> None:
    """``m_contacts_key_index`` changes only an empty store (the constraint's index cannot be dropped, and turning
    it into one would copy the table): a store with contacts keeps its constraint, and bulk loads keep the key
    checked row by row."""
    db = Database(db_path)
    migrations.apply(db, stop_before="m_contacts_key_index")
    db.conn.execute(
        "INSERT INTO contacts (source, id, customer_id, channel, direction, tier, escalated, started_us, raw) "
        "VALUES ('api', 'old', 'k1', 'phone', 'inbound', 1, 0, ?, '{}')",  # (no agent: no candidate row to add)
        ((T0 - 100) * 1_000_000,),
    )
    db.conn.execute("UPDATE store_stats SET value = 1 WHERE name = 'contacts'")
    db.conn.commit()
    db.close()
    store = open_store(sqlite_url(db_path))
    assert KEY_INDEX not in contact_indexes(db_path)
    batch = [contact(f"n{i}", "k1", i) for i in range(20)] + [contact("n3", "k1", 3, agent="bo")]
    with store.bulk(len(batch)) as writer:
        writer.add(batch)
        assert cache_kib(writer) == BULK_LOAD_CACHE_KIB
    assert (writer.counts.inserted, writer.counts.updated) == (20, 1)
    with closing(sqlite3.connect(db_path)) as conn, pytest.raises(sqlite3.IntegrityError):  # the key stays unique
        conn.execute(
            "INSERT INTO contacts (source, id, customer_id, channel, direction, tier, escalated, started_us, raw) "
            "SELECT source, id, customer_id, channel, direction, tier, escalated, started_us, raw FROM contacts "
            "WHERE id = 'n3'"
        )
    rows = snapshot(store)
    assert {r["id"]: r["next_repeat_us"] for r in rows} == expected_next_repeats(map(as_contact, rows))
    store.close()


def test_the_checks_before_an_insert_that_skips_invalid_rows_are_the_schema_s(db_path: Path) -> None:
    """A valid chunk goes in with INSERT OR IGNORE (no statement journal: see ``_insert_new_sql``), which would skip
    a row breaking a constraint instead of failing: ``_surely_valid`` must know every constraint of the table."""
    SQLiteContactStore(db_path).close()
    with closing(sqlite3.connect(db_path)) as conn:
        not_null = {name for _, name, _, notnull, _, _ in conn.execute("PRAGMA table_info(contacts)") if notnull}
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'contacts'").fetchone()
        unique = [name for _, name, is_unique, *_ in conn.execute("PRAGMA index_list(contacts)") if is_unique]
        # (OR IGNORE is also the conflict policy of every statement of a trigger the INSERT fires)
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ('contacts', 'metric_contacts')"
        ).fetchall()
    insert_triggers = [name for name, text in triggers if re.search(r"\bINSERT\s+ON\b", text, re.IGNORECASE)]
    assert len(triggers) >= 2  # (the update and delete triggers: the query sees them)
    assert not_null - {"received_at"} == set(sqlite_store.NOT_NULL_COLUMNS)  # (received_at: the write's own)
    checks = [" ".join(check.split()) for check in re.findall(r"CHECK \(([^)]*\)?)\)", sql)]
    assert checks == ["direction IN ('inbound', 'outbound')", "tier >= 1", "ended_us >= started_us"]
    assert unique == [sqlite_store.KEY_INDEX]  # OR IGNORE may skip a row only for its stored key
    assert insert_triggers == []


def test_a_valid_chunk_skips_the_statement_journal_and_an_invalid_row_still_fails_its_write(db_path: Path) -> None:
    store = SQLiteContactStore(db_path)
    statements: list[str] = []
    store._writer.set_trace_callback(statements.append)
    try:
        stored = contact("k1", "c1", 0)
        empty = contact("k2", "c1", 60, escalated=True, resolved=False)._replace(team="", reason="", queue=None)
        assert store.upsert([stored, empty]).inserted == 2
        assert any(s.startswith("INSERT OR IGNORE INTO contacts") for s in statements)
        assert any(s.startswith("INSERT OR IGNORE INTO metric_contacts") for s in statements)
        columns = "team, reason, queue, resolved, parent_id, ended_us, updated_us, escalated"
        typed = f"SELECT {', '.join(f'typeof({c}), {c}' for c in columns.split(', '))} FROM contacts WHERE id = ?"
        nulls = ("null", None) * 7 + ("integer", 0)
        assert store._writer.execute(typed, ("k1",)).fetchone() == nulls
        assert store._writer.execute(typed, ("k2",)).fetchone() == (
            ("text", "", "text", "", "null", None, "integer", 0) + ("null", None) * 3 + ("integer", 1)
        )
        broken = stored._replace(ended_us=stored.started_us - 1)  # the database's CHECK refuses it
        for batch in (
            [broken, contact("k3", "c1", 120)],
            [broken._replace(id="k4"), broken._replace(id="k4", ended_us=None)],
        ):
            statements.clear()
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                store.upsert(batch)
            assert not any(s.startswith("INSERT OR IGNORE INTO contacts") for s in statements)
        assert [row["id"] for row in stored_contacts(store)] == ["k1", "k2"]  # nothing of the failed writes
        again = contact("k2", "c1", 60, agent="bo")  # an update of a row stored by the same write: its candidate again
        with store.bulk() as writer:
            writer.add([contact("k5", "c1", 180)])
            writer.add([contact("k5", "c1", 180, agent="bo"), again])
        assert (writer.counts.inserted, writer.counts.updated) == (1, 2)
        assert any(s.startswith("INSERT OR REPLACE INTO metric_contacts") for s in statements)
        assert_candidates_mirror_contacts(store)
    finally:
        store.close()


@pytest.mark.parametrize("expected_rows", [0, 10**6], ids=["keyed", "initial-load"])
def test_a_column_null_in_every_row_of_a_chunk_is_stored_null_and_the_others_in_their_places(
    db_path: Path, expected_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Such a column goes into the INSERT as the literal NULL instead of bound values (``_bindable``), so the
    values of the others are numbered without it: each chunk here leaves out another nullable column."""
    full = contact("c", "k", 0, ended_at=T0 + 60, updated_at=T0 + 90, team="t", reason="r", queue="q", resolved=True)
    full = full._replace(parent_id="p", escalated=True)
    nullable = [column for column in Contact._fields if column not in sqlite_store.NOT_NULL_COLUMNS]
    assert set(nullable) == {"agent", "team", "queue", "reason", "resolved", "parent_id", "ended_us", "updated_us"}
    null: Any = None
    batches = [[full._replace(id=f"{column}-{i}", **{column: null}) for i in range(3)] for column in nullable]
    batches.append([full._replace(id="mixed-1"), full._replace(id="mixed-2", team=None, resolved=False)])
    left_out: list[tuple[str, ...]] = []
    insert_sql = sqlite_store._insert_new_sql

    def recorded(rows: int, keyed: bool = True, valid: bool = False, nulls: tuple[int, ...] = ()) -> str:
        left_out.append(tuple(Contact._fields[column] for column in nulls))
        return insert_sql(rows, keyed, valid, nulls)

    monkeypatch.setattr(sqlite_store, "_insert_new_sql", recorded)
    store = SQLiteContactStore(db_path)
    try:
        with store.bulk(expected_rows) as writer:
            for index, batch in enumerate(batches):
                writer.add(PackedContacts([v for c in batch for v in c]) if index % 2 else batch)
        assert left_out == [(column,) for column in nullable] + [()]
        stored = {row["id"]: {f: row[f] for f in Contact._fields} for row in stored_contacts(store)}
        assert stored == {c.id: c._asdict() for batch in batches for c in batch}
        assert_candidates_mirror_contacts(store)
    finally:
        store.close()
