"""The server's memory kept flat on glibc: few malloc arenas, and free memory handed back (bot.process_memory).

Each case runs in a fresh Python process (an arena limit is fixed once a process's threads have arenas), on the
real C library; skipped where that is not glibc. bench/soak.py --trace-memory measures the effect on the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bot.process_memory import on_glibc

pytestmark = pytest.mark.skipif(not on_glibc(), reason="glibc's malloc only")

# Twelve threads allocate at once (as the server's worker threads do); then the memory of ~100 MiB of 1 KiB
# blocks is freed except one block in a hundred, so no arena can shrink from its top by itself.
CHILD = textwrap.dedent(
    """
    import ctypes, json, os, sys, threading
    import psutil
    from bot.process_memory import MemoryKeeper
    keeper = MemoryKeeper() if sys.argv[1] == "keeper" else None
    kept = []
    def work():
        blocks = [bytearray(1000) for _ in range(8_000)]
        kept.extend(blocks[::100])
    threads = [threading.Thread(target=work) for _ in range(12)]
    for thread in threads: thread.start()
    for thread in threads: thread.join()
    before = psutil.Process().memory_info().rss
    trimmed = keeper.trim() if keeper else False
    after = psutil.Process().memory_info().rss
    stats = os.pipe()
    saved = os.dup(2); os.dup2(stats[1], 2)
    ctypes.CDLL("libc.so.6").malloc_stats()
    os.dup2(saved, 2); os.close(stats[1])
    arenas = os.read(stats[0], 1 << 20).decode().count("Arena ")
    print(json.dumps({"arenas": arenas, "freed_mib": (before - after) / 2**20, "trimmed": trimmed}))
    """
)


def child(mode: str, **env: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=120, check=True,
        env={**{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}, **env},
    )  # fmt: skip
    figures: dict[str, float] = json.loads(result.stdout)
    return figures


def test_without_the_keeper_threads_get_arenas_of_their_own_and_keep_freed_memory() -> None:
    plain = child("plain")
    assert plain["arenas"] > 2 and not plain["trimmed"]


def test_the_keeper_limits_arenas_to_two_and_hands_freed_memory_back() -> None:
    kept = child("keeper")
    assert kept["arenas"] <= 2
    assert kept["trimmed"] and kept["freed_mib"] > 8  # freed pages leave the resident set (~17 MiB here)


def test_an_arena_limit_set_by_the_operator_is_left_as_it_is() -> None:
    # glibc makes an arena only when threads contend, so on a busy machine 12 threads may need fewer than 4;
    # what matters is that the keeper did not put its own limit of 2 over the operator's 4.
    assert 2 < child("keeper", MALLOC_ARENA_MAX="4")["arenas"] <= 4
