"""The engine through a real store file: equal to a plain reading of ``metrics.definitions`` on random data,
after random delivery orders and updates, whether it counts from contacts, from fresh rollups, or from rollups
made stale by later writes; and the rollups' invalidation, refresh and time-zone rebuild."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import date, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.storage import ContactStore, open_store
from metrics import definitions as rules
from metrics.engine import MetricReader, RowSpec, compute
from metrics.periods import calendar_period, local_date, month_key, week_key
from metrics.query import Breakdown, Counts, Filter, MetricQuery, MetricResult
from metrics.records import Contact
from metrics.rollup import RollupDays, pack_hours, unpack_hours
from metrics.timeutil import US_PER_DAY, US_PER_HOUR, US_PER_SECOND, parse_instant
from tests.builders import contact as build_contact
from tests.builders import valid
from tests.store_support import needs_rollups, probe, sqlite_url

NEW_YORK = ZoneInfo("America/New_York")
BASE = parse_instant("2026-03-04T00:00:00", NEW_YORK)  # the spring-forward day 2026-03-08 is inside the data
HOUR, DAY = US_PER_HOUR, US_PER_DAY


def reference(contacts: list[Contact], query: MetricQuery, zone: tzinfo) -> tuple[Counts, dict[str, Counts]]:
    """The rules of ``metrics.definitions`` applied with plain loops over every contact: no derived data, no
    SQL, no rollups. Every fast path the engine and the store take is held to this."""
    until = rules.clip_until(query.until_us, query.as_of_us)
    total = [0, 0, 0]
    rows: dict[str, list[int]] = {}
    for c in contacts:
        if not rules.is_candidate(c, query.filters, query.since_us, until):
            continue
        if not rules.in_population(query.metric, c.tier):
            continue
        repeated = any(rules.is_repeat_of(s, c, query.window_us) for s in contacts)
        success = rules.is_success(query.metric, repeated=repeated, escalated=c.escalated, resolved=c.resolved)
        matured = rules.is_matured(c.end_us, query.window_us, query.as_of_us)
        counts = (int(matured), int(matured and success), int(not matured))
        key: str | None = None
        if query.by == "day":
            key = local_date(c.started_us, zone).isoformat()
        elif query.by == "week":
            key = week_key(local_date(c.started_us, zone))
        elif query.by == "month":
            key = month_key(local_date(c.started_us, zone))
        elif query.by is not None:
            key = getattr(c, query.by)
        for i in range(3):
            total[i] += counts[i]
            if key is not None:
                rows.setdefault(key, [0, 0, 0])[i] += counts[i]
    return Counts(*total), {k: Counts(*v) for k, v in rows.items()}


def as_reference(result: MetricResult) -> tuple[Counts, dict[str, Counts]]:
    return result.total, {row.key: row.counts for row in result.rows if row.counts != Counts()}


class NoRefresh:
    """The store as a MetricSource that never refreshes rollups on read: stale days stay stale."""

    def __init__(self, store: ContactStore):
        self.store = store

    def metric_reader(self, zone: tzinfo) -> AbstractContextManager[MetricReader]:
        return self.store.metric_reader(zone, refresh_days=0)


class Spy:
    """Records how the engine split a question between rollups and contacts."""

    def __init__(self, store: ContactStore):
        self.store = store
        self.rollup_days = 0
        self.hour_days: list[date] = []
        self.row_spans: list[Any] = []

    @contextmanager
    def metric_reader(self, zone: tzinfo) -> Iterator[MetricReader]:
        with self.store.metric_reader(zone, refresh_days=0) as reader:
            spy = self

            class Reader:
                def rollup_windows(self) -> frozenset[int]:
                    return reader.rollup_windows()

                def rollup_days(self, dimension: str, first_day: date, last_day: date) -> RollupDays | None:
                    data = reader.rollup_days(dimension, first_day, last_day)
                    if data is not None:
                        spy.rollup_days += (last_day - first_day).days + 1 - len(data.stale)
                    return data

                def rollup_hours(self, dimension: str, days: Sequence[date]) -> RollupDays | None:
                    spy.hour_days.extend(days)
                    return reader.rollup_hours(dimension, days)

                def row_counts(self, specs: Sequence[RowSpec]) -> list[dict[str | None, Counts]]:
                    spy.row_spans.extend(span for spec in specs for span in spec.spans)
                    return reader.row_counts(specs)

            yield Reader()


# --- the property -----------------------------------------------------------------------------------

records = st.fixed_dictionaries(
    {
        "id": st.sampled_from([f"c{i}" for i in range(14)]),
        "customer_id": st.sampled_from(["k1", "k2", "k3"]),
        "agent": st.sampled_from(["maria", "omar", None]),
        "team": st.sampled_from(["blue", None]),
        "queue": st.sampled_from(["billing", "tech"]),
        "channel": st.sampled_from(["phone", "chat"]),
        "reason": st.sampled_from(["billing", "outage", None]),  # a changed reason is an update like any other
        "direction": st.sampled_from(["inbound", "inbound", "inbound", "outbound"]),
        "parent_id": st.sampled_from([None, None, None, "c0"]),
        "tier": st.sampled_from([1, 1, 2]),
        "escalated": st.booleans(),
        "resolved": st.sampled_from([True, False, None]),
        "start_h": st.integers(0, 7 * 24),  # whole hours, so e + W collides with other starts
        "start_min": st.sampled_from([0, 0, 0, 30]),
        "duration_min": st.sampled_from([None, 0, 30, 60, 90]),
    }
)


def to_contact(record: dict[str, Any]) -> Contact:
    fields = {k: v for k, v in record.items() if k not in ("start_h", "start_min", "duration_min")}
    start = BASE + record["start_h"] * HOUR + record["start_min"] * 60 * US_PER_SECOND
    fields["started_at"] = start / US_PER_SECOND
    if record["duration_min"] is not None:
        fields["ended_at"] = (start + record["duration_min"] * 60 * US_PER_SECOND) / US_PER_SECOND
    return valid({k: v for k, v in fields.items() if v is not None}, NEW_YORK)


# Scopes and breakdowns of the random questions (the first ones most often).
FILTERS: list[tuple[tuple[Filter, str], ...]] = [
    (),
    (),
    (("agent", "maria"),),
    (("team", "blue"),),
    (("channel", "chat"),),
    (("agent", "omar"), ("queue", "tech")),
    (("tier", "2"),),
    (("team", "blue"), ("tier", "1")),
    (("reason", "outage"),),
    (("team", "blue"), ("reason", "billing")),
]
BREAKDOWNS: list[Breakdown | None] = [None, None, "day", "week", "month", "agent", "team", "queue", "channel", "reason"]


@st.composite
def questions(draw: st.DrawFn) -> MetricQuery:
    # Mostly the rollups' windows (1d, 3d, 7d); 5h and 2d are only counted from contacts.
    window = draw(st.sampled_from([DAY, DAY, 3 * DAY, 7 * DAY, 5 * HOUR, 2 * DAY]))
    as_of = BASE + draw(st.integers(0, 10 * 24)) * HOUR + draw(st.sampled_from([0, 0, 30 * 60 * US_PER_SECOND]))
    mode = draw(st.sampled_from(["hours", "calendar", "near_as_of_minus_w"]))
    if mode == "hours":
        since = BASE + draw(st.integers(-24, 7 * 24)) * HOUR
        until = since + draw(st.integers(1, 10 * 24)) * HOUR
    elif mode == "near_as_of_minus_w":  # the period's first day also holds as_of - W: both edges in one bucket
        since = as_of - window + draw(st.integers(-30, 30)) * HOUR
        until = as_of
    else:
        first = date(2026, 3, 4) + timedelta(days=draw(st.integers(-1, 7)))
        last = first + timedelta(days=draw(st.integers(0, 6)))
        since, until = calendar_period(first, last, NEW_YORK, as_of)
    filters = draw(st.sampled_from(FILTERS))
    by = draw(st.sampled_from(BREAKDOWNS))
    return MetricQuery(draw(st.sampled_from(["acr", "tier1"])), window, since, until, as_of, filters, by)


@pytest.mark.slow
# Each example migrates a new store (a new schema on PostgreSQL): ~100 s alone on two cores, more beside other
# workers. The suite-wide 300 s timeout is a hang guard, not a speed check; this test gets a wider one.
@pytest.mark.timeout(900)
@settings(
    max_examples=int(os.environ.get("ACR_HYPOTHESIS_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    deliveries=st.lists(st.lists(records, min_size=1, max_size=10), min_size=1, max_size=4),
    refresh_after=st.integers(0, 5),
    asked=st.lists(questions(), min_size=1, max_size=4),
)
def test_engine_equals_reference(
    new_store: Callable[[], ContactStore],
    deliveries: list[list[dict[str, Any]]],
    refresh_after: int,
    asked: list[MetricQuery],
) -> None:
    with closing(new_store()) as store:
        final: dict[str, Contact] = {}
        for index, batch in enumerate(deliveries):
            if index == refresh_after:
                store.refresh_rollups(NEW_YORK)  # rollups built, then made stale by the later deliveries
            contacts = [to_contact(record) for record in batch]
            store.upsert(contacts)
            for c in contacts:
                final[c.id] = c  # the last delivered version wins
        contacts = list(final.values())
        for query in asked:
            expected = reference(contacts, query, NEW_YORK)
            assert as_reference(compute(store, query, NEW_YORK, use_rollups=False)) == expected
            for hours in (True, False):
                assert as_reference(compute(NoRefresh(store), query, NEW_YORK, use_hours=hours)) == expected
        store.refresh_rollups(NEW_YORK)
        for query in asked:
            expected = reference(contacts, query, NEW_YORK)
            for limit in (None, 0, 1, 1000):  # undecided buckets: whole units, one value at a time, mixed
                for hours in (True, False):  # undecided days from their hour buckets, or from contacts
                    result = compute(NoRefresh(store), query, NEW_YORK, use_hours=hours, per_value_limit=limit)
                    assert as_reference(result) == expected


@st.composite
def edge_questions(draw: st.DrawFn, starts: tuple[int, ...] = ()) -> MetricQuery:
    """Questions whose period edges and as_of - W fall inside days full of contacts (the rollups' hard part),
    often with as_of - W within minutes of one of the contacts' ``starts`` (inside its hour bucket)."""
    window = draw(st.sampled_from([DAY, 3 * DAY]))
    near_a_start = draw(st.booleans())
    if starts and near_a_start:
        as_of = draw(st.sampled_from(starts)) + window + draw(st.integers(-40, 40)) * 60 * US_PER_SECOND
    else:
        as_of = BASE + draw(st.integers(1 * 24, 6 * 24)) * HOUR + draw(st.integers(0, 59)) * 60 * US_PER_SECOND
    since = as_of - window + draw(st.integers(-36, 36)) * HOUR
    until = as_of if draw(st.booleans()) else since + draw(st.integers(1, 72)) * HOUR
    filters = draw(st.sampled_from([*FILTERS[1:4], (("reason", "outage"),)]))
    by = draw(st.sampled_from([*BREAKDOWNS[1:5], "reason"]))
    return MetricQuery(draw(st.sampled_from(["acr", "tier1"])), window, since, until, as_of, filters, by)


dense_records = st.builds(
    lambda record, start_h, start_min, duration: {
        **record,
        "start_h": start_h,
        "start_min": start_min,
        "duration_min": duration,
    },
    records,
    st.sampled_from([3, 9, 14, 15, 27, 33, 38, 39, 51, 57, 62, 63, 75, 81, 86, 87, 96]),  # hours shared by several
    st.integers(0, 59),  # contacts, on both sides of as_of - W
    st.sampled_from([None, 0, 5, 30, 240, 600]),  # long contacts straddle as_of - W
)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a new store per example, as above
@settings(
    max_examples=int(os.environ.get("ACR_HYPOTHESIS_EXAMPLES", "80")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(contacts=st.lists(dense_records, min_size=8, max_size=30), data=st.data())
def test_rollup_edges_equal_reference(
    new_store: Callable[[], ContactStore], contacts: list[dict[str, Any]], data: st.DataObject
) -> None:
    final = {c.id: c for c in (to_contact({**record, "id": f"e{i}"}) for i, record in enumerate(contacts))}
    starts = tuple(sorted({c.started_us for c in final.values()}))
    # Drawn before the store opens: PostgreSQL's pool threads use the random module, which Hypothesis reports
    # as a strategy using it when a draw overlaps them.
    asked = data.draw(st.lists(edge_questions(starts), min_size=2, max_size=5))
    with closing(new_store()) as store:
        store.upsert(final.values())
        store.refresh_rollups(NEW_YORK)
        for query in asked:
            expected = reference(list(final.values()), query, NEW_YORK)
            for limit in (None, 0, 1000):
                for hours in (True, False):
                    result = compute(NoRefresh(store), query, NEW_YORK, use_hours=hours, per_value_limit=limit)
                    assert as_reference(result) == expected


# --- the rollups ------------------------------------------------------------------------------------


def contact(cid: str, customer: str, start_us: int, **fields: Any) -> Contact:
    return build_contact(cid, customer, start_us / US_PER_SECOND, zone=NEW_YORK, **fields)


def two_weeks(store: ContactStore) -> list[Contact]:
    contacts = [
        contact(f"d{day}-{n}", f"k{(day * 3 + n) % 7}", BASE + day * DAY + (9 + n) * HOUR, team="blue")
        for day in range(14)
        for n in range(3)
    ]
    store.upsert(contacts)
    return contacts


def test_whole_days_come_from_fresh_rollups(store: ContactStore) -> None:
    needs_rollups(store)
    contacts = two_weeks(store)
    query = MetricQuery("acr", 3 * DAY, BASE + 12 * HOUR, BASE + 13 * DAY, BASE + 20 * DAY, (("team", "blue"),), "day")
    spy = Spy(store)
    before = compute(spy, query, NEW_YORK)
    assert spy.rollup_days == 0  # never built: every day counted from contacts
    assert probe(store).stale_rollup_days(NEW_YORK) == -1
    store.refresh_rollups(NEW_YORK)
    assert probe(store).stale_rollup_days(NEW_YORK) == 0
    spy = Spy(store)
    after = compute(spy, query, NEW_YORK)
    assert after == before
    # Every day from the rollups, the partial first and last days too: 13 x 24 h after midnight EST ends at
    # 01:00 EDT on 2026-03-17 (the spring-forward day has 23 hours), and the buckets of both edge days
    # lie entirely outside the period (their contacts start 09:00-11:00), so nothing is counted from rows.
    assert spy.rollup_days == 14
    assert spy.row_spans == []
    assert as_reference(after) == reference(contacts, query, NEW_YORK)
    edge = MetricQuery("acr", 3 * DAY, BASE + 10 * HOUR, BASE + 20 * DAY, BASE + 20 * DAY, (("team", "blue"),), "day")
    spy = Spy(store)
    assert as_reference(compute(spy, edge, NEW_YORK)) == reference(contacts, edge, NEW_YORK)
    # The first day's bucket straddles 10:00: that day is answered from its hour buckets, and its hours
    # (09:00, 10:00, 11:00) are each entirely outside or inside the period: nothing counted from contacts.
    assert spy.hour_days == [date(2026, 3, 4)]
    assert spy.row_spans == []
    # Without hour buckets: the part of that day before the period is the shorter, so the whole day comes
    # from the rollup, minus what is counted from contacts before 10:00.
    spy = Spy(store)
    assert as_reference(compute(spy, edge, NEW_YORK, use_hours=False)) == reference(contacts, edge, NEW_YORK)
    assert (spy.hour_days, [(span.day, span.since_us, span.until_us) for span in spy.row_spans]) == (
        [],
        [(date(2026, 3, 4), BASE, BASE + 10 * HOUR)],
    )
    late = MetricQuery(
        "acr", 3 * DAY, BASE + 10 * HOUR + 1, BASE + 20 * DAY, BASE + 20 * DAY, (("team", "blue"),), "day"
    )
    spy = Spy(store)
    assert as_reference(compute(spy, late, NEW_YORK)) == reference(contacts, late, NEW_YORK)
    # The 10:00 hour is cut 1 µs after its start: taken whole, minus the contacts of that microsecond.
    assert [(span.day, span.since_us, span.until_us) for span in spy.row_spans] == [
        (date(2026, 3, 4), BASE + 10 * HOUR, BASE + 10 * HOUR + 1)
    ]


def test_a_write_makes_its_days_stale_until_refreshed(store: ContactStore) -> None:
    needs_rollups(store)
    contacts = two_weeks(store)
    store.refresh_rollups(NEW_YORK)
    # Move a contact to another day and customer: its old day, its new day, and the days of both
    # customers' contacts may all change.
    moved = contact("d2-0", "k-new", BASE + 5 * DAY + 20 * HOUR, team="blue")
    store.upsert([moved])
    contacts = [moved if c.id == "d2-0" else c for c in contacts]
    assert probe(store).stale_rollup_days(NEW_YORK) > 0
    query = MetricQuery("tier1", DAY, BASE, BASE + 14 * DAY, BASE + 20 * DAY, (), "day")
    spy = Spy(store)
    assert as_reference(compute(spy, query, NEW_YORK)) == reference(contacts, query, NEW_YORK)
    assert date(2026, 3, 6) in {span.day for span in spy.row_spans}  # the old day of the moved contact
    assert 0 < spy.rollup_days < 15
    store.refresh_rollups(NEW_YORK)
    spy = Spy(store)
    assert as_reference(compute(spy, query, NEW_YORK)) == reference(contacts, query, NEW_YORK)
    assert spy.row_spans == []  # 15 local days (the last one partial), all from the rollups


def test_a_question_refreshes_a_few_stale_days_itself(store: ContactStore) -> None:
    needs_rollups(store)
    two_weeks(store)
    store.refresh_rollups(NEW_YORK)
    store.upsert([contact("late", "k-late", BASE + 13 * DAY + 2 * HOUR)])
    stale = probe(store).stale_rollup_days(NEW_YORK)
    assert stale >= 1
    query = MetricQuery("acr", 7 * DAY, BASE, BASE + 14 * DAY, BASE + 30 * DAY)
    compute(store, query, NEW_YORK)  # the store's own reader rolls up one stale UTC day first
    assert probe(store).stale_rollup_days(NEW_YORK) == stale - 1


def test_rollups_are_rebuilt_for_another_time_zone(store: ContactStore) -> None:
    needs_rollups(store)
    contacts = two_weeks(store)
    store.refresh_rollups(NEW_YORK)
    tokyo = ZoneInfo("Asia/Tokyo")
    assert probe(store).stale_rollup_days(tokyo) == -1
    query = MetricQuery("acr", DAY, BASE, BASE + 14 * DAY, BASE + 20 * DAY, (), "day")
    spy = Spy(store)
    result = compute(spy, query, tokyo)
    assert spy.rollup_days == 0  # New York days cannot answer Tokyo days
    assert as_reference(result) == reference(contacts, query, tokyo)
    store.refresh_rollups(tokyo)
    spy = Spy(store)
    assert compute(spy, query, tokyo) == result
    assert spy.rollup_days > 0


def test_mixed_days_are_counted_from_contacts(store: ContactStore) -> None:
    """A day whose contacts are partly matured and partly pending cannot use the rollup's whole-day counts:
    it is answered from its hour buckets, or without them from contacts."""
    needs_rollups(store)
    contacts = two_weeks(store)
    store.refresh_rollups(NEW_YORK)
    # 7d window; as_of is 11:00 EDT on 2026-03-14, i.e. 10:00 EST: of the 09:00, 10:00 and 11:00 EST
    # contacts of 2026-03-07, two are matured and one is pending.
    as_of = BASE + 10 * DAY + 10 * HOUR
    query = MetricQuery("acr", 7 * DAY, BASE, as_of, as_of, (), "day")
    spy = Spy(store)
    result = compute(spy, query, NEW_YORK, use_hours=False)
    assert date(2026, 3, 7) in {span.day for span in spy.row_spans}
    assert as_reference(result) == reference(contacts, query, NEW_YORK)
    # Its hour buckets are each entirely matured or pending: with them, nothing is counted from contacts.
    spy = Spy(store)
    assert compute(spy, query, NEW_YORK) == result
    assert date(2026, 3, 7) in spy.hour_days
    assert spy.row_spans == []
    assert result.rows[3].key == "2026-03-07"
    assert (result.rows[3].counts.matured, result.rows[3].counts.pending) == (2, 1)


def test_edge_day_with_contacts_straddling_as_of_minus_w(store: ContactStore) -> None:
    """The period starts early on a day whose bucket is partly matured, partly pending: that bucket cannot be
    taken whole (even though the part of the day before the period is the shorter one)."""
    day = parse_instant("2026-05-04T00:00:00", NEW_YORK)
    contacts = [contact(f"s{h}", f"k{h}", day + h * HOUR) for h in (0, 2, 9, 15)]
    store.upsert(contacts)
    store.refresh_rollups(NEW_YORK)
    for since_h, as_of_h in ((1, 36), (1, 33), (3, 40), (10, 30)):
        query = MetricQuery("acr", DAY, day + since_h * HOUR, day + 2 * DAY, day + as_of_h * HOUR)
        for limit in (None, 0, 1000):
            result = compute(NoRefresh(store), query, NEW_YORK, per_value_limit=limit)
            assert as_reference(result) == reference(contacts, query, NEW_YORK)


def test_the_hour_of_as_of_minus_w_counts_only_contacts_starting_before_it(store: ContactStore) -> None:
    """In the hour holding T = as_of - W, a contact starting after T is pending whatever its end: the hour's
    buckets are taken as pending and only the contacts starting up to T are counted, to move the matured."""
    needs_rollups(store)
    day = parse_instant("2026-05-04T00:00:00", NEW_YORK)
    minute = 60 * US_PER_SECOND
    contacts = [
        contact("m-a", "k1", day + 14 * HOUR + 5 * minute),  # no end: matured at T
        contact("m-b", "k2", day + 14 * HOUR + 20 * minute, ended_at=(day + 14 * HOUR + 50 * minute) / US_PER_SECOND),
        contact("m-c", "k1", day + 14 * HOUR + 45 * minute, agent="omar"),  # a repeat of m-a, after T: pending
        contact("m-d", "k3", day + 14 * HOUR + 37 * minute),  # ends exactly at T: matured
        contact("m-e", "k4", day + 9 * HOUR),
    ]
    store.upsert(contacts)
    store.refresh_rollups(NEW_YORK)
    as_of = day + DAY + 14 * HOUR + 37 * minute  # T = 14:37 on the contacts' day, W = 1 day
    for by in (None, "agent"):
        query = MetricQuery("acr", DAY, as_of - 3 * DAY, as_of, as_of, (), by)
        spy = Spy(store)
        result = compute(spy, query, NEW_YORK, per_value_limit=0)
        assert as_reference(result) == reference(contacts, query, NEW_YORK)
        assert (result.total.matured, result.total.pending) == (3, 2)
        assert [(span.since_us, span.until_us) for span in spy.row_spans] == [
            (day + 14 * HOUR, as_of - DAY + 1)  # 14:00 up to and including T, nothing after it
        ]


def test_a_refresh_by_another_store_on_the_file_is_seen_at_once(database_url: str) -> None:
    """Decoded rollups are kept per store for the next question; a refresh anywhere (another process, e.g.
    the scheduler) makes them old, so no question ever sees rollups older than its own snapshot."""
    needs_rollups(database_url)
    asking, writing = open_store(database_url), open_store(database_url)
    try:
        contacts = two_weeks(writing)
        writing.refresh_rollups(NEW_YORK)
        query = MetricQuery("acr", DAY, BASE, BASE + 14 * DAY, BASE + 20 * DAY, (), "agent")
        assert as_reference(compute(NoRefresh(asking), query, NEW_YORK)) == reference(contacts, query, NEW_YORK)
        moved = contact("d3-1", "k-new", BASE + 3 * DAY + 10 * HOUR, agent="omar", team="blue")
        writing.upsert([moved])
        writing.refresh_rollups(NEW_YORK)
        contacts = [moved if c.id == "d3-1" else c for c in contacts]
        spy = Spy(asking)
        assert as_reference(compute(spy, query, NEW_YORK)) == reference(contacts, query, NEW_YORK)
        assert spy.row_spans == []  # from the refreshed rollups, not from contacts
    finally:
        asking.close()
        writing.close()


def test_a_write_by_another_store_is_seen_by_the_next_question(database_url: str) -> None:
    """A write elsewhere (another process) marks its days stale in its own transaction: the next question of a
    store that keeps decoded rollups from before counts those days from contacts, and never answers them from
    the rollups it kept (nor from a state it read before the write)."""
    needs_rollups(database_url)
    asking, writing = open_store(database_url), open_store(database_url)
    try:
        contacts = two_weeks(writing)
        writing.refresh_rollups(NEW_YORK)
        query = MetricQuery("acr", DAY, BASE, BASE + 14 * DAY, BASE + 20 * DAY, (), "agent")
        assert as_reference(compute(NoRefresh(asking), query, NEW_YORK)) == reference(contacts, query, NEW_YORK)
        moved = contact("d5-0", "k-new", BASE + 9 * DAY + 15 * HOUR, agent="omar", team="blue")
        writing.upsert([moved])
        contacts = [moved if c.id == "d5-0" else c for c in contacts]
        spy = Spy(asking)
        assert as_reference(compute(spy, query, NEW_YORK)) == reference(contacts, query, NEW_YORK)
        old_start = BASE + 5 * DAY + 9 * HOUR
        for moved_start in (old_start, moved.started_us):  # both days of the moved contact: from contacts
            assert any(span.since_us <= moved_start < span.until_us for span in spy.row_spans)
    finally:
        asking.close()
        writing.close()


def test_a_day_without_hour_buckets_is_counted_from_contacts(db_path: Path) -> None:
    """Hour buckets missing for a day (never the case after a refresh; checked anyway) leave that day whole."""
    store = open_store(sqlite_url(db_path))  # the hour buckets are SQLite's: removed below in its own table
    try:
        contacts = two_weeks(store)
        store.refresh_rollups(NEW_YORK)
        with closing(sqlite3.connect(db_path)) as conn, conn:
            conn.execute("DELETE FROM metric_rollup_hour WHERE day = ?", (date(2026, 3, 4).toordinal(),))
        query = MetricQuery("acr", 3 * DAY, BASE + 10 * HOUR, BASE + 20 * DAY, BASE + 20 * DAY, (), "day")
        spy = Spy(store)
        assert as_reference(compute(spy, query, NEW_YORK)) == reference(contacts, query, NEW_YORK)
        assert spy.hour_days == [date(2026, 3, 4)]
        assert [(span.day, span.since_us, span.until_us) for span in spy.row_spans] == [
            (date(2026, 3, 4), BASE + 10 * HOUR, BASE + DAY)
        ]
    finally:
        store.close()


@pytest.mark.slow
@given(
    day_start=st.integers(0, 2**50),
    buckets=st.lists(
        st.tuples(
            st.integers(0, 24),  # slot
            st.integers(0, 3600 * 10**6 - 1),  # earliest start within the hour
            st.integers(0, 10**12),  # earliest end after that start
            st.integers(0, 2**61),  # latest end after the earliest end (up to "year 9999" and beyond)
        ),
        max_size=8,
    ),
)
def test_hour_buckets_round_ends_outwards(day_start: int, buckets: list[tuple[int, int, int, int]]) -> None:
    """Stored as int32 seconds, an hour bucket's ends can only widen: it is never judged matured or pending
    unless it truly is. Its start bounds are its hour's."""
    day_end = day_start + 25 * HOUR
    rows = []
    for value_id, (slot, start, min_gap, max_gap) in enumerate(buckets):
        min_end = day_start + slot * HOUR + start + min_gap
        rows.append([value_id, slot, 3, 1, min_end, min_end + max_gap, *range(10)])
    table, slots = unpack_hours(
        pack_hours(np.array(rows, dtype=np.int64).reshape(-1, 16), day_start), day_start, day_end
    )
    for row, (value_id, slot, _, _, min_end, max_end, *successes) in zip(table.tolist(), rows, strict=True):
        assert row[:3] == [value_id, 3, 1] and row[7:] == successes
        assert row[3] == day_start + slot * HOUR and row[4] == day_start + (slot + 1) * HOUR - 1
        assert min_end - US_PER_SECOND < row[5] <= min_end or min_end - day_start >= (2**31 - 2) * US_PER_SECOND
        assert max_end <= row[6] < max_end + US_PER_SECOND or row[6] == 2**62
    assert slots.tolist() == [row[1] for row in rows]


def test_a_sqlite_refresh_rolls_days_up_while_a_write_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh works a day out from a read snapshot, without the store's write lock: a webhook write made
    meanwhile goes through at once (it used to wait for the whole batch of days). The day it changed stays
    stale, is answered from contacts, and the next refresh rolls it up exactly."""
    from bot.storage import sqlite_rollups

    store = open_store(sqlite_url(tmp_path / "acr.db"))
    contacts = two_weeks(store)
    # Moved away from the newest day (rolled up first) to another customer and an old day: only the update
    # trigger marks the day it leaves.
    moved = contact("d13-0", "k-moved", BASE + DAY + 15 * HOUR, agent="omar", team="blue")
    written: list[bool] = []
    real = sqlite_rollups.build_day

    def build_day(*args: Any) -> Any:
        if not written:
            writer = threading.Thread(target=store.upsert, args=([moved],))
            writer.start()
            writer.join(timeout=10)
            written.append(not writer.is_alive())
        return real(*args)

    monkeypatch.setattr(sqlite_rollups, "build_day", build_day)
    try:
        store.refresh_rollups(NEW_YORK)
        assert written == [True]  # the write went through while the refresh was rolling up
        contacts = [moved if c.id == "d13-0" else c for c in contacts]
        assert probe(store).stale_rollup_days(NEW_YORK) == 1  # the day it left: changed after the snapshot
        query = MetricQuery("acr", DAY, BASE, BASE + 14 * DAY, BASE + 20 * DAY, (), "agent")
        spy = Spy(store)
        assert as_reference(compute(spy, query, NEW_YORK)) == reference(contacts, query, NEW_YORK)
        assert spy.rollup_days == 13  # the other 13 of 15 local days (the stale UTC day overlaps two)
        assert store.refresh_rollups(NEW_YORK) == 1
        assert probe(store).stale_rollup_days(NEW_YORK) == 0
        spy = Spy(store)
        assert as_reference(compute(spy, query, NEW_YORK)) == reference(contacts, query, NEW_YORK)
        assert spy.row_spans == []
    finally:
        store.close()


def test_a_sqlite_refresh_lets_the_log_be_copied_whole_while_it_works_a_day_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh reads a day's rows in a short snapshot and works them out after it ends, so a checkpoint can copy
    the whole write-ahead log meanwhile, writes made during the build included. (A snapshot held through the whole
    build, 1-4 s a batch on 10M contacts, kept the log from being started over: it grew to the writer's cap, and
    the webhook batch that reached it waited for the copy.) The rollups stay exact."""
    from bot.storage import sqlite as sqlite_store
    from bot.storage import sqlite_rollups

    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_SECONDS", 3600)  # only the test's checkpoints
    path = tmp_path / "acr.db"
    store = open_store(sqlite_url(path))
    contacts = two_weeks(store)
    copied_whole: list[bool] = []
    real = sqlite_rollups.build_day

    def build_day(*args: Any) -> Any:
        written = contact(f"w{len(copied_whole)}", "k-new", BASE + 20 * DAY + len(copied_whole) * HOUR)
        store.upsert([written])
        contacts.append(written)
        with closing(sqlite3.connect(path)) as conn:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        copied_whole.append(busy == 0 and frames == copied)
        return real(*args)

    monkeypatch.setattr(sqlite_rollups, "build_day", build_day)
    try:
        store.refresh_rollups(NEW_YORK)
        assert len(copied_whole) >= 15 and all(copied_whole)  # every local day of two weeks, each while built
        monkeypatch.setattr(sqlite_rollups, "build_day", real)
        store.refresh_rollups(NEW_YORK)
        query = MetricQuery("acr", DAY, BASE, BASE + 21 * DAY, BASE + 28 * DAY, (), "agent")
        spy = Spy(store)
        assert as_reference(compute(spy, query, NEW_YORK)) == reference(contacts, query, NEW_YORK)
        assert spy.row_spans == []
    finally:
        store.close()


def test_a_sqlite_refresh_of_days_all_written_meanwhile_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day written while the refresh works it out is left as it was, marks and tables: when that is every day
    the refresh took, it writes nothing, so the rollups' generation (and every decoded copy kept under it) stays.
    (A question's own refresh of today, while webhooks keep writing today, is that case.)"""
    from bot.storage import sqlite_rollups

    path = tmp_path / "acr.db"
    store = open_store(sqlite_url(path))
    contacts = two_weeks(store)
    store.refresh_rollups(NEW_YORK)
    store.upsert([contact("d9-0", "k6", BASE + 9 * DAY + 15 * HOUR, agent="omar")])
    stale = probe(store).stale_rollup_days(NEW_YORK)  # its day, and the day of k6's contact before it

    def generation() -> str:
        with closing(sqlite3.connect(path)) as conn:
            return str(conn.execute("SELECT value FROM metric_rollup_state WHERE name = 'generation'").fetchone()[0])

    before = generation()
    real = sqlite_rollups.build_day
    again = contact("d9-0", "k6", BASE + 9 * DAY + 16 * HOUR, agent="maria")

    def build_day(*args: Any) -> Any:
        store.upsert([again])  # the same days, written again while they are being rolled up
        return real(*args)

    monkeypatch.setattr(sqlite_rollups, "build_day", build_day)
    try:
        assert store.refresh_rollups(NEW_YORK) == 0  # none rolled up (PostgreSQL's count is the same)
        assert generation() == before
        assert probe(store).stale_rollup_days(NEW_YORK) == stale
        monkeypatch.setattr(sqlite_rollups, "build_day", real)
        contacts = [again if c.id == "d9-0" else c for c in contacts]
        query = MetricQuery("acr", DAY, BASE, BASE + 14 * DAY, BASE + 20 * DAY, (), "agent")
        assert as_reference(compute(NoRefresh(store), query, NEW_YORK)) == reference(contacts, query, NEW_YORK)
        assert store.refresh_rollups(NEW_YORK) == stale
        spy = Spy(store)
        assert as_reference(compute(spy, query, NEW_YORK)) == reference(contacts, query, NEW_YORK)
        assert spy.row_spans == []
    finally:
        store.close()


def test_a_sqlite_refresh_outrun_by_another_process_rolls_its_days_up_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two refreshes on one file (two processes) may roll the same days up from different snapshots: the one that
    installs second finds the rollups changed since its snapshot (their value numbers too) and builds again."""
    from bot.storage import sqlite_rollups

    path = sqlite_url(tmp_path / "acr.db")
    first, second = open_store(path), open_store(path)
    contacts = two_weeks(first)
    first.refresh_rollups(NEW_YORK)
    moved = [contact("d13-0", "k1", BASE + 13 * DAY + 15 * HOUR, agent="new-agent", team="red")]
    first.upsert(moved)  # values never numbered yet: both refreshes number them
    contacts = [moved[0] if c.id == "d13-0" else c for c in contacts]
    builds: list[int] = []
    real = sqlite_rollups.build_day

    def build_day(*args: Any) -> Any:
        builds.append(len(builds))
        if len(builds) == 1:
            assert second.refresh_rollups(NEW_YORK) >= 1  # installs first
        return real(*args)

    monkeypatch.setattr(sqlite_rollups, "build_day", build_day)
    try:
        assert first.refresh_rollups(NEW_YORK) == 0  # every day was rolled up by the other one by then
        assert probe(first).stale_rollup_days(NEW_YORK) == 0
        query = MetricQuery("acr", DAY, BASE, BASE + 14 * DAY, BASE + 20 * DAY, (), "agent")
        for store in (first, second):
            spy = Spy(store)
            assert as_reference(compute(spy, query, NEW_YORK)) == reference(contacts, query, NEW_YORK)
            assert spy.row_spans == []
    finally:
        first.close()
        second.close()
