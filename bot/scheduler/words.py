"""The words that manage digests and alerts, shared by Slack (``/acr subscribe ...``) and the CLI. Pure, no I/O.

Slack: ``/acr subscribe #channel daily 09:00 [team:billing] [weekdays] [tz:Europe/Berlin]``,
``/acr unsubscribe #channel [team:billing]``, ``/acr subscriptions``,
``/acr alert tier1 below 75% [team:billing] [7d] [last:7d] [min:30] [#channel] [strict]``,
``/acr alerts``, ``/acr alert remove ID``, ``/acr alert snooze ID 2h``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast

from bot.scheduler.times import MAX_MONTH_DAY, WEEKDAY_NAMES, parse_local_time
from bot.storage.schedules import CADENCES, SCOPE_DIMENSIONS, Cadence
from metrics.errors import UserError
from metrics.periods import parse_days, parse_window
from metrics.query import Metric
from metrics.timeutil import US_PER_DAY, US_PER_HOUR, load_zone

SCHEDULE_WORDS = ("subscribe", "unsubscribe", "subscriptions", "alert", "alerts")
SUBSCRIBE_USAGE = (
    "/acr subscribe #channel daily 09:00 [team:NAME] [weekdays] [tz:Europe/Berlin] (or weekly mon 09:00, "
    "monthly 1 09:00), /acr unsubscribe #channel [team:NAME] [daily|weekly|monthly], /acr subscriptions"
)
ALERT_USAGE = (
    "/acr alert acr|tier1 below 75% [team:NAME] [7d] [last:7d] [min:30] [#channel] [strict], "
    "/acr alerts, /acr alert remove ID, /acr alert snooze ID 2h"
)
DEFAULT_ALERT_LAST_DAYS = 7
DEFAULT_ALERT_MIN = 30
MAX_SNOOZE_US = 30 * US_PER_DAY

_CHANNEL_REF = re.compile(r"<#([CG][A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{6,}")
_CHANNEL_NAME = re.compile(r"#[a-z0-9][a-z0-9._-]{0,79}")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%?")
_SNOOZE = re.compile(r"(\d{1,4})([mhd])")


@dataclass(frozen=True, slots=True)
class Subscribe:
    channel: str | None  # None: the channel the command was typed in
    scope: str
    local_time: str
    zone: str | None
    weekdays_only: bool
    cadence: Cadence = "daily"
    cadence_day: int | None = None  # weekly: 0 (Monday) to 6; monthly: 1 to 28


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str | None
    scope: str
    cadence: Cadence | None = None  # None: the only digest of that channel and scope


@dataclass(frozen=True, slots=True)
class ListSubscriptions:
    pass


@dataclass(frozen=True, slots=True)
class AddAlert:
    metric: Metric
    threshold: float
    window_us: int
    last_days: int
    scope: str
    min_matured: int
    channel: str | None
    strict: bool


@dataclass(frozen=True, slots=True)
class ListAlerts:
    pass


@dataclass(frozen=True, slots=True)
class RemoveAlert:
    rule_id: int


@dataclass(frozen=True, slots=True)
class SnoozeAlert:
    rule_id: int
    duration_us: int


ScheduleCommand = Subscribe | Unsubscribe | ListSubscriptions | AddAlert | ListAlerts | RemoveAlert | SnoozeAlert


def is_schedule_command(words: list[str]) -> bool:
    return bool(words) and words[0].lower() in SCHEDULE_WORDS


def parse_schedule_command(words: list[str]) -> ScheduleCommand:
    """The words after ``/acr`` (the first is one of SCHEDULE_WORDS). Raises UserError with the usage."""
    head, rest = words[0].lower(), words[1:]
    if head == "subscriptions":
        _no_more(rest, "subscriptions", SUBSCRIBE_USAGE)
        return ListSubscriptions()
    if head == "alerts":
        _no_more(rest, "alerts", ALERT_USAGE)
        return ListAlerts()
    if head == "subscribe":
        return _subscribe(rest)
    if head == "unsubscribe":
        return _unsubscribe(rest)
    if rest and rest[0].lower() in ("remove", "delete"):
        return RemoveAlert(_rule_id(rest[1:2], "remove"))
    if rest and rest[0].lower() == "snooze":
        if len(rest) != 3:
            raise UserError(f"snooze needs a rule id and a duration, like: alert snooze 3 2h. Usage: {ALERT_USAGE}")
        return SnoozeAlert(_rule_id(rest[1:2], "snooze"), parse_snooze(rest[2]))
    if rest and rest[0].lower() == "list":
        return ListAlerts()
    return _alert(rest)


def parse_channel(word: str) -> str:
    """A Slack channel: ``<#C123|name>`` (as Slack sends it), a channel id ``C0123ABCD``, or ``#name``."""
    ref = _CHANNEL_REF.fullmatch(word)
    if ref:
        return ref.group(1)
    if _CHANNEL_ID.fullmatch(word):
        return word
    if _CHANNEL_NAME.fullmatch(word):
        return word
    raise UserError(f"{word!r} is not a Slack channel: use #channel-name or a channel id like C0123ABCD")


def parse_scope(word: str) -> str:
    """``team:billing`` (also ``queue:`` and ``channel:``) as a stored scope."""
    dimension, colon, value = word.partition(":")
    dimension = dimension.lower()
    value = value.strip().strip('"')
    if not colon or dimension not in SCOPE_DIMENSIONS:
        raise UserError(f"{word!r} is not a scope: use team:NAME, queue:NAME or channel:NAME")
    if not value:
        raise UserError(f"{dimension}: needs a value, like {dimension}:billing")
    if dimension == "channel":
        value = value.lower()
    return f"{dimension}:{value}"


def parse_zone(name: str) -> str:
    load_zone(name)  # raises UserError naming it
    return name


def parse_threshold(word: str) -> float:
    match = _PERCENT.fullmatch(word.strip())
    value = float(match.group(1)) if match else -1.0
    if not 0 < value < 100:
        raise UserError(f"threshold {word!r} must be a percentage between 0 and 100, like 75%")
    return value / 100


def parse_snooze(word: str) -> int:
    """``2h``, ``30m``, ``1d`` (also ``snooze:2h``) as µs; at most 30 days."""
    text = word.lower().removeprefix("snooze:")
    match = _SNOOZE.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        raise UserError(f"snooze duration {word!r} is not like 30m, 2h or 1d")
    number, unit = int(match.group(1)), match.group(2)
    duration = number * {"m": 60_000_000, "h": US_PER_HOUR, "d": US_PER_DAY}[unit]
    if duration > MAX_SNOOZE_US:
        raise UserError(f"snooze duration {word!r} is longer than 30d; remove the rule instead")
    return duration


def _subscribe(words: list[str]) -> Subscribe:
    channel: str | None = None
    scope = ""
    local_time: str | None = None
    zone: str | None = None
    weekdays = False
    cadence: Cadence | None = None
    cadence_day: int | None = None
    for word in words:
        lowered = word.lower()
        if lowered in CADENCES:
            cadence = cast(Cadence, _once(cadence, lowered, "cadence", SUBSCRIBE_USAGE))
        elif cadence == "weekly" and cadence_day is None and _weekday(lowered) is not None:
            cadence_day = _weekday(lowered)
        elif cadence == "monthly" and cadence_day is None and lowered.isdigit():
            cadence_day = int(lowered)
            if not 1 <= cadence_day <= MAX_MONTH_DAY:
                raise UserError(
                    f"monthly {word}: the day of the month must be 1 to {MAX_MONTH_DAY} (every month has it). "
                    f"Usage: {SUBSCRIBE_USAGE}"
                )
        elif lowered in ("weekdays", "weekdays-only"):
            weekdays = True
        elif lowered.startswith(("tz:", "timezone:")):
            zone = parse_zone(word.split(":", 1)[1])
        elif word.startswith(("<#", "#")) or _CHANNEL_ID.fullmatch(word):
            channel = _once(channel, parse_channel(word), "channel", SUBSCRIBE_USAGE)
        elif ":" in word and word.split(":", 1)[0].lower() in SCOPE_DIMENSIONS:
            scope = _once(scope or None, parse_scope(word), "scope", SUBSCRIBE_USAGE)
        elif word[:1].isdigit():
            parse_local_time(word)
            local_time = _once(local_time, _hhmm(word), "time", SUBSCRIBE_USAGE)
        else:
            raise UserError(f"unknown word {word!r} for subscribe. Usage: {SUBSCRIBE_USAGE}")
    if local_time is None:
        raise UserError(f"subscribe needs a time of day, like 09:00. Usage: {SUBSCRIBE_USAGE}")
    if cadence == "weekly" and cadence_day is None:
        raise UserError(f"weekly needs a day of the week, like weekly mon 09:00. Usage: {SUBSCRIBE_USAGE}")
    if cadence == "monthly" and cadence_day is None:
        raise UserError(f"monthly needs a day of the month, like monthly 1 09:00. Usage: {SUBSCRIBE_USAGE}")
    if weekdays and cadence in ("weekly", "monthly"):
        raise UserError(f"weekdays is for daily digests only. Usage: {SUBSCRIBE_USAGE}")
    return Subscribe(channel, scope, local_time, zone, weekdays, cadence or "daily", cadence_day)


def _weekday(word: str) -> int | None:
    """``mon``, ``monday`` (any case, at least three letters) as 0; None for anything else."""
    if len(word) < 3:
        return None
    matches = [index for index, name in enumerate(WEEKDAY_NAMES) if name.startswith(word)]
    return matches[0] if len(matches) == 1 else None


def _unsubscribe(words: list[str]) -> Unsubscribe:
    channel: str | None = None
    scope = ""
    cadence: Cadence | None = None
    for word in words:
        if word.lower() in CADENCES:
            cadence = cast(Cadence, _once(cadence, word.lower(), "cadence", SUBSCRIBE_USAGE))
        elif word.startswith(("<#", "#")) or _CHANNEL_ID.fullmatch(word):
            channel = _once(channel, parse_channel(word), "channel", SUBSCRIBE_USAGE)
        elif ":" in word and word.split(":", 1)[0].lower() in SCOPE_DIMENSIONS:
            scope = _once(scope or None, parse_scope(word), "scope", SUBSCRIBE_USAGE)
        else:
            raise UserError(f"unknown word {word!r} for unsubscribe. Usage: {SUBSCRIBE_USAGE}")
    return Unsubscribe(channel, scope, cadence)


def _alert(words: list[str]) -> AddAlert:
    metric: str | None = None
    threshold: float | None = None
    window_us = 7 * US_PER_DAY
    last_days = DEFAULT_ALERT_LAST_DAYS
    minimum = DEFAULT_ALERT_MIN
    scope = ""
    channel: str | None = None
    strict = False
    below = False
    for word in words:
        lowered = word.lower()
        key, colon, value = lowered.partition(":")
        if lowered in ("acr", "tier1"):
            metric = _once(metric, lowered, "metric", ALERT_USAGE)
        elif lowered == "below":
            below = True
        elif lowered == "strict":
            strict = True
        elif word.startswith(("<#", "#")) or _CHANNEL_ID.fullmatch(word):
            channel = _once(channel, parse_channel(word), "channel", ALERT_USAGE)
        elif colon and key in SCOPE_DIMENSIONS:
            scope = _once(scope or None, parse_scope(word), "scope", ALERT_USAGE)
        elif colon and key == "last":
            last_days = parse_days(value)
        elif colon and key == "min":
            if not value.isdigit() or int(value) < 1:
                raise UserError(f"min:{value} must be a whole number of matured contacts, at least 1")
            minimum = int(value)
        elif colon and key == "window":
            window_us = parse_window(value)
        elif below and threshold is None and _PERCENT.fullmatch(lowered):
            threshold = parse_threshold(word)
        elif word[:1].isdigit() and lowered[-1:] in ("d", "h"):
            window_us = parse_window(lowered)
        else:
            raise UserError(f"unknown word {word!r} for alert. Usage: {ALERT_USAGE}")
    if metric is None:
        raise UserError(f"alert needs a metric: acr or tier1. Usage: {ALERT_USAGE}")
    if not below or threshold is None:
        raise UserError(f"alert needs a threshold: below 75%. Usage: {ALERT_USAGE}")
    return AddAlert(cast(Metric, metric), threshold, window_us, last_days, scope, minimum, channel, strict)


def _rule_id(words: list[str], action: Literal["remove", "snooze"]) -> int:
    word = words[0].lstrip("#") if words else ""
    if not word.isdigit():
        raise UserError(f"{action} needs the rule's number (see /acr alerts). Usage: {ALERT_USAGE}")
    return int(word)


def _hhmm(word: str) -> str:
    at = parse_local_time(word)
    return f"{at.hour:02d}:{at.minute:02d}"


def _once(current: str | None, value: str, what: str, usage: str) -> str:
    if current is not None and current != value:
        raise UserError(f"{what} is given twice ({current!r} and {value!r}). Usage: {usage}")
    return value


def _no_more(words: list[str], head: str, usage: str) -> None:
    if words:
        raise UserError(f"`{head}` takes no other words. Usage: {usage}")
