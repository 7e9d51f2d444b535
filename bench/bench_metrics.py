"""The metric engine against DuckDB and pandas on the benchmark database (see build_db.py, export_duckdb.py).

Three questions, as_of = the end of the data (the last contact's start), BOT_TIMEZONE America/New_York:
  Q1  ACR of one agent, 7-day window, last 30 days
  Q2  ACR by agent (all agents), 7-day window, last 30 days
  Q3  ACR by day for one team, 7-day window, last 90 days
Each engine runs in its own process (so peak memory is its own), answers every question ``--runs`` times
after two warm-ups, and reports the median; the answers of all three are compared, row by row.

    flock /tmp/acr-bench.lock .venv/bin/python bench/bench_metrics.py
    flock /tmp/acr-bench.lock .venv/bin/python bench/bench_metrics.py --as-of mid-day

``--database-url`` asks another store than ``--db`` (the SQLite file the DuckDB copy was exported from) for
our engine, e.g. the same data in another backend; given more than once, each store is asked in the same run and
shown in its own column (both backends side by side):

    flock /tmp/acr-bench.lock .venv/bin/python bench/bench_metrics.py --db /work/benchdata/bench.db \
        --database-url sqlite:////work/benchdata/bench.db --database-url 'postgresql://acr@/acr?host=/run/postgresql'

``--as-of mid-day`` asks at 14:37 local on the data's last day, the common real case: every edge (the
period's start 30 or 90 days earlier, as_of - 7d) then falls in the middle of a busy local day.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ZONE_NAME = "America/New_York"
DAY = 86_400_000_000
WINDOW = 7 * DAY
AGENT, TEAM = "agent123", "team07"
QUESTIONS = {
    "Q1 one agent, 7d window, last 30d": ("agent", 30),
    "Q2 by agent, last 30d": ("by_agent", 30),
    "Q3 one team by day, last 90d": ("team_by_day", 90),
}
TARGETS_MS = {
    "Q1 one agent, 7d window, last 30d": 20,
    "Q2 by agent, last 30d": 500,
    "Q3 one team by day, last 90d": 500,
}
Answer = dict[str, list[int]]


def as_of_of(db: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    return int(conn.execute("SELECT max(started_us) FROM contacts").fetchone()[0])


# --- the three engines ------------------------------------------------------------------------------


def stale_rollup_days(db: Path, zone: ZoneInfo) -> int:
    """How many days the SQLite file's rollups still have to rebuild (read-only: the bench never writes)."""
    import sqlite3

    from bot.storage.sqlite_rollups import stale_days

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return stale_days(conn, zone)
    finally:
        conn.close()


def ours(database_url: str, as_of: int, use_rollups: bool = True) -> dict[str, Callable[[], Answer]]:
    from bot.storage import open_store
    from metrics.engine import compute
    from metrics.query import MetricQuery

    zone = ZoneInfo(ZONE_NAME)
    if (
        database_url.startswith("sqlite:///")
        and stale_rollup_days(Path(database_url.removeprefix("sqlite:///")), zone) != 0
    ):
        raise SystemExit("rollups are stale: run store.refresh_rollups first (build_db.py does)")
    store = open_store(database_url)

    def ask(kind: str, days: int) -> Answer:
        filters: tuple[Any, ...] = ()
        by = None
        if kind == "agent":
            filters = (("agent", AGENT),)
        elif kind == "by_agent":
            by = "agent"
        else:
            filters, by = (("team", TEAM),), "day"
        query = MetricQuery("acr", WINDOW, as_of - days * DAY, as_of, as_of, filters, by)  # type: ignore[arg-type]
        result = compute(store, query, zone, use_rollups=use_rollups)
        if by is None:
            c = result.total
            return {"": [c.matured, c.resolved, c.pending]}
        return {
            r.key: [r.counts.matured, r.counts.resolved, r.counts.pending]
            for r in result.rows
            if r.counts.matured or r.counts.pending
        }

    return {name: partial(ask, kind, days) for name, (kind, days) in QUESTIONS.items()}


def duck(path: Path, as_of: int) -> dict[str, Callable[[], Answer]]:
    import duckdb

    conn = duckdb.connect(str(path), read_only=True)
    conn.execute("SET TimeZone = 'UTC'")
    counts = f"""
        count(*) FILTER (WHERE end_us + {WINDOW} <= {as_of}),
        count(*) FILTER (WHERE end_us + {WINDOW} <= {as_of}
                         AND (next_repeat_us IS NULL OR next_repeat_us > end_us + {WINDOW})),
        count(*) FILTER (WHERE end_us + {WINDOW} > {as_of})"""

    def where(days: int) -> str:
        return (
            f"direction = 'inbound' AND agent IS NOT NULL "
            f"AND started_us >= {as_of - days * DAY} AND started_us < {as_of}"
        )

    def q1() -> Answer:
        row = conn.execute(f"SELECT {counts} FROM contacts WHERE {where(30)} AND agent = ?", [AGENT]).fetchone()
        assert row is not None
        return {"": list(row)}

    def q2() -> Answer:
        rows = conn.execute(f"SELECT agent, {counts} FROM contacts WHERE {where(30)} GROUP BY agent").fetchall()
        return {r[0]: list(r[1:]) for r in rows}

    def q3() -> Answer:
        day = f"CAST(timezone('{ZONE_NAME}', to_timestamp(started_us // 1000000)) AS DATE)"
        rows = conn.execute(
            f"SELECT {day} AS d, {counts} FROM contacts WHERE {where(90)} AND team = ? GROUP BY d", [TEAM]
        ).fetchall()
        return {r[0].isoformat(): list(r[1:]) for r in rows}

    return dict(zip(QUESTIONS, (q1, q2, q3), strict=True))


def pandas_engine(path: Path, as_of: int) -> dict[str, Callable[[], Answer]]:
    import duckdb
    import pandas as pd

    frame = duckdb.connect(str(path), read_only=True).execute("SELECT * FROM contacts").df()
    for column in ("direction", "agent", "team", "queue", "channel"):
        frame[column] = frame[column].astype("category")

    def scope(days: int) -> pd.DataFrame:
        mask = (
            (frame["direction"] == "inbound")
            & frame["agent"].notna()
            & (frame["started_us"] >= as_of - days * DAY)
            & (frame["started_us"] < as_of)
        )
        return frame[mask]

    def counted(part: pd.DataFrame) -> pd.DataFrame:
        matured = part["end_us"] + WINDOW <= as_of
        repeat = part["next_repeat_us"].notna() & (part["next_repeat_us"] <= part["end_us"] + WINDOW)
        return pd.DataFrame({"matured": matured, "resolved": matured & ~repeat.astype(bool), "pending": ~matured})

    def q1() -> Answer:
        part = scope(30)
        c = counted(part[part["agent"] == AGENT]).sum()
        return {"": [int(c["matured"]), int(c["resolved"]), int(c["pending"])]}

    def q2() -> Answer:
        part = scope(30)
        grouped = counted(part).groupby(part["agent"].astype(str)).sum()
        return {k: [int(v) for v in row] for k, row in zip(grouped.index, grouped.to_numpy(), strict=True)}

    def q3() -> Answer:
        part = scope(90)
        part = part[part["team"] == TEAM]
        day = pd.to_datetime(part["started_us"], unit="us", utc=True).dt.tz_convert(ZONE_NAME).dt.strftime("%Y-%m-%d")
        grouped = counted(part).groupby(day).sum()
        return {k: [int(v) for v in row] for k, row in zip(grouped.index, grouped.to_numpy(), strict=True)}

    return dict(zip(QUESTIONS, (q1, q2, q3), strict=True))


# --- running ----------------------------------------------------------------------------------------


def run_engine(engine: str, database_url: str, duckdb_path: Path, runs: int, as_of: int) -> dict[str, Any]:
    began = time.perf_counter()
    makers: dict[str, Callable[[], dict[str, Callable[[], Answer]]]] = {
        "ours": lambda: ours(database_url, as_of),
        "ours_rows": lambda: ours(database_url, as_of, use_rollups=False),
        "duckdb": lambda: duck(duckdb_path, as_of),
        "pandas": lambda: pandas_engine(duckdb_path, as_of),
    }
    questions = makers[engine.split(":", 1)[0]]()
    setup_s = time.perf_counter() - began
    out: dict[str, Any] = {"engine": engine, "setup_s": setup_s, "questions": {}}
    for name, ask in questions.items():
        for _ in range(2):
            answer = ask()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            answer = ask()
            times.append((time.perf_counter() - start) * 1000)
        out["questions"][name] = {"median_ms": statistics.median(times), "min_ms": min(times), "answer": answer}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def backend_name(database_url: str) -> str:
    scheme = database_url.split(":", 1)[0]
    return {"postgresql": "pg", "postgres": "pg"}.get(scheme, scheme)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("bench/out/bench.db"))
    parser.add_argument("--duckdb", type=Path, default=Path("bench/out/bench.duckdb"))
    parser.add_argument(
        "--database-url", action="append", help="a store our engine asks (default: sqlite:///DB); repeatable"
    )
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument(
        "--as-of", help="ISO instant instead of the end of the data, or 'mid-day' (14:37 local on its last day)"
    )
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    args = parser.parse_args()
    urls: list[str] = args.database_url or [f"sqlite:///{args.db}"]
    from metrics.timeutil import from_us, iso_utc, parse_instant

    zone = ZoneInfo(ZONE_NAME)
    if args.as_of is None:
        as_of = as_of_of(args.db)
    elif args.as_of == "mid-day":
        last_day = from_us(as_of_of(args.db), zone).date()
        as_of = parse_instant(f"{last_day.isoformat()}T14:37:00", zone)
    else:
        as_of = parse_instant(args.as_of, zone)
    if args.engine:
        print(json.dumps(run_engine(args.engine, urls[0], args.duckdb, args.runs, as_of)))
        return
    # Each engine in its own process; ours once per store (with rollups, then counting rows only).
    runs = [(f"{kind} {backend_name(url)}", kind, url) for url in urls for kind in ("ours", "ours_rows")]
    runs += [("duckdb", "duckdb", urls[0]), ("pandas", "pandas", urls[0])]
    results = {}
    for label, kind, url in runs:
        command = [sys.executable, __file__, "--engine", kind, "--db", str(args.db), "--duckdb", str(args.duckdb)]
        command += ["--database-url", url, "--runs", str(args.runs), "--as-of", iso_utc(as_of)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[label] = json.loads(done.stdout)

    ours_labels = [f"ours {backend_name(url)}" for url in urls]
    print(f"as_of {iso_utc(as_of)}, median of {args.runs} runs after 2 warm-ups, 7-day window, {ZONE_NAME}")
    print(
        f"{'question':36} " + "".join(f"{label + ' ms':>16}" for label in ours_labels) + f"{'duckdb ms':>11}"
        f"{'pandas ms':>11}  target (each of ours: < target, faster than duckdb and pandas, same answers)"
    )
    ok = True
    for name in QUESTIONS:
        theirs = results["duckdb"]["questions"][name]
        pandas_q = results["pandas"]["questions"][name]
        verdicts = []
        for label in ours_labels:
            mine = results[label]["questions"][name]
            same = mine["answer"] == theirs["answer"] == pandas_q["answer"]
            fastest = mine["median_ms"] < min(theirs["median_ms"], pandas_q["median_ms"])
            within = mine["median_ms"] < TARGETS_MS[name]
            ok = ok and same and fastest and within
            verdicts.append(
                f"{label.split()[1]} {'ok' if within and fastest else 'MISSED'} "
                f"{theirs['median_ms'] / mine['median_ms']:.0f}x duckdb{'' if same else ' DIFFER'}"
            )
        print(
            f"{name:36} "
            + "".join(f"{results[label]['questions'][name]['median_ms']:16.2f}" for label in ours_labels)
            + f"{theirs['median_ms']:11.2f}{pandas_q['median_ms']:11.2f}  <{TARGETS_MS[name]} ms: "
            + "; ".join(verdicts)
        )
    for url, label in zip(urls, ours_labels, strict=True):
        rows_label = f"ours_rows {backend_name(url)}"
        rows_only = [f"{results[rows_label]['questions'][name]['median_ms']:.1f}" for name in QUESTIONS]
        same = all(
            results[rows_label]["questions"][n]["answer"] == results[label]["questions"][n]["answer"] for n in QUESTIONS
        )
        print(
            f"{label} without rollups (rows only), ms: {', '.join(rows_only)}; answers {'identical' if same else 'DIFFER'}"
        )
        ok = ok and same
    for label in results:
        print(f"{label:14} peak RSS {results[label]['peak_rss_mb']:7.0f} MB, setup {results[label]['setup_s']:.1f} s")
    peak_ok = all(results[label]["peak_rss_mb"] < 300 for label in ours_labels)
    print(f"ours peak memory < 300 MB: {'ok' if peak_ok else 'MISSED'}")
    print("ALL OK" if ok and peak_ok else "SOME TARGET MISSED")


if __name__ == "__main__":
    main()
