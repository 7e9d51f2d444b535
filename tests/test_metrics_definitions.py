"""CONTRACT section 2, rule by rule: the pure definitions, window and period parsing, and the engine's answers
through a real store (counted from contacts and from the rollups: both must agree on every rule)."""

from __future__ import annotations

import math
import sqlite3
import tempfile
from contextlib import closing
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.storage import ContactStore, open_store, sqlite_metrics
from metrics import definitions
from metrics.engine import compute
from metrics.errors import UserError
from metrics.periods import (
    calendar_period,
    format_window,
    last_period,
    local_date,
    local_days,
    local_midnight_us,
    parse_date,
    parse_days,
    parse_window,
)
from metrics.query import Counts, Dimension, MetricQuery, MetricResult, wilson_interval
from metrics.records import Contact
from metrics.timeutil import US_PER_DAY, US_PER_HOUR, US_PER_SECOND, parse_instant
from tests.builders import contact as build_contact

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
DAY, HOUR, SECOND = US_PER_DAY, US_PER_HOUR, US_PER_SECOND
W7 = 7 * DAY
T0 = parse_instant("2026-05-04T10:00:00Z", UTC)  # a Monday


def at(text: str, zone: Any = UTC) -> int:
    return parse_instant(text, zone)


def contact(cid: str, customer: str, start_us: int, end_us: int | None = None, **fields: Any) -> Contact:
    return build_contact(cid, customer, start_us / SECOND, None if end_us is None else end_us / SECOND, **fields)


def ask(
    store: ContactStore,
    *,
    as_of: int,
    metric: str = "acr",
    window: int = W7,
    since: int | None = None,
    until: int | None = None,
    filters: tuple[tuple[Dimension, str], ...] = (),
    by: str | None = None,
    zone: Any = UTC,
) -> MetricResult:
    """The engine's answer, checked to be identical counted from contacts only and through the rollups."""
    query = MetricQuery(
        metric,  # type: ignore[arg-type]
        window,
        since if since is not None else as_of - 30 * DAY,
        until if until is not None else as_of,
        as_of,
        filters,
        by,  # type: ignore[arg-type]
    )
    from_rows = compute(store, query, zone, use_rollups=False)
    store.refresh_rollups(zone)
    assert compute(store, query, zone) == from_rows
    return from_rows


def totals(store: ContactStore, **kwargs: Any) -> tuple[int, int, int]:
    total = ask(store, **kwargs).total
    return (total.matured, total.resolved, total.pending)


# --- windows and periods ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7d", 7 * DAY), ("1h", HOUR), ("48h", 48 * HOUR), (" 30D ", 30 * DAY), ("90d", 90 * DAY), ("2160h", 90 * DAY)],
)
def test_parse_window(text: str, expected: int) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize("text", ["0d", "0h", "91d", "2161h", "7", "d", "7w", "-1d", "1.5d", "seven", ""])
def test_parse_window_refuses_and_names_the_word(text: str) -> None:
    with pytest.raises(UserError, match=repr(text).replace("(", r"\(").replace(".", r"\.")):
        parse_window(text)


def test_format_window() -> None:
    assert [format_window(w) for w in (7 * DAY, 36 * HOUR, 24 * HOUR, 90 * SECOND)] == ["7d", "36h", "1d", "90s"]


def test_parse_date() -> None:
    assert parse_date("2026-03-08") == date(2026, 3, 8)
    for bad in ("2026-02-30", "2026-13-01", "2026-3-8", "yesterday", "2026-02-29"):
        with pytest.raises(UserError, match=bad):
            parse_date(bad)
    assert parse_date("2028-02-29") == date(2028, 2, 29)


def test_parse_days() -> None:
    assert parse_days("30d") == 30 and parse_days("7") == 7
    for bad in ("0d", "x", "-3d", "99999d"):
        with pytest.raises(UserError, match="period"):
            parse_days(bad)


def test_last_period_is_n_times_24_hours_before_as_of() -> None:
    as_of = at("2026-03-10T12:00:00Z")
    assert last_period(7, as_of) == (as_of - 7 * DAY, as_of)


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        (NEW_YORK, date(2026, 3, 8), 23),
        (NEW_YORK, date(2026, 11, 1), 25),
        (NEW_YORK, date(2026, 5, 4), 24),
        (BERLIN, date(2026, 3, 29), 23),
        (BERLIN, date(2026, 10, 25), 25),
    ],
)
def test_calendar_day_lasts_23_24_or_25_hours(zone: ZoneInfo, day: date, hours: int) -> None:
    since, until = calendar_period(day, day, zone, as_of_us=at("2030-01-01T00:00:00Z"))
    assert since == local_midnight_us(day, zone)
    assert until - since == hours * HOUR
    assert local_date(since, zone) == day and local_date(until, zone) == day + timedelta(days=1)
    assert local_date(until - 1, zone) == day


def test_calendar_period_both_days_inclusive_in_new_york() -> None:
    since, until = calendar_period(date(2026, 3, 7), date(2026, 3, 9), NEW_YORK, at("2030-01-01T00:00:00Z"))
    assert since == at("2026-03-07T05:00:00Z")  # midnight EST
    assert until == at("2026-03-10T04:00:00Z")  # midnight EDT after the 9th
    assert until - since == 3 * DAY - HOUR


def test_calendar_period_defaults_and_errors() -> None:
    as_of = at("2026-03-10T15:00:00Z")
    since, until = calendar_period(date(2026, 3, 9), None, NEW_YORK, as_of)
    assert (since, until) == (at("2026-03-09T04:00:00Z"), as_of)
    since, until = calendar_period(None, date(2026, 3, 9), NEW_YORK, as_of)
    assert local_date(since, NEW_YORK) == date(2026, 2, 8) and local_date(until - 1, NEW_YORK) == date(2026, 3, 9)
    with pytest.raises(UserError, match="after until"):
        calendar_period(date(2026, 3, 9), date(2026, 3, 8), NEW_YORK, as_of)


def test_midnight_skipped_by_dst_starts_the_day_at_the_jump() -> None:
    santiago = ZoneInfo("America/Santiago")  # clocks jump from 24:00 to 01:00 on 2026-09-06
    start = local_midnight_us(date(2026, 9, 6), santiago)
    assert local_date(start, santiago) == date(2026, 9, 6)
    assert local_date(start - 1, santiago) == date(2026, 9, 5)


def test_local_days_cover_the_period_in_local_days() -> None:
    days = local_days(at("2026-03-07T12:00:00Z"), at("2026-03-09T12:00:00Z"), NEW_YORK)
    assert [d for d, _, _ in days] == [date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 9)]
    assert [(end - start) // HOUR for _, start, end in days] == [24, 23, 24]
    assert local_days(5, 5, NEW_YORK) == []


# --- the pure definitions ---------------------------------------------------------------------------


def test_definitions_of_repeat_and_maturity() -> None:
    c = contact("c", "k", T0, T0 + 10 * 60 * SECOND)
    e = c.end_us
    assert definitions.is_repeat_of(contact("r", "k", e + W7), c, W7)
    assert not definitions.is_repeat_of(contact("r", "k", e + W7 + SECOND), c, W7)
    assert not definitions.is_repeat_of(contact("r", "k", T0), c, W7)  # same instant
    assert definitions.is_repeat_of(contact("r", "k", T0 + 1), c, W7)  # during the contact still counts
    assert not definitions.is_repeat_of(contact("r", "other", e + HOUR), c, W7)
    assert not definitions.is_repeat_of(contact("r", "k", e + HOUR, direction="outbound"), c, W7)
    assert not definitions.is_repeat_of(contact("r", "k", e + HOUR, parent_id="c"), c, W7)
    assert definitions.has_repeat(e + W7, e, W7) and not definitions.has_repeat(e + W7 + 1, e, W7)
    assert not definitions.has_repeat(None, e, W7)
    assert definitions.is_matured(e, W7, e + W7) and not definitions.is_matured(e, W7, e + W7 - 1)
    assert definitions.clip_until(10, 5) == 5


def test_definitions_of_candidates_and_success() -> None:
    c = contact("c", "k", T0, team="blue")
    assert definitions.is_candidate(c, [("agent", "maria"), ("team", "blue")], T0, T0 + 1)
    assert not definitions.is_candidate(c, [("agent", "Maria")], T0, T0 + 1)  # exact match
    assert not definitions.is_candidate(c, [], T0 + 1, T0 + 2)
    assert not definitions.is_candidate(c, [], T0 - 1, T0)  # until is exclusive
    assert not definitions.is_candidate(contact("o", "k", T0, direction="outbound"), [], T0, T0 + 1)
    assert not definitions.is_candidate(contact("n", "k", T0, agent=None), [], T0, T0 + 1)
    assert definitions.in_population("acr", 2) and not definitions.in_population("tier1", 2)
    assert definitions.is_success("tier1", repeated=False, escalated=False, resolved=None)
    assert not definitions.is_success("tier1", repeated=False, escalated=True, resolved=True)
    assert not definitions.is_success("tier1", repeated=False, escalated=False, resolved=False)
    assert definitions.is_success("acr", repeated=False, escalated=True, resolved=False)
    assert not definitions.is_success("acr", repeated=True, escalated=False, resolved=True)


def test_wilson_interval() -> None:
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(8, 10)  # type: ignore[misc]
    z = 1.959963984540054
    p, n = 0.8, 10
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (low, high) == pytest.approx((centre - margin, centre + margin))
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 5)[0] == 0.0  # type: ignore[index]
    assert wilson_interval(5, 5)[1] == 1.0  # type: ignore[index]


# --- the rules, through the engine and a real store -------------------------------------------------


def test_repeat_at_exactly_e_plus_w_counts_one_second_later_does_not(store: ContactStore) -> None:
    end = T0 + 600 * SECOND
    store.upsert(
        [
            contact("a", "k1", T0, end),
            contact("a2", "k1", end + W7),  # exactly e + W: a repeat of a
            contact("b", "k2", T0, end),
            contact("b2", "k2", end + W7 + SECOND),  # one second later: not a repeat of b
        ]
    )
    as_of = end + W7
    # a and b are matured (e + W == as_of); a2 and b2 start at or after as_of, so they are not candidates.
    assert totals(store, as_of=as_of) == (2, 1, 0)
    assert totals(store, as_of=as_of + 2 * SECOND, filters=(("agent", "maria"),)) == (2, 1, 2)


def test_contact_without_end_uses_its_start(store: ContactStore) -> None:
    store.upsert(
        [
            contact("a", "k1", T0),
            contact("a2", "k1", T0 + W7, agent=None),  # exactly t + W
            contact("b", "k2", T0),
            contact("b2", "k2", T0 + W7 + SECOND, agent=None),
        ]
    )
    assert totals(store, as_of=T0 + W7) == (2, 1, 0)
    assert totals(store, as_of=T0 + W7 - 1) == (0, 0, 2)


def test_same_instant_contacts_are_not_repeats(store: ContactStore) -> None:
    store.upsert([contact("a", "k1", T0, T0 + HOUR), contact("b", "k1", T0, T0 + HOUR)])
    assert totals(store, as_of=T0 + 30 * DAY) == (2, 2, 0)


def test_outbound_contacts_never_repeat_and_are_not_candidates(store: ContactStore) -> None:
    store.upsert([contact("a", "k1", T0), contact("call-back", "k1", T0 + HOUR, direction="outbound")])
    assert totals(store, as_of=T0 + 30 * DAY) == (1, 1, 0)


def test_continuation_legs_never_repeat_but_are_candidates(store: ContactStore) -> None:
    store.upsert([contact("a", "k1", T0, T0 + HOUR), contact("a-leg", "k1", T0 + HOUR, parent_id="a", tier=2)])
    assert totals(store, as_of=T0 + 30 * DAY) == (2, 2, 0)


def test_agentless_contacts_are_not_candidates_but_are_repeats(store: ContactStore) -> None:
    store.upsert([contact("a", "k1", T0, T0 + HOUR), contact("ivr", "k1", T0 + 2 * HOUR, agent=None)])
    assert totals(store, as_of=T0 + 30 * DAY) == (1, 0, 0)


def test_pending_contacts_are_reported_never_scored(store: ContactStore) -> None:
    store.upsert([contact("old", "k1", T0), contact("new", "k2", T0 + 25 * DAY)])
    result = ask(store, as_of=T0 + 27 * DAY)
    assert (result.total.matured, result.total.resolved, result.total.pending) == (1, 1, 1)
    assert result.total.rate == 1.0


def test_tier1_rate_rules(store: ContactStore) -> None:
    store.upsert(
        [
            contact("ok", "k1", T0, resolved=True),
            contact("no-disposition", "k2", T0),  # resolved null: not held against the agent
            contact("escalated", "k3", T0, escalated=True, resolved=True),
            contact("unresolved", "k4", T0, resolved=False),
            contact("repeated", "k5", T0, resolved=True),
            contact("repeat", "k5", T0 + DAY, agent=None),
            contact("tier2", "k6", T0, tier=2, resolved=True),
        ]
    )
    assert totals(store, as_of=T0 + 30 * DAY, metric="tier1") == (5, 2, 0)
    assert totals(store, as_of=T0 + 30 * DAY, metric="acr") == (6, 5, 0)  # ACR ignores disposition and tier


def test_no_matured_contacts_is_no_data_not_zero(store: ContactStore) -> None:
    store.upsert([contact("a", "k1", T0)])
    result = ask(store, as_of=T0 + DAY)
    assert result.total == Counts(0, 0, 1)
    assert result.total.rate is None and result.total.interval is None
    empty = ask(store, as_of=T0 + 30 * DAY, filters=(("agent", "nobody"),))
    assert empty.total == Counts() and empty.total.rate is None
    assert ask(store, as_of=T0 + 30 * DAY, filters=(("agent", "nobody"),), by="agent").rows == []


def test_empty_store_and_empty_period(store: ContactStore) -> None:
    assert ask(store, as_of=T0).total == Counts()
    store.upsert([contact("a", "k1", T0)])
    result = ask(store, as_of=T0 + 30 * DAY, since=T0 + 40 * DAY, until=T0 + 50 * DAY)
    assert result.total == Counts() and result.until_us == T0 + 30 * DAY


def test_until_is_clipped_to_as_of(store: ContactStore) -> None:
    store.upsert([contact("before", "k1", T0 - 10 * DAY), contact("after-as-of", "k2", T0 + HOUR)])
    result = ask(store, as_of=T0, since=T0 - 20 * DAY, until=T0 + 5 * DAY)
    assert result.until_us == T0
    assert result.total == Counts(1, 1, 0)


def test_period_bounds_since_inclusive_until_exclusive(store: ContactStore) -> None:
    store.upsert([contact("at-since", "k1", T0), contact("at-until", "k2", T0 + DAY)])
    assert totals(store, as_of=T0 + 30 * DAY, since=T0, until=T0 + DAY) == (1, 1, 0)


def test_filters_are_exact_and_combine(store: ContactStore) -> None:
    store.upsert(
        [
            contact("a", "k1", T0, team="blue", queue="billing", channel="chat"),
            contact("b", "k2", T0, agent="Maria", team="blue", channel="phone"),
            contact("c", "k3", T0, agent="omar", team="red"),
        ]
    )
    as_of = T0 + 30 * DAY
    assert totals(store, as_of=as_of, filters=(("agent", "maria"),)) == (1, 1, 0)
    assert totals(store, as_of=as_of, filters=(("team", "blue"),)) == (2, 2, 0)
    assert totals(store, as_of=as_of, filters=(("team", "blue"), ("channel", "phone"))) == (1, 1, 0)
    assert totals(store, as_of=as_of, filters=(("queue", "billing"), ("agent", "omar"))) == (0, 0, 0)


def test_breakdown_leaves_out_contacts_without_the_value_but_totals_keep_them(
    store: ContactStore,
) -> None:
    store.upsert([contact("a", "k1", T0, team="blue"), contact("b", "k2", T0, team="red"), contact("c", "k3", T0)])
    result = ask(store, as_of=T0 + 30 * DAY, by="team")
    assert [(row.key, row.counts.matured) for row in result.rows] == [("blue", 1), ("red", 1)]
    assert result.total.matured == 3
    by_agent = ask(store, as_of=T0 + 30 * DAY, by="agent")
    assert [(row.key, row.counts.matured) for row in by_agent.rows] == [("maria", 3)]


def test_by_day_uses_local_days_across_dst_in_new_york(store: ContactStore) -> None:
    store.upsert(
        [
            contact("sat-late", "k1", at("2026-03-07T23:30:00", NEW_YORK)),  # 04:30Z on the 8th
            contact("sun-early", "k2", at("2026-03-08T00:10:00", NEW_YORK)),
            contact("sun-late", "k3", at("2026-03-08T23:59:00", NEW_YORK)),  # 03:59Z on the 9th
            contact("mon", "k4", at("2026-03-09T00:00:00", NEW_YORK)),
            contact("fall-back-second-1am", "k5", at("2026-11-01T06:30:00Z")),  # 01:30 EST, the repeated hour
        ]
    )
    as_of = at("2026-12-01T00:00:00Z")
    since, until = calendar_period(date(2026, 3, 7), date(2026, 3, 9), NEW_YORK, as_of)
    result = ask(store, as_of=as_of, since=since, until=until, by="day", zone=NEW_YORK)
    assert [(row.key, row.counts.matured) for row in result.rows] == [
        ("2026-03-07", 1),
        ("2026-03-08", 2),
        ("2026-03-09", 1),
    ]
    since, until = calendar_period(date(2026, 10, 31), date(2026, 11, 2), NEW_YORK, as_of)
    result = ask(store, as_of=as_of, since=since, until=until, by="day", zone=NEW_YORK)
    assert [(row.key, row.counts.matured) for row in result.rows] == [
        ("2026-10-31", 0),
        ("2026-11-01", 1),
        ("2026-11-02", 0),
    ]
    assert result.rows[0].counts.rate is None


def test_attribution_follows_the_contact(store: ContactStore) -> None:
    """Maria's contact repeated by a contact Omar handled counts against Maria, not Omar."""
    store.upsert([contact("a", "k1", T0), contact("b", "k1", T0 + HOUR, agent="omar")])
    result = ask(store, as_of=T0 + 30 * DAY, by="agent")
    assert {row.key: (row.counts.matured, row.counts.resolved) for row in result.rows} == {
        "maria": (1, 0),
        "omar": (1, 1),
    }


# --- the restatements (docs/metrics.md, "Where the rules are restated") -----------------------------

instants = st.integers(0, 40).map(lambda minute: T0 + minute * 60 * SECOND)
stored_values = st.fixed_dictionaries(
    {
        "direction": st.sampled_from(["inbound", "outbound"]),
        "agent": st.sampled_from([None, "maria"]),
        "parent_id": st.sampled_from([None, "c0"]),
        "started_us": instants,
        "ended_us": st.one_of(st.none(), instants),
        "next_repeat_us": st.one_of(st.none(), instants),
        "tier": st.sampled_from([1, 2]),
        "escalated": st.booleans(),
        "resolved": st.sampled_from([None, True, False]),
    }
)


@pytest.mark.slow
@given(values=stored_values, window=st.sampled_from([0, HOUR, 10 * 60 * SECOND]), as_of=instants)
def test_the_sql_fragments_state_the_definitions(values: dict[str, Any], window: int, as_of: int) -> None:
    """Each SQL restatement evaluated by SQLite on one row equals the definition on the same values."""
    started = values["started_us"]
    ended = values["ended_us"] if values["ended_us"] is None else max(values["ended_us"], started)
    row = Contact(
        **{field: values[field] for field in ("agent", "direction", "tier", "escalated", "resolved", "parent_id")},
        source="api", id="c1", customer_id="k1", team=None, queue=None, reason=None, channel="phone",
        started_us=started, ended_us=ended, updated_us=None, raw="{}",
    )  # fmt: skip
    columns = {**values, "ended_us": ended, "end_us": row.end_us}
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute(f"CREATE TABLE contacts ({', '.join(columns)})")
        conn.execute(f"INSERT INTO contacts VALUES ({', '.join('?' * len(columns))})", tuple(columns.values()))
        select = ", ".join(
            [
                sqlite_metrics.CANDIDATE,
                sqlite_metrics.NO_REPEAT.format(w=window),
                sqlite_metrics.TIER1_SUCCESS,
                f"end_us <= {as_of - window}",  # matured, as row_counts asks it (:matured_by = as_of - W)
            ]
        )
        candidate, no_repeat, tier1_success, matured = conn.execute(f"SELECT {select} FROM contacts").fetchone()
    assert bool(candidate) == definitions.is_handled_inbound(row)
    repeated = definitions.has_repeat(values["next_repeat_us"], row.end_us, window)
    assert bool(no_repeat) == (not repeated)
    expected = definitions.in_population("tier1", row.tier) and definitions.is_success(
        "tier1", repeated=repeated, escalated=row.escalated, resolved=row.resolved
    )
    assert bool(tier1_success and no_repeat) == expected
    assert bool(matured) == definitions.is_matured(row.end_us, window, as_of)


versions = st.fixed_dictionaries(
    {
        "customer_id": st.sampled_from(["k1", "k2"]),
        "start": st.integers(0, 12),  # few instants: equal starts and e + W collisions are common
        "duration": st.sampled_from([None, 0, 1]),
        "direction": st.sampled_from(["inbound", "inbound", "outbound"]),
        "parent_id": st.sampled_from([None, None, "c0"]),
        "agent": st.sampled_from([None, "maria", "maria"]),
    }
)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(deliveries=st.lists(st.lists(st.tuples(st.integers(0, 6), versions), min_size=1, max_size=8), max_size=4))
def test_the_stored_derived_data_states_the_definitions(deliveries: list[list[tuple[int, dict[str, Any]]]]) -> None:
    """After any deliveries and updates, the store's restatements hold: the generated columns ``end_us`` and
    ``repeatable``, the rows of ``metric_contacts`` (the writer and the update trigger) and their
    ``next_repeat_us`` (``_FRESH_NEXT_REPEAT`` and the incremental upkeep of touched customers)."""
    final: dict[str, Contact] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "acr.db"
        store = open_store(f"sqlite:///{path}")  # the restatements below are the SQLite backend's
        try:
            for batch in deliveries:
                contacts = []
                for key, version in batch:
                    start = T0 + version["start"] * HOUR
                    end = None if version["duration"] is None else start + version["duration"] * HOUR
                    fields = {k: version[k] for k in ("direction", "parent_id", "agent")}
                    contacts.append(contact(f"c{key}", version["customer_id"], start, end, **fields))
                store.upsert(contacts)
                final.update((c.id, c) for c in contacts)
        finally:
            store.close()
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            stored = {
                cid: (end_us, bool(repeatable))
                for cid, end_us, repeatable in conn.execute("SELECT id, end_us, repeatable FROM contacts")
            }
            counted = {
                cid: (started_us, end_us, next_repeat_us)
                for cid, started_us, end_us, next_repeat_us in conn.execute(
                    "SELECT c.id, m.started_us, m.end_us, m.next_repeat_us FROM metric_contacts AS m "
                    "JOIN contacts AS c ON c.pk = m.pk"
                )
            }
    everyone = list(final.values())
    assert stored == {c.id: (c.end_us, definitions.is_repeatable(c)) for c in everyone}
    assert counted == {
        c.id: (c.started_us, c.end_us, definitions.next_repeat_us(c, everyone))
        for c in everyone
        if definitions.is_handled_inbound(c)
    }


@pytest.mark.slow
@given(
    contacts=st.lists(st.tuples(st.sampled_from(["k1", "k2"]), st.integers(0, 12), versions), max_size=10),
    window=st.sampled_from([0, HOUR, 3 * HOUR]),
)
def test_has_repeat_over_the_next_repeat_is_is_repeat_of(
    contacts: list[tuple[str, int, dict[str, Any]]], window: int
) -> None:
    """Keeping only the next repeatable start loses nothing: some repeat within W iff the first one is."""
    everyone = [
        contact(f"c{i}", customer, T0 + start * HOUR, direction=v["direction"], parent_id=v["parent_id"])
        for i, (customer, start, v) in enumerate(contacts)
    ]
    for c in everyone:
        expected = any(definitions.is_repeat_of(later, c, window) for later in everyone)
        assert definitions.has_repeat(definitions.next_repeat_us(c, everyone), c.end_us, window) == expected
