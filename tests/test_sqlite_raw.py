"""Long raw records are stored compressed in SQLite (zstd, a dictionary trained on the store's own records) and
come back exactly: ``contacts get``, ``db copy`` both ways, a backup, re-sent versions (``bot/storage/sqlite_raw.py``)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.ingest import FileResult, ingest_file
from bot.platforms.amazon_connect import CtrMapper
from bot.settings import Settings
from bot.storage import PackedContacts, UpsertCounts, open_store
from bot.storage.sqlite import SQLiteBulkWriter, SQLiteContactStore
from bot.storage.sqlite_raw import MIN_BYTES, TRAIN_SAMPLES
from metrics.records import Contact, parse_contact
from metrics.timeutil import load_zone

UTC = load_zone("UTC")


def record(n: int, note: str = "") -> dict[str, Any]:
    """A contact record with a long platform payload: unknown fields, non-ASCII text, escapes, a number with
    a fraction and a zero (what a re-encoding would change), so its raw is long and must come back exactly."""
    return {
        "id": f"c{n}",
        "source": "helpdesk",
        "customer_id": f"k{n % 37}",
        "agent": f"agent-{n % 5}",
        "started_at": f"2026-05-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
        "updated_at": "2026-06-01T00:00:00Z",
        "transcript": [
            {"from": "customer", "text": f'Grüße, ticket #{n}: "refund" \\ 返金 {note}', "at": 1.50},
            {"from": "agent", "text": "Bonjour — we'll fix it\n\ttoday 👍", "sentiment": 0.0},
        ]
        * 6,
        "tags": [f"tag-{n % 11}", None, True, 1e-7],
    }


def raw_of(item: dict[str, Any]) -> str:
    """The raw the store keeps for a record: it as delivered, compact JSON."""
    contact = parse_contact(item, UTC)
    assert isinstance(contact, Contact)
    return contact.raw


def contacts(count: int, note: str = "") -> list[Contact]:
    made = [parse_contact(record(n, note), UTC) for n in range(count)]
    assert all(isinstance(contact, Contact) for contact in made)
    return made  # type: ignore[return-value]


def stored_types(path: Path) -> dict[str, int]:
    """How many raws are stored as each SQLite type, read straight from the file."""
    with closing(sqlite3.connect(path)) as conn:
        return dict(conn.execute("SELECT typeof(raw), count(*) FROM contacts GROUP BY 1").fetchall())


def dictionaries(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM raw_dictionaries").fetchone()[0])


def test_long_raws_are_stored_compressed_and_come_back_exactly(db_path: Path) -> None:
    given = contacts(TRAIN_SAMPLES + 50)
    short = parse_contact({"id": "s1", "source": "crm", "customer_id": "k1", "started_at": "2026-05-01T00:00:00Z"}, UTC)
    assert isinstance(short, Contact) and len(short.raw) < MIN_BYTES <= min(len(c.raw) for c in given)
    store = SQLiteContactStore(db_path)
    try:
        assert store.upsert([*given, short]) == UpsertCounts(inserted=len(given) + 1)
        assert stored_types(db_path) == {"blob": len(given), "text": 1}
        assert dictionaries(db_path) == 1
        with closing(sqlite3.connect(db_path)) as conn:
            stored_bytes = conn.execute("SELECT sum(length(raw)) FROM contacts WHERE typeof(raw) = 'blob'").fetchone()
        assert stored_bytes[0] * 4 < sum(len(c.raw.encode()) for c in given)
        for contact in [*given, short]:
            got = store.get_contact(contact.source, contact.id)
            assert got is not None and got["raw"] == contact.raw
        assert {c.id: c.raw for c in store.export_contacts()} == {c.id: c.raw for c in [*given, short]}
        # the same versions again change nothing; a new version of one replaces it, compressed too
        assert store.upsert(given) == UpsertCounts(unchanged=len(given))
        changed = contacts(1, note="reopened")
        assert store.upsert(changed) == UpsertCounts(updated=1)
        got = store.get_contact("helpdesk", "c0")
        assert got is not None and got["raw"] == changed[0].raw
        assert stored_types(db_path) == {"blob": len(given), "text": 1}
    finally:
        store.close()
    again = SQLiteContactStore(db_path)  # a new process: the dictionary is read from the file
    try:
        got = again.get_contact("helpdesk", "c7")
        assert got is not None and got["raw"] == given[7].raw
        assert again.upsert(contacts(3, note="later")) == UpsertCounts(updated=3)  # with the stored dictionary
        assert dictionaries(db_path) == 1
        backup = db_path.with_name("backup.db")
        again.backup(backup)
    finally:
        again.close()
    copy = SQLiteContactStore(backup)
    try:
        got = copy.get_contact("helpdesk", "c2")
        assert got is not None and got["raw"] == raw_of(record(2, note="later"))
    finally:
        copy.close()


def test_few_long_raws_stay_text_until_a_write_has_enough_to_learn_from(db_path: Path) -> None:
    store = SQLiteContactStore(db_path)
    try:
        first = contacts(TRAIN_SAMPLES - 1)
        assert store.upsert(first) == UpsertCounts(inserted=TRAIN_SAMPLES - 1)
        assert stored_types(db_path) == {"text": TRAIN_SAMPLES - 1} and dictionaries(db_path) == 0
        more = [c._replace(id=f"more-{c.id}") for c in contacts(TRAIN_SAMPLES)]
        store.upsert(more)
        assert stored_types(db_path) == {"text": TRAIN_SAMPLES - 1, "blob": TRAIN_SAMPLES}
        assert {c.id: c.raw for c in store.export_contacts()} == {c.id: c.raw for c in [*first, *more]}
    finally:
        store.close()


def test_a_dictionary_trained_by_a_write_that_was_rolled_back_is_never_used(db_path: Path) -> None:
    store = SQLiteContactStore(db_path)
    try:
        with pytest.raises(RuntimeError, match="the file had an invalid record"), store.bulk() as writer:
            writer.add(contacts(TRAIN_SAMPLES, note="rolled back"))
            assert dictionaries(db_path) == 0  # (not committed yet)
            raise RuntimeError("the file had an invalid record")
        assert store.count_contacts() == 0 and dictionaries(db_path) == 0
        given = contacts(TRAIN_SAMPLES)
        assert store.upsert(given) == UpsertCounts(inserted=TRAIN_SAMPLES)
        assert dictionaries(db_path) == 1 and stored_types(db_path) == {"blob": TRAIN_SAMPLES}
    finally:
        store.close()
    reopened = SQLiteContactStore(db_path)
    try:
        assert {c.id: c.raw for c in reopened.export_contacts()} == {c.id: c.raw for c in given}
    finally:
        reopened.close()


def cli(*args: str, database_url: str | None = None, stdin: bytes | None = None) -> Any:
    env = {"BOT_TIMEZONE": "UTC", **({"DATABASE_URL": database_url} if database_url else {})}
    return CliRunner().invoke(main, list(args), input=stdin, env=env, catch_exceptions=False)


def test_ingest_then_contacts_get_and_db_copy_to_sqlite_give_the_record_back(tmp_path: Path) -> None:
    first, second = f"sqlite:///{tmp_path / 'first.db'}", f"sqlite:///{tmp_path / 'second.db'}"
    records = [record(n) for n in range(TRAIN_SAMPLES + 10)]
    lines = b"".join(orjson.dumps(item) + b"\n" for item in records)
    ingested = cli("ingest", "-", database_url=first, stdin=lines)
    assert ingested.exit_code == 0, ingested.output
    assert stored_types(tmp_path / "first.db") == {"blob": len(records)}
    copied = cli("db", "copy", "--from", first, "--to", second)
    assert copied.exit_code == 0, copied.output
    assert stored_types(tmp_path / "second.db") == {"blob": len(records)}  # compressed with its own dictionary
    for url in (first, second):
        shown = cli("contacts", "get", "helpdesk", "c3", database_url=url)
        assert shown.exit_code == 0, shown.output
        assert orjson.loads(shown.stdout)["raw"] == records[3]
        with closing(open_store(url)) as store:
            assert {c.id: c.raw for c in store.export_contacts()} == {item["id"]: raw_of(item) for item in records}


def test_db_copy_to_postgresql_and_back_keeps_every_raw_exactly(tmp_path: Path, postgres_url: str) -> None:
    first, back = f"sqlite:///{tmp_path / 'first.db'}", f"sqlite:///{tmp_path / 'back.db'}"
    given = contacts(TRAIN_SAMPLES + 10)
    with closing(open_store(first)) as store:
        store.upsert(given)
    assert stored_types(tmp_path / "first.db") == {"blob": len(given)}
    assert cli("db", "copy", "--from", first, "--to", postgres_url).exit_code == 0
    assert cli("db", "copy", "--from", postgres_url, "--to", back).exit_code == 0
    assert stored_types(tmp_path / "back.db") == {"blob": len(given)}
    expected = {c.id: c.raw for c in given}
    for url in (postgres_url, back):
        with closing(open_store(url)) as store:
            assert {c.id: c.raw for c in store.export_contacts()} == expected
            got = store.get_contact("helpdesk", "c5")
            assert got is not None and got["raw"] == expected["c5"]


def test_a_dictionary_learns_nothing_that_only_one_customer_s_records_hold(db_path: Path) -> None:
    """A dictionary outlives the records it learned from, so it must hold no customer's own values: after
    `contacts forget --customer C` nothing of C's may be left in the file. Each customer's records here repeat
    their phone number and name (what zstd would otherwise learn, as it learned 10 of 398 phone numbers from
    bench CTRs); what every customer's records share is learned, so they are still stored small."""
    queue_arn = "arn:aws:connect:us-west-2:123456789012:instance/aaaa-bbbb/queue/cccc-dddd"
    given = []
    for n in range(TRAIN_SAMPLES + 100):
        customer = n % 23
        item = record(n) | {
            "customer_id": f"+1555{customer:07d}",
            "CustomerEndpoint": {"Address": f"+1555{customer:07d}", "Name": f"Customer Number{customer:03d}"},
            "Queue": {"ARN": queue_arn, "Name": "billing"},
        }
        contact = parse_contact(item, UTC)
        assert isinstance(contact, Contact)
        given.append(contact)
    store = SQLiteContactStore(db_path)
    try:
        store.upsert(given)
        assert stored_types(db_path) == {"blob": len(given)}
        with closing(sqlite3.connect(db_path)) as conn:
            (dictionary,) = conn.execute("SELECT dictionary FROM raw_dictionaries").fetchone()
        assert b"Customer Number" not in dictionary and b"+1555" not in dictionary
        with closing(sqlite3.connect(db_path)) as conn:
            (stored_bytes,) = conn.execute("SELECT sum(length(raw)) FROM contacts").fetchone()
        assert stored_bytes * 4 < sum(len(c.raw.encode()) for c in given)  # what is shared is still learned
        assert {c.id: c.raw for c in store.export_contacts()} == {c.id: c.raw for c in given}
    finally:
        store.close()


# --- a file import compresses in its reader processes (RawPacking) ---------------------------------------------

# The inbound CTR of Amazon Connect's documentation ("Contact records data model"), as the Connect tests use it.
CTR = orjson.loads((Path(__file__).parent / "payloads" / "amazon-connect-ctr-inbound.json").read_bytes())


def ctr(n: int, updated: str = "2026-06-01T10:00:00Z", note: str = "") -> dict[str, Any]:
    return {
        **CTR,
        "ContactId": f"ctr-{n}",
        "CustomerEndpoint": {"Address": f"+1555{n % 41:07d}", "Type": "TELEPHONE_NUMBER"},
        "InitiationTimestamp": f"2026-05-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
        "DisconnectTimestamp": f"2026-05-{1 + n % 28:02d}T{n % 24:02d}:05:00Z",
        "LastUpdateTimestamp": updated,
        "Attributes": {"note": f"Grüße {note}"},
    }


def import_ctrs(store: SQLiteContactStore, path: Path, ctrs: list[dict[str, Any]]) -> tuple[FileResult, list[Any]]:
    """Import ``ctrs`` as a Firehose S3 object read by two reader processes; also what the writer was given."""
    path.write_bytes(b"".join(orjson.dumps(item) for item in ctrs))
    given: list[Any] = []
    add = SQLiteBulkWriter.add

    def spy(writer: SQLiteBulkWriter, contacts: Any) -> None:
        given.append(contacts)
        add(writer, contacts)

    with mock.patch.object(SQLiteBulkWriter, "add", spy):
        result = ingest_file(store, str(path), UTC, parallel=True, block_bytes=64 << 10, events=CtrMapper(Settings()))
    return result, given


def test_an_import_s_readers_compress_raws_with_a_dictionary_learned_from_the_head_of_the_file(
    tmp_path: Path, db_path: Path
) -> None:
    ctrs = [ctr(n) for n in range(TRAIN_SAMPLES * 3)]
    store = SQLiteContactStore(db_path)
    try:
        result, given = import_ctrs(store, tmp_path / "objects", ctrs)
        assert result.ok and result.counts == UpsertCounts(inserted=len(ctrs)), result.errors
        assert len(given) > 2 and all(isinstance(chunk, PackedContacts) and chunk.packer for chunk in given)
        assert all(type(contact.raw) is bytes for chunk in given for contact in chunk)  # the writer got them packed
        assert stored_types(db_path) == {"blob": len(ctrs)} and dictionaries(db_path) == 1
        with closing(sqlite3.connect(db_path)) as conn:
            (dictionary,) = conn.execute("SELECT dictionary FROM raw_dictionaries").fetchone()
        assert b"+1555" not in dictionary  # learned as the writer learns: nothing only one customer's records hold
        for item in ctrs[::97]:
            got = store.get_contact("amazon-connect", item["ContactId"])
            assert got is not None and orjson.loads(got["raw"]) == item
        assert {c.id: c.raw for c in store.export_contacts()} == {
            item["ContactId"]: orjson.dumps(item).decode() for item in ctrs
        }
        # Again, with the stored dictionary: the same versions are unchanged, newer ones updated, older ones stale.
        again = [*ctrs[:100], *(ctr(n, "2026-06-02T00:00:00Z", "newer") for n in range(100, 200))]
        again += [ctr(n, "2026-05-31T00:00:00Z", "older") for n in range(200, TRAIN_SAMPLES * 3)]
        again.append(ctr(5, "2026-06-03T00:00:00Z", "twice in one file"))
        result, given = import_ctrs(store, tmp_path / "again", again)
        assert result.counts == UpsertCounts(updated=101, unchanged=100, stale=len(ctrs) - 200), result.errors
        assert all(chunk.packer for chunk in given) and dictionaries(db_path) == 1
        got = store.get_contact("amazon-connect", "ctr-5")
        assert got is not None and orjson.loads(got["raw"]) == again[-1]
        got = store.get_contact("amazon-connect", "ctr-150")
        assert got is not None and orjson.loads(got["raw"]) == ctr(150, "2026-06-02T00:00:00Z", "newer")
    finally:
        store.close()


def test_readers_pack_a_chunk_of_short_and_long_ctrs_at_once_each_as_it_would_be_alone(
    tmp_path: Path, db_path: Path
) -> None:
    """The readers compress a chunk's long raws in one call (``RawPacker.pack_all``): the frames are those of one
    call a raw, and the short raws among them stay text."""
    short_keys = ("ContactId", "CustomerEndpoint", "InitiationTimestamp", "Channel", "InitiationMethod", "Agent")
    ctrs = [ctr(n) for n in range(TRAIN_SAMPLES * 3)]
    for n in range(0, len(ctrs), 7):  # every seventh one under MIN_BYTES, among long ones in every chunk
        ctrs[n] = {key: ctrs[n][key] for key in short_keys} | {"Agent": {"Username": "agent-1"}}
        assert len(orjson.dumps(ctrs[n])) < MIN_BYTES
    store = SQLiteContactStore(db_path)
    try:
        result, given = import_ctrs(store, tmp_path / "objects", ctrs)
        assert result.ok and result.counts == UpsertCounts(inserted=len(ctrs)), result.errors
        short = len(range(0, len(ctrs), 7))
        assert stored_types(db_path) == {"blob": len(ctrs) - short, "text": short}
        (packer,) = {chunk.packer for chunk in given}
        for contact in (contact for chunk in given for contact in chunk):
            raw = orjson.dumps(next(item for item in ctrs if item["ContactId"] == contact.id))
            assert contact.raw == packer.pack(raw)  # (each as one call packs it alone)
        assert {c.id: c.raw for c in store.export_contacts()} == {
            item["ContactId"]: orjson.dumps(item).decode() for item in ctrs
        }
    finally:
        store.close()


def test_a_dictionary_learned_for_an_import_that_stores_nothing_is_not_kept(tmp_path: Path, db_path: Path) -> None:
    ctrs = [ctr(n) for n in range(TRAIN_SAMPLES * 3)]
    broken = [*ctrs, {**ctr(9999), "InitiationTimestamp": None}]
    store = SQLiteContactStore(db_path)
    try:
        result, given = import_ctrs(store, tmp_path / "objects", broken)
        assert result.errors == [f"{tmp_path / 'objects'}:1: started_at: is required (ContactId ctr-9999)"]
        assert given and all(chunk.packer for chunk in given)  # (the chunks before the bad record were written)
        assert store.count_contacts() == 0 and dictionaries(db_path) == 0
        result, _ = import_ctrs(store, tmp_path / "objects", ctrs)
        assert result.counts == UpsertCounts(inserted=len(ctrs)) and dictionaries(db_path) == 1
    finally:
        store.close()


def test_a_chunk_packed_by_something_else_is_refused(db_path: Path) -> None:
    class Foreign:
        def pack(self, raw: bytes) -> str | bytes:
            return raw.decode()

        def pack_all(self, raws: list[bytes]) -> list[str | bytes]:
            return [raw.decode() for raw in raws]

    row = contacts(1)[0]
    store = SQLiteContactStore(db_path)
    try:
        with pytest.raises(TypeError, match="not by this store's raw_packer"), store.bulk() as writer:
            writer.add(PackedContacts(list(row), Foreign()))
        assert store.count_contacts() == 0
    finally:
        store.close()
