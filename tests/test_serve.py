"""``acr-bot serve`` as a real process: graceful SIGTERM, and no acknowledged record lost to SIGKILL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from bot.http.signing import signed_headers
from bot.storage import open_store
from tests.store_support import as_contact, expected_next_repeats, stored_contacts

pytestmark = pytest.mark.slow  # every test runs `acr-bot serve` in its own process

SECRET = "serve-test-secret"
PATH = "/webhooks/interactions"
ACR_BOT = Path(sys.executable).with_name("acr-bot")
BASE_US = 1_780_000_000 * 1_000_000


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_serve(database_url: str, log: Path, **env: str) -> Process:
    """Run ``acr-bot serve --port 0`` and wait until it answers /healthz."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "WEBHOOK_SECRET": SECRET,
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with log.open("wb") as sink:
        proc = subprocess.Popen([str(ACR_BOT), "serve", "--port", "0"], env=environment, stdout=sink, stderr=sink)
    try:
        return Process(proc, _wait_until_healthy(proc, log), log)
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def _wait_until_healthy(proc: subprocess.Popen[bytes], log: Path) -> str:
    """The URL the server logged once /healthz answers 200."""
    deadline = time.monotonic() + 60  # a shared, loaded machine can take that long to import and start
    url = None
    while url is None:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        found = re.findall(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
        url = found[-1] if found else None
        time.sleep(0.02)
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Every server a test started is killed at the end, whatever happened."""
    started: list[Process] = []
    yield started
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


def batch_body(worker: int, number: int, size: int) -> tuple[list[str], bytes]:
    """A batch of ``size`` new contacts; customers overlap across batches so the derived data is exercised."""
    records = [
        {
            "id": f"w{worker}-b{number}-{i}",
            "customer_id": f"k{(number * size + i) % 97}",
            "agent": f"agent{i % 7}",
            "direction": "outbound" if i % 11 == 0 else "inbound",
            "started_at": (BASE_US + ((number * 7919 + i * 104729) % 10**6) * 60_000_000) / 1e6,
        }
        for i in range(size)
    ]
    return [str(r["id"]) for r in records], b"\n".join(orjson.dumps(r) for r in records)


@dataclass
class Sender:
    """A client thread that streams batches until the server goes away, remembering what was acknowledged."""

    url: str
    worker: int
    size: int = 50
    acknowledged: list[str] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    counts: list[dict[str, int]] = field(default_factory=list)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for number in range(100_000):
                ids, body = batch_body(self.worker, number, self.size)
                headers = {"Content-Type": "application/x-ndjson", **signed_headers(SECRET, body)}
                try:
                    response = client.post(PATH, content=body, headers=headers)
                except httpx.TransportError:
                    return
                self.answered.append(response.status_code)
                if response.status_code == 200:
                    self.counts.append(response.json())
                    self.acknowledged.extend(ids)
                else:
                    return


def check_store(database_url: str, acknowledged: list[str]) -> int:
    """Every acknowledged id is stored, and the stored data is consistent (count and derived next repeat)."""
    store = open_store(database_url)
    try:
        rows = list(stored_contacts(store))
        stored = {row["id"] for row in rows}
        missing = set(acknowledged) - stored
        assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:3]}"
        assert store.count_contacts() == len(rows) == len(stored)
        assert {row["id"]: row["next_repeat_us"] for row in rows} == expected_next_repeats(map(as_contact, rows))
        return len(rows)
    finally:
        store.close()


def test_sigterm_finishes_requests_in_flight_and_exits_0(
    database_url: str, tmp_path: Path, processes: list[Process]
) -> None:
    server = start_serve(database_url, tmp_path / "serve.log")
    processes.append(server)
    senders = [Sender(server.url, worker) for worker in range(3)]
    threads = [threading.Thread(target=sender.run) for sender in senders]
    for thread in threads:
        thread.start()

    # One request is half-sent when SIGTERM arrives: the server must wait for it and answer it.
    terminated = threading.Event()
    slow_ids, slow_body = batch_body(99, 0, 200)
    half = len(slow_body) // 2

    def slow_chunks() -> Iterator[bytes]:
        yield slow_body[:half]
        terminated.wait(10)
        time.sleep(0.3)  # let the server start shutting down
        yield slow_body[half:]

    slow_answer: list[httpx.Response] = []

    def slow_send() -> None:
        headers = {"Content-Type": "application/x-ndjson", **signed_headers(SECRET, slow_body)}
        with httpx.Client(base_url=server.url, timeout=30) as client:
            slow_answer.append(client.post(PATH, content=slow_chunks(), headers=headers))

    slow = threading.Thread(target=slow_send)
    slow.start()
    deadline = time.monotonic() + 30
    while sum(len(sender.acknowledged) for sender in senders) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # the slow request's first half has long reached the server
    server.proc.send_signal(signal.SIGTERM)
    terminated.set()
    assert server.proc.wait(timeout=30) == 0, server.log_text()
    for thread in [*threads, slow]:
        thread.join(timeout=30)

    assert slow_answer and slow_answer[0].status_code == 200, server.log_text()
    assert slow_answer[0].json()["inserted"] == 200
    acknowledged = slow_ids + [i for sender in senders for i in sender.acknowledged]
    assert sum(len(sender.acknowledged) for sender in senders) > 0
    check_store(database_url, acknowledged)
    log = server.log_text()
    assert "SIGTERM handled" in log and "stopped cleanly" in log
    assert "Traceback" not in log


def test_sigkill_mid_stream_loses_no_acknowledged_record(
    database_url: str, tmp_path: Path, processes: list[Process]
) -> None:
    server = start_serve(database_url, tmp_path / "serve.log")
    processes.append(server)
    senders = [Sender(server.url, worker, size=200) for worker in range(3)]
    threads = [threading.Thread(target=sender.run) for sender in senders]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while sum(len(sender.acknowledged) for sender in senders) < 1000 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.proc.kill()  # while the senders keep streaming: some batches are in flight, unanswered
    assert server.proc.wait(timeout=10) == -signal.SIGKILL
    for thread in threads:
        thread.join(timeout=30)
    acknowledged = [i for sender in senders for i in sender.acknowledged]
    assert len(acknowledged) >= 1000, "the clients should have streamed for a while before the kill"
    for sender in senders:  # every answered batch was new, and nothing but the kill stopped a sender
        assert all(counts["inserted"] == sender.size for counts in sender.counts), sender.counts
        assert set(sender.answered) <= {200}, sender.answered

    restarted = start_serve(database_url, tmp_path / "restarted.log")
    processes.append(restarted)
    health = httpx.get(restarted.url + "/healthz").json()
    stored = check_store(database_url, acknowledged)
    assert health["contacts"] == stored >= len(acknowledged)
    # The restarted server takes the same records again as unchanged (re-delivery after a crash is safe).
    # (a batch that was acknowledged: a sender may have had no answer at all before the kill)
    sender = next(sender for sender in senders if sender.acknowledged)
    _, body = batch_body(sender.worker, 0, sender.size)
    response = httpx.post(
        restarted.url + PATH,
        content=body,
        headers={"Content-Type": "application/x-ndjson", **signed_headers(SECRET, body)},
    )
    assert response.json() == {"accepted": 200, "inserted": 0, "updated": 0, "unchanged": 200, "stale": 0}
    restarted.proc.send_signal(signal.SIGINT)
    assert restarted.proc.wait(timeout=30) == 0


def test_a_port_in_use_is_one_clear_error(database_url: str, tmp_path: Path, processes: list[Process]) -> None:
    server = start_serve(database_url, tmp_path / "serve.log")
    processes.append(server)
    port = server.url.rsplit(":", 1)[1]
    result = subprocess.run(
        [str(ACR_BOT), "serve", "--port", port],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert f"Error: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
