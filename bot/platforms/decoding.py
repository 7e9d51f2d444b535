"""Decoding platform requests in worker processes, so that the server's own process only reads bodies and writes.

Why: decoding a Firehose delivery (gzip, JSON, base64, the CTR mapping, compressing each raw as the store keeps it)
took about half of the server's CPU a contact, under the GIL beside the one SQLite writer: the server used ~1.1 of
2 cores. Here ``Platform.decode_delivery`` runs in ``PLATFORM_DECODE_WORKERS`` processes (default: the cores but
one, at most 4; 0: in the server's own threads), and what comes back is the contacts as one flat list (``Decoded``),
or the refusal to answer. A request is still answered only after its contacts are committed (the server writes).

The processes are forked from the server when the first request comes (they share its loaded modules, settings
and platforms). Each one:
- ignores SIGINT and SIGTERM: the server stops them after its last request (``close``, at the app's shutdown);
- ends when the server's process ends, SIGKILL included (noticed within a fifth of a second);
- replaces the sockets it inherited (the listener, open connections) by /dev/null, so that a connection the server
  closes is closed for its client; the fork's copies of the store's connections are never used or closed (the
  process ends by ``os._exit``).
The roster's lookup (``bot.roster``: up to thousands of agents, 25 ms to pickle for 5,000) goes to a process only
when it changed: each request names the lookup's version (``RosterLookups``), a process keeps the last one it got,
and a process that has an older one answers ``NEEDS_ROSTER`` instead, for the request to come again with it (once
a process and a roster change: the roster changes seldom).
A process that dies fails the requests it had with DecoderStopped (503: nothing was stored, send it again), and
new processes replace the pool (``concurrent.futures`` gives up on a pool whose process died); a request that
finds the pool broken goes to the new one. A decode has a deadline (``DECODE_DEADLINE_SECONDS``): a process that
has not answered by then (stopped, deadlocked, pathologically slow) would otherwise hold a server thread and its
delivery forever, so the pool's processes are killed and replaced, and the request gets the same 503. ``close``
waits for the processes a bounded time too (``CLOSE_SECONDS``), then kills them, so that a shutdown ends.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import stat
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess
from typing import Any

from starlette.datastructures import Headers

from bot.platforms.base import Decoded, Decoders, DecoderStopped, Platform
from bot.roster import Lookup, RosterEntry, lookup
from bot.storage import RawPacker

log = logging.getLogger("acr_bot.platforms")

MAX_DEFAULT_WORKERS = 4  # the one writer takes what ~2 processes decode; more only take memory
DECODE_DEADLINE_SECONDS = 30.0  # a delivery decodes in well under a second; far under the wait of a sender
CLOSE_SECONDS = 5.0  # at shutdown no request is in flight: a process still running after this is stuck
KILLED_SECONDS = 2.0  # how long a SIGKILLed process may take to end (it was stopped: it must be scheduled first)


def default_workers() -> int:
    """``PLATFORM_DECODE_WORKERS`` when unset: a core is left to the server's own process (reading, writing)."""
    return min(MAX_DEFAULT_WORKERS, max(0, (os.cpu_count() or 1) - 1))


def decoders_for(platforms: Sequence[Platform], workers: int | None) -> Decoders:
    """The decoders of ``platforms``: ``workers`` processes (None: ``default_workers()``), or this process (0)."""
    count = default_workers() if workers is None else workers
    return WorkerDecoders(platforms, count) if count else InProcessDecoders(platforms)


class RosterLookups:
    """The lookup (``bot.roster.lookup``) of the roster given last, made again only when the roster changed, with
    its version: a number that grows with each change. Thread-safe. A store gives the same list while its roster
    has not changed (SQLite), else an equal one (compared here: a few ms for 5,000 agents)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: Sequence[RosterEntry] | None = None
        self._current: tuple[int, Lookup] = (0, {})  # what a decoding process has before it is sent one

    def of(self, entries: Sequence[RosterEntry]) -> tuple[int, Lookup]:
        with self._lock:
            if entries is not self._entries and entries != self._entries:
                self._current = (self._current[0] + 1, lookup(entries))
            self._entries = entries
            return self._current


class InProcessDecoders:
    """Decodes in the calling thread (``PLATFORM_DECODE_WORKERS=0``)."""

    def __init__(self, platforms: Sequence[Platform]):
        self._platforms = {platform.name: platform for platform in platforms}
        self._lookups = RosterLookups()

    def decode(
        self,
        name: str,
        headers: Headers,
        path: str,
        body: bytes,
        entries: Sequence[RosterEntry],
        packer: RawPacker | None,
    ) -> Decoded:
        _, known = self._lookups.of(entries)
        return self._platforms[name].decode_delivery(headers, path, body, known, packer)

    def close(self) -> None:
        pass


class WorkerDecoders:
    """Decodes in a pool of worker processes (see the module); thread-safe, blocking."""

    def __init__(self, platforms: Sequence[Platform], workers: int):
        self._platforms = {platform.name: platform for platform in platforms}
        self.workers = workers
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self._lookups = RosterLookups()

    def decode(
        self,
        name: str,
        headers: Headers,
        path: str,
        body: bytes,
        entries: Sequence[RosterEntry],
        packer: RawPacker | None,
    ) -> Decoded:
        version, known = self._lookups.of(entries)
        decoded = self._run((name, headers.raw, path, body, version, None, packer))
        if isinstance(decoded, str):  # NEEDS_ROSTER: that process has an older lookup: again, with this one
            decoded = self._run((name, headers.raw, path, body, version, known, packer))
        assert isinstance(decoded, Decoded)
        return decoded

    def _run(self, job: tuple[Any, ...]) -> Decoded | str:
        """``_decode(*job)`` in a process of the pool (see the module: a dead or silent process, DecoderStopped)."""
        pool = self._current()
        try:
            future = pool.submit(_decode, *job)
        except BrokenProcessPool:  # a process died since the last request: this one goes to the new pool
            pool = self._replace(pool)
            future = pool.submit(_decode, *job)
        deadline = DECODE_DEADLINE_SECONDS
        try:
            return future.result(timeout=deadline)
        except BrokenProcessPool:
            self._replace(pool)
            raise DecoderStopped(
                "the process decoding this request stopped unexpectedly; nothing was stored, send it again"
            ) from None
        except TimeoutError:
            log.error("a platform decoding process did not answer within %g s; killing the pool's processes", deadline)
            _kill(_processes(pool))  # (a stopped process ends by SIGKILL only; its neighbours' requests get 503s)
            self._replace(pool)
            raise DecoderStopped(
                f"decoding this request took longer than {deadline:g} s; nothing was stored, send it again"
            ) from None

    def pids(self) -> list[int]:
        """The worker processes running now (what the tests of a dying worker kill)."""
        with self._lock:
            return [process.pid for process in _processes(self._pool) if process.is_alive() and process.pid is not None]

    def close(self) -> None:
        """Stop the processes (after the requests in flight: the server calls it once it has answered them);
        those that have not ended within ``CLOSE_SECONDS`` are killed."""
        with self._lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is None:
            return
        processes = _processes(pool)
        pool.shutdown(wait=False, cancel_futures=True)
        ends = time.monotonic() + CLOSE_SECONDS
        for process in processes:
            process.join(max(0.0, ends - time.monotonic()))
        if any(process.is_alive() for process in processes):
            log.error("a platform decoding process did not stop within %g s; killing it", CLOSE_SECONDS)
            _kill(processes)
            for process in processes:  # (a killed process ends once scheduled: close returns after that)
                process.join(KILLED_SECONDS)
        pool.shutdown(wait=True)  # (prompt now: the pool's own thread ends once its processes have)

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the decoding processes are stopped (the server is shutting down)")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("fork"),
                    initializer=_start_worker,
                    initargs=(self._platforms, os.getpid()),
                )
            return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """A new pool instead of ``broken`` (unless another thread has replaced it already)."""
        with self._lock:
            if self._pool is broken:
                log.error("a platform decoding process stopped unexpectedly; starting new ones")
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)
        return self._current()


def _processes(pool: ProcessPoolExecutor | None) -> list[BaseProcess]:
    """The processes of ``pool`` (``concurrent.futures`` keeps them in ``_processes``: it has no public way)."""
    processes = getattr(pool, "_processes", None) or {}
    return list(processes.values())


def _kill(processes: Sequence[BaseProcess]) -> None:
    """SIGKILL those of ``processes`` still running (a stopped process ignores every other signal until resumed)."""
    for process in processes:
        if process.is_alive():
            process.kill()


# --- in a worker process ------------------------------------------------------------------------------------

_platforms: dict[str, Platform] = {}
_roster: tuple[int, Lookup] = (0, {})  # (version, lookup) last sent to this process (see RosterLookups)
_WATCH_SECONDS = 0.2
NEEDS_ROSTER = "needs-roster"  # a process's answer to a request naming a lookup it has not been sent


def _start_worker(platforms: dict[str, Platform], server_pid: int) -> None:
    """Set up a forked worker (see the module)."""
    _platforms.update(platforms)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _release_sockets()

    def watch() -> None:  # (not PR_SET_PDEATHSIG: it fires when the forking thread ends, a pool thread here)
        while os.getppid() == server_pid:
            time.sleep(_WATCH_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="server-watch", daemon=True).start()
    gc.freeze()  # the server's objects, inherited: collections never walk them (nor copy their pages)


def _release_sockets() -> None:
    """Point every inherited socket descriptor at /dev/null: the descriptor numbers stay taken (objects of the
    fork may name them), the sockets are the server's alone."""
    try:
        descriptors = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # (no /proc: not Linux)
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in descriptors:
            try:
                if fd != null and stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.dup2(null, fd)
            except OSError:  # (the listing's own descriptor, closed by now)
                continue
    finally:
        os.close(null)


def _decode(
    name: str,
    raw_headers: list[tuple[bytes, bytes]],
    path: str,
    body: bytes,
    version: int,
    known: Lookup | None,
    packer: RawPacker | None,
) -> Decoded | str:
    global _roster
    if version != _roster[0]:
        if known is None:
            return NEEDS_ROSTER
        _roster = (version, known)
    return _platforms[name].decode_delivery(Headers(raw=raw_headers), path, body, _roster[1], packer)
