"""Platform requests decoded in worker processes (``PLATFORM_DECODE_WORKERS``, ``bot.platforms.decoding``): over
real HTTP into the real app and a real SQLite file, with Firehose deliveries of the CTR of
``tests/payloads/amazon-connect-ctr-inbound.json`` (its source: tests/test_amazon_connect.py)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest

from bot.platforms import decoding
from bot.platforms.decoding import WorkerDecoders
from bot.roster import RosterEntry
from tests.platform_support import App
from tests.test_amazon_connect import KEY, SOURCE, assert_firehose_answer, deliver, envelope, synthetic_ctr


def ctr(number: int, **changes: Any) -> dict[str, Any]:
    """The inbound CTR as contact ``decoded-<number>`` (of one of 97 customers), changed as given."""
    return {**synthetic_ctr(0, 0, number), "ContactId": f"decoded-{number}", **changes}


def stored_counter(app: App, result: str) -> float:
    """``acr_records_stored_total{result=...}`` now (counters are per process: compare before and after)."""
    line = f'acr_records_stored_total{{result="{result}"}} '
    found = [row for row in app.client.get("/metrics").text.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


@pytest.mark.parametrize("workers", [0, 1])
def test_deliveries_are_stored_whole_with_raws_packed_as_the_store_keeps_them(
    start_app: Callable[..., App], db_path: Path, workers: int
) -> None:
    """The first delivery's raws train the store's dictionary (in the write); later deliveries are packed with it
    where they are decoded, and every raw reads back as sent, repeats and new versions counted as before."""
    app = start_app(connect_firehose_access_key=KEY, platform_decode_workers=workers)
    assert isinstance(app.decoders, WorkerDecoders) == (workers > 0)
    first = [ctr(number) for number in range(250)]
    assert deliver(app, envelope(first)).status_code == 200
    unchanged, updated = stored_counter(app, "unchanged"), stored_counter(app, "updated")
    newer = ctr(1, Attributes={"reason": "billing"}, LastUpdateTimestamp="2027-01-01T00:00:00Z")
    second = [ctr(number) for number in range(250, 270)] + [first[0], newer]
    delivery = envelope(second)
    assert_firehose_answer(deliver(app, delivery), 200, delivery["requestId"])
    assert (stored_counter(app, "unchanged") - unchanged, stored_counter(app, "updated") - updated) == (1, 1)

    expected = {item["ContactId"]: item for item in [*first, *second]}
    for contact_id, sent in expected.items():
        contact = app.store.get_contact(SOURCE, contact_id)
        assert contact is not None and contact["raw"] == delivery_text(sent), contact_id
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM raw_dictionaries").fetchone() == (1,)
        ids = [item["ContactId"] for item in second]
        kinds = conn.execute(
            f"SELECT DISTINCT typeof(raw) FROM contacts WHERE id IN ({', '.join('?' * len(ids))})", ids
        ).fetchall()
    assert kinds == [("blob",)]  # compressed (a CTR is ~2.5 KB)
    assert app.store.count_contacts() == 270


def delivery_text(item: dict[str, Any]) -> str:
    """A CTR's raw as the delivery carries it (``envelope`` encodes it with orjson)."""
    return orjson.dumps(item).decode()


def test_a_decoding_process_that_dies_fails_its_request_clearly_and_is_replaced(
    start_app: Callable[..., App],
) -> None:
    app = start_app(connect_firehose_access_key=KEY, platform_decode_workers=1)
    decoders = app.decoders
    assert isinstance(decoders, WorkerDecoders)
    assert deliver(app, envelope([ctr(0)])).status_code == 200
    (worker,) = decoders.pids()

    os.kill(worker, signal.SIGSTOP)  # the next delivery waits for it ...
    lost = envelope([ctr(1)])
    answers: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: answers.append(deliver(app, lost)))
    sender.start()
    time.sleep(0.3)
    assert not answers
    os.kill(worker, signal.SIGKILL)  # ... and it dies before decoding it
    sender.join(timeout=10)
    (answer,) = answers
    assert_firehose_answer(answer, 503, lost["requestId"], "stopped unexpectedly; nothing was stored, send it again")
    assert answer.headers["retry-after"] == "1"
    assert app.store.get_contact(SOURCE, "decoded-1") is None

    retried = deliver(app, lost)  # Firehose retries: a new process takes it
    assert_firehose_answer(retried, 200, lost["requestId"])
    assert app.store.get_contact(SOURCE, "decoded-1") is not None
    (replacement,) = decoders.pids()
    assert replacement != worker

    os.kill(replacement, signal.SIGKILL)  # one that dies between requests costs no request at all
    psutil.Process(replacement).wait(timeout=10)
    assert deliver(app, envelope([ctr(2)])).status_code == 200
    assert app.store.count_contacts() == 3


def stopped_worker(app: App) -> tuple[WorkerDecoders, int]:
    """The app's one decoding process, after a first delivery, stopped (SIGSTOP: as if deadlocked)."""
    decoders = app.decoders
    assert isinstance(decoders, WorkerDecoders)
    assert deliver(app, envelope([ctr(0)])).status_code == 200
    (worker,) = decoders.pids()
    os.kill(worker, signal.SIGSTOP)
    return decoders, worker


def test_a_decoding_process_that_never_answers_costs_its_request_a_503_at_the_deadline(
    start_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped (or deadlocked) process would hold the server's thread and the delivery forever: at the deadline
    its pool is killed and replaced, and the delivery is answered as for a process that died."""
    monkeypatch.setattr(decoding, "DECODE_DEADLINE_SECONDS", 1.0)
    app = start_app(connect_firehose_access_key=KEY, platform_decode_workers=1)
    decoders, worker = stopped_worker(app)
    try:
        lost = envelope([ctr(1)])
        started = time.monotonic()
        answer = deliver(app, lost)
        assert time.monotonic() - started < 4
        assert_firehose_answer(answer, 503, lost["requestId"], "longer than 1 s; nothing was stored, send it again")
        assert answer.headers["retry-after"] == "1"
        assert app.store.get_contact(SOURCE, "decoded-1") is None
        assert worker not in decoders.pids()

        assert_firehose_answer(deliver(app, lost), 200, lost["requestId"])  # Firehose retries: a new process
        assert app.store.get_contact(SOURCE, "decoded-1") is not None
    finally:
        if psutil.pid_exists(worker):
            os.kill(worker, signal.SIGKILL)


def test_closing_kills_a_decoding_process_that_does_not_stop(
    start_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's shutdown waits for ``close``: a stopped process must not make it wait forever."""
    monkeypatch.setattr(decoding, "CLOSE_SECONDS", 0.5)
    app = start_app(connect_firehose_access_key=KEY, platform_decode_workers=1)
    decoders, worker = stopped_worker(app)
    closing = threading.Thread(target=decoders.close, daemon=True)
    try:
        closing.start()
        closing.join(timeout=4)
        assert not closing.is_alive(), "close() is still waiting for the stopped process"
        assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE
    finally:
        if psutil.pid_exists(worker):
            os.kill(worker, signal.SIGKILL)


def test_a_connection_the_server_closes_is_closed_though_a_decoding_process_was_forked_meanwhile(
    start_app: Callable[..., App],
) -> None:
    """The processes are forked while connections are open; a copy of a connection's socket kept open in them
    would keep it open for its client after the server closed it."""
    app = start_app(connect_firehose_access_key=KEY, platform_decode_workers=1)
    host, port = app.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as held:
        held.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        assert held.recv(65536).startswith(b"HTTP/1.1 200 OK")
        assert deliver(app, envelope([ctr(0)])).status_code == 200  # the first delivery forks the process
        held.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := held.recv(65536):  # until the server's close arrives (a timeout fails the test)
            received += chunk
    assert b"200 OK" in received


def test_the_roster_goes_to_a_decoding_process_only_when_it_changes(
    start_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request is mapped through the roster of its time, but the roster's lookup (25 ms to pickle for 5,000
    agents) is sent to a process only when the process does not have it yet: after a change, once."""
    app = start_app(connect_firehose_access_key=KEY, platform_decode_workers=1)
    assert isinstance(app.decoders, WorkerDecoders)
    carried: list[bool] = []
    run = WorkerDecoders._run

    def spy(self: WorkerDecoders, job: tuple[Any, ...]) -> Any:
        carried.append(job[5] is not None)  # (name, headers, path, body, version, lookup or None, packer)
        return run(self, job)

    monkeypatch.setattr(WorkerDecoders, "_run", spy)
    username = ctr(0)["Agent"]["Username"]

    def agents_of(first: int) -> list[str]:
        numbers = range(first, first + 3)
        assert deliver(app, envelope([ctr(number) for number in numbers])).status_code == 200
        return [app.store.get_contact(SOURCE, f"decoded-{number}")["agent"] for number in numbers]  # type: ignore[index]

    app.store.replace_roster([RosterEntry("Maria Lopez", "billing", 2, ids=((SOURCE, username),))])
    assert agents_of(0) == ["Maria Lopez"] * 3
    assert carried == [False, True]  # the process answered NEEDS_ROSTER, then got it
    assert agents_of(3) == agents_of(6) == ["Maria Lopez"] * 3
    assert carried == [False, True, False, False]  # unchanged: not sent again
    app.store.replace_roster([RosterEntry("Maria Ruiz", "billing", 2, ids=((SOURCE, username),))])
    assert agents_of(9) == ["Maria Ruiz"] * 3  # a new roster applies from the next request
    assert carried == [False, True, False, False, False, True]
