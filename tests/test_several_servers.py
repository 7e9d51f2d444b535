"""Several ``acr-bot serve`` processes on one database: concurrent writes, and one scheduler at a time.

Two real servers on one PostgreSQL database receive interleaved batches for the same customers: the store equals
one ordered delivery. The scheduler's lease is tested on both backends (PostgreSQL: an advisory lock of a session;
SQLite: a file lock); the hand-over SIGKILLs the scheduler's server just before a digest is due: the other server
posts it, exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from bot.http.signing import signed_headers
from bot.scheduler.leader import SchedulerElection
from bot.storage import ContactStore
from bot.storage.postgres import PostgresContactStore, PostgresSchedulerLease
from bot.storage.schedules import SchedulerLease
from bot.storage.sqlite import SQLiteContactStore
from bot.storage.sqlite_lease import SQLiteSchedulerLease
from metrics.records import Contact, parse_contact
from metrics.timeutil import to_us
from tests.fake_slack import FakeSlack
from tests.scheduler_support import contacts_for
from tests.store_support import assert_candidates_mirror_contacts, stored_contacts
from tests.test_serve import PATH as WEBHOOK
from tests.test_serve import SECRET, Process, start_serve

T0 = 1_780_000_000  # 2026-05-28, epoch seconds


class Recorder:
    """A stand-in scheduler that records when it was started and stopped."""

    def __init__(self, events: list[str], name: str):
        self.events = events
        self.name = name

    def start(self) -> None:
        self.events.append(f"{self.name} start")

    def shutdown(self) -> None:
        self.events.append(f"{self.name} stop")

    def request_sync(self) -> None:
        self.events.append(f"{self.name} sync")


@pytest.fixture(params=["sqlite", "postgresql"])
def leases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[SchedulerLease, SchedulerLease]]:
    """Two leases on one database, as two processes would hold them."""
    if request.param == "sqlite":
        yield SQLiteSchedulerLease(tmp_path / "acr.db"), SQLiteSchedulerLease(tmp_path / "acr.db")
        return
    url = request.getfixturevalue("postgres_url")
    PostgresContactStore(url).close()  # the schema exists
    yield PostgresSchedulerLease(url), PostgresSchedulerLease(url)


def test_one_holder_at_a_time_and_the_next_takes_over(leases: tuple[SchedulerLease, SchedulerLease]) -> None:
    first, second = leases
    try:
        assert first.try_acquire() is True
        assert first.try_acquire() is True  # still held
        assert second.try_acquire() is False
        first.release()
        assert second.try_acquire() is True
        assert first.try_acquire() is False
    finally:
        first.release()
        second.release()


def test_a_released_lease_is_free_while_a_forked_child_lives_on(leases: tuple[SchedulerLease, SchedulerLease]) -> None:
    """The server forks its platform decoding workers (bot/platforms/decoding.py): a child that inherited the
    lease's descriptor or connection must not keep the lease once the server releases it."""
    first, second = leases
    assert first.try_acquire() is True
    child = os.fork()
    if child == 0:  # (a decoding worker: lives on, ends by os._exit)
        time.sleep(3)
        os._exit(0)
    try:
        first.release()
        assert second.try_acquire() is True
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        first.release()
        second.release()


def test_the_election_runs_the_scheduler_only_while_holding_the_lease(
    leases: tuple[SchedulerLease, SchedulerLease],
) -> None:
    events: list[str] = []
    a = SchedulerElection(leases[0], lambda: Recorder(events, "a"), poll_seconds=0.05)
    b = SchedulerElection(leases[1], lambda: Recorder(events, "b"), poll_seconds=0.05)
    a.start()
    b.start()
    try:
        assert (a.role, b.role) == ("leader", "standby")
        b.request_sync()  # a standby has nothing to reschedule
        a.request_sync()
        a.shutdown()
        deadline = time.monotonic() + 10
        while b.role != "leader":
            assert time.monotonic() < deadline, events
            time.sleep(0.02)
        assert events == ["a start", "a sync", "a stop", "b start"]
        assert a.role == "stopped"
    finally:
        a.shutdown()
        b.shutdown()
    assert events == ["a start", "a sync", "a stop", "b start", "b stop"]


def test_a_killed_holder_frees_the_postgresql_lease(postgres_url: str) -> None:
    PostgresContactStore(postgres_url).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from bot.storage.postgres import PostgresSchedulerLease as L; "
            "lease = L(sys.argv[1]); print(lease.try_acquire(), flush=True); time.sleep(600)",
            postgres_url,
        ],
        stdout=subprocess.PIPE,
    )
    other = PostgresSchedulerLease(postgres_url)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"True"
        assert other.try_acquire() is False
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        deadline = time.monotonic() + 10
        while not other.try_acquire():
            assert time.monotonic() < deadline, "the lease of a killed process was not freed"
            time.sleep(0.1)
    finally:
        other.release()
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def health(process: Process) -> dict[str, object]:
    response = httpx.get(process.url + "/healthz", timeout=5)
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_for_role(process: Process, role: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while health(process)["scheduler"] != role:
        assert time.monotonic() < deadline, process.log_text()
        time.sleep(0.1)


@pytest.mark.slow
def test_hand_over_posts_a_digest_due_after_the_schedulers_process_is_killed_exactly_once(
    postgres_url: str, tmp_path: Path
) -> None:
    store = PostgresContactStore(postgres_url)
    now = datetime.now(UTC)
    due = (now + timedelta(seconds=75)).replace(second=0, microsecond=0)  # 15 to 75 s from now
    try:
        records = contacts_for("billing", "maria", 40, 0.8, now.timestamp() - 8 * 86_400, prefix="h")
        store.upsert(
            [parsed for parsed in (parse_contact(record, UTC) for record in records) if isinstance(parsed, Contact)]
        )
        store.schedules().save_subscription("C-DIGEST", "", f"{due:%H:%M}", "UTC", False, "U1", to_us(now))
    finally:
        store.close()
    processes: list[Process] = []
    with FakeSlack() as fake:
        env = {
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": "signing-secret",
            "SLACK_API_URL": fake.api_url,
            "SCHEDULER_LEASE_POLL_SECONDS": "0.5",
        }
        try:
            first = start_serve(postgres_url, tmp_path / "first.log", **env)
            processes.append(first)
            wait_for_role(first, "leader")
            second = start_serve(postgres_url, tmp_path / "second.log", **env)
            processes.append(second)
            assert health(second)["scheduler"] == "standby"
            time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() - 3))
            first.proc.send_signal(signal.SIGKILL)  # 3 s before the digest is due
            first.proc.wait()
            wait_for_role(second, "leader")
            posts = fake.wait_for("chat.postMessage", timeout=30)
            time.sleep(3)  # and nothing more comes
            posts = [call for call in fake.calls_to("chat.postMessage") if call.status == 200]
            assert [call.body.get("channel") for call in posts] == ["C-DIGEST"], second.log_text()
            assert "written to the outbox" not in first.log_text()
            assert "written to the outbox" in second.log_text()
        finally:
            for process in processes:
                if process.proc.poll() is None:
                    process.proc.kill()
                    process.proc.wait()


@pytest.mark.slow
def test_two_servers_writing_the_same_customers_give_one_ordered_delivery(postgres_url: str, tmp_path: Path) -> None:
    servers: list[Process] = []
    try:
        for name in ("a", "b"):
            servers.append(start_serve(postgres_url, tmp_path / f"{name}.log", SCHEDULER_ENABLED="false"))
        rounds = 12
        plans: list[list[list[dict[str, object]]]] = [[], []]
        for r in range(rounds):
            for side in (0, 1):
                batch: list[dict[str, object]] = [
                    {"id": f"s{side}-{r}-{i}", "customer_id": f"k{i % 5}", "agent": f"agent{i % 3}",
                     "started_at": T0 + r * 3600 + (2 * i + side) * 60, "ended_at": T0 + r * 3600 + (2 * i + side) * 60 + 30}
                    for i in range(40)
                ]  # fmt: skip
                if r >= 2:  # and a contact of an earlier round moves: later in time, to another customer
                    batch.append(
                        {"id": f"s{side}-{r - 2}-{r}", "customer_id": f"k{(r + side) % 5}", "agent": "agent9",
                         "started_at": T0 + r * 3600 + 1, "direction": "inbound"}
                    )  # fmt: skip
                plans[side].append(batch)
        barrier = threading.Barrier(2)
        failures: list[str] = []

        def send(side: int) -> None:
            with httpx.Client(base_url=servers[side].url, timeout=60) as client:
                for batch in plans[side]:
                    barrier.wait()  # both servers write the same customers at the same moment
                    body = orjson.dumps(batch)
                    headers = {"Content-Type": "application/json", **signed_headers(SECRET, body)}
                    answer = client.post(WEBHOOK, content=body, headers=headers)
                    if answer.status_code != 200:
                        failures.append(answer.text)

        threads = [threading.Thread(target=send, args=(side,)) for side in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures
        final: dict[str, Contact] = {}
        for plan in plans:
            for batch in plan:
                for record in batch:
                    parsed = parse_contact(record, UTC)
                    assert isinstance(parsed, Contact)
                    final[parsed.id] = parsed
        ordered = SQLiteContactStore(tmp_path / "ordered.db")
        shared = PostgresContactStore(postgres_url)
        try:
            ordered.upsert(sorted(final.values(), key=lambda c: (c.started_us, c.id)))
            assert comparable(shared) == comparable(ordered)
            assert shared.count_contacts() == len(final)
            assert_candidates_mirror_contacts(shared)
        finally:
            ordered.close()
            shared.close()
    finally:
        for server in servers:
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(timeout=30)


def comparable(store: ContactStore) -> list[tuple[object, ...]]:
    return [
        (row["source"], row["id"], row["customer_id"], row["started_us"], row["raw"], row["next_repeat_us"])
        for row in stored_contacts(store)
    ]
