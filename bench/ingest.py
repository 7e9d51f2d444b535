"""Bulk import speed: the real ``acr-bot ingest FILE`` of generated contacts into a fresh database.

Generates the files with ``acr-bot demo --output`` (kept in bench/out/ingest/ for re-runs), then for each format
runs ``acr-bot ingest`` in a subprocess on a new database and reports contacts/s and peak memory, sampled every
50 ms with psutil: the largest single process (RSS) and the whole process tree (the writer plus its reader
children, their proportional set size (PSS)). Target (issue 2): >= 50,000 contacts/s and < 300 MB for 1,000,000 contacts.

CPU per contact is reported beside each rate: the import's processes (user + system, its readers included) and,
for a PostgreSQL server of this machine, the server processes that serve the import's database (its backends and
their parallel workers, listed by pg_stat_activity and read with psutil every 50 ms while they run: the last
50 ms of each may be missed; one that was there before the import counts from the import's start). The server's
background processes (WAL writer, checkpointer), which serve every database, are not counted, nor is anything
else the server does meanwhile (a shared server: others' work).

    flock /tmp/acr-bench.lock .venv/bin/python bench/ingest.py [--contacts 1000000] [--formats jsonl csv]

``--database-url`` imports into another store instead of a new SQLite file per format: it must be empty, and
each format is imported into it in turn (so give one format). ``--with-sqlite`` then imports the same file into
a new SQLite file too, just after, for the two backends side by side in one run:

    flock /tmp/acr-bench.lock .venv/bin/python bench/ingest.py --formats jsonl --with-sqlite \
        --database-url "postgresql://postgres@/empty_db?host=/run/postgresql"
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
ACR_BOT = str(Path(sys.executable).with_name("acr-bot"))
AS_OF = "2026-11-20T12:00:00Z"
PSS_EVERY = 10  # samples (of 50 ms): the process tree's PSS every half second


def generate(contacts: int, fmt: str, folder: Path, env: dict[str, str]) -> Path:
    path = folder / f"demo-{contacts}-seed1.{fmt}"
    if path.exists():
        print(f"{path.name}: exists, reused")
        return path
    began = time.perf_counter()
    command = [ACR_BOT, "demo", "--contacts", str(contacts), "--seed", "1", "--days", "60", "--as-of", AS_OF]
    subprocess.run([*command, "--output", str(path)], check=True, env=env, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - began
    size = path.stat().st_size / 1e6
    print(f"{path.name}: generated in {seconds:.1f} s ({contacts / seconds:,.0f} contacts/s), {size:,.0f} MB")
    return path


class ServerCpu:
    """The CPU time (user + system) that a PostgreSQL server on this machine spends serving the import's
    database: its backends and their parallel workers, listed by ``pg_stat_activity`` (``datname``: parallel
    workers carry their leader's database) from a connection of its own, and read with psutil. ``sample`` reads
    them (call it often while they run); ``seconds`` sums what each spent since it was first seen, from its start
    for a process that began after ``__init__`` (the import's), from ``__init__`` for one already there (another
    client's). A process's CPU after its last sample is missed. Not measured (``measured`` False) for SQLite, or
    when the listed pids are not PostgreSQL processes of this machine (a remote server)."""

    def __init__(self, database_url: str):
        self._conn: Any = None
        self._seconds: dict[int, float] = {}
        self._before: dict[int, float] = {}
        self._local = False
        if not database_url.startswith(("postgresql:", "postgres:")):
            return
        import psycopg

        self._conn = psycopg.connect(database_url, autocommit=True)
        self._before = {pid: seconds for pid in self._pids() if (seconds := _cpu_seconds(pid)) is not None}

    def _pids(self) -> list[int]:
        rows = self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return [int(row[0]) for row in rows]

    def sample(self) -> None:
        if self._conn is None:
            return
        for pid in self._pids():
            seconds = _cpu_seconds(pid)
            if seconds is not None:
                self._local = True
                self._seconds[pid] = seconds

    @property
    def measured(self) -> bool:
        return self._local

    def seconds(self) -> float:
        return sum(seconds - self._before.get(pid, 0.0) for pid, seconds in self._seconds.items())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _cpu_seconds(pid: int) -> float | None:
    """The user + system CPU seconds of PostgreSQL process ``pid`` of this machine, else None."""
    try:
        process = psutil.Process(pid)
        if process.name() != "postgres":
            return None
        times = process.cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_ingest(
    path: Path, database_url: str, env: dict[str, str], options: Sequence[str] = (), server: ServerCpu | None = None
) -> tuple[float, int, int, str]:
    """(seconds, peak RSS of one process in bytes, peak PSS of the process tree in bytes, summary line).

    Sampled with psutil, the writer and its reader children: RSS every 50 ms, PSS every PSS_EVERY samples. (PSS
    walks each process's page tables, ~10 ms of CPU per 100 MB: read every 50 ms for three processes, with the
    children looked up each time, the sampling took 0.29 of a core from the import it measured on two; now 0.06.)"""
    run_env = {**env, "DATABASE_URL": database_url}
    began = time.perf_counter()
    process = subprocess.Popen(
        [ACR_BOT, "ingest", "--no-progress", *options, str(path)], env=run_env, stdout=subprocess.PIPE, text=True
    )
    watched = psutil.Process(process.pid)
    tree_peak = single_peak = sample = 0
    tree = [watched]
    while process.poll() is None:
        try:
            if sample % PSS_EVERY == 0:  # (the readers start once; finding them reads every process's /proc entry)
                tree = [watched, *watched.children(recursive=True)]
                # PSS: pages shared by the forked readers and the writer are counted once, split between them.
                tree_peak = max(tree_peak, sum(member.memory_full_info().pss for member in tree))
            single_peak = max(single_peak, *(member.memory_info().rss for member in tree))
        except psutil.Error:
            pass
        if server is not None:
            server.sample()
        sample += 1
        time.sleep(0.05)
    seconds = time.perf_counter() - began
    output = process.stdout.read() if process.stdout else ""
    if process.returncode != 0:
        raise SystemExit(f"acr-bot ingest failed ({process.returncode}): {output}")
    return seconds, single_peak, tree_peak, output.strip().splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--formats", nargs="+", default=["jsonl", "csv"], choices=["jsonl", "csv", "json"])
    parser.add_argument("--folder", type=Path, default=ROOT / "bench" / "out" / "ingest")
    parser.add_argument("--database-url", help="an empty store to import into (default: a new SQLite file)")
    parser.add_argument("--with-sqlite", action="store_true", help="with --database-url: a new SQLite file too")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BOT_TIMEZONE")}
    env["BOT_TIMEZONE"] = "America/New_York"
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    files = {fmt: generate(args.contacts, fmt, args.folder, env) for fmt in args.formats}
    failed = False
    for fmt, path in files.items():
        # The first run of the previous format may still be in the OS write-back; start level.
        os.sync()
        database = args.folder / f"bench-{fmt}.db"
        sqlite_url = f"sqlite:///{database}"
        urls = [args.database_url, *([sqlite_url] if args.with_sqlite else [])] if args.database_url else [sqlite_url]
        for url in urls:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
            load = os.getloadavg()[0]
            server = ServerCpu(url)
            cpu_before = children_cpu_seconds()
            seconds, single, tree, summary = run_ingest(path, url, env, server=server)
            import_cpu = children_cpu_seconds() - cpu_before
            server_cpu = server.seconds()
            server.close()
            rate = args.contacts / seconds
            ok = rate >= 50_000 and max(single, tree) < 300 * 2**20
            failed |= not ok
            print(
                f"ingest {fmt} into {url.split(':', 1)[0]}: {args.contacts:,} contacts in {seconds:.1f} s = "
                f"{rate:,.0f} contacts/s; peak RSS {single / 2**20:,.0f} MB (largest process), PSS "
                f"{tree / 2**20:,.0f} MB (whole process tree) [{'meets' if ok else 'MISSES'} >= 50,000/s and < 300 MB]"
                f" (load average {load:.2f} at its start)"
            )
            cpu = f"CPU {1e6 * (import_cpu + server_cpu) / args.contacts:.1f} us/contact: import {import_cpu:.1f} s"
            if server.measured:
                cpu += f" + server {server_cpu:.1f} s (the database's backends)"
            elif url.startswith("postgres"):
                cpu += " (the server's not measured: not a PostgreSQL server of this machine)"
            print(f"    {cpu}")
            print(f"    {summary}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
