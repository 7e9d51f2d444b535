"""``acr-bot serve`` watched from inside: what ``bench/soak.py --trace-memory`` starts instead of the command.

The same server (``bot.cli.main`` with the given arguments), plus a thread that tells where its memory is: every
SAMPLE_SECONDS one JSON line in ``$SOAK_MEMORY_DIR/inside-<run>.jsonl`` with the RSS, the bytes Python's objects
hold (tracemalloc), SQLite's own heap (page caches and statements: ``sqlite3_memory_used``), glibc malloc's bytes
in use and free (``mallinfo2``: freed memory the process keeps) and the threads; and once a minute a tracemalloc
snapshot (``snapshot-<run>-<minute>.pickle``) that the soak compares to find what grew, line by line.

    bench/soak_serve.py serve --port 0      (SOAK_MEMORY_DIR and SOAK_RUN set by bench/soak.py)
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import psutil

from bot.process_memory import sqlite_memory_used

SAMPLE_SECONDS = 5
TRACEBACK_FRAMES = 3


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]  # fmt: skip


def _glibc() -> ctypes.CDLL | None:
    """glibc, for its malloc statistics, when it is the C library."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        return libc
    except (OSError, AttributeError):
        return None


def _resident_kinds() -> dict[str, float]:
    """The resident set by kind (Linux): anonymous (heaps, stacks), file-backed (code and libraries paged in) and
    shared memory (SQLite's -shm), in MiB: a leak is anonymous; libraries paged in on first use are not."""
    kinds: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile", "RssShmem"):
                kinds[f"{name.lower()[3:]}_mib"] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return kinds


def _thread_kinds() -> dict[str, int]:
    """Live threads by name with the numbers taken out ("AnyIO worker thread", "ThreadPoolExecutor-0_"): which
    pool a rise in threads comes from."""
    kinds: dict[str, int] = {}
    for thread in threading.enumerate():
        kind = thread.name.rstrip("0123456789").rstrip("-_ ") or "?"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def watch(folder: Path, run: str) -> None:
    libc = _glibc()
    process = psutil.Process()
    started = time.monotonic()
    next_snapshot = 0
    with (folder / f"inside-{run}.jsonl").open("a") as out:
        while True:
            seconds = time.monotonic() - started
            traced, _peak = tracemalloc.get_traced_memory()
            sample = {
                "seconds": round(seconds),
                "rss_mib": process.memory_info().rss / 2**20,
                "python_mib": traced / 2**20,
                "sqlite_mib": sqlite_memory_used() / 2**20,
                "threads": threading.active_count(),
                "thread_kinds": _thread_kinds(),
                "tracemalloc_mib": tracemalloc.get_tracemalloc_memory() / 2**20,  # the tracing's own cost, in the RSS
                **_resident_kinds(),
            }
            if libc is not None:
                info = libc.mallinfo2()
                sample["malloc_used_mib"] = (info.uordblks + info.hblkhd) / 2**20
                sample["malloc_free_mib"] = info.fordblks / 2**20
            out.write(json.dumps(sample) + "\n")
            out.flush()
            if seconds >= next_snapshot * 60:
                tracemalloc.take_snapshot().dump(str(folder / f"snapshot-{run}-{next_snapshot}.pickle"))
                next_snapshot += 1
            time.sleep(SAMPLE_SECONDS)


# What ``acr-bot serve`` imports, imported before tracemalloc starts: tracing the imports of pandas, numpy and
# matplotlib takes minutes, and what a module holds once imported is not what the soak looks for.
PRELOADED = (
    "bot.cli", "uvicorn", "bot.http.app", "bot.http.server", "bot.scheduler.manage", "bot.scheduler.service",
    "bot.slack.app", "bot.charts", "bot.storage.sqlite", "pandas", "numpy", "matplotlib.pyplot",
)  # fmt: skip


def main() -> None:
    import importlib

    for module in PRELOADED:
        importlib.import_module(module)
    tracemalloc.start(TRACEBACK_FRAMES)
    folder = Path(os.environ["SOAK_MEMORY_DIR"])
    threading.Thread(target=watch, args=(folder, os.environ["SOAK_RUN"]), daemon=True, name="memory").start()
    from bot.cli import main as acr_bot

    sys.argv = ["acr-bot", *sys.argv[1:]]
    acr_bot()


if __name__ == "__main__":
    main()
