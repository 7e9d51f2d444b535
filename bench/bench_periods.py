"""Trends and window sensitivity on the benchmark database (see build_db.py), against counting from contacts.

Three questions, BOT_TIMEZONE America/New_York, as_of = the end of the data (or ``--as-of``):
  T1  ACR by week for one team, the 52 whole weeks before as_of's week plus this week so far
  T2  ACR by month for one team, the 12 months before as_of's month plus this month so far
  W1  window sensitivity for all agents over the last 30 days: windows 1h, 1d, 3d, 7d on one cohort, and the
      time-to-return distribution (10 min, 1 h, 1 d, 3 d, 7 d)
Each runs ``--runs`` times after two warm-ups, from the rollups (as served) and counting from contacts only
(``use_rollups=False``, the alternative); the median is reported and both answers compared.

    flock /tmp/acr-bench.lock .venv/bin/python bench/bench_periods.py --db /work/benchdata/bench.db
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ZONE_NAME = "America/New_York"
TEAM = "team07"
TARGETS_MS = {"T1 one team by week, 52 weeks": 20.0, "T2 one team by month, 12 months": 20.0,
              "W1 windows, all agents, 30 days": 500.0}  # fmt: skip


def questions(db: Path, as_of: int, use_rollups: bool) -> dict[str, Callable[[], Any]]:
    import sqlite3

    from bot.storage import open_store
    from bot.storage.sqlite_rollups import stale_days
    from metrics.engine import compute
    from metrics.periods import local_date, local_midnight_us
    from metrics.query import MetricQuery
    from metrics.timeutil import US_PER_DAY
    from metrics.windows import RETURN_BOUNDS_US, parse_windows, window_sensitivity

    zone = ZoneInfo(ZONE_NAME)
    store = open_store(f"sqlite:///{db}")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        if stale_days(conn, zone) != 0:
            raise SystemExit("rollups are stale: run store.refresh_rollups first (build_db.py does)")
    ask = partial(compute, use_rollups=use_rollups)
    today = local_date(as_of, zone)
    monday = today - timedelta(days=today.weekday())
    weeks_since = local_midnight_us(monday - timedelta(weeks=52), zone)
    first = today.replace(day=1)
    for _ in range(12):
        first = (first - timedelta(days=1)).replace(day=1)
    months_since = local_midnight_us(first, zone)
    team = (("team", TEAM),)

    def by(kind: str, since: int) -> list[tuple[str, int, int, int]]:
        query = MetricQuery("acr", 7 * US_PER_DAY, since, as_of, as_of, team, kind)  # type: ignore[arg-type]
        result = ask(store, query, zone)
        return [(r.key, r.counts.matured, r.counts.resolved, r.counts.pending) for r in result.rows]

    windows = parse_windows("1h,1d,3d,7d")

    def sensitivity() -> Any:
        query = MetricQuery("acr", 7 * US_PER_DAY, as_of - 30 * US_PER_DAY, as_of, as_of)
        found = window_sensitivity(store, query, windows, zone, ask, quick=store if use_rollups else None)
        assert len(found.returns) == len(RETURN_BOUNDS_US)
        return ([(w, c.matured, c.resolved) for w, c in found.windows], found.returns)

    return {
        "T1 one team by week, 52 weeks": lambda: by("week", weeks_since),
        "T2 one team by month, 12 months": lambda: by("month", months_since),
        "W1 windows, all agents, 30 days": sensitivity,
    }


def timed(ask: Callable[[], Any], runs: int) -> tuple[float, Any]:
    answer = None
    for _ in range(2):
        answer = ask()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        answer = ask()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("bench/out/bench.db"))
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--as-of", help="ISO instant (local wall time in America/New_York without an offset)")
    args = parser.parse_args()
    import sqlite3

    from metrics.timeutil import iso_utc, parse_instant

    if args.as_of is None:
        conn = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
        as_of = int(conn.execute("SELECT max(started_us) FROM metric_contacts").fetchone()[0])
        conn.close()
    else:
        as_of = parse_instant(args.as_of, ZoneInfo(ZONE_NAME))
    served = questions(args.db, as_of, use_rollups=True)
    counted = questions(args.db, as_of, use_rollups=False)
    print(f"as_of {iso_utc(as_of)}, median of {args.runs} runs after 2 warm-ups, {ZONE_NAME}, {args.db}")
    print(f"{'question':34} {'rollups ms':>11} {'contacts ms':>12} {'speed-up':>9}  target")
    ok = True
    for name in served:
        fast, answer = timed(served[name], args.runs)
        slow, expected = timed(counted[name], max(3, args.runs // 4))
        same = answer == expected
        within = fast < TARGETS_MS[name]
        ok = ok and same and within
        print(
            f"{name:34} {fast:11.2f} {slow:12.1f} {slow / fast:8.1f}x  <{TARGETS_MS[name]:g} ms "
            f"{'ok' if within else 'MISSED'}; answers {'identical' if same else 'DIFFER'}"
        )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
