"""Issue 11's speed targets on the benchmark database: ``by:reason`` and ``why`` (see build_db.py).

  R1  ACR by reason, 7-day window, last 30 days           target: median < 20 ms (beside by:queue and by:team)
  W1  why for one agent, 7-day window, last 30 days       target: median < 100 ms
  W2  why for one team as the CSV, last 30 days           target: < 2 s, peak memory < 300 MB (own process)

The benchmark database has no contact reasons; ``--prepare`` copies it (the original stays read-only), gives the
contacts of the last 45 days (all the questions read, repeats included) a reason derived from the queue and the
contact's number (12 reasons, 3 per queue, so a repeat often has another reason; rewriting all 10M wide rows would
take long and change nothing the questions read), lets the store migrate if it has not been (the reason column of
the candidates) and rebuilds the rollups of the days that changed (every day after the migration):

    flock /tmp/acr-bench.lock .venv/bin/python bench/why.py --prepare /work/benchdata/bench.db --db bench/out/why.db
    flock /tmp/acr-bench.lock .venv/bin/python bench/why.py --db bench/out/why.db

Each question runs in its own process (peak memory is its own), ``--runs`` times after two warm-ups; the median.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ZONE_NAME = "America/New_York"
DAY = 86_400_000_000
WINDOW = 7 * DAY
AGENT, TEAM = "agent123", "team07"
QUESTIONS = ("R1 by:reason", "R1 by:queue (beside)", "R1 by:team (beside)", "W1 why one agent", "W2 why one team CSV")
TARGETS_MS = {"R1 by:reason": 20.0, "W1 why one agent": 100.0, "W2 why one team CSV": 2000.0}
PEAK_MB = 300.0


REASON_SQL = "'reason-' || (coalesce(unicode(substr(queue, -1)), 0) % 4) || '-' || (pk % 3)"


def prepare(source: Path, target: Path) -> None:
    """Copy the database, give the contacts of the last 45 days reasons (no trigger moves any row: before the
    migration, or with the triggers set aside on a database migrated already), migrate, roll up."""
    target.parent.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as conn, sqlite3.connect(target) as copy:
        conn.backup(copy)  # a consistent copy, WAL included
    print(f"copied in {time.perf_counter() - began:.0f} s", flush=True)
    conn = sqlite3.connect(target)
    migrated = "reason" in [row[1] for row in conn.execute("PRAGMA table_info(metric_contacts)")]
    began = time.perf_counter()
    cutoff = int(conn.execute("SELECT max(started_us) FROM contacts").fetchone()[0]) - 45 * DAY
    triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'contacts'")
    kept = triggers.fetchall() if migrated else []
    for name, _ in kept:  # they would move each candidate row and forget its next repeat
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute(f"UPDATE contacts SET reason = {REASON_SQL} WHERE started_us >= ?", (cutoff,))
    if migrated:
        conn.execute(
            "UPDATE metric_contacts SET reason = (SELECT c.reason FROM contacts AS c WHERE c.pk = metric_contacts.pk) "
            "WHERE started_us >= ?",
            (cutoff,),
        )
        conn.execute(
            "INSERT OR IGNORE INTO metric_rollup_dirty (utc_day) SELECT DISTINCT started_us / ? FROM metric_contacts "
            "WHERE started_us >= ?",
            (DAY, cutoff),
        )
        for _, sql in kept:
            conn.execute(sql)
    conn.commit()
    conn.close()
    print(f"reasons set in {time.perf_counter() - began:.0f} s", flush=True)
    from bot.storage import open_store

    began = time.perf_counter()
    store = open_store(f"sqlite:///{target}")  # migrates (the reason column of the candidates) when not yet done
    print(f"migrated in {time.perf_counter() - began:.0f} s", flush=True)
    began = time.perf_counter()
    days = store.refresh_rollups(ZoneInfo(ZONE_NAME))
    store.close()
    print(f"rolled up {days} days in {time.perf_counter() - began:.0f} s", flush=True)


def as_of_of(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    return int(conn.execute("SELECT max(started_us) FROM metric_contacts").fetchone()[0])


def question(name: str, db: Path, as_of: int) -> Callable[[], int]:
    """The question as a function returning a size (rows or bytes), on a store opened once."""
    from bot.storage import open_store
    from bot.why_report import csv_chunks
    from metrics.engine import compute
    from metrics.query import MetricQuery
    from metrics.why import WhyQuery

    zone = ZoneInfo(ZONE_NAME)
    store = open_store(f"sqlite:///{db}")
    since = as_of - 30 * DAY
    if name.startswith("R1"):
        by = name.split("by:")[1].split()[0]
        query = MetricQuery("acr", WINDOW, since, as_of, as_of, (), by)  # type: ignore[arg-type]
        return lambda: len(compute(store, query, zone).rows)
    if name.startswith("W1"):
        why = WhyQuery("acr", WINDOW, since, as_of, as_of, (("agent", AGENT),))
        return lambda: len(list(store.why_rows(why)))
    team = WhyQuery("acr", WINDOW, since, as_of, as_of, (("team", TEAM),))

    def csv_bytes() -> int:
        size = 0
        for chunk in csv_chunks(store.why_rows(team), zone):
            size += len(chunk)  # written out as it is made, never kept whole
        return size

    return csv_bytes


def run_one(name: str, db: Path, runs: int, as_of: int) -> dict[str, Any]:
    ask = question(name, db, as_of)
    for _ in range(2):
        size = ask()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        size = ask()
        times.append((time.perf_counter() - start) * 1000)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"median_ms": statistics.median(times), "min_ms": min(times), "size": size, "peak_rss_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("bench/out/why.db"))
    parser.add_argument("--prepare", type=Path, help="copy this database to --db with reasons, migrated and rolled up")
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--as-of", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--question", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        if args.db.exists():
            raise SystemExit(f"{args.db} exists: remove it first")
        prepare(args.prepare, args.db)
        return
    as_of = args.as_of or as_of_of(args.db)
    if args.question:
        print(json.dumps(run_one(args.question, args.db, args.runs, as_of)))
        return
    from metrics.timeutil import iso_utc

    print(f"as_of {iso_utc(as_of)} (end of the data), last 30 days, 7-day window, median of {args.runs} runs")
    print(f"{'question':26} {'median ms':>10} {'min ms':>9} {'size':>12} {'peak MB':>8}  target")
    ok = True
    for name in QUESTIONS:
        runs = max(3, args.runs // 4) if name.startswith("W2") else args.runs
        command = [sys.executable, __file__, "--db", str(args.db), "--runs", str(runs), "--as-of", str(as_of)]
        done = subprocess.run([*command, "--question", name], capture_output=True, text=True, check=True)
        result = json.loads(done.stdout)
        target = TARGETS_MS.get(name)
        met = target is None or result["median_ms"] < target
        if name.startswith("W2"):
            met = met and result["peak_rss_mb"] < PEAK_MB
        ok = ok and met
        goal = "" if target is None else f"< {target:g} ms" + (f", < {PEAK_MB:g} MB" if name.startswith("W2") else "")
        print(
            f"{name:26} {result['median_ms']:>10.1f} {result['min_ms']:>9.1f} {result['size']:>12,} "
            f"{result['peak_rss_mb']:>8.0f}  {goal} {'ok' if met else 'MISSED' if target else ''}".rstrip()
        )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
