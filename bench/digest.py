"""How long one daily digest takes to compose (its 14 engine questions, and the chart) on a big database.

A digest is a scheduled job, so seconds are fine; this checks it stays there at 10 million contacts.
Opens the database through the store (which applies pending migrations, e.g. the scheduler's tables).

    flock /tmp/acr-bench.lock .venv/bin/python bench/digest.py --db bench/out/bench.db --team team07

``--database-url`` asks another store with the same data (as_of is still the end of the data in ``--db``).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from contextlib import closing
from pathlib import Path

from bot.scheduler.chart import trend_chart
from bot.scheduler.digest import compose, gather
from bot.storage import open_store
from metrics.timeutil import load_zone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("bench/out/bench.db"))
    parser.add_argument("--database-url", help="the store to ask (default: sqlite:///DB)")
    parser.add_argument("--zone", default="America/New_York")
    parser.add_argument("--team", default="team07")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    zone = load_zone(args.zone)
    with closing(sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)) as conn:
        as_of_us = int(conn.execute("SELECT max(started_us) FROM contacts").fetchone()[0])  # the end of the data
    store = open_store(args.database_url or f"sqlite:///{args.db}")
    try:
        for scope in ("", f"team:{args.team}"):
            gathered: list[float] = []
            charted: list[float] = []
            for _ in range(args.runs):
                start = time.perf_counter()
                digest = compose(gather(store, scope, as_of_us, zone), [], 30, zone)
                gathered.append(time.perf_counter() - start)
                start = time.perf_counter()
                trend_chart(digest.days, "bench")
                charted.append(time.perf_counter() - start)
            print(
                f"digest {scope or 'all teams'}: compose median {statistics.median(gathered):.2f} s "
                f"(runs {', '.join(f'{t:.2f}' for t in gathered)}), chart median {statistics.median(charted):.2f} s"
            )
    finally:
        store.close()


if __name__ == "__main__":
    main()
