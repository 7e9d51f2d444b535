"""One scheduler per database, however many ``acr-bot serve`` processes share it.

Every server process runs an election: a thread that tries to take the store's *scheduler lease* (PostgreSQL: a
session advisory lock on a connection of its own; SQLite: an exclusive lock on a file beside the database) every
``poll_seconds``. The holder runs the scheduler; the others stand by. When the holder dies, the lease goes with its
connection (or file descriptor), and a standby takes it at its next poll and starts its own scheduler, whose start
delivers what is pending, resolves posts interrupted mid-way and sends a digest missed meanwhile (within
DIGEST_GRACE_HOURS). Nothing is posted twice: every message goes through the outbox, whose keys are unique and whose
claims are atomic, so even two schedulers at once (a lease lost to a network cut) could not post one message twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Literal, Protocol

from bot.storage.schedules import SchedulerLease

log = logging.getLogger("acr_bot.scheduler")

Role = Literal["leader", "standby", "stopped"]


class Runnable(Protocol):
    def start(self) -> None: ...

    def shutdown(self) -> None: ...

    def request_sync(self) -> None: ...


class SchedulerElection:
    """Runs a scheduler (made by ``make_scheduler``) in this process exactly while it holds ``lease``."""

    def __init__(self, lease: SchedulerLease, make_scheduler: Callable[[], Runnable], poll_seconds: float = 10.0):
        self._lease = lease
        self._make_scheduler = make_scheduler
        self._poll_seconds = poll_seconds
        self._running: Runnable | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def role(self) -> Role:
        if self._stop.is_set():
            return "stopped"
        return "leader" if self._running is not None else "standby"

    def request_sync(self) -> None:
        """A subscription changed (in Slack): the running scheduler reschedules now; on a standby server nothing
        is to do (the leader's periodic sync picks it up)."""
        running = self._running
        if running is not None:
            running.request_sync()

    def start(self) -> None:
        """Try once now (a single server starts its scheduler at once), then keep trying in the background."""
        self._step()
        self._thread = threading.Thread(target=self._loop, name="scheduler-election", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._resign()
        self._lease.release()

    def _loop(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self._step()
            except Exception:
                log.exception("scheduler election failed; trying again in %s s", self._poll_seconds)

    def _step(self) -> None:
        held = self._lease.try_acquire()
        if held and self._running is None:
            log.info("this process now runs the scheduler (it holds the scheduler lease)")
            scheduler = self._make_scheduler()
            scheduler.start()
            self._running = scheduler
        elif not held and self._running is not None:
            log.warning("the scheduler lease was lost: this process stops its scheduler and stands by")
            self._resign()
        elif not held:
            log.debug("another process runs the scheduler; standing by")

    def _resign(self) -> None:
        scheduler, self._running = self._running, None
        if scheduler is not None:
            scheduler.shutdown()
