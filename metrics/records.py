"""The contact record of CONTRACT section 1: validation and normalisation, with no I/O.

Validation is hand-written rather than declared with a schema library because the contract's rules differ by
input format (CSV booleans, empty CSV cells, epoch strings) and this is the hot path of every import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, NamedTuple

import orjson

from metrics.definitions import contact_end
from metrics.timeutil import (
    MAX_US,
    MIN_US,
    US_PER_SECOND,
    cache_hour,
    describe_kind,
    fast_instant,
    instant_cache,
    parse_instant,
)

CHANNELS = ("phone", "chat", "email", "sms", "social", "video", "other")
DIRECTIONS = ("inbound", "outbound")
ID_MAX_CHARS = 200
TEXT_MAX_CHARS = 200
REASON_MAX_CHARS = 1000
TIER_MAX = 2**63 - 1  # the largest integer the stores hold (SQLite INTEGER, PostgreSQL BIGINT)
NUMERIC_ID_FIELDS = frozenset({"id", "customer_id", "parent_id"})  # JSON integers taken as their decimal text
KNOWN_FIELDS = (
    "id",
    "source",
    "customer_id",
    "agent",
    "team",
    "queue",
    "reason",
    "channel",
    "direction",
    "tier",
    "escalated",
    "resolved",
    "parent_id",
    "started_at",
    "ended_at",
    "updated_at",
)
_TRUE_WORDS = frozenset({"1", "yes", "true"})
_FALSE_WORDS = frozenset({"0", "no", "false"})
_CHANNEL_SET = frozenset(CHANNELS)
_DIRECTION_SET = frozenset(DIRECTIONS)


class Contact(NamedTuple):
    """A validated contact. Instants are microseconds since the epoch, UTC.

    A NamedTuple rather than a dataclass: imports build millions of them, and a tuple is cheapest to build.
    """

    source: str
    id: str
    customer_id: str
    agent: str | None
    team: str | None
    queue: str | None
    reason: str | None
    channel: str
    direction: str
    tier: int
    escalated: bool
    resolved: bool | None
    parent_id: str | None
    started_us: int
    ended_us: int | None
    updated_us: int | None  # the sender's version (``updated_at``): an older one never replaces a newer one
    raw: str  # the record as delivered, as compact JSON, unknown fields included

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.id)

    @property
    def end_us(self) -> int:
        """The contract's ``e`` (``metrics.definitions.contact_end``)."""
        return contact_end(self.started_us, self.ended_us)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of one record."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def raw_json(obj: Mapping[str, Any]) -> str:
    """The stored form of a delivered record: compact JSON in the order it came.

    A byte-identical re-delivery gives identical text, which is how "unchanged" is detected.
    """
    return orjson.dumps(obj, default=str).decode()


def parse_contact(
    obj: object, zone: tzinfo, *, from_text: bool = False, raw: str | None = None
) -> Contact | list[FieldError]:
    """Validate one record; return the Contact, or every problem found in it.

    ``from_text`` is for CSV, where every cell is a string: empty cells are "not given" and booleans
    may be written 1/0, yes/no or true/false. Naive timestamps are wall time in ``zone``.
    ``raw`` is the record's own JSON text when the caller has it (a JSONL line), saving a re-encode.
    """
    row = contact_row(obj, zone, from_text=from_text, raw=raw)
    return row if type(row) is list else _new_contact(row)


def parse_contact_full(
    obj: object, zone: tzinfo, *, from_text: bool = False, raw: str | None = None
) -> Contact | list[FieldError]:
    """The complete validator behind ``parse_contact``: every rule and every error message lives here.

    ``contact_row`` handles the common case and hands anything unusual to this function.
    """
    if not isinstance(obj, dict):
        return [FieldError("record", f"expected an object, got {describe_kind(obj)}")]
    if from_text:
        obj = {k: v for k, v in obj.items() if v is not None and v != "" and k is not None}
    errors: list[FieldError] = []
    get = obj.get

    contact_id = _text(get("id"), "id", errors, ID_MAX_CHARS, required=True)
    source = _text(get("source"), "source", errors, ID_MAX_CHARS) or "api"
    customer_id = _text(get("customer_id"), "customer_id", errors, ID_MAX_CHARS, required=True)
    agent = _text(get("agent"), "agent", errors, TEXT_MAX_CHARS)
    team = _text(get("team"), "team", errors, TEXT_MAX_CHARS)
    queue = _text(get("queue"), "queue", errors, TEXT_MAX_CHARS)
    reason = _text(get("reason"), "reason", errors, REASON_MAX_CHARS)
    parent_id = _text(get("parent_id"), "parent_id", errors, ID_MAX_CHARS)

    channel = _choice(get("channel"), "channel", errors, _CHANNEL_SET, CHANNELS) or "other"
    direction = _choice(get("direction"), "direction", errors, _DIRECTION_SET, DIRECTIONS) or "inbound"
    tier = _tier(get("tier"), errors, from_text)
    escalated = _bool(get("escalated"), "escalated", errors, from_text)
    resolved = _bool(get("resolved"), "resolved", errors, from_text)

    started_us = _instant(get("started_at"), "started_at", errors, zone, required=True)
    ended_us = _instant(get("ended_at"), "ended_at", errors, zone, required=False)
    if started_us is not None and ended_us is not None and ended_us < started_us:
        errors.append(FieldError("ended_at", f"{get('ended_at')!r} is before started_at {get('started_at')!r}"))
    updated_us = _instant(get("updated_at"), "updated_at", errors, zone, required=False)

    if errors:
        return errors
    assert contact_id is not None and customer_id is not None and started_us is not None
    # Positional, in field order: keyword arguments made this call a tenth of the whole validation.
    return _new_contact(
        (
            source,
            contact_id,
            customer_id,
            agent,
            team,
            queue,
            reason,
            channel,
            direction,
            tier,
            bool(escalated),
            resolved,
            parent_id,
            started_us,
            ended_us,
            updated_us,
            raw if raw is not None else raw_json(obj),
        )
    )


_new_contact = Contact._make
_TEXT_BOOLS = {
    variant: word in _TRUE_WORDS
    for word in _TRUE_WORDS | _FALSE_WORDS
    for variant in (word, word.upper(), word.capitalize())
}
_TEXT_TIERS = {str(n): n for n in range(1, 10)}


# C901: one straight run of type checks per field, on purpose: a call per field or per timestamp cost about a
# tenth of an import's time (bench/ingest.py), and this runs once per record, millions of times per import.
def contact_row(  # noqa: C901
    obj: object, zone: tzinfo, *, from_text: bool = False, raw: str | None = None, filtered: bool = False
) -> tuple[Any, ...] | list[FieldError]:
    """``parse_contact`` as a plain tuple in Contact field order (bulk imports skip building the NamedTuple).

    ``filtered`` promises that a ``from_text`` record has no empty cells left (no None key, no None or ""
    value: the CSV reader drops them), which saves looking for them.

    This is the fast path: it accepts records whose every value has the usual type and form, and hands
    anything else to ``_full_row``, so unusual and invalid records get exactly the full validator's result
    and every error message lives in one place. Each check below accepts only values that the full
    validator maps to the same result. Written out in one function: it runs millions of times per import.
    """
    if type(obj) is not dict:
        return _full_row(obj, zone, from_text, raw)
    if from_text and not filtered and ("" in (values := obj.values()) or None in values or None in obj):
        obj = {k: v for k, v in obj.items() if v is not None and v != "" and k is not None}
    get = obj.get

    contact_id = get("id")
    if (
        type(contact_id) is not str
        or not 0 < len(contact_id := contact_id.strip()) <= ID_MAX_CHARS
        or "\x00" in contact_id
    ):
        return _full_row(obj, zone, from_text, raw)
    customer_id = get("customer_id")
    if (
        type(customer_id) is not str
        or not 0 < len(customer_id := customer_id.strip()) <= ID_MAX_CHARS
        or "\x00" in customer_id
    ):
        return _full_row(obj, zone, from_text, raw)
    source = get("source")
    if source is None:
        source = "api"
    elif type(source) is not str or not 0 < len(source := source.strip()) <= ID_MAX_CHARS or "\x00" in source:
        return _full_row(obj, zone, from_text, raw)
    agent = get("agent")
    if agent is not None and (
        type(agent) is not str or not 0 < len(agent := agent.strip()) <= TEXT_MAX_CHARS or "\x00" in agent
    ):
        return _full_row(obj, zone, from_text, raw)
    team = get("team")
    if team is not None and (
        type(team) is not str or not 0 < len(team := team.strip()) <= TEXT_MAX_CHARS or "\x00" in team
    ):
        return _full_row(obj, zone, from_text, raw)
    queue = get("queue")
    if queue is not None and (
        type(queue) is not str or not 0 < len(queue := queue.strip()) <= TEXT_MAX_CHARS or "\x00" in queue
    ):
        return _full_row(obj, zone, from_text, raw)
    reason = get("reason")
    if reason is not None and (
        type(reason) is not str or not 0 < len(reason := reason.strip()) <= REASON_MAX_CHARS or "\x00" in reason
    ):
        return _full_row(obj, zone, from_text, raw)
    parent_id = get("parent_id")
    if parent_id is not None and (
        type(parent_id) is not str or not 0 < len(parent_id := parent_id.strip()) <= ID_MAX_CHARS or "\x00" in parent_id
    ):
        return _full_row(obj, zone, from_text, raw)

    channel = get("channel")
    if channel is None:
        channel = "other"
    elif type(channel) is not str or channel not in _CHANNEL_SET:
        return _full_row(obj, zone, from_text, raw)
    direction = get("direction")
    if direction is None:
        direction = "inbound"
    elif type(direction) is not str or direction not in _DIRECTION_SET:
        return _full_row(obj, zone, from_text, raw)
    tier = get("tier")
    if tier is None:
        tier = 1
    elif (type(tier) is not int or not 1 <= tier <= TIER_MAX) and (
        not from_text or type(tier) is not str or (tier := _TEXT_TIERS.get(tier)) is None
    ):
        return _full_row(obj, zone, from_text, raw)
    escalated = get("escalated")
    if escalated is None:
        escalated = False
    elif (escalated is not True and escalated is not False) and (
        not from_text or type(escalated) is not str or (escalated := _TEXT_BOOLS.get(escalated)) is None
    ):
        return _full_row(obj, zone, from_text, raw)
    resolved = get("resolved")
    if (resolved is not None and resolved is not True and resolved is not False) and (
        not from_text or type(resolved) is not str or (resolved := _TEXT_BOOLS.get(resolved)) is None
    ):
        return _full_row(obj, zone, from_text, raw)

    # Timestamps: timeutil.fast_instant, with its common cases written out here (the calls cost a tenth): text
    # whose hour was met before, and epoch seconds as a float (JSON senders': two calls were 0.1-0.3 us a record).
    instants = instant_cache(zone)
    tails = instants.tails
    started_us: int
    ended_us: int | None
    end_us: int
    given: int | None
    started_at = get("started_at")
    if type(started_at) is str and (tail := tails.get(started_at[14:])) is not None:
        hour = tail[1].get(started_at[:14])
        if hour is None:
            hour = cache_hour(started_at, instants, tail[1])
        if hour < 0:
            return _full_row(obj, zone, from_text, raw)
        started_us = hour + tail[0]
    elif type(started_at) is float:  # (as fast_instant and parse_instant round them)
        if not MIN_US <= (scaled := started_at * US_PER_SECOND) < MAX_US or (started_us := round(scaled)) >= MAX_US:
            return _full_row(obj, zone, from_text, raw)
    elif (given := fast_instant(started_at, instants)) is None:
        return _full_row(obj, zone, from_text, raw)
    else:
        started_us = given
    ended_at = get("ended_at")
    if ended_at is None:
        ended_us = None
    else:
        if type(ended_at) is str and (tail := tails.get(ended_at[14:])) is not None:
            hour = tail[1].get(ended_at[:14])
            if hour is None:
                hour = cache_hour(ended_at, instants, tail[1])
            if hour < 0:
                return _full_row(obj, zone, from_text, raw)
            end_us = hour + tail[0]
        elif type(ended_at) is float:
            if not MIN_US <= (scaled := ended_at * US_PER_SECOND) < MAX_US or (end_us := round(scaled)) >= MAX_US:
                return _full_row(obj, zone, from_text, raw)
        elif (given := fast_instant(ended_at, instants)) is None:
            return _full_row(obj, zone, from_text, raw)
        else:
            end_us = given
        if end_us < started_us:
            return _full_row(obj, zone, from_text, raw)
        ended_us = end_us
    updated_at = get("updated_at")  # rarer than the others: fast_instant, not written out
    if updated_at is None:
        updated_us = None
    elif (updated_us := fast_instant(updated_at, instants)) is None:
        return _full_row(obj, zone, from_text, raw)

    return (
        source,
        contact_id,
        customer_id,
        agent,
        team,
        queue,
        reason,
        channel,
        direction,
        tier,
        escalated,
        resolved,
        parent_id,
        started_us,
        ended_us,
        updated_us,
        raw if raw is not None else raw_json(obj),
    )


def _full_row(obj: object, zone: tzinfo, from_text: bool, raw: str | None) -> tuple[Any, ...] | list[FieldError]:
    parsed = parse_contact_full(obj, zone, from_text=from_text, raw=raw)
    return parsed if type(parsed) is list else tuple(parsed)


def _text(value: object, field: str, errors: list[FieldError], limit: int, required: bool = False) -> str | None:
    if type(value) is str:  # the common case first
        text = value.strip()
        if text and len(text) <= limit and "\x00" not in text:
            return text
    if type(value) is int and field in NUMERIC_ID_FIELDS:  # a CRM export's numeric id: its decimal text
        value = str(value)
        if len(value) <= limit:
            return value
    if value is None:
        if required:
            errors.append(FieldError(field, "is required"))
        return None
    if not isinstance(value, str):
        errors.append(FieldError(field, f"must be a string, got {describe_kind(value)} {_show(value)}"))
        return None
    text = value.strip()
    if not text:
        if required:
            errors.append(FieldError(field, "is required and must not be empty"))
        return None
    if len(text) > limit:
        errors.append(FieldError(field, f"is {len(text)} characters long; the limit is {limit}"))
        return None
    if "\x00" in text:
        errors.append(FieldError(field, f"contains a NUL character (\\u0000) at position {text.index(chr(0)) + 1}"))
        return None
    return text


def _choice(
    value: object, field: str, errors: list[FieldError], allowed: frozenset[str], shown: tuple[str, ...]
) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return None
        if word in allowed:
            return word
    errors.append(FieldError(field, f"{_show(value)} is not one of {', '.join(shown)}"))
    return None


def _tier(value: object, errors: list[FieldError], from_text: bool) -> int:
    if value is None:
        return 1
    number: object = value
    if from_text and isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = value
    if isinstance(number, bool) or not isinstance(number, int):
        errors.append(FieldError("tier", f"must be a whole number >= 1, got {_show(value)}"))
        return 1
    if number < 1:
        errors.append(FieldError("tier", f"must be >= 1, got {number}"))
        return 1
    if number > TIER_MAX:
        errors.append(FieldError("tier", f"must be at most {TIER_MAX} (2^63 - 1), got {_show(value)}"))
        return 1
    return number


def _bool(value: object, field: str, errors: list[FieldError], from_text: bool) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if from_text and isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        if not word:
            return None
        errors.append(FieldError(field, f"{_show(value)} is not a boolean (use true/false, yes/no or 1/0)"))
        return None
    errors.append(FieldError(field, f"must be true, false or null, got {_show(value)}"))
    return None


def _instant(value: object, field: str, errors: list[FieldError], zone: tzinfo, required: bool) -> int | None:
    if value is None:
        if required:
            errors.append(FieldError(field, "is required"))
        return None
    try:
        return parse_instant(value, zone)
    except ValueError as problem:
        errors.append(FieldError(field, str(problem)))
        return None


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
