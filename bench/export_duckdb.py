"""Copy the benchmark contacts into a DuckDB file (untimed), for bench/bench_metrics.py's comparison.

DuckDB's sqlite extension cannot be downloaded here (no network), so DuckDB gets the same data in its own
columnar table: its strongest form. It also gets our derived ``next_repeat_us`` column, so it answers the
same questions without recomputing repeats (which it would otherwise have to do with a window function).

    flock /tmp/acr-bench.lock .venv/bin/python bench/export_duckdb.py bench/out/bench.db bench/out/bench.duckdb
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd

COLUMNS = (
    "started_us",
    "end_us",
    "next_repeat_us",
    "direction",
    "agent",
    "team",
    "queue",
    "channel",
    "tier",
    "escalated",
    "resolved",
)


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    if target.exists():
        target.unlink()
    began = time.perf_counter()
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    duck = duckdb.connect(str(target))
    # next_repeat_us lives with the candidates (metric_contacts); other contacts have none.
    selected = ", ".join(f"m.{c}" if c == "next_repeat_us" else f"c.{c}" for c in COLUMNS)
    cursor = conn.execute(
        f"SELECT {selected} FROM contacts AS c LEFT JOIN metric_contacts AS m "
        "ON m.started_us = c.started_us AND m.pk = c.pk ORDER BY c.started_us"
    )
    created = False
    total = 0
    while rows := cursor.fetchmany(500_000):
        frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
        frame["next_repeat_us"] = frame["next_repeat_us"].astype("Int64")
        frame["resolved"] = frame["resolved"].astype("Int64")
        if not created:
            duck.execute("CREATE TABLE contacts AS SELECT * FROM frame")
            created = True
        else:
            duck.execute("INSERT INTO contacts SELECT * FROM frame")
        total += len(rows)
    duck.execute("CHECKPOINT")
    print(f"exported {total:,} contacts to {target} in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
