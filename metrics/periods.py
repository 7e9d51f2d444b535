"""Windows and periods: the words users type (``7d``, ``48h``, ``2026-03-08``) turned into exact instants.

Pure functions, no I/O. Instants are integer microseconds since the epoch, UTC (see ``metrics.timeutil``).
Calendar days are days in the bot's time zone, so a day may last 23 or 25 hours around a DST change.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache

from metrics.errors import UserError
from metrics.timeutil import US_PER_DAY, US_PER_HOUR, US_PER_MINUTE, from_us, to_us

DEFAULT_WINDOW_US = 7 * US_PER_DAY
# The calendar words of CONTRACT section 2, in BOT_TIMEZONE, weeks Monday to Sunday.
PERIOD_WORDS = ("today", "yesterday", "this-week", "last-week", "this-month", "last-month")
DEFAULT_LAST_DAYS = 30
MAX_WINDOW_US = 90 * US_PER_DAY
# A period longer than this is almost always a typo (and would scan years of data for one question).
MAX_PERIOD_DAYS = 3660

_WINDOW_RE = re.compile(r"(\d{1,6})([dhm])")
MIN_MINUTE_WINDOW = 10  # the shortest window: dropped-call callbacks come within minutes
_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def parse_window(text: str) -> int:
    """``Nd`` (N x 24 hours), ``Nh`` (N hours) or ``Nm`` (N minutes, at least 10) as microseconds; at most 90 days.

    Days are exactly 24 hours, not calendar days: a window measures time since the contact ended,
    and a DST change must not make a 7-day window one hour shorter for some contacts.
    """
    word = text.strip().lower()
    match = _WINDOW_RE.fullmatch(word)
    if match is None:
        raise UserError(f"window {text!r} is not a number of days, hours or minutes such as 7d, 48h or 30m")
    number, unit = int(match.group(1)), match.group(2)
    if number == 0:
        raise UserError(f"window {text!r} is empty; use at least {MIN_MINUTE_WINDOW}m")
    if unit == "m" and number < MIN_MINUTE_WINDOW:
        raise UserError(f"window {text!r} is shorter than the minimum of {MIN_MINUTE_WINDOW}m")
    window_us = number * {"d": US_PER_DAY, "h": US_PER_HOUR, "m": US_PER_MINUTE}[unit]
    if window_us > MAX_WINDOW_US:
        raise UserError(f"window {text!r} is longer than the maximum of 90d")
    return window_us


def format_window(window_us: int) -> str:
    """The shortest word for a window: ``7d`` when it is whole days, else ``36h``, ``90m`` (or seconds, if odd)."""
    if window_us % US_PER_DAY == 0:
        return f"{window_us // US_PER_DAY}d"
    if window_us % US_PER_HOUR == 0:
        return f"{window_us // US_PER_HOUR}h"
    if window_us % US_PER_MINUTE == 0:
        return f"{window_us // US_PER_MINUTE}m"
    return f"{window_us / 1_000_000:g}s"


def parse_days(text: str) -> int:
    """``30d`` (or ``30``) as a number of days for ``last:``; between 1 and MAX_PERIOD_DAYS."""
    word = text.strip().lower().removesuffix("d")
    if not word.isdigit():
        raise UserError(f"period {text!r} is not a number of days such as 30d")
    days = int(word)
    if not 1 <= days <= MAX_PERIOD_DAYS:
        raise UserError(f"period {text!r} must be between 1d and {MAX_PERIOD_DAYS}d")
    return days


MAX_TIER = 99


def parse_tier(text: str) -> int:
    """``tier:N``: a support level, a whole number from 1 (first line) up."""
    word = text.strip()
    if not word.isdigit() or not 1 <= int(word) <= MAX_TIER:
        raise UserError(f"tier {text!r} is not a support level such as 1, 2 or 3")
    return int(word)


def parse_date(text: str) -> date:
    """A calendar date written ``YYYY-MM-DD``; impossible dates (2026-02-30) are refused by name."""
    word = text.strip()
    match = _DATE_RE.fullmatch(word)
    if match is None:
        raise UserError(f"date {text!r} is not written YYYY-MM-DD")
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError as problem:
        raise UserError(f"date {text!r} does not exist ({problem})") from None


def last_period(days: int, as_of_us: int) -> tuple[int, int]:
    """``last:Nd``: the N x 24 hours before ``as_of``, as ``[since, until)``."""
    return (as_of_us - days * US_PER_DAY, as_of_us)


@lru_cache(maxsize=16_384)
def local_midnight_us(day: date, zone: tzinfo) -> int:
    """The first instant of ``day`` in ``zone``.

    If midnight itself is skipped by a DST change (a few zones jump at 00:00), the day starts at the
    instant of the jump: with fold=0 a skipped wall time resolves to exactly that instant. Remembered (a pure
    function of two hashable values): a year of days by week asks it ~700 times, at ~15 µs each.
    """
    return to_us(datetime.combine(day, time(0), tzinfo=zone))


def local_date(us: int, zone: tzinfo) -> date:
    """The calendar date in ``zone`` of the instant ``us``."""
    return from_us(us, zone).date()


def calendar_period(since: date | None, until: date | None, zone: tzinfo, as_of_us: int) -> tuple[int, int]:
    """``since:DATE until:DATE``: whole calendar days in ``zone``, both inclusive, as ``[since, until)``.

    ``until`` is the local midnight after the last day. A missing ``until`` means "up to as_of"
    (the engine clips to as_of anyway); a missing ``since`` means the DEFAULT_LAST_DAYS calendar days
    ending with ``until`` (or with today, in ``zone``).
    """
    last_day = until if until is not None else local_date(as_of_us, zone)
    if since is not None and since > last_day:
        shown_until = until.isoformat() if until is not None else f"today ({last_day.isoformat()})"
        raise UserError(f"since {since.isoformat()} is after until {shown_until}")
    first_day = since if since is not None else last_day - timedelta(days=DEFAULT_LAST_DAYS - 1)
    if (last_day - first_day).days + 1 > MAX_PERIOD_DAYS:
        raise UserError(f"period {first_day}..{last_day} is longer than {MAX_PERIOD_DAYS} days")
    since_us = local_midnight_us(first_day, zone)
    until_us = local_midnight_us(last_day + timedelta(days=1), zone) if until is not None else as_of_us
    return (since_us, until_us)


def local_days(since_us: int, until_us: int, zone: tzinfo) -> list[tuple[date, int, int]]:
    """The calendar days in ``zone`` that ``[since, until)`` touches, each with its full ``[start, end)``.

    The first and last day may extend beyond the period; callers clip. Empty when since >= until.
    """
    if since_us >= until_us:
        return []
    days: list[tuple[date, int, int]] = []
    day = local_date(since_us, zone)
    start = local_midnight_us(day, zone)
    while start < until_us:
        following = day + timedelta(days=1)
        end = local_midnight_us(following, zone)
        days.append((day, start, end))
        day, start = following, end
    return days


def word_period(word: str, as_of_us: int, zone: tzinfo) -> tuple[int, int]:
    """A calendar word (``today`` ... ``last-month``) as whole local days ``[since, until)``.

    ``until`` is the local midnight after the last day, not clipped: the engine clips it to as_of, so
    ``today`` asked at 10:00 counts the contacts of 00:00 to 10:00.
    """
    today = local_date(as_of_us, zone)
    monday = today - timedelta(days=today.weekday())
    first_of_month = today.replace(day=1)
    days: dict[str, tuple[date, date]] = {
        "today": (today, today + timedelta(days=1)),
        "yesterday": (today - timedelta(days=1), today),
        "this-week": (monday, monday + timedelta(days=7)),
        "last-week": (monday - timedelta(days=7), monday),
        "this-month": (first_of_month, next_month(first_of_month)),
        "last-month": (previous_month(first_of_month), first_of_month),
    }
    if word not in days:
        raise UserError(f"{word!r} is not a period word: use {', '.join(PERIOD_WORDS)}")
    first, after = days[word]
    return (local_midnight_us(first, zone), local_midnight_us(after, zone))


def matured_period(days: int, window_us: int, as_of_us: int) -> tuple[int, int]:
    """``matured:Nd``: ``[as_of - W - N days, as_of - W)``, the latest N days whose contacts have (nearly all)
    matured (a contact that ended after it started late in the period may still be pending)."""
    until_us = as_of_us - window_us
    return (until_us - days * US_PER_DAY, until_us)


def next_month(first_of_month: date) -> date:
    """The first day of the month after the month starting ``first_of_month``."""
    return (first_of_month.replace(day=28) + timedelta(days=4)).replace(day=1)


def previous_month(first_of_month: date) -> date:
    """The first day of the month before the month starting ``first_of_month``."""
    return (first_of_month - timedelta(days=1)).replace(day=1)


def week_key(day: date) -> str:
    """``by:week``: a day's week is named by its Monday, ``YYYY-MM-DD``."""
    return (day - timedelta(days=day.weekday())).isoformat()


def month_key(day: date) -> str:
    """``by:month``: a day's month, ``YYYY-MM``."""
    return f"{day.year:04d}-{day.month:02d}"
