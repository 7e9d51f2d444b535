"""An agent's scorecard: each of the agent's rates against the team's and the center's, with significance. Pure.

The agent is compared with the *rest* of the team (and of the center): the scope's contacts without the agent's,
so an agent who is most of a small team is not compared with themself. The test is the contract's change test
(two-sided pooled two-proportion z-test, significant when p < 0.05), the same as the breakdowns' ▼/▲ flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, tzinfo

from metrics.periods import local_date, local_midnight_us, week_key
from metrics.query import Counts
from metrics.significance import Change, change_between, rest_of

TREND_WEEKS = 8
TOP_REPEAT_REASONS = 3


@dataclass(frozen=True, slots=True)
class Versus:
    """A scope's counts, and the agent's rate against the rest of that scope."""

    scope: Counts
    change: Change  # agent minus the rest, in points, with its p-value


def versus(agent: Counts, scope: Counts) -> Versus:
    return Versus(scope, change_between(agent, rest_of(scope, agent)))


@dataclass(frozen=True, slots=True)
class ScoreLine:
    """One rate of the card: the agent's counts beside the team's and the center's."""

    label: str
    agent: Counts
    team: Versus | None  # None: the agent has no team recorded
    center: Versus
    lower_is_better: bool = False  # the escalation share


@dataclass(frozen=True, slots=True)
class Volume:
    """How many contacts (candidates) the agent handled, beside the average agent of the team and of the center."""

    agent: int
    team: int
    team_agents: int
    center: int
    center_agents: int

    @property
    def team_per_agent(self) -> float | None:
        return self.team / self.team_agents if self.team_agents else None

    @property
    def center_per_agent(self) -> float | None:
        return self.center / self.center_agents if self.center_agents else None


@dataclass(frozen=True, slots=True)
class TrendWeek:
    """One week of the trend: its Monday (``YYYY-MM-DD``) and the agent's and the team's counts."""

    week: str
    agent: Counts
    team: Counts | None


@dataclass(frozen=True, slots=True)
class Scorecard:
    agent: str
    team: str | None
    since_us: int
    until_us: int
    as_of_us: int
    lines: tuple[ScoreLine, ...]
    volume: Volume
    trend: tuple[TrendWeek, ...]
    repeat_reasons: tuple[tuple[str, int], ...]  # the reasons customers came back with, most first
    repeats: int  # the agent's failed contacts with a repeat (the reasons' whole)


def escalation_share(contacts: int, escalated: int) -> Counts:
    """The escalation share as counts of a proportion: ``matured`` = contacts, ``resolved`` = escalated (so it gets
    the same interval and test as a rate; every contact counts: an escalation is known when the contact ends)."""
    return Counts(contacts, escalated)


def trend_weeks(as_of_us: int, zone: tzinfo, weeks: int = TREND_WEEKS) -> tuple[int, list[str]]:
    """The last ``weeks`` calendar weeks (in ``zone``), the current one included: the first Monday's midnight, and
    every week's key (its Monday, ``YYYY-MM-DD``, as ``by:week`` names it)."""
    today = local_date(as_of_us, zone)
    first = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks - 1)
    keys = [week_key(first + timedelta(weeks=index)) for index in range(weeks)]
    return local_midnight_us(first, zone), keys


def main_team(teams: dict[str, Counts]) -> str | None:
    """The team the agent handled most contacts for (matured and pending; ties in name order); None without any."""
    ranked = sorted(teams.items(), key=lambda item: (-(item[1].matured + item[1].pending), item[0]))
    return ranked[0][0] if ranked and ranked[0][1].matured + ranked[0][1].pending > 0 else None
