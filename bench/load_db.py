"""Fill an empty PostgreSQL store with the benchmark database's contacts (untimed setup for the other benches).

The SQLite file is opened read-only (it is shared). A COPY-based builder, faster than writing 10M contacts through
the store's writer on a shared machine: one transaction COPYs every contact, works out the candidates with their
next repeats in one window pass (the store's own initial-load statements, ``bot.storage.postgres``) and their copy
of the quick returns, and builds the secondary indexes once at the end (their definitions read from the schema,
dropped first); then the store's own ``refresh_rollups`` builds the rollups, and VACUUM ANALYZE sets the visibility
map for index-only scans. Prints how long each step took. The benchmarks check the result: bench_metrics compares
every answer with DuckDB's.

    .venv/bin/python bench/load_db.py --db /work/benchdata/bench.db \\
        --database-url 'postgresql://postgres@/acr_bench?host=/work/benchdata/pg/sock'
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from bot.storage import open_store
from bot.storage.postgres import LOAD_QUICK_RETURNS, load_candidates
from metrics.records import Contact

ZONE = ZoneInfo("America/New_York")  # the zone of bench_metrics.py's questions
COLUMNS = (*Contact._fields, "received_at")
TYPES = [
    "int8" if c in ("tier", "started_us", "ended_us") else "bool" if c in ("escalated", "resolved") else "text"
    for c in COLUMNS
]
SECONDARY_INDEXES = """
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = current_schema() AND tablename IN ('contacts', 'metric_contacts')
    AND indexdef NOT LIKE 'CREATE UNIQUE%'
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("bench/out/bench.db"))
    parser.add_argument("--database-url", required=True, help="the empty PostgreSQL store to fill")
    parser.add_argument("--limit", type=int, default=0, help="copy only the first N contacts (0: all)")
    args = parser.parse_args()
    source = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
    store = open_store(args.database_url)  # creates and migrates the schema
    if store.count_contacts():
        raise SystemExit("the target already holds contacts")
    began = time.perf_counter()
    limit = f" LIMIT {args.limit}" if args.limit else ""
    with psycopg.connect(args.database_url) as conn:
        indexes = conn.execute(SECONDARY_INDEXES).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        rows = source.execute(f"SELECT {', '.join(COLUMNS)} FROM contacts ORDER BY pk{limit}")
        copied = 0
        with conn.cursor().copy(f"COPY contacts ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(TYPES)
            while chunk := rows.fetchmany(50_000):
                for row in chunk:
                    escalated, resolved = row[10], row[11]
                    copy.write_row(
                        (*row[:10], bool(escalated), None if resolved is None else bool(resolved), *row[12:])
                    )
                copied += len(chunk)
                if copied % 1_000_000 < 50_000:
                    print(f"  {copied:,} copied, {copied / (time.perf_counter() - began):,.0f} contacts/s", flush=True)
        step = time.perf_counter()
        print(f"COPY of {copied:,} contacts: {step - began:.0f} s", flush=True)
        conn.execute(load_candidates())  # the store's own initial load: in time order, with every column
        conn.execute(LOAD_QUICK_RETURNS)  # the store's copy of the quick returns, as its initial loads fill it
        print(f"candidates with next repeats (window pass): {time.perf_counter() - step:.0f} s", flush=True)
        step = time.perf_counter()
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("UPDATE store_stats SET value = %s WHERE name = 'contacts'", (copied,))
        print(f"secondary indexes: {time.perf_counter() - step:.0f} s", flush=True)
    step = time.perf_counter()
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE contacts")
        conn.execute("VACUUM ANALYZE metric_contacts")
    print(f"VACUUM ANALYZE: {time.perf_counter() - step:.0f} s", flush=True)
    step = time.perf_counter()
    days = store.refresh_rollups(ZONE)
    print(f"rollups for {days} UTC days (refresh_rollups): {time.perf_counter() - step:.0f} s", flush=True)
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE metric_rollup_day, metric_rollup_hour, metric_rollup_value")
    store.close()
    print(f"built in {time.perf_counter() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
