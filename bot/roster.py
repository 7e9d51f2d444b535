"""The agent roster: who each platform's agent id is, with a team and tier (no I/O but the CSV text given).

Platforms send agent ids (Zendesk assignee ids, Twilio worker sids ...) and rarely a team or tier. A roster row
names an agent, gives the team, tier and Slack user, and lists the platform ids that mean this agent, as
``platform:id`` words separated by spaces or semicolons (``zendesk:8447388090494 twilio:WK0123``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bot.ingest.events_format import EventMapper
    from metrics.timeutil import InstantCache

    class RosterMapper(EventMapper, Protocol):
        """An event mapper whose fast path applies the roster ``known`` itself."""

        def row(
            self, event: Any, raw: str | bytes, instants: InstantCache, known: Lookup = ...
        ) -> Sequence[Any] | None: ...


COLUMNS = ("agent", "team", "tier", "slack_user", "ids")
_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_ID_SEPARATORS = re.compile(r"[\s;]+")


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """One agent of the roster."""

    agent: str
    team: str | None = None
    tier: int | None = None
    slack_user: str | None = None
    ids: tuple[tuple[str, str], ...] = ()  # (platform, the platform's id for this agent)

    def row(self) -> list[str]:
        """The entry as CSV cells, in COLUMNS order."""
        ids = " ".join(f"{platform}:{platform_id}" for platform, platform_id in self.ids)
        return [self.agent, self.team or "", "" if self.tier is None else str(self.tier), self.slack_user or "", ids]


Lookup = Mapping[tuple[str, str], RosterEntry]  # (platform, platform id) -> the agent


def lookup(entries: Iterable[RosterEntry]) -> dict[tuple[str, str], RosterEntry]:
    return {key: entry for entry in entries for key in entry.ids}


def apply(record: dict[str, Any], platform: str, known: Lookup) -> dict[str, Any]:
    """``record`` with a known agent id replaced by the agent's name, and its team and tier filled where the
    platform gave none. An unknown id stays as it came (``acr-bot agents unknown`` lists it)."""
    agent = record.get("agent")
    entry = known.get((platform, agent)) if isinstance(agent, str) else None
    if entry is not None:
        record["agent"] = entry.agent
        if record.get("team") is None and entry.team is not None:
            record["team"] = entry.team
        if record.get("tier") is None and entry.tier is not None:
            record["tier"] = entry.tier
    return record


class Mapped:
    """A platform's event mapper (``bot.ingest.EventMapper``) whose records go through the roster (``apply``)."""

    def __init__(self, mapper: RosterMapper, platform: str, known: Lookup):
        self.mapper = mapper
        self.loads = mapper.loads
        self.platform = platform
        self.known = known

    def record(self, event: Any) -> dict[str, Any] | None:
        record = self.mapper.record(event)
        return record if record is None or not self.known else apply(record, self.platform, self.known)

    def row(self, event: Any, raw: str | bytes, instants: InstantCache) -> Sequence[Any] | None:
        return self.mapper.row(event, raw, instants, self.known)


def parse_csv(text: str, name: str, platforms: Sequence[str]) -> tuple[list[RosterEntry], list[str]]:
    """The roster in a CSV text, or every problem in it as ``name:line: column: message``; ``platforms`` are
    the names an id may be given for."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    try:
        header = next(reader, None)
    except csv.Error as problem:
        return [], [f"{name}:1: header: malformed CSV ({problem})"]
    if header is None:
        return [], [f"{name}:1: header: the file is empty; the first line must name the columns {', '.join(COLUMNS)}"]
    columns = [cell.strip().lower() for cell in header]
    if "agent" not in columns:
        return [], [f"{name}:1: header: no 'agent' column (columns: {', '.join(COLUMNS)})"]
    unknown = [c for c in columns if c and c not in COLUMNS]
    if unknown:
        return [], [f"{name}:1: header: unknown column {', '.join(map(repr, unknown))} (columns: {', '.join(COLUMNS)})"]
    entries: list[RosterEntry] = []
    errors: list[str] = []
    owners: dict[tuple[str, str], str] = {}
    agents: set[str] = set()
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            cells = {column: cell.strip() for column, cell in zip(columns, row, strict=False)}
            entry, problems = _entry(cells, platforms)
            errors.extend(f"{name}:{line}: {problem}" for problem in problems)
            if agent := cells.get("agent"):
                if agent in agents:
                    errors.append(f"{name}:{line}: agent: {agent!r} is listed twice")
                agents.add(agent)
            if entry is None:
                continue
            for key in entry.ids:
                if owners.setdefault(key, entry.agent) != entry.agent:
                    errors.append(f"{name}:{line}: ids: {key[0]}:{key[1]} already means agent {owners[key]!r}")
            entries.append(entry)
    except csv.Error as problem:
        errors.append(f"{name}:{reader.line_num}: record: malformed CSV ({problem})")
    return entries, errors


def _entry(cells: dict[str, str], platforms: Sequence[str]) -> tuple[RosterEntry | None, list[str]]:
    problems: list[str] = []
    agent = cells.get("agent", "")
    if not agent:
        problems.append("agent: is required")
    tier: int | None = None
    if tier_text := cells.get("tier", ""):
        if not tier_text.isdigit() or int(tier_text) < 1:
            problems.append(f"tier: must be a whole number >= 1, got {tier_text!r}")
        else:
            tier = int(tier_text)
    slack_user = cells.get("slack_user") or None
    if slack_user is not None and not _SLACK_USER_ID.fullmatch(slack_user):
        problems.append(f"slack_user: {slack_user!r} is not a Slack user id (like U0123ABCD)")
    ids: list[tuple[str, str]] = []
    for word in _ID_SEPARATORS.split(cells.get("ids", "")):
        if not word:
            continue
        platform, _, platform_id = word.partition(":")
        if platform not in platforms or not platform_id:
            problems.append(f"ids: {word!r} is not platform:id (platforms: {', '.join(platforms)})")
        else:
            ids.append((platform, platform_id))
    if problems:
        return None, problems
    return RosterEntry(agent, cells.get("team") or None, tier, slack_user, tuple(ids)), []


def to_csv(entries: Iterable[RosterEntry]) -> str:
    """The roster as CSV text (what ``parse_csv`` reads back)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(entry.row() for entry in entries)
    return out.getvalue()
