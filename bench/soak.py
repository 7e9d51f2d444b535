"""Soak: the real ``acr-bot serve`` under mixed load against a faulty fake Slack, SIGKILLed once and restarted.

For ``--minutes`` minutes: webhook senders post signed batches (each remembers what was acknowledged with 200),
a Slack user sends signed slash commands (each ack timed), one ``acr-bot ingest`` of a large file runs, and the
server's scheduler posts digests (subscriptions due every minute or so of the run) and alerts (a rule that fires)
to a fake Slack that answers 429, 500 and stalls past the client's timeout at random. A quarter of the way through
(``--kill-at``) the server is SIGKILLed and started again at once. At the end it checks that every acknowledged
record is stored, that every digest and alert due was posted exactly once, and that memory is flat: it reports the
server's RSS at the end of each minute of each run and how much it still grew after the warm-up (WARM_UP_MINUTES)
of the last run, a least-squares slope that must stay under FLAT_MIB_PER_MINUTE over at least FLAT_MINUTES_NEEDED
minutes (20 minutes with the SIGKILL at 5 leave the restarted server 13 to show a plateau; 10 with it at 5 do not).

``--trace-memory`` runs the server through ``bench/soak_serve.py`` (the same server, with tracemalloc on and a
thread that samples it from inside): the figures then also split the memory into Python objects, SQLite's heap
and what malloc keeps, per minute, and list the lines whose allocations grew most after the warm-up. It is
slower (tracemalloc): a run for finding a leak, not for the throughput figures.

    flock /tmp/acr-bench.lock .venv/bin/python bench/soak.py
    flock /tmp/acr-bench.lock .venv/bin/python bench/soak.py --minutes 20 --kill-at 0.25 --import-records 50000 --trace-memory
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.http.signing import signed_headers  # noqa: E402
from bot.storage import open_store  # noqa: E402
from tests.fake_slack import FakeSlack  # noqa: E402
from tests.slack_support import SECRET as SLACK_SECRET  # noqa: E402
from tests.slack_support import command_form, signed_post  # noqa: E402

WEBHOOK_SECRET = "soak-webhook-secret"
ACR_BOT = Path(sys.executable).with_name("acr-bot")
TRACED_SERVE = Path(__file__).with_name("soak_serve.py")
WARM_UP_MINUTES = 2  # a run's first minutes: caches, pools and the import's chunk buffers fill up
# Memory is flat when the last run's RSS grows by less than this after its warm-up (least-squares slope), over at
# least FLAT_MINUTES_NEEDED minutes: a shorter stretch cannot tell a plateau from slow growth. 1 MiB a minute is at
# most ~13 MiB over the 13 judged minutes (~5% of a 250 MiB server) and about ten times the slope's noise from one
# sample every 5 s of an RSS that moves a few MiB with each question; the growth it catches measured 6.9 MiB a
# minute (malloc arenas) and 2.8 (a reader connection and page cache per thread).
FLAT_MIB_PER_MINUTE = 1.0
SOAK_SQLITE_CACHE_MIB = 16  # the server's SQLITE_CACHE_MIB unless the environment sets it
FLAT_MINUTES_NEEDED = 8
GROWTH_LINES = 12  # allocation sites listed by --trace-memory
API_TIMEOUT_SECONDS = 15  # bot.slack.app.API_TIMEOUT_SECONDS: a stall longer than this is a post "in doubt"


class ChaosSlack(FakeSlack):
    """The fake Slack, failing at random: 429 with Retry-After, 500, and stalls (some past the client timeout)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.random = random.Random(seed)
        self.injected: Counter[str] = Counter()

    def _decide(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        method = path.rsplit("/", 1)[-1]
        if method in ("chat.postMessage", "files.completeUploadExternal", "conversations.history"):
            with self._lock:
                roll = self.random.random()
                if roll < 0.10:
                    self.injected["429"] += 1
                    self._failures.setdefault(method, []).insert(0, _failure(429, 1))
                elif roll < 0.15:
                    self.injected["500"] += 1
                    self._failures.setdefault(method, []).insert(0, _failure(500, None))
                elif roll < 0.18 and method == "chat.postMessage":
                    long = self.random.random() < 0.3
                    self.injected["stall past timeout" if long else "stall"] += 1
                    self.stall(method, API_TIMEOUT_SECONDS + 2 if long else 3)
        return super()._decide(path, body)


def _failure(status: int, retry_after: int | None) -> Any:
    from tests.fake_slack import _Failure

    return _Failure(status, 1, retry_after)


class Server:
    def __init__(self, database_url: str, folder: Path, slack: ChaosSlack, *, trace_memory: bool = False):
        self.database_url, self.folder, self.slack = database_url, folder, slack
        self.trace_memory = trace_memory
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.memory: list[tuple[int, int, float]] = []  # (run number, seconds since start, RSS MiB)
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = self.folder / f"serve-{self.runs}.log"
        env = {
            # SQLite's caches held small, so they are full within the warm-up: with the default 64 MiB they
            # fill for longer than a soak runs as the database grows (a bounded rise, which would hide a leak
            # or look like one). That the limit holds is tested in tests/test_process_memory.py.
            "SQLITE_CACHE_MIB": str(SOAK_SQLITE_CACHE_MIB),
            **os.environ,
            "DATABASE_URL": self.database_url,
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SLACK_SIGNING_SECRET": SLACK_SECRET,
            "SLACK_BOT_TOKEN": "xoxb-soak",
            "SLACK_API_URL": self.slack.api_url,
            "ALERT_INTERVAL_MINUTES": "1",
            "LOG_LEVEL": "INFO",  # (the "listening on" line tells the port)
            "PYTHONUNBUFFERED": "1",
            "SOAK_MEMORY_DIR": str(self.folder),
            "SOAK_RUN": str(self.runs),
        }
        command = [sys.executable, str(TRACED_SERVE)] if self.trace_memory else [str(ACR_BOT)]
        with log.open("wb") as sink:
            self.proc = subprocess.Popen([*command, "serve", "--port", "0"], env=env, stdout=sink, stderr=sink)
        deadline = time.monotonic() + 120
        while True:
            found = re.findall(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
            if found:
                self.url = found[-1]
                try:
                    if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()  # not left running when it is merely slow
                self.proc.wait()
                raise SystemExit(f"the server did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        self.started = time.monotonic()

    def sample_memory(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            rss = psutil.Process(self.proc.pid).memory_info().rss / 2**20
            self.memory.append((self.runs, round(time.monotonic() - self.started), rss))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


class Sender(threading.Thread):
    """Posts batches of new records; remembers the ids acknowledged with 200 (and every other answer)."""

    def __init__(self, server: Server, number: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.server, self.number, self.stop_event = server, number, stop
        self.acknowledged: list[str] = []
        self.answers: Counter[str] = Counter()

    def run(self) -> None:
        batch = 0
        base = datetime.now(UTC) - timedelta(days=20)
        while not self.stop_event.is_set():
            batch += 1
            records = [
                {"id": f"s{self.number}-{batch}-{i}", "customer_id": f"k{(batch * 31 + i) % 500}",
                 "agent": f"agent{i % 9}", "team": ("billing", "sales")[i % 2],
                 "started_at": (base + timedelta(minutes=batch * 7 + i)).isoformat()}
                for i in range(50)
            ]  # fmt: skip
            body = b"\n".join(orjson.dumps(r) for r in records)
            headers = {"Content-Type": "application/x-ndjson", **signed_headers(WEBHOOK_SECRET, body)}
            try:
                response = httpx.post(
                    self.server.url + "/webhooks/interactions", content=body, headers=headers, timeout=30
                )
            except httpx.TransportError as problem:
                self.answers[type(problem).__name__] += 1
                time.sleep(0.5)
                continue
            self.answers[str(response.status_code)] += 1
            if response.status_code == 200:
                self.acknowledged += [r["id"] for r in records]
            elif response.status_code == 503:
                time.sleep(float(response.headers.get("Retry-After", "1")))
            time.sleep(0.05)


class Asker(threading.Thread):
    """A Slack user: a signed /acr command every second; records each ack's time."""

    def __init__(self, server: Server, stop: threading.Event):
        super().__init__(daemon=True)
        self.server, self.stop_event = server, stop
        self.acks: list[float] = []
        self.failures: Counter[str] = Counter()

    def run(self) -> None:
        words = ["7d", "by:team", "by:agent last:14d", "team:billing", "help"]
        with httpx.Client(timeout=10) as http:
            for n in range(10**9):
                if self.stop_event.is_set():
                    return
                form = command_form(words[n % len(words)], "/acr", "U0SOAK", self.server.slack.response_url(f"q{n}"))
                started = time.monotonic()
                try:
                    response = signed_post(
                        http, self.server.url + "/slack/events", form, "application/x-www-form-urlencoded"
                    )
                    if response.status_code == 200:
                        self.acks.append(time.monotonic() - started)
                    else:
                        self.failures[str(response.status_code)] += 1
                except httpx.TransportError as problem:
                    self.failures[type(problem).__name__] += 1
                time.sleep(1)


def import_file(folder: Path, database_url: str, count: int) -> tuple[int, float, str]:
    path = folder / "import.jsonl"
    base = datetime.now(UTC) - timedelta(days=40)
    with path.open("wb") as out:
        for i in range(count):
            record = {"id": f"imp-{i}", "customer_id": f"ik{i % 20_000}", "agent": f"agent{i % 30}",
                      "team": ("billing", "sales", "support")[i % 3],
                      "started_at": (base + timedelta(seconds=i * 17)).isoformat()}  # fmt: skip
            out.write(orjson.dumps(record) + b"\n")
    started = time.monotonic()
    result = subprocess.run(
        [str(ACR_BOT), "ingest", str(path)], env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return (
        result.returncode,
        time.monotonic() - started,
        result.stdout.strip().splitlines()[-1:][0] if result.stdout else result.stderr,
    )


def setup(database_url: str, minutes: float) -> tuple[list[str], list[int]]:
    """Subscriptions due during the run (one every ~minute, each in its own channel), and an alert rule that fires."""
    store = open_store(database_url)
    try:
        now = datetime.now(UTC)
        channels = []
        for i in range(max(1, int(minutes) - 1)):
            at = now + timedelta(minutes=i + 1, seconds=30)
            channel = f"C0SOAK{i:02d}"
            store.schedules().save_subscription(channel, "", f"{at:%H:%M}", "UTC", False, None, int(time.time() * 1e6))
            channels.append(channel)
        rule = store.schedules().add_alert_rule(
            "acr", 0.99, 7 * 86_400_000_000, 30, "", 1, "C0ALERTS", False, None, int(time.time() * 1e6)
        )
        return channels, [rule.id]
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--import-records", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--kill-at",
        type=float,
        default=0.25,
        help="when to SIGKILL, as a fraction of the run (the restarted server "
        "then runs long enough to judge its memory)",
    )
    parser.add_argument("--trace-memory", action="store_true", help="tracemalloc and SQLite's heap, from inside")
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="acr-soak-"))
    database_url = f"sqlite:///{folder / 'acr.db'}"
    open_store(database_url).close()
    channels, rules = setup(database_url, options.minutes)
    slack = ChaosSlack(options.seed)
    with slack:
        server = Server(database_url, folder, slack, trace_memory=options.trace_memory)
        server.start()
        stop = threading.Event()
        senders = [Sender(server, n, stop) for n in range(options.senders)]
        asker = Asker(server, stop)
        for thread in [*senders, asker]:
            thread.start()
        end = time.monotonic() + options.minutes * 60
        killed = imported = False
        import_result: tuple[int, float, str] | None = None
        importer: threading.Thread | None = None
        while time.monotonic() < end:
            server.sample_memory()
            left = end - time.monotonic()
            if not imported and left < options.minutes * 60 * 0.75:
                imported = True

                def run_import() -> None:
                    nonlocal import_result
                    import_result = import_file(folder, database_url, options.import_records)

                importer = threading.Thread(target=run_import, daemon=True)
                importer.start()
            if not killed and left < options.minutes * 60 * (1 - options.kill_at):
                killed = True
                server.kill()
                server.start()  # at once
            time.sleep(5)
        stop.set()
        for thread in [*senders, asker]:
            thread.join(60)
        if importer is not None:
            importer.join(600)
        time.sleep(40)  # the outbox job (30 s) retries what is still pending
        server.sample_memory()
        server.stop()
        report(folder, database_url, slack, server, senders, asker, channels, rules, import_result)


def report(
    folder: Path, database_url: str, slack: ChaosSlack, server: Server, senders: list[Sender], asker: Asker,
    channels: list[str], rules: list[int], import_result: tuple[int, float, str] | None,
) -> None:  # fmt: skip
    acknowledged = [cid for sender in senders for cid in sender.acknowledged]
    store = open_store(database_url)
    try:
        missing = [cid for cid in acknowledged if store.get_contact("api", cid) is None]
        outbox = store.outbox()
        stuck = [*outbox.due_messages(2**62), *outbox.in_doubt_messages()]
    finally:
        store.close()
    posts = [c for c in slack.calls_to("chat.postMessage") if c.status == 200]
    keys = Counter(str((c.body.get("metadata") or {}).get("event_payload", {}).get("key")) for c in posts)
    digests = {ch: sum(n for k, n in keys.items() if k.startswith(f"digest:{ch}:")) for ch in channels}
    alerts = {k: n for k, n in keys.items() if k.startswith("alert:")}
    acks = sorted(asker.acks)
    growth = growth_after_warm_up(server.memory)
    figures = {
        "last_run_minutes": round((server.memory[-1][1] if server.memory else 0) / 60, 1),
        "acknowledged_records": len(acknowledged),
        "acknowledged_but_missing": len(missing),
        "webhook_answers": dict(sum((s.answers for s in senders), Counter())),
        "slash_commands_acked": len(acks),
        "ack_p50_ms": round(acks[len(acks) // 2] * 1000) if acks else None,
        "ack_max_ms": round(acks[-1] * 1000) if acks else None,
        "slash_command_failures": dict(asker.failures),
        "import": import_result,
        "faults_injected": dict(slack.injected),
        "digest_posts_per_channel": digests,
        "alert_posts_per_key": alerts,
        "duplicates": {k: n for k, n in keys.items() if n > 1},
        "outbox_left": [(e.key, e.status, e.last_error) for e in stuck],
        "rss_mib_per_minute": per_minute(server.memory),
        "rss_after_warm_up": growth,
    }
    if server.trace_memory:
        figures["inside_per_minute"] = inside_per_minute(folder, server.runs)
        figures["grew_most_after_warm_up"] = grown_lines(folder, server.runs)
    print(json.dumps(figures, indent=1))
    memory = memory_verdict(growth)
    print("memory:", memory or "flat")
    ok = not missing and not figures["duplicates"] and all(n == 1 for n in digests.values()) and not stuck
    ok = ok and memory is None
    print("PASS" if ok else "FAIL", f"(logs in {folder})")
    sys.exit(0 if ok else 1)


def per_minute(samples: list[tuple[int, int, float]]) -> dict[str, list[int]]:
    """RSS in MiB at the end of each minute of each run (the last sample of that minute), by run."""
    result: dict[str, dict[int, float]] = {}
    for run, seconds, rss in samples:
        result.setdefault(f"run {run}", {})[seconds // 60] = rss
    return {run: [round(rss) for _, rss in sorted(minutes.items())] for run, minutes in result.items()}


def growth_after_warm_up(samples: list[tuple[int, int, float]]) -> dict[str, Any]:
    """How much the last run's RSS grew after its warm-up: in all, and per minute (a least-squares slope over
    the samples after WARM_UP_MINUTES, so one spike does not decide it)."""
    last = max((run for run, _, _ in samples), default=0)
    after = [(seconds / 60, rss) for run, seconds, rss in samples if run == last and seconds >= WARM_UP_MINUTES * 60]
    if len(after) < 3:
        return {"run": last, "minutes": 0, "note": "too short to tell"}
    n = len(after)
    mean_t = sum(t for t, _ in after) / n
    mean_r = sum(r for _, r in after) / n
    slope = sum((t - mean_t) * (r - mean_r) for t, r in after) / sum((t - mean_t) ** 2 for t, _ in after)
    return {
        "run": last,
        "from_minute": WARM_UP_MINUTES,
        "minutes": round(after[-1][0] - after[0][0], 1),
        "first_mib": round(after[0][1]),
        "last_mib": round(after[-1][1]),
        "max_mib": round(max(r for _, r in after)),
        "slope_mib_per_minute": round(slope, 2),
    }


def memory_verdict(growth: dict[str, Any]) -> str | None:
    """None when the last run's memory was flat after its warm-up, else why not (growing, or too short to tell)."""
    if growth.get("minutes", 0) < FLAT_MINUTES_NEEDED:
        return (
            f"not judged: the last run has {growth.get('minutes', 0)} minutes after its warm-up, fewer than "
            f"{FLAT_MINUTES_NEEDED} (run longer, or SIGKILL earlier with --kill-at)"
        )
    if growth["slope_mib_per_minute"] >= FLAT_MIB_PER_MINUTE:
        return f"growing: {growth['slope_mib_per_minute']} MiB a minute after the warm-up (flat is < {FLAT_MIB_PER_MINUTE})"
    return None


def inside_per_minute(folder: Path, runs: int) -> dict[str, list[dict[str, Any]]]:
    """The server's own samples (bench/soak_serve.py) at the end of each minute, by run."""
    result: dict[str, list[dict[str, Any]]] = {}
    for run in range(1, runs + 1):
        path = folder / f"inside-{run}.jsonl"
        if not path.exists():
            continue
        minutes: dict[int, dict[str, Any]] = {}
        for line in path.read_text().splitlines():
            sample = json.loads(line)
            minutes[sample["seconds"] // 60] = sample
        result[f"run {run}"] = [
            {key: round(value) if isinstance(value, float) else value for key, value in sample.items()}
            for _, sample in sorted(minutes.items())
        ]
    return result


def grown_lines(folder: Path, runs: int) -> dict[str, list[str]]:
    """For each run, the allocation sites whose live Python memory grew most from the warm-up snapshot to the
    last one (tracemalloc, by source line)."""
    import tracemalloc

    result: dict[str, list[str]] = {}
    for run in range(1, runs + 1):
        snapshots = sorted(folder.glob(f"snapshot-{run}-*.pickle"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        if len(snapshots) <= WARM_UP_MINUTES:
            continue
        first, last = (tracemalloc.Snapshot.load(str(p)) for p in (snapshots[WARM_UP_MINUTES], snapshots[-1]))
        differences = last.compare_to(first, "lineno")
        total = sum(d.size_diff for d in differences) / 2**20
        result[f"run {run}, minute {WARM_UP_MINUTES} to {len(snapshots) - 1}, in all {total:+.1f} MiB"] = [
            f"{d.size_diff / 2**10:+.0f} KiB ({d.count_diff:+d} blocks) {d.traceback[0].filename}:{d.traceback[0].lineno}"
            for d in differences[:GROWTH_LINES]
        ]
    return result


if __name__ == "__main__":
    main()
