"""Validation of contact records (CONTRACT section 1): every rule gives a message naming field, value and problem."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.records import Contact, FieldError, parse_contact
from metrics.timeutil import from_us, iso_utc, to_us

NEW_YORK = ZoneInfo("America/New_York")
BASE = {"id": "c1", "customer_id": "+15551234", "started_at": "2026-05-04T10:00:00Z"}


def ok(record: dict[str, Any], zone: Any = UTC, **kw: Any) -> Contact:
    parsed = parse_contact(record, zone, **kw)
    assert isinstance(parsed, Contact), parsed
    return parsed


def problems(record: object, zone: Any = UTC, **kw: Any) -> dict[str, str]:
    parsed = parse_contact(record, zone, **kw)
    assert isinstance(parsed, list), parsed
    return {error.field: error.message for error in parsed}


def test_defaults() -> None:
    c = ok(BASE)
    assert (c.source, c.channel, c.direction, c.tier, c.escalated, c.resolved) == (
        "api",
        "other",
        "inbound",
        1,
        False,
        None,
    )
    assert c.agent is None and c.ended_us is None and c.end_us == c.started_us


def test_required_fields_are_named() -> None:
    assert problems({}) == {"id": "is required", "customer_id": "is required", "started_at": "is required"}
    assert "must not be empty" in problems({**BASE, "id": "  "})["id"]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("id", 4.2, "must be a string, got a number 4.2"),
        ("agent", ["x"], "must be a string, got an array"),
        ("id", "x" * 201, "201 characters long; the limit is 200"),
        ("channel", "pigeon", '"pigeon" is not one of phone, chat, email, sms, social, video, other'),
        ("direction", "sideways", "is not one of inbound, outbound"),
        ("tier", 0, "must be >= 1, got 0"),
        ("tier", "2", 'must be a whole number >= 1, got "2"'),
        ("tier", True, "must be a whole number >= 1, got true"),
        ("escalated", "yes", 'must be true, false or null, got "yes"'),
        ("resolved", 1, "must be true, false or null, got 1"),
        ("started_at", "yesterday", "'yesterday' is not an ISO 8601 timestamp or epoch seconds"),
        ("started_at", "2026-05-04", "is a date without a time of day"),
        ("started_at", 1_780_000_000_000, "milliseconds?"),
        ("started_at", True, "got a boolean"),
    ],
)
def test_bad_values_name_the_problem(field: str, value: object, expected: str) -> None:
    assert expected in problems({**BASE, field: value})[field]


def test_ended_before_started() -> None:
    message = problems({**BASE, "ended_at": "2026-05-04T09:59:59Z"})["ended_at"]
    assert "is before started_at" in message and "09:59:59" in message


def test_non_object_items() -> None:
    assert problems([1, 2]) == {"record": "expected an object, got an array"}
    assert problems("hello") == {"record": "expected an object, got a string"}


def test_channel_and_direction_are_lower_cased() -> None:
    c = ok({**BASE, "channel": " Phone ", "direction": "OUTBOUND"})
    assert (c.channel, c.direction) == ("phone", "outbound")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-04T10:00:00Z", "2026-05-04T10:00:00Z"),
        ("2026-05-04 10:00:00+02:00", "2026-05-04T08:00:00Z"),
        ("2026-05-04T10:00:00.250-04:00", "2026-05-04T14:00:00.250000Z"),
        (1_777_888_800, "2026-05-04T10:00:00Z"),
        (1_777_888_800.5, "2026-05-04T10:00:00.500000Z"),
        ("1777888800", "2026-05-04T10:00:00Z"),
    ],
)
def test_timestamp_forms(text: object, expected: str) -> None:
    assert iso_utc(ok({**BASE, "started_at": text}).started_us) == expected


def test_naive_time_is_wall_time_in_the_bot_zone_across_dst() -> None:
    # New York: EST (-05:00) before 2026-03-08 02:00, EDT (-04:00) after.
    before = ok({**BASE, "started_at": "2026-03-08T01:30:00"}, NEW_YORK)
    after = ok({**BASE, "started_at": "2026-03-08T03:30:00"}, NEW_YORK)
    assert iso_utc(before.started_us) == "2026-03-08T06:30:00Z"
    assert iso_utc(after.started_us) == "2026-03-08T07:30:00Z"
    assert (
        "does not exist in America/New_York"
        in problems({**BASE, "started_at": "2026-03-08T02:30:00"}, NEW_YORK)["started_at"]
    )
    # The repeated hour on 2026-11-01 is read as its first occurrence (EDT).
    ambiguous = ok({**BASE, "started_at": "2026-11-01T01:30:00"}, NEW_YORK)
    assert iso_utc(ambiguous.started_us) == "2026-11-01T05:30:00Z"
    # An explicit offset wins over the zone.
    assert iso_utc(ok({**BASE, "started_at": "2026-03-08T02:30:00Z"}, NEW_YORK).started_us) == "2026-03-08T02:30:00Z"


def test_csv_text_mode() -> None:
    row = {
        "id": "c1",
        "customer_id": "k",
        "started_at": "2026-05-04T10:00:00Z",
        "agent": "",
        "tier": "2",
        "escalated": "YES",
        "resolved": "0",
        "ended_at": "",
    }
    c = ok(row, from_text=True)
    assert (c.agent, c.tier, c.escalated, c.resolved, c.ended_us) == (None, 2, True, False, None)
    assert '"agent"' not in c.raw  # empty cells are "not given"
    assert "is not a boolean" in problems({**row, "resolved": "maybe"}, from_text=True)["resolved"]
    assert ok({**row, "escalated": "True", "resolved": "no"}, from_text=True).resolved is False


def test_every_problem_of_a_record_is_reported_at_once() -> None:
    errors = parse_contact({"id": "", "tier": -1, "channel": "fax"}, UTC)
    assert isinstance(errors, list) and all(isinstance(e, FieldError) for e in errors)
    assert {e.field for e in errors} == {"id", "customer_id", "started_at", "tier", "channel"}


@given(st.datetimes(min_value=datetime(1991, 1, 1), max_value=datetime(2190, 1, 1), timezones=st.just(UTC)))
def test_iso_round_trip(moment: datetime) -> None:
    us = to_us(moment)
    assert from_us(us) == moment
    assert ok({**BASE, "started_at": iso_utc(us)}).started_us == us
