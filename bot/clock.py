"""Where "now" comes from, for every surface (Slack, the scheduler, the command line): one clock, injected, so
tests and ``--as-of`` can fix it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from metrics.timeutil import to_us


class Clock(Protocol):
    """Where "now" comes from: injected everywhere so tests can fix it."""

    def now_us(self) -> int: ...


class SystemClock:
    """The real clock: UTC now, in µs."""

    def now_us(self) -> int:
        return to_us(datetime.now(UTC))


class ManualClock:
    """A clock that only moves when told to (tests and ``--as-of``)."""

    def __init__(self, now_us: int):
        self._now_us = now_us

    def now_us(self) -> int:
        return self._now_us

    def set(self, now_us: int) -> None:
        self._now_us = now_us

    def advance(self, seconds: float) -> None:
        self._now_us += round(seconds * 1_000_000)
