"""Why a rate is what it is: the contacts behind it and what their customers came back with. Pure, no I/O.

CONTRACT sections 2 and 3: the rows of ``why`` are the matured candidates that are *not* resolved, each with its
causes and its first repeat (the repeat with the earliest start; ties: the smaller ``(source, id)``) and the time
to return (that start minus the contact's end, negative when the customer came back before it ended).
The store finds the rows (``WhyReader.why_rows``); this module says what a row is and sums them up.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from metrics.definitions import clip_until
from metrics.query import Filter, Metric, MetricQuery
from metrics.timeutil import US_PER_SECOND

Cause = Literal["escalated", "not_resolved", "repeat"]
CAUSES: tuple[Cause, ...] = ("escalated", "not_resolved", "repeat")


def causes_of(metric: Metric, *, escalated: bool, resolved: bool | None, repeated: bool) -> tuple[Cause, ...]:
    """Why a matured candidate of ``metric``'s population is not resolved, in the contract's order (empty: it is).

    ACR fails only by a repeat; tier-1 also by an escalation or a ``resolved: false`` disposition.
    """
    if metric == "acr":
        return ("repeat",) if repeated else ()
    flags = (escalated, resolved is False, repeated)
    return tuple(cause for cause, applies in zip(CAUSES, flags, strict=True) if applies)


@dataclass(frozen=True, slots=True)
class WhyQuery:
    """The contacts behind one number: ``until_us`` already clipped to ``as_of_us``."""

    metric: Metric
    window_us: int
    since_us: int
    until_us: int
    as_of_us: int
    filters: tuple[tuple[Filter, str], ...] = ()

    @classmethod
    def of(cls, query: MetricQuery) -> WhyQuery:
        return cls(
            query.metric,
            query.window_us,
            query.since_us,
            clip_until(query.until_us, query.as_of_us),
            query.as_of_us,
            query.filters,
        )


@dataclass(frozen=True, slots=True)
class Repeat:
    """The first repeat contact of a row: who the customer reached, how, why, and after how long."""

    source: str
    id: str
    agent: str | None
    channel: str
    reason: str | None
    started_us: int
    return_us: int  # started_us - the row's end (µs; negative: back before the first contact ended)

    @property
    def return_seconds(self) -> float:
        return self.return_us / US_PER_SECOND


@dataclass(frozen=True, slots=True)
class WhyRow:
    """One matured candidate that is not resolved (``ended_us`` as stored: None when the record has none)."""

    source: str
    id: str
    customer_id: str
    agent: str
    team: str | None
    queue: str | None
    channel: str
    reason: str | None
    started_us: int
    ended_us: int | None
    causes: tuple[Cause, ...]
    repeat: Repeat | None


class WhyReader(Protocol):
    """What ``why`` needs from a store (see ``bot.storage.ContactStore.why_rows``)."""

    def why_rows(self, query: WhyQuery) -> Iterator[WhyRow]:
        """The rows of ``query`` in order of ``started_us``, then ``(source, id)``, streamed."""
        ...


NO_REASON = "(no reason)"


@dataclass
class WhySummary:
    """What drives the failures, summed while the rows stream by (a team's tens of thousands stay small)."""

    metric: Metric
    rows: int = 0
    causes: Counter[Cause] = field(default_factory=Counter)
    came_back_with: Counter[str] = field(default_factory=Counter)  # the repeat's reason
    failed_reasons: Counter[str] = field(default_factory=Counter)  # the failed contact's own reason
    repeats: int = 0
    same_reason: int = 0  # came back for the same (recorded) reason
    other_channel: int = 0
    channel_moves: Counter[tuple[str, str]] = field(default_factory=Counter)  # (from, to) when it changed
    return_seconds: list[float] = field(default_factory=list)

    def add(self, row: WhyRow) -> None:
        self.rows += 1
        self.causes.update(row.causes)
        self.failed_reasons[row.reason or NO_REASON] += 1
        repeat = row.repeat
        if repeat is None:
            return
        self.repeats += 1
        self.came_back_with[repeat.reason or NO_REASON] += 1
        if row.reason is not None and repeat.reason == row.reason:
            self.same_reason += 1
        if repeat.channel != row.channel:
            self.other_channel += 1
            self.channel_moves[(row.channel, repeat.channel)] += 1
        self.return_seconds.append(repeat.return_seconds)

    def extend(self, rows: Iterable[WhyRow]) -> Iterator[WhyRow]:
        """Add each row as it passes through (for writing the rows and summing them in one pass)."""
        for row in rows:
            self.add(row)
            yield row

    def quartiles(self) -> tuple[float, float, float] | None:
        """First quartile, median and third quartile of the time to return in seconds (None without repeats);
        linear interpolation between the closest ranks (numpy's default, statistics' "inclusive")."""
        values = sorted(self.return_seconds)
        if not values:
            return None
        return (_quantile(values, 0.25), _quantile(values, 0.5), _quantile(values, 0.75))


def _quantile(ordered: list[float], q: float) -> float:
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(metric: Metric, rows: Iterable[WhyRow]) -> WhySummary:
    summary = WhySummary(metric)
    for row in rows:
        summary.add(row)
    return summary
