"""Instants as integer microseconds since the Unix epoch (UTC), and their parsing and rendering.

Integers keep window arithmetic exact: a repeat at exactly ``e + W`` is compared without float rounding.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from metrics.errors import UserError

US_PER_SECOND = 1_000_000
US_PER_HOUR = 3600 * US_PER_SECOND
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
    if moment.tzinfo is None:
        moment = localize(moment, zone)
    us = to_us(moment)
    if not MIN_US <= us < MAX_US:
        raise ValueError(f"{text!r} is outside the supported years 1990-2199")
    return us


def _epoch_us(number: float, shown: str) -> int:
    if not math.isfinite(number):
        raise ValueError(f"{shown} is not a finite number")
    us = round(number * US_PER_SECOND)
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
