"""The SQLite store's fixed pool of reader connections (SQLITE_READERS): however many threads read, at most N
connections (each with its own page cache) are open; one serves one thread at a time; a read that fails gives
its connection back; a read that finds them all busy waits, then says "try again". On real SQLite files, and
through a real ``acr-bot serve`` process."""

from __future__ import annotations

import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psutil
import pytest

from bot.storage.errors import StoreUnavailable
from bot.storage.sqlite import SQLiteContactStore
from metrics.why import WhyQuery
from tests.builders import contact
from tests.test_serve import start_serve

UTC = ZoneInfo("UTC")
DAY_US = 86_400 * 1_000_000
BASE = 1_780_000_000  # epoch seconds


# Descriptors of the file the store holds besides its readers': the writer's connection, the checkpoint thread's,
# and the one the thread syncs the file through (sqlite_checkpoint.DatabaseFile).
OWN_DESCRIPTORS = 3


def connections_to(database: Path, pid: int | None = None) -> int:
    """Descriptors of ``database`` open in a process (each SQLite connection holds one)."""
    return sum(1 for f in psutil.Process(pid).open_files() if Path(f.path) == database.resolve())


def seeded(path: Path, readers: int, reader_wait_seconds: float = 30.0) -> SQLiteContactStore:
    store = SQLiteContactStore(path, readers=readers, reader_wait_seconds=reader_wait_seconds)
    store.upsert(
        contact(f"c{i}", f"k{i % 7}", BASE + i * 3600, BASE + i * 3600 + 300, resolved=i % 3 != 0) for i in range(60)
    )
    return store


def why_everything() -> WhyQuery:
    return WhyQuery("acr", 7 * DAY_US, 0, (BASE + 30 * 86_400) * 1_000_000, (BASE + 30 * 86_400) * 1_000_000)


def test_many_threads_read_through_at_most_n_connections_one_thread_each(db_path: Path) -> None:
    store = seeded(db_path, readers=3)
    holder: dict[int, int] = {}  # connection -> the thread reading through it now
    used: set[int] = set()
    shared: list[str] = []
    lock = threading.Lock()
    most = 0

    def question(number: int) -> int:
        nonlocal most
        # One read transaction per question: a second thread on the same connection would fail its BEGIN.
        with store.metric_reader(UTC, refresh_days=0) as reader:
            conn = id(reader._conn)  # which pooled connection this thread was lent (SQLite-specific inspection)
            with lock:
                if holder.get(conn) not in (None, number):
                    shared.append(f"thread {number} got the connection thread {holder[conn]} reads through")
                holder[conn] = number
                used.add(conn)
                most = max(most, len(holder))
            count = store.count_contacts()  # a nested read on the same thread: the same connection, no waiting
            time.sleep(0.02)
            with lock:
                del holder[conn]
            return count

    with ThreadPoolExecutor(max_workers=16) as pool:
        counts = list(pool.map(question, range(64)))
    assert counts == [60] * 64
    assert shared == []
    assert len(used) <= 3 and most <= 3
    assert connections_to(db_path) == OWN_DESCRIPTORS + store.reader_connections <= OWN_DESCRIPTORS + 3
    store.close()
    assert connections_to(db_path) == 0


def test_a_read_that_fails_gives_its_connection_back(db_path: Path) -> None:
    store = seeded(db_path, readers=1)

    def failing_question() -> None:
        with pytest.raises(ValueError), store.metric_reader(UTC, refresh_days=0):
            raise ValueError("the question failed half-way")

    def abandoned_why() -> None:
        rows = store.why_rows(why_everything())
        next(rows)  # one row read, then the generator is dropped inside its read transaction
        del rows
        gc.collect()

    for read in (failing_question, abandoned_why):
        worker = threading.Thread(target=read)
        worker.start()
        worker.join()
        # Another thread gets the one connection at once, with no transaction left open on it: it sees a write
        # made after the failed read (a snapshot kept open would hide it).
        store.upsert([contact(f"late-{read.__name__}", "k-late", BASE, BASE + 60)])
        with ThreadPoolExecutor(max_workers=1) as other:
            assert other.submit(store.count_contacts).result(timeout=5) == store.count_contacts()
            assert other.submit(store.get_contact, "api", f"late-{read.__name__}").result(timeout=5) is not None
        assert connections_to(db_path) == OWN_DESCRIPTORS + 1  # and the one reader
    store.close()


def test_a_read_waits_for_a_busy_connection_then_says_try_again(db_path: Path) -> None:
    store = seeded(db_path, readers=1, reader_wait_seconds=0.3)
    holding, release = threading.Event(), threading.Event()

    def long_question() -> None:
        with store.metric_reader(UTC, refresh_days=0):
            holding.set()
            release.wait(10)

    worker = threading.Thread(target=long_question)
    worker.start()
    holding.wait(5)
    with pytest.raises(StoreUnavailable) as refused:
        store.count_contacts()
    assert str(refused.value) == (
        f"all 1 reader connections of the database {db_path} stayed busy for 0.3 s (SQLITE_READERS); try again"
    )
    assert refused.value.retry_after_seconds == 1
    # A reader that waits gets the connection as soon as it is given back.
    with ThreadPoolExecutor(max_workers=1) as other:
        waiting = other.submit(store.count_contacts)
        time.sleep(0.1)
        release.set()
        assert waiting.result(timeout=5) == 60
    worker.join()
    assert connections_to(db_path) == OWN_DESCRIPTORS + 1
    store.close()


@pytest.mark.slow
def test_the_server_reads_through_sqlite_readers_connections_under_load(tmp_path: Path) -> None:
    """``acr-bot serve`` with SQLITE_READERS=2: 200 health checks at once (each reads the contact count in one
    of Starlette's ~40 worker threads) are all answered, and the server has at most 2 reader connections."""
    database = tmp_path / "acr.db"
    seeded(database, readers=1).close()
    server = start_serve(f"sqlite:///{database}", tmp_path / "serve.log", SQLITE_READERS="2")
    try:
        limits = httpx.Limits(max_connections=100)
        with httpx.Client(timeout=30, limits=limits) as http, ThreadPoolExecutor(max_workers=100) as clients:
            answers = list(clients.map(lambda _: http.get(server.url + "/healthz"), range(200)))
        assert [(a.status_code, a.json()["contacts"]) for a in answers] == [(200, 60)] * 200
        assert connections_to(database, server.proc.pid) <= OWN_DESCRIPTORS + 2  # and two readers
    finally:
        server.proc.terminate()
        server.proc.wait(30)
