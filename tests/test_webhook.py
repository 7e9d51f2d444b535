"""The signed webhook and health endpoint, driven over real HTTP against the real app under uvicorn.

Every test starts ``build_app`` under uvicorn on an ephemeral loopback port, backed by a real SQLite file,
and signs its requests with ``bot.http.signing`` exactly as a sender would.
"""

from __future__ import annotations

import inspect
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import psycopg
import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.http import coalesce
from bot.http.app import build_app
from bot.http.coalesce import WriteCoalescer
from bot.http.signing import MAX_SKEW_SECONDS, SignatureError, sign, signed_headers, verify
from bot.http.webhook import Decoded, MalformedBody, decode_body
from bot.settings import load_settings
from bot.storage import ContactStore, PackedContacts, UpsertCounts, open_store
from bot.storage.postgres import PostgresContactStore
from bot.storage.sqlite import SQLiteContactStore
from bot.storage.sqlite_raw import TRAIN_SAMPLES
from metrics.records import Contact, parse_contact
from metrics.timeutil import to_us
from tests.builders import valid
from tests.store_support import sqlite_path
from tests.test_sqlite_raw import contacts as raw_contacts

SECRET = "test-secret-1234"
PATH = "/webhooks/interactions"
JSON = "application/json"
NDJSON = "application/x-ndjson"


def us(utc_text: str) -> int:
    """Microseconds of a UTC wall time written without an offset."""
    return to_us(datetime.fromisoformat(utc_text).replace(tzinfo=UTC))


def record(i: int | str, customer: str = "k1", started: str = "2026-05-04T10:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"id": f"c{i}", "customer_id": customer, "agent": "maria", "started_at": started, **extra}


def ndjson(records: list[Any]) -> bytes:
    return b"\n".join(orjson.dumps(r) for r in records) + b"\n"


@dataclass
class Server:
    """A running app: its URL, its store, and a keep-alive client that signs by default."""

    url: str
    store: ContactStore
    client: httpx.Client
    events: list[str] = field(default_factory=list)

    def post(
        self,
        body: bytes | Any,
        content_type: str | None = JSON,
        *,
        secret: str = SECRET,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        sent = signed_headers(secret, raw, timestamp=timestamp) if signed else {}
        if content_type is not None:
            sent["Content-Type"] = content_type
        sent.update(headers or {})
        return self.client.post(PATH, content=raw, headers=sent)

    def next_repeat(self, contact_id: str) -> int | None:
        row = self.store.get_contact("api", contact_id)
        assert row is not None, contact_id
        return row["next_repeat_us"]


@pytest.fixture
def start(database_url: str) -> Iterator[Callable[..., Server]]:
    """Start the real app under uvicorn in a background thread; stopped (gracefully) after the test."""
    running: list[tuple[uvicorn.Server, threading.Thread, Server]] = []

    def _start(**overrides: Any) -> Server:
        settings = load_settings(**{"database_url": database_url, "webhook_secret": SECRET, **overrides})
        store = open_store(database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        events: list[str] = []

        @asynccontextmanager
        async def hook(app: Starlette) -> AsyncIterator[None]:
            events.append("startup")
            yield
            events.append("shutdown")

        async def boom(request: Request) -> Response:
            raise RuntimeError("secret internals")

        app = build_app(settings, store, extra_routes=[Route("/boom", boom)], lifespans=[hook])
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
        listener.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.005)
        port = listener.getsockname()[1]
        handle = Server(f"http://127.0.0.1:{port}", store, httpx.Client(base_url=f"http://127.0.0.1:{port}"), events)
        running.append((server, thread, handle))
        return handle

    yield _start
    for server, thread, handle in running:
        handle.client.close()
        server.should_exit = True  # a graceful stop takes ~0.2 s: joined once per module, not per test
        _stopping.append((thread, handle.store))


_stopping: list[tuple[threading.Thread, ContactStore]] = []


@pytest.fixture(scope="module", autouse=True)
def _join_stopped_servers() -> Iterator[None]:
    yield
    for thread, store in _stopping:
        thread.join(timeout=10)
        assert not thread.is_alive(), "a server did not stop"
        store.close()
    _stopping.clear()


# --- accepted bodies ---------------------------------------------------------------------------------------


def test_one_object_is_stored_with_its_counts(start: Callable[..., Server]) -> None:
    server = start()
    response = server.post(record(1, started="2026-05-04T10:00:00+02:00", ended_at=1777888000, extra="kept"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"accepted": 1, "inserted": 1, "updated": 0, "unchanged": 0, "stale": 0}
    stored = server.store.get_contact("api", "c1")
    assert stored is not None
    assert stored["started_us"] == us("2026-05-04T08:00:00")
    assert stored["ended_us"] == 1777888000 * 1_000_000
    assert orjson.loads(stored["raw"])["extra"] == "kept"
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    "content_type",
    [JSON, "application/json; charset=utf-8", 'application/JSON;charset="UTF-8"'],
)
def test_a_json_array_is_one_batch(start: Callable[..., Server], content_type: str) -> None:
    server = start()
    response = server.post([record(i) for i in range(3)], content_type)
    assert (response.status_code, response.json()["inserted"]) == (200, 3)
    assert server.store.count_contacts() == 3


@pytest.mark.parametrize("content_type", [NDJSON, "application/ndjson", "application/x-ndjson; charset=utf-8"])
def test_ndjson_with_blank_lines_and_crlf(start: Callable[..., Server], content_type: str) -> None:
    server = start()
    body = b"\xef\xbb\xbf" + orjson.dumps(record(1)) + b"\r\n\r\n" + orjson.dumps(record(2)) + b"\r\n"
    response = server.post(body, content_type)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 2, "inserted": 2, "updated": 0, "unchanged": 0, "stale": 0}


def test_an_empty_array_is_a_harmless_no_op(start: Callable[..., Server]) -> None:
    response = start().post([])
    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "inserted": 0, "updated": 0, "unchanged": 0, "stale": 0}


def test_redelivery_is_idempotent_and_updates_are_counted(start: Callable[..., Server]) -> None:
    server = start()
    batch = [record(i) for i in range(5)]
    assert server.post(batch).json() == {"accepted": 5, "inserted": 5, "updated": 0, "unchanged": 0, "stale": 0}
    assert server.post(ndjson(batch), NDJSON).json() == {
        "accepted": 5,
        "inserted": 0,
        "updated": 0,
        "unchanged": 5,
        "stale": 0,
    }
    batch[2]["resolved"] = False
    assert server.post(batch).json() == {"accepted": 5, "inserted": 0, "updated": 1, "unchanged": 4, "stale": 0}
    assert server.store.count_contacts() == 5
    stored = server.store.get_contact("api", "c2")
    assert stored is not None and stored["resolved"] == 0


def test_an_older_version_is_answered_as_stale_and_changes_nothing(start: Callable[..., Server]) -> None:
    server = start()
    newer = record(1, resolved=True, updated_at="2026-05-04T10:30:00Z")
    older = record(1, resolved=False, updated_at="2026-05-04T10:10:00Z")
    assert server.post([newer]).json()["inserted"] == 1
    assert server.post([older]).json() == {"accepted": 1, "inserted": 0, "updated": 0, "unchanged": 0, "stale": 1}
    stored = server.store.get_contact("api", "c1")
    assert stored is not None and stored["resolved"] == 1 and stored["updated_us"] == us("2026-05-04T10:30:00")


def test_updates_fix_the_next_repeat_of_every_contact_they_touch(start: Callable[..., Server]) -> None:
    server = start()
    first = record("a", "k1", "2026-05-04T10:00:00Z", ended_at="2026-05-04T10:10:00Z")
    second = record("b", "k1", "2026-05-05T09:00:00Z")
    third = record("c", "k2", "2026-05-06T09:00:00Z")
    assert server.post([first, second, third]).status_code == 200
    assert server.next_repeat("ca") == us("2026-05-05T09:00:00")
    assert server.next_repeat("cb") is None

    # The repeat changes customer: k1's first contact loses it, k2 gains a repeat of cb... after cb's start.
    second["customer_id"] = "k2"
    assert server.post(second).json()["updated"] == 1
    assert server.next_repeat("ca") is None
    assert server.next_repeat("cb") == us("2026-05-06T09:00:00")

    # A changed start moves cc before cb: now cc is followed by cb, and cb by nothing.
    third["started_at"] = "2026-05-04T12:00:00Z"
    assert server.post(third).json()["updated"] == 1
    assert server.next_repeat("cc") == us("2026-05-05T09:00:00")
    assert server.next_repeat("cb") is None

    # A changed end keeps the derived start (the window test uses end_us) but is stored.
    third["ended_at"] = "2026-05-04T13:00:00Z"
    assert server.post(third).json()["updated"] == 1
    stored = server.store.get_contact("api", "cc")
    assert stored is not None
    assert (stored["end_us"], stored["next_repeat_us"]) == (us("2026-05-04T13:00:00"), us("2026-05-05T09:00:00"))

    # Back to customer k1: ca's repeat is cb again.
    second["customer_id"] = "k1"
    server.post(second)
    assert server.next_repeat("ca") == us("2026-05-05T09:00:00")


def test_naive_timestamps_are_wall_time_in_bot_timezone_across_dst(start: Callable[..., Server]) -> None:
    server = start(bot_timezone="America/New_York")
    response = server.post(
        [
            record("before", started="2026-03-08 01:30:00"),  # EST, UTC-5
            record("after", started="2026-03-08T03:30:00"),  # EDT, UTC-4 (02:00-03:00 does not exist)
            record("fall", started="2026-11-01 01:30:00"),  # ambiguous: the first occurrence, EDT
            record("offset", started="2026-03-08T02:30:00Z"),  # an explicit offset is not reinterpreted
        ]
    )
    assert response.status_code == 200, response.text
    assert server.store.get_contact("api", "cbefore")["started_us"] == us("2026-03-08T06:30:00")  # type: ignore[index]
    assert server.store.get_contact("api", "cafter")["started_us"] == us("2026-03-08T07:30:00")  # type: ignore[index]
    assert server.store.get_contact("api", "cfall")["started_us"] == us("2026-11-01T05:30:00")  # type: ignore[index]
    assert server.store.get_contact("api", "coffset")["started_us"] == us("2026-03-08T02:30:00")  # type: ignore[index]

    gap = server.post([record("gap", started="2026-03-08 02:30:00")])
    assert gap.status_code == 422
    [problem] = gap.json()["details"]
    assert (problem["index"], problem["id"], problem["field"]) == (0, "cgap", "started_at")
    assert "does not exist" in problem["message"]


@pytest.mark.slow
def test_concurrent_senders_are_all_stored(start: Callable[..., Server]) -> None:
    server = start()
    answers: list[int] = []

    def send(worker: int) -> None:
        with httpx.Client(base_url=server.url) as client:
            for n in range(15):
                body = orjson.dumps(record(f"{worker}-{n}", customer=f"k{n % 3}"))
                headers = {"Content-Type": JSON, **signed_headers(SECRET, body)}
                answers.append(client.post(PATH, content=body, headers=headers).status_code)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 90
    assert server.store.count_contacts() == 90


def _contacts(*records: dict[str, Any]) -> list[Contact]:
    return [valid(r) for r in records]


def test_group_commit_counts_each_request_as_if_it_were_alone(store: ContactStore) -> None:
    coalescer = WriteCoalescer(store)
    results: dict[int, UpsertCounts] = {}
    batches = {n: _contacts(*(record(i, customer=f"k{i % 5}") for i in range(n, n + 10))) for n in range(0, 50, 5)}

    def send(n: int) -> None:
        results[n] = coalescer.upsert(batches[n])

    with coalescer._writer_lock:  # hold the writer so that every request queues up and they share one group
        threads = [threading.Thread(target=send, args=(n,)) for n in batches]
        for thread in threads:
            thread.start()
        while len(coalescer._queue) < len(batches):
            time.sleep(0.001)
    for thread in threads:
        thread.join()
    # Overlapping batches: each record is inserted once in all, the overlaps are unchanged re-deliveries.
    assert sum(c.inserted for c in results.values()) == 55 == store.count_contacts()
    assert sum(c.unchanged for c in results.values()) == 100 - 55
    assert all(c.accepted == 10 for c in results.values())


def test_a_group_of_requests_with_no_key_in_common_is_written_in_one_call_each_counted_as_if_alone(
    store: ContactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store whose writer takes parts (PostgreSQL: ``add_parts``) gets the group's requests in one call; each
    request's counts are still its own (new, re-delivered, changed, older), as the same requests sent in turn."""
    store.upsert(_contacts(record(1), record(2), record(3, updated_at="2026-05-04T12:00:00Z")))
    batches = {
        "new and unchanged": _contacts(record(10), record(1)),
        "changed and new": _contacts(record(2, agent="ana"), record(11), record(12)),
        "older": _contacts(record(3, agent="ben", updated_at="2026-05-04T11:00:00Z"), record(13)),
    }
    calls: list[int] = []
    writes_parts = False
    bulk = store.bulk

    @contextmanager
    def watched(expected_rows: int = 0) -> Iterator[Any]:
        nonlocal writes_parts
        with bulk(expected_rows) as writer:
            if writes_parts := isinstance(writer, coalesce.AddsParts):
                add_parts = writer.add_parts

                def counted(parts: Any) -> list[UpsertCounts]:
                    calls.append(len(parts))
                    return add_parts(parts)

                monkeypatch.setattr(writer, "add_parts", counted)
            yield writer

    monkeypatch.setattr(store, "bulk", watched)
    results = _send_as_one_group(WriteCoalescer(store), batches)
    assert results == {
        "new and unchanged": UpsertCounts(inserted=1, unchanged=1),
        "changed and new": UpsertCounts(inserted=2, updated=1),
        "older": UpsertCounts(inserted=1, stale=1),
    }
    assert writes_parts == isinstance(store, PostgresContactStore)
    assert calls == ([3] if writes_parts else [])
    stored = store.get_contact("api", "c2")
    assert stored is not None and stored["agent"] == "ana"
    stored = store.get_contact("api", "c3")
    assert stored is not None and stored["agent"] == "maria"
    assert store.count_contacts() == 7


def _send_as_one_group(coalescer: WriteCoalescer, batches: dict[str, list[Contact]]) -> dict[str, object]:
    """Each batch from its own thread, all queued before the writer starts (so that they share one group):
    each one's counts, or what it raised."""
    outcomes: dict[str, object] = {}

    def send(name: str) -> None:
        try:
            outcomes[name] = coalescer.upsert(batches[name])
        except Exception as failure:
            outcomes[name] = failure

    with coalescer._writer_lock:
        threads = [threading.Thread(target=send, args=(name,)) for name in batches]
        for thread in threads:
            thread.start()
        while len(coalescer._queue) < len(batches):
            time.sleep(0.001)
    for thread in threads:
        thread.join()
    return outcomes


def _counting_transactions(store: ContactStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The expected sizes of the write transactions ``store.bulk`` opens from now on (the real ones: it is only
    watched)."""
    opened: list[int] = []
    bulk = store.bulk

    def watched(expected_rows: int = 0) -> Any:
        opened.append(expected_rows)
        return bulk(expected_rows)

    monkeypatch.setattr(store, "bulk", watched)
    return opened


def _upsert_in_thread(coalescer: WriteCoalescer, contacts: list[Contact]) -> tuple[threading.Thread, list[Any]]:
    """``coalescer.upsert(contacts)`` started in a thread of its own; the list gets its counts (or what it raised)."""
    outcome: list[Any] = []

    def send() -> None:
        try:
            outcome.append(coalescer.upsert(contacts))
        except Exception as failure:
            outcome.append(failure)

    thread = threading.Thread(target=send)
    thread.start()
    return thread, outcome


def _second_queued_while_the_first_is_written(
    coalescer: WriteCoalescer, monkeypatch: pytest.MonkeyPatch, first: list[Contact], second: list[Contact]
) -> tuple[Any, Any]:
    """``first`` sent, and ``second`` sent while ``first`` is being written (queued before its write goes on):
    what each ``upsert`` returned (or raised)."""
    writing, go_on = threading.Event(), threading.Event()
    real_counted_add = coalesce.counted_add

    def counted_add(writer: Any, contacts: Any) -> UpsertCounts:
        writing.set()  # the first request is being written: the second queues meanwhile
        assert go_on.wait(30)
        return real_counted_add(writer, contacts)

    monkeypatch.setattr(coalesce, "counted_add", counted_add)
    first_thread, first_outcome = _upsert_in_thread(coalescer, first)
    assert writing.wait(30)
    second_thread, second_outcome = _upsert_in_thread(coalescer, second)
    while not coalescer._queue:
        time.sleep(0.001)
    go_on.set()
    first_thread.join()
    second_thread.join()
    return first_outcome[0], second_outcome[0]


def test_requests_queued_while_a_group_is_written_join_its_transaction(
    store: ContactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    transactions = _counting_transactions(store, monkeypatch)
    coalescer = WriteCoalescer(store)
    first, second = _second_queued_while_the_first_is_written(
        coalescer, monkeypatch, _contacts(record(1)), _contacts(record(1), record(2))
    )
    assert first == UpsertCounts(inserted=1) and second == UpsertCounts(inserted=1, unchanged=1)
    assert transactions == [1] and store.count_contacts() == 2  # one transaction, counted as if sent in turn


def test_a_queued_request_that_would_overfill_the_group_waits_for_the_next_transaction(
    store: ContactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    transactions = _counting_transactions(store, monkeypatch)
    coalescer = WriteCoalescer(store, max_group_contacts=2)
    first, second = _second_queued_while_the_first_is_written(
        coalescer,
        monkeypatch,
        _contacts(record(1)),
        _contacts(record(2), record(3)),  # 1 + 2 > 2
    )
    assert first == UpsertCounts(inserted=1) and second == UpsertCounts(inserted=2)
    assert transactions == [1, 2] and store.count_contacts() == 3


def test_a_full_group_stays_a_small_write_for_every_store() -> None:
    """A group at its cap is still written as a webhook batch: PostgreSQL takes a write of WINDOW_PASS_MIN_ROWS
    rows or more for an import (whole customer histories, worked out under its derive lock)."""
    from bot.storage import postgres

    default_cap = inspect.signature(WriteCoalescer).parameters["max_group_contacts"].default
    assert default_cap < postgres.WINDOW_PASS_MIN_ROWS


def test_group_commit_isolates_a_failing_batch(store: ContactStore) -> None:
    [valid] = _contacts(record(4))
    broken = [valid._replace(ended_us=valid.started_us - 1)]  # the database's CHECK refuses it
    batches = {"one": _contacts(record(1)), "broken": broken, "two": _contacts(record(2), record(3))}
    outcomes = _send_as_one_group(WriteCoalescer(store), batches)
    assert outcomes["one"] == UpsertCounts(inserted=1) and outcomes["two"] == UpsertCounts(inserted=2)
    assert isinstance(outcomes["broken"], sqlite3.IntegrityError | psycopg.IntegrityError)
    assert store.count_contacts() == 3 and store.get_contact("api", "c4") is None


def test_a_failed_group_s_packed_request_is_written_whole_when_written_alone(db_path: Path) -> None:
    """A platform request's contacts come as ``PackedContacts`` with raws compressed as the store keeps them: when
    its group fails and it is written alone (by ``upsert``), they are never taken apart into Contacts: the
    store would keep their packed raws as they are without storing the packer's new dictionary, and they could
    never be read back."""
    store = SQLiteContactStore(db_path)
    try:
        samples = [(contact.raw, contact.customer_id) for contact in raw_contacts(TRAIN_SAMPLES)]
        packer = store.raw_packer(samples)  # a new dictionary: the write of the first chunk it packed stores it
        assert packer is not None
        sent = [contact._replace(id=f"packed-{contact.id}") for contact in raw_contacts(3, note="packed")]
        values: list[Any] = []
        for contact in sent:
            row: list[Any] = list(contact)
            row[Contact._fields.index("raw")] = packer.pack(contact.raw.encode())
            values += row
        [valid] = _contacts(record(4))
        broken = [valid._replace(ended_us=valid.started_us - 1)]  # the database's CHECK refuses it
        packed = cast("list[Contact]", PackedContacts(values, packer))
        outcomes = _send_as_one_group(WriteCoalescer(store), {"packed": packed, "broken": broken})
        assert outcomes["packed"] == UpsertCounts(inserted=3) and isinstance(outcomes["broken"], sqlite3.IntegrityError)
    finally:
        store.close()
    reopened = SQLiteContactStore(db_path)  # (reads the dictionaries from the file)
    try:
        for contact in sent:
            got = reopened.get_contact(contact.source, contact.id)
            assert got is not None and got["raw"] == contact.raw
    finally:
        reopened.close()


ABORT_WRITES = """
CREATE SEQUENCE aborted_writes;
CREATE FUNCTION abort_writes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('aborted_writes') <= 3 THEN
        RAISE EXCEPTION 'deadlock detected (made by the test)' USING ERRCODE = 'deadlock_detected';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER abort_writes BEFORE UPDATE ON store_stats FOR EACH ROW WHEN (OLD.name = 'contacts')
    EXECUTE FUNCTION abort_writes();
"""


def test_group_commit_writes_again_what_postgresql_aborted_as_upsert_does(postgres_url: str) -> None:
    """PostgreSQL aborts a transaction caught in a deadlock (SQLSTATE 40P01), and ``upsert`` runs it again; the
    requests of a group must keep that. A real deadlock is not deterministic: here the server raises 40P01 in each
    write's last statement (the count of contacts), for the next 3 writes (a sequence: rollbacks keep its count):
    the group's, then twice the first request's alone."""
    store = open_store(postgres_url)
    try:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(ABORT_WRITES)
        coalescer = WriteCoalescer(store)
        outcomes = _send_as_one_group(coalescer, {"one": _contacts(record(1)), "two": _contacts(record(2), record(3))})
        assert outcomes == {"one": UpsertCounts(inserted=1), "two": UpsertCounts(inserted=2)}

        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("ALTER SEQUENCE aborted_writes RESTART")
        assert coalescer.upsert(_contacts(record(4))).inserted == 1  # a lone request: aborted 3 times as well
        assert store.count_contacts() == 4
    finally:
        store.close()


# --- refused requests ---------------------------------------------------------------------------------------


def test_missing_secret_refuses_everything_with_how_to_set_it(start: Callable[..., Server]) -> None:
    server = start(webhook_secret=None)
    response = server.post(record(1))
    assert response.status_code == 503
    assert "WEBHOOK_SECRET" in response.json()["error"] and "secrets.token_hex" in response.json()["error"]
    assert server.post(record(1), signed=False).status_code == 503
    assert server.store.count_contacts() == 0
    assert "disabled" in server.client.get("/healthz").json()["webhook"]


def test_a_wrong_secret_or_a_changed_body_is_401(start: Callable[..., Server]) -> None:
    server = start()
    wrong = server.post(record(1), secret="not-the-secret")
    assert wrong.status_code == 401 and "does not match" in wrong.json()["error"]
    body = orjson.dumps(record(1))
    headers = {"Content-Type": JSON, **signed_headers(SECRET, body)}
    tampered = server.client.post(PATH, content=body.replace(b"k1", b"k2"), headers=headers)
    assert tampered.status_code == 401
    assert server.store.count_contacts() == 0


@pytest.mark.parametrize("skew", [-MAX_SKEW_SECONDS - 5, MAX_SKEW_SECONDS + 5])
def test_a_stale_or_future_timestamp_is_401(start: Callable[..., Server], skew: int) -> None:
    server = start()
    response = server.post(record(1), timestamp=int(time.time()) + skew)
    assert response.status_code == 401
    assert ("in the future" if skew > 0 else "old") in response.json()["error"]
    assert server.post(record(1), timestamp=int(time.time()) + skew // 2).status_code == 200


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Signature-Timestamp": None}, "missing X-Signature-Timestamp"),
        ({"X-Signature": None}, "missing X-Signature header"),
        ({"X-Signature-Timestamp": "yesterday"}, "whole unix seconds"),
        ({"X-Signature": "sha256=abc"}, "'v0=' followed by 64 hex digits"),
    ],
)
def test_missing_or_garbled_signature_headers_are_401(
    start: Callable[..., Server], headers: dict[str, str | None], expected: str
) -> None:
    server = start()
    body = orjson.dumps(record(1))
    sent: dict[str, str] = {"Content-Type": JSON, **signed_headers(SECRET, body)}
    for name, value in headers.items():
        sent.pop(name)
        if value is not None:
            sent[name] = value
    response = server.client.post(PATH, content=body, headers=sent)
    assert response.status_code == 401
    assert expected in response.json()["error"]


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, "unsupported content type 'none': send application/json"),
        ("text/plain", "unsupported content type 'text/plain': send application/json"),
        ("application/x-www-form-urlencoded", "or application/x-ndjson (one object per line)"),
        ("application/json; charset=latin-1", "unsupported charset 'latin-1': JSON must be sent as UTF-8"),
    ],
)
def test_other_content_types_are_415(start: Callable[..., Server], content_type: str | None, expected: str) -> None:
    server = start()
    response = server.post(record(1), content_type)
    assert response.status_code == 415
    assert expected in response.json()["error"]
    assert server.store.count_contacts() == 0


def test_the_signature_is_checked_before_the_content_type(start: Callable[..., Server]) -> None:
    assert start().post(record(1), "text/plain", secret="wrong").status_code == 401


@pytest.mark.parametrize(
    ("body", "content_type", "where"),
    [
        (b'[{"id": "c1",}]', JSON, "line 1, column 13"),
        (b'{"id": "c1"}\n{"id": "c2"}', JSON, "application/x-ndjson"),
        (b'{"id": "c1"}\n{"id": "c2"}\n{"id": \n', NDJSON, "line 3, column 8"),
        (b"", JSON, "empty"),
        (b"42", JSON, "got int"),
        (b'"text"', JSON, "got string"),
        (b'{"id": "\xff"}', JSON, "UTF-8"),
    ],
)
def test_malformed_bodies_are_400_and_say_where(
    start: Callable[..., Server], body: bytes, content_type: str, where: str
) -> None:
    server = start()
    response = server.post(body, content_type)
    assert response.status_code == 400
    assert where in response.json()["error"]
    assert server.store.count_contacts() == 0


def test_one_invalid_record_in_500_is_422_listing_it_and_nothing_is_stored(start: Callable[..., Server]) -> None:
    server = start()
    batch = [record(i, customer=f"k{i % 40}") for i in range(500)]
    batch[137]["started_at"] = "2026-13-01T00:00:00Z"
    response = server.post(batch)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "1 of 500 records is invalid; nothing was stored"
    [problem] = body["details"]
    assert problem["index"] == 137 and problem["id"] == "c137" and problem["field"] == "started_at"
    assert "line" not in problem and problem["message"]
    assert server.store.count_contacts() == 0
    assert server.store.get_contact("api", "c0") is None


def test_a_tier_the_store_cannot_hold_or_a_nul_is_422_naming_record_and_field(start: Callable[..., Server]) -> None:
    """Defect 4: a tier of 2^63 passed validation, the write failed, and the whole batch got 500 (retried forever)."""
    server = start()
    batch = [record(0), record(1, tier=2**63), record(2, team="bil\u0000ling"), record(3, tier=2**63 - 1)]
    response = server.post(batch)
    assert response.status_code == 422, response.text
    details = response.json()["details"]
    assert [(d["index"], d["id"], d["field"]) for d in details] == [(1, "c1", "tier"), (2, "c2", "team")]
    assert details[0]["message"] == "must be at most 9223372036854775807 (2^63 - 1), got 9223372036854775808"
    assert details[1]["message"] == "contains a NUL character (\\u0000) at position 4"
    assert server.store.count_contacts() == 0
    assert server.post([record(0), record(3, tier=2**63 - 1)]).status_code == 200


def test_a_batch_during_a_long_import_gets_503_with_retry_after_then_succeeds(
    start: Callable[..., Server], database_url: str
) -> None:
    """Defect 5: an import holds the write lock for its whole file (atomic per file); a webhook batch waited for
    the busy timeout and got 500 "database is locked". Now: a retryable 503 with Retry-After, nothing stored."""
    if not database_url.startswith("sqlite:"):
        pytest.skip("SQLite's whole-database write lock; PostgreSQL stores a batch during an import at once")
    server = start(sqlite_busy_timeout_ms=300)
    importer = open_store(database_url)  # another process's `acr-bot ingest`, mid-file
    try:
        with importer.bulk() as writer:
            parsed = parse_contact(record("imported"), UTC)
            assert isinstance(parsed, Contact)
            writer.add([parsed])
            response = server.post([record(1), record(2)])
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "5"
            assert "busy with another write" in response.json()["error"]
            assert "nothing was written" in response.json()["error"]
        retried = server.post([record(1), record(2)])
        assert retried.status_code == 200 and retried.json()["inserted"] == 2
        assert server.store.count_contacts() == 3
    finally:
        importer.close()


def test_a_full_disk_is_503_saying_so(start: Callable[..., Server], database_url: str) -> None:
    """Defect 10: a full disk was a 500 "cannot rollback - no transaction is active" (the real error was lost)."""
    if not database_url.startswith("sqlite:"):
        pytest.skip("fills the disk through SQLite's page limit")
    server = start()
    assert server.post([record(0)]).status_code == 200
    # The disk fills up: SQLite's page limit on the server's writer connection gives the same SQLITE_FULL.
    from bot.storage.sqlite import SQLiteContactStore

    writer = cast(SQLiteContactStore, server.store)._writer
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    writer.execute(f"PRAGMA max_page_count = {pages}")
    big = [record(i, customer=f"k{i}", reason="r" * 900) for i in range(1, 400)]
    response = server.post(big)
    assert response.status_code == 503, response.text
    assert "is full; nothing was written" in response.json()["error"] and "rollback" not in response.text
    assert response.headers["Retry-After"] == "60"
    writer.execute("PRAGMA max_page_count = 1073741823")
    assert server.post(big).status_code == 200


def test_numeric_ids_are_stored_as_their_decimal_text(start: Callable[..., Server]) -> None:
    server = start()
    response = server.post({"id": 90817, "customer_id": 5550100, "started_at": "2026-05-04T10:00:00Z"})
    assert response.status_code == 200, response.text
    stored = server.store.get_contact("api", "90817")
    assert stored is not None and stored["customer_id"] == "5550100"


def test_every_bad_record_is_listed_with_its_ndjson_line(start: Callable[..., Server]) -> None:
    server = start()
    lines = [
        orjson.dumps(record(0)),
        b"",
        orjson.dumps({"customer_id": "k1", "started_at": "2026-05-04T10:00:00Z"}),  # no id
        orjson.dumps(record(3, started="2026-05-04T10:00:00Z", ended_at="2026-05-04T09:00:00Z", channel="fax")),
        b"[1, 2]",
        orjson.dumps(record(5)),
    ]
    response = server.post(b"\n".join(lines), NDJSON)
    assert response.status_code == 422
    assert response.json()["error"] == "3 of 5 records are invalid; nothing was stored"
    details = response.json()["details"]
    assert [(d["index"], d["line"], d.get("id"), d["field"]) for d in details] == [
        (1, 3, None, "id"),
        (2, 4, "c3", "channel"),
        (2, 4, "c3", "ended_at"),
        (3, 5, None, "record"),
    ]
    assert "fax" in details[1]["message"] and "before started_at" in details[2]["message"]
    assert server.store.count_contacts() == 0


def test_a_flood_of_bad_records_lists_the_first_thousand_problems(start: Callable[..., Server]) -> None:
    response = start().post([{"id": f"x{i}", "customer_id": "k"} for i in range(1500)])  # no started_at
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == (
        "1500 of 1500 records are invalid; nothing was stored (the first 1000 problems are listed)"
    )
    assert len(body["details"]) == 1000 and body["details"][-1]["index"] == 999


# --- body size limit ----------------------------------------------------------------------------------------

LIMIT = 4096


def _sized_body(size: int) -> bytes:
    """A valid one-record JSON body of exactly ``size`` bytes (padded inside an unknown field)."""
    base = orjson.dumps({**record(1), "pad": ""})
    return base.replace(b'"pad":""', b'"pad":"' + b"x" * (size - len(base)) + b'"')


def test_a_body_at_the_limit_is_accepted_and_one_byte_more_is_413(start: Callable[..., Server]) -> None:
    server = start(webhook_max_body_bytes=LIMIT)
    assert server.post(_sized_body(LIMIT)).status_code == 200
    response = server.post(_sized_body(LIMIT + 1))
    assert response.status_code == 413
    assert "WEBHOOK_MAX_BODY_BYTES (4096 bytes)" in response.json()["error"]


def test_an_oversized_chunked_body_without_content_length_is_413(start: Callable[..., Server]) -> None:
    server = start(webhook_max_body_bytes=LIMIT)
    body = _sized_body(LIMIT * 4)

    def chunks() -> Iterator[bytes]:
        for at in range(0, len(body), 1000):
            yield body[at : at + 1000]

    headers = {"Content-Type": JSON, **signed_headers(SECRET, body)}
    response = server.client.post(PATH, content=chunks(), headers=headers)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert server.store.count_contacts() == 0
    # A chunked body within the limit is fine.
    small = _sized_body(LIMIT)
    headers = {"Content-Type": JSON, **signed_headers(SECRET, small)}
    assert server.client.post(PATH, content=iter([small[:100], small[100:]]), headers=headers).status_code == 200


def _raw_exchange(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


def test_a_lying_content_length_cannot_smuggle_a_large_body(start: Callable[..., Server]) -> None:
    server = start(webhook_max_body_bytes=LIMIT)
    body = _sized_body(LIMIT * 3)
    head = {"Content-Type": JSON, **signed_headers(SECRET, body)}
    lines = [f"POST {PATH} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in head.items())]
    # Claims 100 bytes: the server reads exactly 100, so the signature (over the whole body) cannot match (401),
    # and the rest is not a request at all (the HTTP parser answers 400; which answer comes first depends on it).
    short = "\r\n".join([*lines, "Content-Length: 100", "", ""]).encode() + body
    answer = _raw_exchange(server.url, short)
    assert answer.startswith((b"HTTP/1.1 401 ", b"HTTP/1.1 400 ")), answer[:200]
    # Claims more than the limit: refused at once, before any of the body is read.
    large = "\r\n".join([*lines, f"Content-Length: {LIMIT * 1000}", "", ""]).encode() + body
    answer = _raw_exchange(server.url, large)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert server.store.count_contacts() == 0


# --- health, routing, errors ---------------------------------------------------------------------------------


def test_healthz_reports_the_count_and_what_an_operator_needs(start: Callable[..., Server], database_url: str) -> None:
    server = start(bot_timezone="Europe/Berlin")
    server.post([record(1), record(2)])
    health = server.client.get("/healthz")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["contacts"] == 2
    assert body["database"] == database_url.split(":", 1)[0]  # the backend, never the URL (it may hold a password)
    assert body["timezone"] == "Europe/Berlin" and body["webhook"] == "enabled"
    assert body["scheduler"] == "disabled"  # this app runs no scheduler
    assert body["version"]


def test_healthz_is_503_when_the_database_does_not_answer(start: Callable[..., Server], database_url: str) -> None:
    server = start()
    db_path = sqlite_path(database_url)
    for path in db_path.parent.glob(db_path.name + "*"):
        path.unlink()  # the database file disappears under the running server (a lost volume, say)
    down = server.client.get("/healthz")
    assert down.status_code == 503
    assert down.json()["status"] == "error" and "does not answer" in down.json()["error"]


def test_unknown_paths_and_methods_get_json_errors(start: Callable[..., Server]) -> None:
    server = start()
    missing = server.client.get("/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "no such endpoint: GET /nope"}
    wrong_method = server.client.get(PATH)
    assert wrong_method.status_code == 405 and "GET" in wrong_method.json()["error"]


def test_an_unexpected_exception_is_a_json_500_with_a_logged_request_id(
    start: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    server = start()
    response = server.client.get("/boom")
    assert response.status_code == 500
    rid = response.headers["x-request-id"]
    assert response.json()["request_id"] == rid
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert any(rid in r.getMessage() and r.exc_info for r in caplog.records)


def test_extra_routes_and_lifespan_hooks_are_composed(start: Callable[..., Server]) -> None:
    server = start()
    assert server.events == ["startup"]


# --- the signature scheme itself ----------------------------------------------------------------------------


def test_verify_accepts_exactly_300_seconds_of_skew_each_way() -> None:
    body = b'{"id": "c1"}'
    now = 1_800_000_000
    for stamp in (now - 300, now + 300):
        verify(SECRET, body, str(stamp), sign(SECRET, stamp, body), clock=lambda: now)
    for stamp in (now - 301, now + 301):
        with pytest.raises(SignatureError):
            verify(SECRET, body, str(stamp), sign(SECRET, stamp, body), clock=lambda: now)


def test_sign_matches_the_documented_formula() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"v0:1700000000:{}", hashlib.sha256).hexdigest()
    assert sign("k", 1700000000, b"{}") == f"v0={expected}"
    assert sign("k", 1700000000, b"{}").upper().replace("V0=", "v0=") != sign("k", 1700000001, b"{}")


@pytest.mark.slow
@given(secret=st.binary(min_size=1, max_size=64), body=st.binary(max_size=512), data=st.data())
def test_a_signature_holds_for_its_body_only(secret: bytes, body: bytes, data: st.DataObject) -> None:
    stamp = 1_700_000_000
    signature = sign(secret, stamp, body)
    verify(secret, body, str(stamp), signature, clock=lambda: stamp)
    verify(secret, body, str(stamp), signature.upper().replace("V0=", "v0="), clock=lambda: stamp)
    changed = data.draw(st.binary(max_size=512).filter(lambda other: other != body), label="changed body")
    with pytest.raises(SignatureError):
        verify(secret, changed, str(stamp), signature, clock=lambda: stamp)
    with pytest.raises(SignatureError):
        verify(secret, body, str(stamp + 1), signature, clock=lambda: stamp)


_json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
_json_values = _json_scalars | st.lists(_json_scalars, max_size=3)


@pytest.mark.slow
@given(st.lists(st.dictionaries(st.text(max_size=8), _json_values, max_size=4), max_size=6))
def test_array_and_ndjson_bodies_decode_to_the_same_records(records: list[dict[str, Any]]) -> None:
    as_array = decode_body(orjson.dumps(records), ndjson=False) if records else Decoded([])
    as_lines = decode_body(ndjson(records), ndjson=True) if records else Decoded([], [])
    assert as_array.values == records == as_lines.values
    assert as_array.lines is None and as_lines.lines == list(range(1, len(records) + 1))
    if len(records) == 1:
        assert decode_body(orjson.dumps(records[0]), ndjson=False) == Decoded([records[0]])


def test_decode_body_refuses_a_scalar() -> None:
    with pytest.raises(MalformedBody, match="object or an array"):
        decode_body(b"null", ndjson=False)


# --- the README's examples work as written ------------------------------------------------------------------


def _readme_block(language: str) -> str:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Webhook\n", 1)[1].split("\n## ", 1)[0]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("language", ["sh", "python"])
def test_the_readme_signing_examples_are_accepted(
    start: Callable[..., Server], language: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    server = start()
    code = _readme_block(language).replace("http://127.0.0.1:3000", server.url)
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    command = ["bash", "-euc", code] if language == "sh" else [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    assert '"inserted":' in result.stdout and '"updated":0' in result.stdout, result.stdout + result.stderr
    assert server.store.count_contacts() == (1 if language == "sh" else 2)
