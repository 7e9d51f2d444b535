"""What the metric migration costs the write path: ``store.upsert`` of 200k contacts with and without it.

"without" drops what the migration adds to every write (the two candidate indexes, the dirty-day triggers)
and turns the end-of-write dirty-day hook into a no-op; "with" is the store as shipped. Alternating rounds,
each on a fresh file, median reported.

    flock /tmp/acr-bench.lock .venv/bin/python bench/ingest_impact.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_db

from bot.storage import sqlite_metrics
from bot.storage.sqlite import SQLiteContactStore

ADDED = (
    "DROP INDEX contacts_candidates_time",
    "DROP INDEX contacts_candidates_agent",
    "DROP TRIGGER contacts_rollup_dirty_update",
    "DROP TRIGGER contacts_rollup_dirty_delete",
)


def one_round(contacts: list, with_metrics: bool, folder: Path, batch: int) -> float:
    path = folder / f"impact-{with_metrics}-{time.monotonic_ns()}.db"
    store = SQLiteContactStore(path)
    hook = sqlite_metrics.mark_dirty
    if not with_metrics:
        for statement in ADDED:
            store._writer.execute(statement)
        sqlite_metrics.mark_dirty = lambda conn: None  # type: ignore[assignment]
    try:
        began = time.perf_counter()
        for start in range(0, len(contacts), batch):
            store.upsert(contacts[start : start + batch])
        return len(contacts) / (time.perf_counter() - began)
    finally:
        sqlite_metrics.mark_dirty = hook  # type: ignore[assignment]
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=200_000, help="contacts per upsert call")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # 200k contacts over 30 days: about the density of the 10M benchmark database.
    cols = build_db.generate(args.contacts, 30, seed=11)
    contacts = build_db.contacts_of(cols, 0, len(cols["started"]))
    rates: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(dir="bench/out") as folder:
        for _ in range(args.rounds):
            for with_metrics in (False, True):
                rates[with_metrics].append(one_round(contacts, with_metrics, Path(folder), args.batch))
    without, with_ = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"{len(contacts):,} contacts, upsert batches of {args.batch:,}, median of {args.rounds} rounds")
    print(f"  without the metric migration: {without:9,.0f} contacts/s  {sorted(round(r) for r in rates[False])}")
    print(f"  with the metric migration:    {with_:9,.0f} contacts/s  {sorted(round(r) for r in rates[True])}")
    print(f"  cost: {(1 - with_ / without) * 100:.1f}% of ingest speed")


if __name__ == "__main__":
    main()
