"""When a digest is due: a local wall time in a time zone, every day (or weekdays only), one day of the week, or
one day of the month. Pure, no I/O.

DST rules: a time is kept in local wall time, so 09:00 is 09:00 on both sides of a change. A time that does not
exist that day (the spring-forward gap) is due once, at the first valid instant after it: the instant the
clocks jump. A time that occurs twice (the repeated autumn hour) is due once, at its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from metrics.errors import UserError
from metrics.periods import local_date
from metrics.timeutil import from_us, to_us

_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})")
SATURDAY = 5


def parse_local_time(text: str) -> time:
    """``09:00`` or ``9:00`` (24-hour clock) as a time of day."""
    match = _TIME_RE.fullmatch(text.strip())
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise UserError(f"time {text!r} is not a time of day written HH:MM (24-hour clock, e.g. 09:00)")
    return time(int(match.group(1)), int(match.group(2)))


def wall_time_us(day: date, at: time, zone: tzinfo) -> int:
    """The instant the wall clock in ``zone`` shows ``day at`` (first occurrence; after a gap, the jump)."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0)
    if _wall(to_us(first), zone) == naive:
        return to_us(first)
    # The wall time is skipped. With fold=0 it maps past the jump, with fold=1 before it; the jump is the
    # first instant in between whose wall time is later than ``naive``.
    low, high = sorted((to_us(naive.replace(tzinfo=zone, fold=1)), to_us(first)))
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(middle, zone) > naive:
            high = middle
        else:
            low = middle
    return high


def _wall(us: int, zone: tzinfo) -> datetime:
    return from_us(us, zone).replace(tzinfo=None, fold=0)


WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_MONTH_DAY = 28  # every month has it


@dataclass(frozen=True, slots=True)
class DailySchedule:
    """Every day (or Monday to Friday) at ``at`` in ``zone``; only on ``weekday`` (0 = Monday) when given, only on
    day ``month_day`` of each month when given."""

    at: time
    zone: tzinfo
    weekdays_only: bool = False
    weekday: int | None = None
    month_day: int | None = None

    def runs_on(self, day: date) -> bool:
        if self.weekday is not None:
            return day.weekday() == self.weekday
        if self.month_day is not None:
            return day.day == self.month_day
        return not (self.weekdays_only and day.weekday() >= SATURDAY)

    def occurrence(self, day: date) -> int | None:
        """The instant due on local ``day``, or None when it does not run that day."""
        return wall_time_us(day, self.at, self.zone) if self.runs_on(day) else None

    def latest_at_or_before(self, now_us: int) -> tuple[date, int] | None:
        """The most recent occurrence at or before ``now`` (its local day and instant), within one period."""
        return self._search(now_us, -1, lambda due: due <= now_us)

    def next_after(self, after_us: int) -> tuple[date, int]:
        """The first occurrence strictly after ``after_us``."""
        found = self._search(after_us, 1, lambda due: due > after_us)
        assert found is not None  # every week has each weekday, every month its day
        return found

    def _search(self, around_us: int, step: int, accept: Callable[[int], bool]) -> tuple[date, int] | None:
        today = local_date(around_us, self.zone)
        reach = 33 if self.month_day is not None else 9  # a month, or a week with a day to spare either side
        for offset in range(-1, reach) if step > 0 else range(1, -reach, -1):
            day = today + timedelta(days=offset)
            due = self.occurrence(day)
            if due is not None and accept(due):
                return day, due
        return None
