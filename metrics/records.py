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

from metrics.timeutil import describe_kind, parse_instant

CHANNELS = ("phone", "chat", "email", "sms", "social", "video", "other")
DIRECTIONS = ("inbound", "outbound")
ID_MAX_CHARS = 200
TEXT_MAX_CHARS = 200
REASON_MAX_CHARS = 1000
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
    raw: str  # the record as delivered, as compact JSON, unknown fields included

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.id)

    @property
    def end_us(self) -> int:
        """The contract's ``e``: ``ended_at``, or ``started_at`` when the contact has no end."""
        return self.started_us if self.ended_us is None else self.ended_us

    @property
    def repeatable(self) -> bool:
        """Whether this contact can be another contact's repeat: inbound and not a continuation leg."""
        return self.direction == "inbound" and self.parent_id is None


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
            raw if raw is not None else raw_json(obj),
        )
    )


_new_contact = Contact._make


def _text(value: object, field: str, errors: list[FieldError], limit: int, required: bool = False) -> str | None:
    if type(value) is str:  # the common case first
        text = value.strip()
        if text and len(text) <= limit:
            return text
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
