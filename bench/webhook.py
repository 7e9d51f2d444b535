"""Webhook throughput over loopback: single-record requests/s and contacts/s in batches of 500.

Starts ``acr-bot serve`` in a subprocess on a fresh SQLite file (or ``--servers N`` of them on the store of
``--database-url``: a PostgreSQL database shared by several processes, or a copy of a large SQLite store), drives
it from client threads over keep-alive connections (http.client: the lightest client, so the figures are the
server's; the threads spread over the servers), and prints throughput and latency percentiles. Every request is
signed like a real sender's; every answer must be 200. Ids are new on every run, so a store can be reused.

Beside each batch rate: the CPU (user + system) a contact cost in the servers, the client, and, on a PostgreSQL
server on this machine, the backends serving the bench's database (their pids from pg_stat_activity, read with
psutil; a backend that connected during the phase is counted from its start).

The phases measure the webhook writes alone: they start once the scheduler's start-up run of the rollup refresh
(5 s after a server starts, then every 5 minutes) is over (at once when no server runs a scheduler: with
SCHEDULER_ENABLED=false; a failed refresh stops the bench). Left to chance, it fell inside a phase of a few seconds
in some runs and not in others (one run in two at 2 servers on PostgreSQL, costing it ~20% of the rate). Its cost
is not hidden: after the phases the bench runs the same refresh of what they wrote, as the scheduler would within
5 minutes, and prints its CPU a contact beside the phases' (``rollup refresh``).

    flock /tmp/acr-bench.lock .venv/bin/python bench/webhook.py
    flock /tmp/acr-bench.lock .venv/bin/python bench/webhook.py --servers 2 \
        --database-url 'postgresql://acr@/acr?host=/run/postgresql'
    # a fresh store beside one that holds a year (a copy: ids are new, but the store grows), side by side:
    flock /tmp/acr-bench.lock .venv/bin/python bench/webhook.py --single 0 \
        --database-url new --database-url sqlite:///copy-of-bench.db

Targets (issue 2, on the 2-core machine): >= 500 single-record requests/s, >= 20,000 contacts/s in batches of 500.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from bot.http.signing import signed_headers

SECRET = "bench-secret"
PATH = "/webhooks/interactions"
ACR_BOT = Path(sys.executable).with_name("acr-bot")
START_US = 1_780_000_000 * 1_000_000
CHANNELS = ("phone", "chat", "email")


@dataclass
class Phase:
    """What one load phase sent and how long each request took."""

    name: str
    records_per_request: int
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds (user + system) by whom, during the phase

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000 if ordered else float("nan")


RUN = os.urandom(4).hex()  # ids of this run: new contacts in a store that already holds another run's


def make_record(n: int, rng: random.Random, customers: int, order: str = "random") -> dict[str, object]:
    """Record number ``n``. ``order="time"``: one contact every 3 s in the order they happen, as a platform
    sends them when they end; ``"random"``: starts anywhere in 90 days (a backfill in no order: the hard case,
    every write lands on random pages of the time-ordered indexes)."""
    if order == "time":
        started = START_US + (n * 3 + rng.randrange(3)) * 1_000_000
    else:
        started = START_US + rng.randrange(90 * 86_400) * 1_000_000
    return {
        "id": f"bench-{RUN}-{n}",
        "customer_id": f"cust-{rng.randrange(customers)}",
        "agent": f"agent-{rng.randrange(60)}",
        "team": f"team-{rng.randrange(8)}",
        "queue": "billing" if n % 3 else "tech",
        "channel": CHANNELS[n % 3],
        "direction": "outbound" if n % 17 == 0 else "inbound",
        "tier": 1 + (n % 10 == 0),
        "escalated": n % 13 == 0,
        "resolved": n % 5 != 0,
        "started_at": started / 1e6,
        "ended_at": (started + rng.randrange(60, 1800) * 1_000_000) / 1e6,
    }


def start_server(database_url: str, log: Path, log_level: str, zone: str) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BOT_TIMEZONE": zone,  # the zone the store's rollups were built for (another one rebuilds every day)
        "WEBHOOK_SECRET": SECRET,
        "LOG_LEVEL": log_level,
        "PYTHONUNBUFFERED": "1",
    }
    with socket.socket() as probe:  # a free port (the server's own log line is not there at every --log-level)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(ACR_BOT), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=sink, stderr=sink
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited: {log.read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit(f"server did not start: {log.read_text()}")


def scheduler_runs(port: int, job: str) -> dict[str, int]:
    """The runs of the scheduler's ``job`` the server on ``port`` finished, by outcome (ok, failed; none where it
    is not the leader)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    prefix = f'acr_scheduler_runs_total{{job="{job}",outcome="'
    runs: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            outcome = line[len(prefix) :].split('"', 1)[0]
            runs[outcome] = runs.get(outcome, 0) + int(float(line.rsplit(" ", 1)[1]))
    return runs


def healthz(port: int) -> dict[str, Any]:
    """What /healthz of the server on ``port`` answers (its contacts, and whether it runs the scheduler)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    answer: dict[str, Any] = orjson.loads(conn.getresponse().read())
    conn.close()
    return answer


def wait_for_startup_refresh(ports: list[int], timeout: float = 900.0) -> float | None:
    """Wait until one of the servers ran the scheduler's start-up rollup refresh; returns the seconds waited, or
    None when no server runs a scheduler (nothing to wait for). A failed refresh stops the bench: its phases
    would not measure what a working server does."""
    began = time.monotonic()
    while True:
        runs = [scheduler_runs(port, "rollups") for port in ports]
        if any(run.get("failed") for run in runs):
            sys.exit("the scheduler's start-up rollup refresh failed (see the servers' logs)")
        if any(run.get("ok") for run in runs):
            return time.monotonic() - began
        if all(healthz(port).get("scheduler", "disabled") == "disabled" for port in ports):
            return None
        if time.monotonic() - began > timeout:
            sys.exit(f"no server ran the start-up rollup refresh within {timeout:.0f} s")
        time.sleep(0.2)


def refresh_rollups(phase: Phase, database_url: str, zone: str) -> int:
    """The rollup refresh the scheduler runs within 5 minutes of the writes, run here (in this process, on its
    own connection) with its CPU noted in ``phase``; returns the UTC days rolled up."""
    from zoneinfo import ZoneInfo

    from bot.storage import open_store

    store = open_store(database_url)
    try:
        days = 0

        def refresh() -> None:
            nonlocal days
            days = store.refresh_rollups(ZoneInfo(zone))

        began = time.perf_counter()
        measured(phase, database_url, [], refresh)
        phase.elapsed = time.perf_counter() - began
        phase.cpu["bench (refresh)"] = phase.cpu.pop("client")
        phase.cpu.pop("servers")
    finally:
        store.close()
    return days


def run_phase(phase: Phase, ports: list[int], bodies: list[bytes], threads: int, seconds: float) -> None:
    """Send the pre-built bodies from ``threads`` keep-alive connections (spread over the servers' ``ports``),
    until all are sent or time is up."""
    lock = threading.Lock()
    cursor = iter(range(len(bodies)))
    deadline = time.perf_counter() + seconds

    def worker(port: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        while time.perf_counter() < deadline:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            body = bodies[index]
            headers = {"Content-Type": "application/json", **signed_headers(SECRET, body)}
            began = time.perf_counter()
            conn.request("POST", PATH, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            mine.append(time.perf_counter() - began)
            if response.status != 200:
                phase.errors.append(f"{response.status} {answer[:200]!r}")
        conn.close()
        with lock:
            phase.latencies.extend(mine)

    began = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(ports[i % len(ports)],)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    phase.elapsed = time.perf_counter() - began


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each process still alive (its own, not its children's)."""
    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        seconds[pid] = times.user + times.system
    return seconds


def backend_pids(database_url: str) -> list[int]:
    """The PostgreSQL backends connected to the database of ``database_url`` (none for SQLite)."""
    if not database_url.startswith(("postgresql:", "postgres:")):
        return []
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(row[0]) for row in rows]


def measured(phase: Phase, database_url: str, servers: list[int], drive: Callable[[], None]) -> None:
    """Run ``drive`` and note the CPU it cost the servers, this client and the database's backends."""
    backends_before = cpu_seconds(backend_pids(database_url))
    servers_before = sum(cpu_seconds(servers).values())
    client_before = sum(os.times()[:2])
    drive()
    phase.cpu["servers"] = sum(cpu_seconds(servers).values()) - servers_before
    phase.cpu["client"] = sum(os.times()[:2]) - client_before
    if database_url.startswith(("postgresql:", "postgres:")):
        backends_after = cpu_seconds(backend_pids(database_url))
        phase.cpu["postgres"] = sum(after - backends_before.get(pid, 0.0) for pid, after in backends_after.items())


def report(phase: Phase, target: float, unit: str) -> bool:
    rate_requests = phase.requests / phase.elapsed if phase.elapsed else 0.0
    rate = rate_requests * phase.records_per_request if unit == "contacts/s" else rate_requests
    ok = rate >= target and not phase.errors
    print(
        f"{phase.name}: {phase.requests} requests x {phase.records_per_request} records in {phase.elapsed:.2f} s"
        f" -> {rate:,.0f} {unit} (target >= {target:,.0f}: {'OK' if ok else 'BELOW'});"
        f" latency ms p50 {phase.percentile(0.50):.1f} p90 {phase.percentile(0.90):.1f}"
        f" p99 {phase.percentile(0.99):.1f} max {max(phase.latencies, default=0) * 1000:.1f}"
    )
    contacts = phase.requests * phase.records_per_request
    if phase.cpu and contacts:
        parts = [f"{who} {seconds / contacts * 1e6:.1f}" for who, seconds in phase.cpu.items()]
        total = sum(phase.cpu.values()) / contacts * 1e6
        print(f"  CPU us a contact (user + system): {', '.join(parts)}; total {total:.1f}")
    for error in phase.errors[:5]:
        print(f"  error: {error}")
    return ok


def run_store(
    database_url: str, args: argparse.Namespace, single_bodies: list[bytes], batch_bodies: list[bytes], workdir: Path
) -> tuple[Phase, Phase, bool]:
    """Both phases against ``args.servers`` server processes on one store; (single, batches, all stored and the
    servers stopped cleanly)."""
    servers = [
        start_server(database_url, workdir / f"serve-{i}.log", args.log_level, args.timezone)
        for i in range(args.servers)
    ]
    ports = [port for _, port in servers]
    print(
        f"{len(servers)} server(s) on 127.0.0.1:{','.join(map(str, ports))}, database {shown(database_url)},"
        f" {args.threads} client threads, records in {args.order} order"
    )
    single = Phase("single-record requests", 1)
    batches = Phase(f"batches of {args.batch_size}", args.batch_size)
    try:
        waited = wait_for_startup_refresh(ports)
        if waited is None:
            print("no server runs the scheduler: phases start now")
        else:
            print(f"the scheduler's start-up rollup refresh done after {waited:.1f} s; phases start now")
        before = int(healthz(ports[0])["contacts"])
        pids = [proc.pid for proc, _ in servers]
        if single_bodies:
            measured(
                single, database_url, pids, lambda: run_phase(single, ports, single_bodies, args.threads, args.seconds)
            )
        measured(
            batches, database_url, pids, lambda: run_phase(batches, ports, batch_bodies, args.threads, args.seconds)
        )
        stored = int(healthz(ports[0])["contacts"]) - before
    finally:
        for proc, _ in servers:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc, _ in servers]
    sent = single.requests + batches.requests * args.batch_size
    print(f"stored contacts (healthz): {stored}, sent: {sent}; server exit status after SIGTERM: {max(codes)}")
    refresh = Phase("rollup refresh", 1)
    days = refresh_rollups(refresh, database_url, args.timezone)
    if sent:
        parts = [f"{who} {seconds / sent * 1e6:.1f}" for who, seconds in refresh.cpu.items()]
        print(
            f"rollup refresh of what the phases wrote (the scheduler's, every 5 min; not in the rates above):"
            f" {days} UTC day(s) in {refresh.elapsed:.2f} s; CPU us a contact written: {', '.join(parts)}"
        )
    return single, batches, stored == sent and max(codes) == 0


def shown(database_url: str) -> str:
    """The URL without user and password."""
    return database_url.split("@")[-1] if "@" in database_url else database_url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single", type=int, default=10_000, help="single-record requests to send at most (0: none)")
    parser.add_argument("--batches", type=int, default=200, help="batches of --batch-size to send at most")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=4, help="client connections")
    parser.add_argument("--seconds", type=float, default=10.0, help="time bound of each phase")
    parser.add_argument("--customers", type=int, default=20_000, help="distinct customers the records spread over")
    parser.add_argument(
        "--order", choices=["time", "random"], default="time", help="start times: in time order, or random in 90 days"
    )
    parser.add_argument(
        "--database-url",
        action="append",
        help="a store to write to (default: a new SQLite file; 'new' names one too); several: each in turn with the"
        " same records, and their batch throughputs side by side, each against the first",
    )
    parser.add_argument("--servers", type=int, default=1, help="acr-bot serve processes on each store")
    parser.add_argument(
        "--timezone", default="America/New_York", help="BOT_TIMEZONE of the servers (the bench store's, build_db.py)"
    )
    parser.add_argument("--log-level", default="INFO", help="server LOG_LEVEL (INFO keeps the access log on)")
    parser.add_argument("--keep", action="store_true", help="keep the database and server log")
    args = parser.parse_args()

    rng = random.Random(42)
    single_bodies = [orjson.dumps(make_record(n, rng, args.customers, args.order)) for n in range(args.single)]
    offset = args.single
    batch_bodies = [
        orjson.dumps(
            [
                make_record(offset + b * args.batch_size + i, rng, args.customers, args.order)
                for i in range(args.batch_size)
            ]
        )
        for b in range(args.batches)
    ]

    workdir = Path(tempfile.mkdtemp(prefix="acr-bench-webhook-"))
    urls = args.database_url or ["new"]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    ok = True
    rates: list[tuple[str, float]] = []
    for index, url in enumerate(urls):
        database_url = f"sqlite:///{workdir / f'acr-{index}.db'}" if url == "new" else url
        single, batches, stored_all = run_store(database_url, args, single_bodies, batch_bodies, workdir)
        if single_bodies:
            ok = report(single, 500, "requests/s") and ok
        ok = report(batches, 20_000, "contacts/s") and ok and stored_all
        rates.append((shown(database_url), batches.requests * args.batch_size / batches.elapsed))
    if len(rates) > 1:
        print(f"batches of {args.batch_size}, {args.servers} server(s), side by side (load {os.getloadavg()[0]:.2f}):")
        for name, rate in rates:
            print(f"  {rate:>9,.0f} contacts/s  {rate / rates[0][1]:6.0%} of the first  {name}")
    if args.keep:
        print(f"kept {workdir}")
    else:
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
