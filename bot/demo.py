"""Realistic, repeatable demo contacts: a contact center of ~48 agents over the last D days.

The generator works on whole columns with numpy (one array per field) so a million records take seconds.
Its model, in short: customers open *issues*; each issue starts in business hours (BOT_TIMEZONE, fewer on
weekends) and is handled by a tier-1 agent, or abandoned in the queue. Whether the customer comes back about
the same issue depends on the agent who handled it (each agent has their own skill), so 7-day ACR lands
between 60% and 90% and differs by agent. Tier-1 agents escalate some contacts to tier-2/3 specialists (a
continuation leg with ``parent_id``) or transfer them sideways; some contacts get an outbound callback; a
few have no end yet. Customers also come back with unrelated new issues, at a realistic background rate.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import orjson

from bot.storage import ContactStore, UpsertCounts
from metrics.records import KNOWN_FIELDS, Contact, parse_contact
from metrics.timeutil import US_PER_DAY, US_PER_HOUR, US_PER_SECOND, from_us

DEFAULT_CONTACTS = 20_000
DEFAULT_DAYS = 60
SOURCE = "demo"
CSV_COLUMNS = KNOWN_FIELDS  # the contract's fields, in its order

_FIRST_NAMES = (
    "maria", "james", "aisha", "liam", "sofia", "noah", "chen", "olivia", "mateo", "emma", "yuki", "lucas",
    "fatima", "ethan", "priya", "oliver", "amara", "leo", "hannah", "diego", "mia", "arjun", "zoe", "samuel",
    "lena", "omar", "grace", "ivan", "nora", "kofi", "elena", "daniel", "sara", "tomas", "ines", "victor",
    "chloe", "rafael", "julia", "kenji", "ana", "felix", "maya", "hugo", "lucia", "adam", "nina", "pablo",
)  # fmt: skip


@dataclass(frozen=True)
class _Team:
    name: str
    share: float  # of new issues
    queues: tuple[str, ...]
    reasons: tuple[str, ...]
    tier1: int  # agents per tier
    tier2: int
    tier3: int


_TEAMS = (
    _Team("billing", 0.30, ("billing-general", "billing-disputes"),
          ("invoice question", "payment failed", "refund request", "plan change", "double charge"), 10, 2, 0),
    _Team("tech-support", 0.34, ("tech-internet", "tech-mobile", "tech-tv"),
          ("no connection", "slow internet", "device setup", "outage", "password reset"), 12, 3, 2),
    _Team("sales", 0.16, ("sales-new", "sales-upgrade"),
          ("new service", "upgrade", "pricing question", "promotion"), 6, 0, 0),
    _Team("retention", 0.12, ("retention-cancel",), ("cancel service", "competitor offer", "complaint"), 5, 2, 0),
    _Team("onboarding", 0.08, ("onboarding",), ("activation", "installation appointment", "welcome call"), 5, 0, 1),
)  # fmt: skip
_CHANNELS = ("phone", "chat", "email", "sms", "social", "video")
_CHANNEL_MIX = (0.50, 0.27, 0.13, 0.05, 0.04, 0.01)
_MEDIAN_HANDLE_MINUTES = (6.0, 9.0, 4.0, 3.0, 4.0, 12.0)  # by channel, same order
_LIVE_CHANNEL = np.array([True, True, False, False, False, True])  # a customer can hang up in the queue
_ABANDON_RATE = 0.06  # of live-channel contacts
_ESCALATE_RATE = 0.08  # of tier-1 contacts in teams that have specialists
_TRANSFER_RATE = 0.03  # sideways to another tier-1 agent
_CALLBACK_RATE = 0.05  # outbound callback after a handled contact
_OPEN_RATE = 0.015  # no ended_at yet
_ISSUES_PER_CUSTOMER_DAY = 0.011  # background rate of unrelated new issues per customer
_MAX_FOLLOW_UPS = 4
# Relative volume by local hour of day (0-23): weekdays and weekends.
_WEEKDAY_HOURS = np.array(
    [0, 0, 0, 0, 0, 0, 0.05, 0.3, 0.8, 1.0, 1.0, 0.95, 0.8, 0.9, 1.0, 0.95, 0.85, 0.7, 0.5, 0.35, 0.15, 0.05, 0, 0]
)
_WEEKEND_HOURS = np.array(
    [0, 0, 0, 0, 0, 0, 0, 0, 0.1, 0.35, 0.4, 0.4, 0.35, 0.35, 0.35, 0.3, 0.25, 0.1, 0.05, 0, 0, 0, 0, 0]
)
_WEEKDAY_SHAPE = np.array([1.0, 0.95, 0.92, 0.92, 0.88, 0.55, 0.35])  # Monday .. Sunday, times the hour shape


@dataclass(frozen=True)
class Agent:
    name: str
    team: str
    tier: int
    repeat_rate: float  # chance that a customer this agent handled comes back about the same issue


@dataclass
class DemoContacts:
    """The generated contacts as columns (one numpy array per field), ordered by start time."""

    agents: tuple[Agent, ...]
    number: np.ndarray  # the contact's number; its id is f"D{number:08d}"
    customer: np.ndarray
    agent: np.ndarray  # index into agents, -1 = none (abandoned)
    team: np.ndarray  # index into _TEAMS
    queue: np.ndarray  # index into _queue_names()
    reason: np.ndarray  # index into _reason_names()
    channel: np.ndarray  # index into _CHANNELS
    outbound: np.ndarray
    tier: np.ndarray
    escalated: np.ndarray
    resolved: np.ndarray  # 1 true, 0 false, -1 null
    parent: np.ndarray  # number of the parent contact, -1 = none
    started_us: np.ndarray
    ended_us: np.ndarray  # -1 = not ended

    def __len__(self) -> int:
        return len(self.number)


def _queue_names() -> list[str]:
    return [q for team in _TEAMS for q in team.queues]


def _reason_names() -> list[str]:
    return [r for team in _TEAMS for r in team.reasons]


def make_agents(rng: np.random.Generator) -> tuple[Agent, ...]:
    """The staff: tier-1 generalists per team plus a few tier-2/3 specialists, each with their own skill."""
    agents: list[Agent] = []
    names = iter(_FIRST_NAMES)
    for team in _TEAMS:
        for tier, count in ((1, team.tier1), (2, team.tier2), (3, team.tier3)):
            for _ in range(count):
                low, high = (0.08, 0.32) if tier == 1 else (0.05, 0.15)
                agents.append(Agent(next(names), team.name, tier, float(rng.uniform(low, high))))
    return tuple(agents)


class _Clock:
    """Local wall time of UTC instants, by lookup of the zone's offset per UTC hour (DST-exact on the hour)."""

    def __init__(self, zone: tzinfo, start_us: int, end_us: int):
        self.base_hour = start_us // US_PER_HOUR - 24
        hours = (end_us + 40 * US_PER_DAY) // US_PER_HOUR - self.base_hour
        offsets = []
        for h in range(hours):
            moment = from_us((self.base_hour + h) * US_PER_HOUR + US_PER_HOUR // 2, zone)
            offset = moment.utcoffset()
            offsets.append(0 if offset is None else offset // timedelta(microseconds=1))
        self.offset_us = np.array(offsets, dtype=np.int64)

    def local_us(self, utc_us: np.ndarray) -> np.ndarray:
        index = np.clip(utc_us // US_PER_HOUR - self.base_hour, 0, len(self.offset_us) - 1)
        return utc_us + self.offset_us[index]

    def hour_and_weekday(self, utc_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        local = self.local_us(utc_us)
        days = local // US_PER_DAY
        hour = (local - days * US_PER_DAY) // US_PER_HOUR
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        return hour, weekday

    def weight(self, utc_us: np.ndarray) -> np.ndarray:
        """Relative contact volume at these instants (0..1)."""
        hour, weekday = self.hour_and_weekday(utc_us)
        by_hour = np.where(weekday >= 5, _WEEKEND_HOURS[hour], _WEEKDAY_HOURS[hour])
        return by_hour * _WEEKDAY_SHAPE[weekday]

    def into_business_hours(self, utc_us: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Move instants that fall at night to the next morning (a customer calls back when someone answers)."""
        hour, _ = self.hour_and_weekday(utc_us)
        night = (hour < 8) | (hour >= 20)
        wait_hours = np.where(hour >= 20, 32 - hour, 8 - hour)
        shift = wait_hours * US_PER_HOUR + rng.integers(0, 3 * US_PER_HOUR, len(utc_us))
        return np.where(night, utc_us + shift - (utc_us % US_PER_HOUR), utc_us)


def _business_instants(rng: np.random.Generator, clock: _Clock, count: int, start_us: int, end_us: int) -> np.ndarray:
    """``count`` instants in [start_us, end_us) following the business-hours volume profile (rejection sampling)."""
    found: list[np.ndarray] = []
    have = 0
    while have < count:
        candidates = rng.integers(start_us, end_us, max(4 * (count - have), 1024), dtype=np.int64)
        kept = candidates[rng.random(len(candidates)) < clock.weight(candidates)]
        found.append(kept)
        have += len(kept)
    return np.concatenate(found)[:count]


def generate(contacts: int, *, seed: int, as_of_us: int, days: int = DEFAULT_DAYS, zone: tzinfo) -> DemoContacts:
    """Exactly ``contacts`` contacts starting in the ``days`` days before ``as_of_us``; the same seed gives the same data."""
    if contacts < 0:
        raise ValueError("contacts must be >= 0")
    if days < 1:
        raise ValueError("days must be >= 1")
    rng = np.random.default_rng(seed)
    agents = make_agents(rng)
    start_us = as_of_us - days * US_PER_DAY
    clock = _Clock(zone, start_us, as_of_us)

    team_index = {t.name: i for i, t in enumerate(_TEAMS)}
    a_team = np.array([team_index[a.team] for a in agents])
    a_tier = np.array([a.tier for a in agents])
    a_repeat = np.array([a.repeat_rate for a in agents])
    tier1_of_team = [np.flatnonzero((a_team == t) & (a_tier == 1)) for t in range(len(_TEAMS))]
    specialists_of_team = [np.flatnonzero((a_team == t) & (a_tier > 1)) for t in range(len(_TEAMS))]
    queue_offset = np.cumsum([0] + [len(t.queues) for t in _TEAMS])
    reason_offset = np.cumsum([0] + [len(t.reasons) for t in _TEAMS])
    n_queues = np.array([len(t.queues) for t in _TEAMS])
    n_reasons = np.array([len(t.reasons) for t in _TEAMS])

    # Issues: about 1.45 contacts each (follow-ups, legs, callbacks); generate a margin and cut to size below.
    issues = int(contacts / 1.3) + 64
    customers = max(1, int(issues / (_ISSUES_PER_CUSTOMER_DAY * days)))
    i_team = rng.choice(len(_TEAMS), issues, p=[t.share for t in _TEAMS])
    i_customer = rng.integers(0, customers, issues)
    i_queue = queue_offset[i_team] + rng.integers(0, 1 << 30, issues) % n_queues[i_team]
    i_reason = reason_offset[i_team] + rng.integers(0, 1 << 30, issues) % n_reasons[i_team]
    i_start = _business_instants(rng, clock, issues, start_us, as_of_us)

    columns: dict[str, list[np.ndarray]] = {k: [] for k in _COLUMN_NAMES}
    # Round 0 is each issue's first contact; round k its k-th follow-up about the same issue.
    issue = np.arange(issues)
    start = i_start
    channel = rng.choice(len(_CHANNELS), issues, p=_CHANNEL_MIX)
    for round_number in range(_MAX_FOLLOW_UPS + 1):
        n = len(issue)
        if n == 0:
            break
        team = i_team[issue]
        abandoned = _LIVE_CHANNEL[channel] & (rng.random(n) < _ABANDON_RATE)
        agent = _pick(rng, tier1_of_team, team)
        agent = np.where(abandoned, -1, agent)
        handle_us = _handle_times(rng, channel)
        handle_us = np.where(abandoned, rng.integers(20, 600, n) * US_PER_SECOND, handle_us)
        end = start + handle_us
        has_specialists = np.array([len(s) > 0 for s in specialists_of_team])[team]
        escalates = ~abandoned & has_specialists & (rng.random(n) < _ESCALATE_RATE)
        transfers = ~abandoned & ~escalates & (rng.random(n) < _TRANSFER_RATE)
        repeat_chance = np.where(abandoned, 0.65, a_repeat[np.maximum(agent, 0)])
        repeat_chance = np.where(escalates, repeat_chance * 0.7, repeat_chance)
        comes_back = rng.random(n) < repeat_chance
        resolved = _dispositions(rng, comes_back, abandoned)
        number = _numbers(columns, n)
        _append(columns, issue=issue, round=np.full(n, round_number * 4), number=number,
                customer=i_customer[issue], agent=agent, team=team, queue=i_queue[issue],
                reason=i_reason[issue], channel=channel, outbound=np.zeros(n, bool), tier=np.ones(n, np.int64),
                escalated=escalates, resolved=resolved, parent=np.full(n, -1), started_us=start,
                ended_us=end)  # fmt: skip

        # Continuation legs: escalation to a specialist (tier 2/3) or a sideways transfer (tier 1).
        legs = np.flatnonzero(escalates | transfers)
        if len(legs):
            leg_team = team[legs]
            leg_agent = np.where(
                escalates[legs], _pick(rng, specialists_of_team, leg_team), _pick(rng, tier1_of_team, leg_team)
            )
            leg_start = end[legs] + rng.integers(5, 90, len(legs)) * US_PER_SECOND
            leg_end = leg_start + _handle_times(rng, channel[legs]) * 3 // 2
            leg_resolved = _dispositions(rng, comes_back[legs], np.zeros(len(legs), bool))
            _append(columns, issue=issue[legs], round=np.full(len(legs), round_number * 4 + 1),
                    number=_numbers(columns, len(legs)), customer=i_customer[issue[legs]], agent=leg_agent,
                    team=leg_team, queue=i_queue[issue[legs]], reason=i_reason[issue[legs]],
                    channel=channel[legs], outbound=np.zeros(len(legs), bool), tier=a_tier[leg_agent],
                    escalated=np.zeros(len(legs), bool), resolved=leg_resolved, parent=number[legs],
                    started_us=leg_start, ended_us=leg_end)  # fmt: skip
            end = end.copy()
            end[legs] = leg_end

        # Outbound callbacks by the agent, a few hours later (never a repeat contact).
        calls = np.flatnonzero(~abandoned & (rng.random(n) < _CALLBACK_RATE))
        if len(calls):
            call_start = clock.into_business_hours(end[calls] + rng.integers(1, 30, len(calls)) * US_PER_HOUR, rng)
            _append(columns, issue=issue[calls], round=np.full(len(calls), round_number * 4 + 2),
                    number=_numbers(columns, len(calls)), customer=i_customer[issue[calls]], agent=agent[calls],
                    team=team[calls], queue=i_queue[issue[calls]], reason=i_reason[issue[calls]],
                    channel=np.zeros(len(calls), np.int64), outbound=np.ones(len(calls), bool),
                    tier=np.ones(len(calls), np.int64), escalated=np.zeros(len(calls), bool),
                    resolved=np.where(rng.random(len(calls)) < 0.8, 1, -1), parent=np.full(len(calls), -1),
                    started_us=call_start,
                    ended_us=call_start + rng.integers(60, 600, len(calls)) * US_PER_SECOND)  # fmt: skip

        # Follow-ups: the customer comes back about the same issue, mostly within days.
        back = np.flatnonzero(comes_back)
        delay_hours = np.where(
            rng.random(len(back)) < 0.45, rng.exponential(6.0, len(back)), rng.exponential(60.0, len(back)) + 12
        )
        next_start = clock.into_business_hours(end[back] + (delay_hours * US_PER_HOUR).astype(np.int64), rng)
        in_range = next_start < as_of_us
        issue, start = issue[back][in_range], next_start[in_range]
        # Most come back on the same channel; some switch.
        switch = rng.random(len(issue)) < 0.3
        channel = np.where(switch, rng.choice(len(_CHANNELS), len(issue), p=_CHANNEL_MIX), channel[back][in_range])

    merged = {k: np.concatenate(v) for k, v in columns.items()}
    # Cut to exactly `contacts`: whole issues in random order (issue numbers are random), legs after parents.
    order = np.lexsort((merged["round"], merged["issue"]))[:contacts]
    kept = {k: v[order] for k, v in merged.items()}
    kept_started = kept["started_us"]
    beyond = kept_started >= as_of_us  # legs or callbacks of the last moments: keep them just before as_of
    kept_started = np.where(beyond, as_of_us - 1 - (kept["number"] % 1000) * US_PER_SECOND, kept_started)
    kept_ended = np.minimum(kept["ended_us"], np.maximum(as_of_us - 1, kept_started))
    kept_ended = np.where(rng.random(len(kept_ended)) < _OPEN_RATE, -1, kept_ended)
    by_time = np.argsort(kept_started, kind="stable")
    # Number the contacts in time order, as a contact platform assigns ids (parents keep pointing right).
    renumber = np.full(len(merged["number"]), -1, dtype=np.int64)
    renumber[kept["number"][by_time]] = np.arange(len(by_time))
    parent = kept["parent"][by_time]
    return DemoContacts(
        agents=agents,
        number=np.arange(len(by_time), dtype=np.int64),
        customer=kept["customer"][by_time],
        agent=kept["agent"][by_time],
        team=kept["team"][by_time],
        queue=kept["queue"][by_time],
        reason=kept["reason"][by_time],
        channel=kept["channel"][by_time],
        outbound=kept["outbound"][by_time],
        tier=kept["tier"][by_time],
        escalated=kept["escalated"][by_time],
        resolved=kept["resolved"][by_time],
        parent=np.where(parent >= 0, renumber[np.maximum(parent, 0)], -1),
        started_us=kept_started[by_time],
        ended_us=kept_ended[by_time],
    )


_COLUMN_NAMES = (
    "issue", "round", "number", "customer", "agent", "team", "queue", "reason", "channel", "outbound", "tier",
    "escalated", "resolved", "parent", "started_us", "ended_us",
)  # fmt: skip


def _append(columns: dict[str, list[np.ndarray]], **values: np.ndarray) -> None:
    for name, value in values.items():
        columns[name].append(np.asarray(value))


def _numbers(columns: dict[str, list[np.ndarray]], count: int) -> np.ndarray:
    """Fresh contact numbers, continuing after those already generated."""
    used = sum(len(part) for part in columns["number"])
    return np.arange(used, used + count, dtype=np.int64)


def _pick(rng: np.random.Generator, pools: list[np.ndarray], team: np.ndarray) -> np.ndarray:
    """A random agent from ``pools[team]`` for each element of ``team``."""
    sizes = np.array([max(len(p), 1) for p in pools])
    flat = np.concatenate([p if len(p) else np.array([-1]) for p in pools])
    offsets = np.cumsum(np.concatenate([[0], sizes[:-1]]))
    return flat[offsets[team] + rng.integers(0, 1 << 30, len(team)) % sizes[team]]


def _handle_times(rng: np.random.Generator, channel: np.ndarray) -> np.ndarray:
    """Handle time in microseconds: log-normal around each channel's median."""
    median_minutes = np.array(_MEDIAN_HANDLE_MINUTES)[channel]
    minutes = median_minutes * rng.lognormal(0.0, 0.5, len(channel))
    return (np.maximum(minutes, 0.5) * 60 * US_PER_SECOND).astype(np.int64)


def _dispositions(rng: np.random.Generator, comes_back: np.ndarray, abandoned: np.ndarray) -> np.ndarray:
    """resolved: 1 true, 0 false, -1 null; agents mark fewer contacts resolved when the customer comes back."""
    draw = rng.random(len(comes_back))
    when_back = np.where(draw < 0.45, 1, np.where(draw < 0.75, 0, -1))
    when_solved = np.where(draw < 0.82, 1, np.where(draw < 0.87, 0, -1))
    return np.where(abandoned, -1, np.where(comes_back, when_back, when_solved))


# --- records ---------------------------------------------------------------------------------------------


def iter_records(data: DemoContacts) -> Iterator[dict[str, Any]]:
    """The contacts as ingest records (CONTRACT section 1), with only the fields that have a value."""
    agent_names = [a.name for a in data.agents]
    team_names = [t.name for t in _TEAMS]
    queue_names = _queue_names()
    reason_names = _reason_names()
    started = _iso_column(data.started_us)
    ended = _iso_column(data.ended_us)
    columns = zip(
        data.number.tolist(),
        data.customer.tolist(),
        data.agent.tolist(),
        data.team.tolist(),
        data.queue.tolist(),
        data.reason.tolist(),
        data.channel.tolist(),
        data.outbound.tolist(),
        data.tier.tolist(),
        data.escalated.tolist(),
        data.resolved.tolist(),
        data.parent.tolist(),
        started,
        ended,
        strict=True,
    )
    resolved_values = (None, False, True)  # index by resolved + 1: -1 null, 0 false, 1 true
    for number, customer, agent, team, queue, reason, channel, outbound, tier, esc, res, parent, st, en in columns:
        record: dict[str, Any] = {
            "id": f"D{number:08d}",
            "source": SOURCE,
            "customer_id": f"C{customer:07d}",
        }
        if agent >= 0:
            record["agent"] = agent_names[agent]
        record.update({
            "team": team_names[team],
            "queue": queue_names[queue],
            "reason": reason_names[reason],
            "channel": _CHANNELS[channel],
            "direction": "outbound" if outbound else "inbound",
            "tier": tier,
            "escalated": esc,
            "started_at": st,
        })  # fmt: skip
        if res >= 0:
            record["resolved"] = resolved_values[res + 1]
        if parent >= 0:
            record["parent_id"] = f"D{parent:08d}"
        if en is not None:
            record["ended_at"] = en
        yield record


def _iso_column(us: np.ndarray) -> list[str | None]:
    """ISO 8601 UTC text of each instant (None for -1), vectorised."""
    text = np.datetime_as_string(us.astype("datetime64[us]"), unit="s", timezone="UTC").tolist()
    return [None if u < 0 else t for t, u in zip(text, us.tolist(), strict=True)]


def write_file(data: DemoContacts, path: Path) -> None:
    """Write the contacts as ``.jsonl``/``.ndjson``, ``.json`` (an array) or ``.csv``, by the file's extension."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv"):
        raise ValueError(f"{path.name}: unknown extension {suffix or '(none)'!r}; use .jsonl, .ndjson, .json or .csv")
    with path.open("w", encoding="utf-8", newline="") as out:
        if suffix == ".csv":
            _write_csv(data, out)
        else:
            _write_json_lines(data, out, array=suffix == ".json")


def _write_json_lines(data: DemoContacts, out: TextIO, *, array: bool) -> None:
    dumps = orjson.dumps
    separator = "[\n" if array else ""
    for record in iter_records(data):
        out.write(separator)
        out.write(dumps(record).decode())
        separator = ",\n" if array else "\n"
    if array:
        out.write("\n]\n" if separator != "[\n" else "[]\n")
    elif separator:
        out.write("\n")


def _write_csv(data: DemoContacts, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    flags = {True: "true", False: "false", None: ""}
    for r in iter_records(data):
        writer.writerow(
            [
                r["id"], r["source"], r["customer_id"], r.get("agent", ""), r["team"], r["queue"], r["reason"],
                r["channel"], r["direction"], r["tier"], flags[r["escalated"]], flags[r.get("resolved")],
                r.get("parent_id", ""), r["started_at"], r.get("ended_at", ""),
            ]
        )  # fmt: skip


def load_into(store: ContactStore, data: DemoContacts, zone: tzinfo) -> UpsertCounts:
    """Store the contacts through the store (so derived data is maintained), validated like any import."""
    contacts: list[Contact] = []
    for record in iter_records(data):
        parsed = parse_contact(record, zone)
        if isinstance(parsed, list):  # a generator bug, not a user error
            raise RuntimeError(f"generated an invalid record {record}: {parsed}")
        contacts.append(parsed)
    return store.upsert(contacts)


def make_agents_summary(data: DemoContacts) -> str:
    """A few words on who is in the data, for the command's one-line summary."""
    teams = len({a.team for a in data.agents})
    tiers = len({a.tier for a in data.agents})
    return f"{len(data.agents)} agents in {teams} teams and {tiers} tiers"
