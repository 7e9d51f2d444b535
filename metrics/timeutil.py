"""Instants as integer microseconds since the Unix epoch (UTC), and their parsing and rendering.

Integers keep window arithmetic exact: a repeat at exactly ``e + W`` is compared without float rounding.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from metrics.errors import UserError

US_PER_SECOND = 1_000_000
US_PER_MINUTE = 60 * US_PER_SECOND
US_PER_HOUR = 60 * US_PER_MINUTE
US_PER_DAY = 24 * US_PER_HOUR
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
# Plausible contact times. Anything outside is almost always milliseconds sent as seconds, or a typo.
MIN_US = (datetime(1990, 1, 1, tzinfo=UTC) - EPOCH) // ONE_US
MAX_US = (datetime(2200, 1, 1, tzinfo=UTC) - EPOCH) // ONE_US


def load_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or a UserError that names it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from None


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (moment - EPOCH) // ONE_US


def from_us(us: int, zone: tzinfo = UTC) -> datetime:
    """The aware datetime of ``us`` rendered in ``zone``."""
    return (EPOCH + timedelta(microseconds=us)).astimezone(zone)


def iso_utc(us: int) -> str:
    """ISO 8601 in UTC with a ``Z``, seconds precision unless there is a fraction."""
    moment = from_us(us)
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def localize(naive: datetime, zone: tzinfo) -> datetime:
    """Attach ``zone`` to a wall-clock time, refusing times that do not exist (the spring-forward gap).

    An ambiguous time (the repeated hour in autumn) is read as its first occurrence.
    """
    aware = naive.replace(tzinfo=zone, fold=0)
    if zone is UTC:
        return aware
    round_trip = aware.astimezone(UTC).astimezone(zone)
    if round_trip.replace(tzinfo=None) != naive:
        raise ValueError(f"{naive.isoformat()} does not exist in {zone} (clocks jump forward then)")
    return aware


def parse_instant(value: object, zone: tzinfo) -> int:
    """Parse a contract timestamp to microseconds since the epoch.

    Accepts ISO 8601 (``T`` or space, optional fraction, ``Z`` or an offset; no offset means wall time
    in ``zone``) and integer or float Unix epoch seconds, as a number or a numeric string.
    Raises ValueError with a message for the user.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected an ISO 8601 timestamp or epoch seconds, got {_kind(value)}")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("is empty")
        if text[0].isdigit() and len(text) > 10 and text[4] == "-":
            return _parse_iso(text, zone)
        try:
            number = float(text)
        except ValueError:
            return _parse_iso(text, zone)
        return _epoch_us(number, text)
    return _epoch_us(value, repr(value))


def _parse_iso(text: str, zone: tzinfo) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 timestamp or epoch seconds") from None
    if len(text) <= 10:
        raise ValueError(f"{text!r} is a date without a time of day")
    try:
        if moment.tzinfo is None:
            moment = localize(moment, zone)
        us = to_us(moment)
    except OverflowError:  # a wall time in year 1 or 9999 has no UTC instant
        us = MAX_US
    if not MIN_US <= us < MAX_US:
        raise ValueError(f"{text!r} is outside the supported years 1990-2199")
    return us


# --- the fast path for the common shapes -----------------------------------------------------------------
# Bulk imports parse millions of timestamps, nearly all "YYYY-MM-DD[T ]HH:MM:SS" plus "Z", "+HH:MM" or nothing,
# and close together in time. The instant of such a string is the instant of its hour (parsed by parse_instant,
# cached) plus its minutes and seconds. An hour is cached only when it maps linearly: its first and last second
# both parse (so it is not in a DST gap and is in range) and lie exactly 3599 s apart (so no offset change falls
# inside it; zones change offset at most once an hour). Anything else goes to parse_instant, so the results and
# the error messages stay in one place.

_HOUR_HEAD = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:\Z")
_FAST_SUFFIX = re.compile(r"(?:Z|[+-][0-9]{2}:[0-9]{2})?\Z")
_MINUTE_SECOND_US = {f"{m:02d}:{s:02d}": (m * 60 + s) * US_PER_SECOND for m in range(60) for s in range(60)}
NOT_FAST = -1  # an hour that must go to parse_instant (negative: real instants here are positive)
_MAX_TAILS = 20_000  # "MM:SS" + suffix entries per zone (3600 per suffix)
_MAX_HOURS = 8192  # hours per suffix and zone; also the bound of the hours met once


class InstantCache:
    """A zone's cache for ``fast_instant``; bounded (cleared when full) and shared by threads (dict operations
    are atomic, and a lost update only costs a recomputation).

    ``tails`` maps the text after the hour (``"MM:SS"`` + suffix) to (its microseconds, the hours of that
    suffix); the hours map the text up to the hour (``"YYYY-MM-DDTHH:"``) to the instant of ``HH:00:00``,
    or NOT_FAST. An hour is worked out when it is met the second time (``met_once``), so that scattered
    timestamps cost no more than parse_instant.
    """

    __slots__ = ("_hours_by_suffix", "met_once", "tails", "zone")

    def __init__(self, zone: tzinfo):
        self.zone = zone
        self.tails: dict[str, tuple[int, dict[str, int]]] = {}
        self.met_once: set[str] = set()
        self._hours_by_suffix: dict[str, dict[str, int]] = {}

    def tail(self, text: str) -> tuple[int, dict[str, int]] | None:
        """The ``tails`` entry for ``text`` (made on first use), or None when the text is not a fast shape."""
        tail = text[14:]
        entry = self.tails.get(tail)
        if entry is None:
            minute_second = _MINUTE_SECOND_US.get(tail[:5])
            suffix = tail[5:]
            if minute_second is None or _FAST_SUFFIX.match(suffix) is None:
                return None
            if len(self.tails) >= _MAX_TAILS:
                self.tails.clear()
                self._hours_by_suffix.clear()
            hours = self._hours_by_suffix.setdefault(suffix, {})
            entry = self.tails[tail] = (minute_second, hours)
        return entry


_last_cache = InstantCache(UTC)
_caches: dict[tzinfo, InstantCache] = {UTC: _last_cache}


def instant_cache(zone: tzinfo) -> InstantCache:
    """The ``fast_instant`` cache of ``zone`` (cheapest when the same zone is asked for again)."""
    global _last_cache
    last = _last_cache
    if last.zone is zone:
        return last
    cache = _caches.get(zone)
    if cache is None:
        if len(_caches) >= 64:
            _caches.clear()
        cache = _caches[zone] = InstantCache(zone)
    _last_cache = cache
    return cache


def fast_instant(value: object, cache: InstantCache) -> int | None:
    """``parse_instant(value, cache.zone)`` for the common shapes; None means "ask parse_instant".

    Never raises: unusual and invalid values are parse_instant's business.
    (metrics.records writes the string and float cases out inline; keep them in step.)
    """
    if type(value) is str:
        tail = cache.tails.get(value[14:]) or cache.tail(value)  # (a tail met before: no call)
        if tail is not None:
            hour = tail[1].get(value[:14])
            if hour is None:
                hour = cache_hour(value, cache, tail[1])
            if hour >= 0:
                return hour + tail[0]
        elif len(value) <= 10 and value.isascii() and value.isdigit():
            # Whole epoch seconds as text (CSV): parse_instant's float() is exact for these.
            us = int(value) * US_PER_SECOND
            if MIN_US <= us < MAX_US:
                return us
        return None
    if type(value) is int:
        us = value * US_PER_SECOND
        if MIN_US <= us < MAX_US:
            return us
    elif type(value) is float:  # epoch seconds from a JSON sender; as _epoch_us rounds them
        scaled = value * US_PER_SECOND
        if MIN_US <= scaled < MAX_US:  # False for nan and infinities
            us = round(scaled)
            if us < MAX_US:
                return us
    return None


def cache_hour(text: str, cache: InstantCache, hours: dict[str, int]) -> int:
    """The instant of ``text``'s hour (at MM:SS = 00:00) for a ``text`` whose hour is not in ``hours`` yet (the
    dict of its ``cache.tail``), or NOT_FAST: when the hour is met the first time or does not map linearly."""
    head, suffix = text[:14], text[19:]
    key = head + suffix
    if key not in cache.met_once:
        if len(cache.met_once) >= _MAX_HOURS:
            cache.met_once.clear()
        cache.met_once.add(key)
        return NOT_FAST
    hour = NOT_FAST
    if _HOUR_HEAD.match(head) is not None:
        try:
            first = parse_instant(head + "00:00" + suffix, cache.zone)
            last = parse_instant(head + "59:59" + suffix, cache.zone)
        except ValueError:
            pass
        else:
            if last - first == 3599 * US_PER_SECOND:
                hour = first
    if len(hours) >= _MAX_HOURS:
        hours.clear()
    hours[head] = hour
    return hour


def _epoch_us(number: float, shown: str) -> int:
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"{shown} is not a finite number")
    scaled = number * US_PER_SECOND
    if isinstance(scaled, float) and not math.isfinite(scaled):  # e.g. 1e303 seconds
        us = MAX_US if scaled > 0 else MIN_US - 1
    else:
        us = round(scaled)
    if not MIN_US <= us < MAX_US:
        hint = " (milliseconds? epoch values must be seconds)" if us >= MAX_US else ""
        raise ValueError(f"{shown} is outside the supported years 1990-2199{hint}")
    return us


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


describe_kind = _kind
