"""The words of ``/acr`` and ``/tier1``: the one parser used by Slack and by ``acr-bot ask``. Pure, no I/O.

Parsing validates everything that can be checked without data (keywords, windows, dates, breakdowns), so a
typo is answered before any question reaches the database. Turning the words into instants needs ``as_of``
and the bot's time zone: that is ``Question.to_query``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import date, tzinfo
from typing import Literal, cast

from metrics.errors import UserError
from metrics.periods import (
    DEFAULT_LAST_DAYS,
    DEFAULT_WINDOW_US,
    PERIOD_WORDS,
    calendar_period,
    format_window,
    last_period,
    matured_period,
    parse_date,
    parse_days,
    parse_tier,
    parse_window,
    word_period,
)
from metrics.query import BREAKDOWNS, Breakdown, Filter, Metric, MetricQuery
from metrics.windows import DEFAULT_WINDOWS, parse_windows

COMMANDS: dict[str, Metric] = {"/acr": "acr", "/tier1": "tier1"}
VALUE_KEYWORDS = (
    "agent", "team", "queue", "channel", "reason", "tier", "window", "windows", "last", "matured", "since", "until", "by",
)  # fmt: skip
FLAG_WORDS = ("me", "share", "chart", "export", "windows", "why", "card", "help")
# The period keywords: one kind of period per question.
_PERIOD_KEYWORDS = ("last", "matured", "since", "until", "period")
LINK_WORDS = ("link", "unlink", "links")
USAGE = (
    "Usage: /acr [agent:NAME | me] [team:NAME] [queue:NAME] [channel:NAME] [reason:NAME] [tier:N] [7d | 12h | windows] "
    "[last:30d | matured:7d | today | yesterday | this-week | last-week | this-month | last-month | "
    "since:YYYY-MM-DD until:YYYY-MM-DD] [by:agent|team|queue|channel|reason|day|week|month] [chart] [export] [why] "
    "[card] [share] [help]"
    " (/tier1: same words)"
)
LINK_USAGE = "Supervisors: /acr link @user agent:NAME, /acr unlink @user, /acr links"
MAX_WORDS = 40
MAX_VALUE_CHARS = 200

# Slack sends user mentions as <@U123|name> or <@U123>, channel references as <#C123|name>.
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]*))?>")
_CHANNEL_REF = re.compile(r"<#(C[A-Z0-9]+)(?:\|([^>]*))?>")
_BARE_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_LOOKS_LIKE_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}")
_OPEN_QUOTES = {'"': '"', "“": "”", "”": "”", "„": "“", "'": "'", "‘": "’"}


@dataclass(frozen=True, slots=True)
class Question:
    """A metric question as the user worded it, validated but not yet bound to an instant."""

    metric: Metric
    filters: tuple[tuple[Filter, str], ...] = ()
    agent_user: str | None = None  # agent given as a Slack mention: the agent linked to that user
    window_us: int = DEFAULT_WINDOW_US
    last_days: int | None = None
    period_word: str | None = None  # today, yesterday, this-week, ... (metrics.periods.PERIOD_WORDS)
    matured_days: int | None = None  # matured:Nd
    since: date | None = None
    until: date | None = None
    by: Breakdown | None = None
    me: bool = False
    share: bool = False
    windows: tuple[int, ...] = ()  # window sensitivity: these windows on one matured cohort (``windows``)
    chart: bool = False  # a PNG of the trend (or of the breakdown) with the reply
    export: bool = False  # every row as a CSV file with the reply
    help: bool = False
    why: bool = False  # the contacts behind the number, and what drives it
    card: bool = False  # one agent's scorecard against the team and the center
    words: str = ""  # the text as typed, echoed back in the reply

    @property
    def command(self) -> str:
        return "/tier1" if self.metric == "tier1" else "/acr"

    @property
    def agent(self) -> str | None:
        return dict(self.filters).get("agent")

    @property
    def asks_about_agents(self) -> bool:
        """Does the answer show numbers of individual agents (a filter on one, a breakdown by agent, or ``why``:
        its rows name each contact's agent and customer)?"""
        return self.agent is not None or self.agent_user is not None or self.me or self.by == "agent" or self.why

    @property
    def is_calendar(self) -> bool:
        """Was the period asked in whole calendar days (dates or a calendar word)?"""
        return self.since is not None or self.until is not None or self.period_word is not None

    def period_words(self) -> str:
        """How the period was asked, for the reply (``last 30 days``, ``this week``, ``2026-03-01 to 2026-03-07``)."""
        if self.period_word is not None:
            return self.period_word.replace("-", " ")
        if self.matured_days is not None:
            days = self.matured_days
            return f"the latest {days} matured day{'s' if days != 1 else ''}"
        if self.since is not None or self.until is not None:
            first = self.since.isoformat() if self.since else f"{DEFAULT_LAST_DAYS} days up to"
            last = self.until.isoformat() if self.until else "now"
            return f"{first} to {last}"
        days = self.last_days or DEFAULT_LAST_DAYS
        return f"last {days} day{'s' if days != 1 else ''}"

    def matured_words(self, days: int) -> str:
        """The same question with its period replaced by ``matured:Nd``, as the user would type it."""
        dropped = {f"{k}:" for k in ("last", "since", "until", "matured")}
        kept = [
            word
            for word in self.words.split()
            if word.lower() not in PERIOD_WORDS and not word.lower().startswith(tuple(dropped))
        ]
        return " ".join([self.command, *kept, f"matured:{days}d"])

    def with_agent(self, agent: str) -> Question:
        """The same question about ``agent`` (resolving ``me`` and mentions)."""
        filters = tuple((d, v) for d, v in self.filters if d != "agent")
        return _replace(self, filters=(("agent", agent), *filters), agent_user=None, me=False)

    def to_query(self, as_of_us: int, zone: tzinfo) -> MetricQuery:
        """The exact question: instants in µs, ``until`` exclusive (the engine clips it to ``as_of``)."""
        if self.me or self.agent_user is not None:
            raise ValueError("resolve `me` and mentions with with_agent() first")
        if self.period_word is not None:
            since_us, until_us = word_period(self.period_word, as_of_us, zone)
        elif self.matured_days is not None:
            since_us, until_us = matured_period(self.matured_days, self.window_us, as_of_us)
        elif self.since is not None or self.until is not None:
            since_us, until_us = calendar_period(self.since, self.until, zone, as_of_us)
        else:
            since_us, until_us = last_period(self.last_days or DEFAULT_LAST_DAYS, as_of_us)
        return MetricQuery(
            metric=self.metric,
            window_us=self.window_us,
            since_us=since_us,
            until_us=until_us,
            as_of_us=as_of_us,
            filters=self.filters,
            by=self.by,
        )


@dataclass(frozen=True, slots=True)
class LinkCommand:
    """``/acr link @user agent:NAME``, ``/acr unlink @user`` or ``/acr links`` (supervisors only)."""

    action: Literal["link", "unlink", "links"]
    user_id: str | None = None
    agent: str | None = None


Command = Question | LinkCommand


@dataclass(slots=True)
class _Draft:
    """The words read so far, checked for repeats and conflicts as they come."""

    metric: Metric
    values: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    agent_user: str | None = None


def parse_line(line: str) -> Command:
    """``/acr agent:maria 7d`` as typed in Slack (the command word first), for ``acr-bot ask``."""
    command, _, text = line.strip().partition(" ")
    if not command:
        raise UserError(f"nothing to ask. {USAGE}")
    if not command.startswith("/"):
        command, text = "/acr", line  # the words alone: /acr is meant
    return parse(command, text)


def parse(command: str, text: str) -> Command:
    """The words typed after ``/acr`` or ``/tier1``. Raises UserError with the usage line and suggestions."""
    metric = COMMANDS.get(command.strip().lower())
    if metric is None:
        known = ", ".join(COMMANDS)
        raise UserError(f"unknown command {command!r}: use {known}. {USAGE}")
    words = tokenize(text)
    if len(words) > MAX_WORDS:
        raise UserError(f"too many words ({len(words)}; at most {MAX_WORDS}). {USAGE}")
    if words and words[0].lower() in LINK_WORDS:
        return _parse_link(words[0].lower(), words[1:])
    draft = _Draft(metric)
    for word in words:
        _read_word(draft, word)
    return _finish(draft, text)


def tokenize(text: str) -> list[str]:
    """Split on spaces, keeping quoted values (``agent:"maria garcia"``, Slack's curly quotes too) and Slack's
    ``<...>`` references (whose labels may contain spaces) in one word. Quotes are removed."""
    words: list[str] = []
    current: list[str] = []
    in_word = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
            i += 1
            continue
        in_word = True
        if ch in _OPEN_QUOTES:
            closing = _OPEN_QUOTES[ch]
            end = _find_closing(text, i + 1, closing, ch)
            if end < 0:
                raise UserError(f"a quote {ch} is not closed in {text.strip()!r}. {USAGE}")
            current.append(text[i + 1 : end])
            i = end + 1
        elif ch == "<":
            end = text.find(">", i)
            if end < 0:
                current.append(ch)
                i += 1
            else:
                current.append(text[i : end + 1])
                i = end + 1
        else:
            current.append(ch)
            i += 1
    if in_word:
        words.append("".join(current))
    return words


def _find_closing(text: str, start: int, closing: str, opening: str) -> int:
    for candidate in (closing, opening, "”", '"'):
        end = text.find(candidate, start)
        if end >= 0:
            return end
    return -1


def _read_word(draft: _Draft, word: str) -> None:
    mention = _MENTION.fullmatch(word)
    if mention:  # a bare @mention: a question about that user's agent
        _set_agent_user(draft, mention.group(1), word)
        return
    key, colon, value = word.partition(":")
    lowered = key.lower()
    if colon and lowered in VALUE_KEYWORDS:
        _read_value(draft, lowered, value, word)
    elif not colon and lowered in FLAG_WORDS:
        draft.flags.add(lowered)
    elif not colon and lowered in PERIOD_WORDS:
        _set_once(draft, "period", lowered, word)
    elif not colon and lowered in LINK_WORDS:
        raise UserError(f"{word} must be the first word ({LINK_USAGE}). {USAGE}")
    elif not colon and _LOOKS_LIKE_DATE.fullmatch(word):
        raise UserError(f"{word!r} looks like a date: write since:{word} and/or until:{word}. {USAGE}")
    elif not colon and word[:1].isdigit():
        _set_once(draft, "window", word, word)
    else:
        raise UserError(_unknown_word(word))


def _read_value(draft: _Draft, keyword: str, value: str, word: str) -> None:
    value = _clean_value(value, keyword)
    if not value:
        raise UserError(f"{keyword}: needs a value, like {_EXAMPLES[keyword]}. {USAGE}")
    if keyword == "agent":
        mention = _MENTION.fullmatch(value)
        if mention:
            _set_agent_user(draft, mention.group(1), word)
            return
    if keyword == "by":
        lowered = value.lower()
        if lowered not in BREAKDOWNS:
            hint = _did_you_mean(lowered, BREAKDOWNS, prefix="by:")
            raise UserError(f"by:{value} is not a breakdown: use by:{'|'.join(BREAKDOWNS)}.{hint} {USAGE}")
        value = lowered
    if keyword == "channel":
        value = value.lower()  # contact channels are stored lower-cased
    if keyword == "tier":
        try:
            value = str(parse_tier(value))
        except UserError as problem:
            raise UserError(f"{problem}. {USAGE}") from None
    _set_once(draft, keyword, value, word)


def _clean_value(value: str, keyword: str) -> str:
    """Slack escapes & < > in command text; a channel reference <#C1|name> stands for its name."""
    ref = _CHANNEL_REF.fullmatch(value)
    if ref:
        if not ref.group(2):
            raise UserError(f"{keyword}: got a Slack channel reference without a name; type the name. {USAGE}")
        value = ref.group(2)
    if value.startswith(("#", "@")) and keyword not in ("window", "last", "since", "until", "by"):
        value = value[1:]
    if "&" in value:  # exactly the three entities Slack escapes, nothing else
        value = value.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    value = value.strip()
    if len(value) > MAX_VALUE_CHARS:
        raise UserError(f"{keyword}: value is longer than {MAX_VALUE_CHARS} characters")
    return value


def _set_once(draft: _Draft, keyword: str, value: str, word: str) -> None:
    if keyword in draft.values and draft.values[keyword] != value:
        raise UserError(f"{keyword} is given twice ({draft.values[keyword]!r} and {value!r}); keep one. {USAGE}")
    draft.values[keyword] = value


def _set_agent_user(draft: _Draft, user_id: str, word: str) -> None:
    if draft.agent_user is not None and draft.agent_user != user_id:
        raise UserError(f"two people named ({word} and <@{draft.agent_user}>); ask about one at a time. {USAGE}")
    draft.agent_user = user_id


def _finish(draft: _Draft, text: str) -> Question:
    values = draft.values
    try:
        window_us = parse_window(values["window"]) if "window" in values else DEFAULT_WINDOW_US
        last_days = parse_days(values["last"]) if "last" in values else None
        matured_days = parse_days(values["matured"]) if "matured" in values else None
        windows = parse_windows(values.get("windows", DEFAULT_WINDOWS)) if _asks_windows(draft) else ()
        since = parse_date(values["since"]) if "since" in values else None
        until = parse_date(values["until"]) if "until" in values else None
    except UserError as problem:
        raise UserError(f"{problem}. {USAGE}") from None
    kinds = {values[k] if k == "period" else _PERIOD_NAMES[k]: k for k in _PERIOD_KEYWORDS if k in values}
    if len(kinds) > 1:
        raise UserError(f"use one period: {' or '.join(kinds)}, not both. {USAGE}")
    if windows and "by" in values:
        raise UserError(f"windows compares windows on one total; it takes no by:. {USAGE}")
    if windows and "window" in values:
        raise UserError(f"windows sets its own windows: give them as windows:{DEFAULT_WINDOWS}, not a window. {USAGE}")
    if since is not None and until is not None and since > until:
        raise UserError(f"since:{since} is after until:{until}. {USAGE}")
    who = [name for name, given in (("agent:", "agent" in values), ("me", "me" in draft.flags)) if given]
    if draft.agent_user is not None:
        who.append("@mention")
    if len(who) > 1:
        raise UserError(f"{' and '.join(who)} both name an agent; use one. {USAGE}")
    if "card" in draft.flags:
        _check_card(draft, who)
    names: tuple[Filter, ...] = ("agent", "team", "queue", "channel", "reason", "tier")
    filters = tuple((d, values[d]) for d in names if d in values)
    return Question(
        metric=draft.metric,
        filters=filters,
        agent_user=draft.agent_user,
        window_us=window_us,
        last_days=last_days,
        period_word=values.get("period"),
        matured_days=matured_days,
        since=since,
        until=until,
        by=cast(Breakdown | None, values.get("by")),
        me="me" in draft.flags,
        share="share" in draft.flags,
        windows=windows,
        chart="chart" in draft.flags,
        export="export" in draft.flags,
        help="help" in draft.flags,
        why="why" in draft.flags,
        card="card" in draft.flags,
        words=" ".join(text.split()),
    )


CARD_USAGE = "card is one agent's scorecard: /acr agent:NAME card or /acr me card, with a period if you like"


def _check_card(draft: _Draft, who: list[str]) -> None:
    """A scorecard is about one agent over a period: it sets its own windows and breakdowns, and its own team."""
    if not who:
        raise UserError(f"{CARD_USAGE}. {USAGE}")
    others = [f"{word}:" for word in ("team", "queue", "channel", "reason", "tier", "by") if word in draft.values]
    others += ["a window (it shows 1 and 7 days)"] if "window" in draft.values else []
    others += [word for word in ("why", "chart", "export") if word in draft.flags]
    if _asks_windows(draft):
        others.append("windows")
    if others:
        raise UserError(f"{CARD_USAGE}; it cannot be combined with {', '.join(others)}. {USAGE}")


def _asks_windows(draft: _Draft) -> bool:
    return "windows" in draft.flags or "windows" in draft.values


def _parse_link(action: str, words: list[str]) -> LinkCommand:
    if action == "links":
        if words:
            raise UserError(f"`links` takes no other words. {LINK_USAGE}")
        return LinkCommand("links")
    user_id: str | None = None
    agent: str | None = None
    for word in words:
        mention = _MENTION.fullmatch(word)
        key, colon, value = word.partition(":")
        if mention or _BARE_USER_ID.fullmatch(word):
            if user_id is not None:
                raise UserError(f"{action} takes one user. {LINK_USAGE}")
            user_id = mention.group(1) if mention else word
        elif action == "link" and colon and key.lower() == "agent":
            agent = _clean_value(value, "agent")
            if _MENTION.fullmatch(agent):
                raise UserError(f"agent: must be the agent's name as in the contact data. {LINK_USAGE}")
        elif word.startswith("@"):
            raise UserError(
                f"{word} was not sent as a Slack mention; pick the user from the @ menu (the app needs "
                f"'Escape channels, users, and links' on, as in slack/manifest.yml). {LINK_USAGE}"
            )
        else:
            raise UserError(f"unknown word {word!r} for {action}. {LINK_USAGE}")
    if user_id is None:
        raise UserError(f"{action} needs a user: @someone. {LINK_USAGE}")
    if action == "link" and not agent:
        raise UserError(f"link needs the agent's name: agent:NAME. {LINK_USAGE}")
    return LinkCommand(cast(Literal["link", "unlink"], action), user_id, agent)


_PERIOD_NAMES = {"last": "last:Nd", "matured": "matured:Nd", "since": "since:/until:", "until": "since:/until:"}
_EXAMPLES = {
    "agent": "agent:maria",
    "tier": "tier:1",
    "windows": "windows:10m,1h,1d,7d",
    "matured": "matured:7d",
    "team": "team:billing",
    "queue": "queue:refunds",
    "channel": "channel:phone",
    "reason": "reason:billing",
    "window": "window:7d",
    "last": "last:30d",
    "since": "since:2026-03-01",
    "until": "until:2026-03-31",
    "by": "by:agent",
}
_SUGGESTIBLE = (*[f"{k}:" for k in VALUE_KEYWORDS], *FLAG_WORDS, *PERIOD_WORDS, *LINK_WORDS)


def _unknown_word(word: str) -> str:
    key, colon, value = word.partition(":")
    hint = ""
    if colon:
        close = difflib.get_close_matches(key.lower() + ":", [f"{k}:" for k in VALUE_KEYWORDS], n=1, cutoff=0.6)
        if close:
            hint = f" Did you mean {close[0]}{value}?"
    else:
        close = difflib.get_close_matches(word.lower(), _SUGGESTIBLE, n=2, cutoff=0.6)
        if close:
            hint = f" Did you mean {' or '.join(close)}?"
        elif word.startswith("@"):
            hint = " To ask about a person, pick them from the @ menu so Slack sends a mention."
    return f"unknown word {word!r}.{hint} {USAGE}"


def _did_you_mean(word: str, choices: tuple[str, ...], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" Did you mean {prefix}{close[0]}?" if close else ""


def _replace(question: Question, **changes: object) -> Question:
    from dataclasses import replace

    return replace(question, **changes)  # type: ignore[arg-type]


def describe_window(window_us: int) -> str:
    """``7d`` -> ``7 days``, ``12h`` -> ``12 hours`` for the reply."""
    word = format_window(window_us)
    number, unit = word[:-1], word[-1]
    name = {"d": "day", "h": "hour", "m": "minute", "s": "second"}[unit]
    return f"{number} {name}{'' if number == '1' else 's'}"


HELP_WORDS: dict[str, str] = {
    "agent:NAME": 'one agent (exact name as in the contact data; quotes for spaces: agent:"maria garcia")',
    "@user": "the agent linked to that Slack user",
    "me": "yourself (a supervisor links your Slack user to your agent name)",
    "team:NAME": "one team",
    "queue:NAME": "one queue",
    "channel:NAME": "phone, chat, email, sms, social, video or other",
    "reason:NAME": 'one contact reason, exactly as in the contact data (quotes for spaces: reason:"card declined")',
    "tier:N": "only contacts handled at tier N (1 = first line)",
    "7d / 12h / 30m": "the repeat window (default 7d, at least 10m, at most 90d); also window:7d",
    "windows, windows:10m,1h,1d,7d": "window sensitivity: the rate for several windows on the same contacts, and "
    "how soon customers came back",
    "last:30d": "the period: the last N days (default last:30d)",
    "matured:7d": "the latest N days whose repeat window has closed (no pending contacts to wait for)",
    "today, yesterday, this-week, last-week, this-month, last-month": "calendar periods (weeks Monday to Sunday)",
    "since:YYYY-MM-DD until:YYYY-MM-DD": "the period in calendar days, both inclusive",
    "by:agent, by:team, by:queue, by:channel, by:reason": "a breakdown, worst first",
    "by:day, by:week, by:month": "a trend over the period, in date order (the latest shown when long)",
    "chart": "a chart with the answer (by:day, by:week and by:month always have one)",
    "export": "every row as a CSV file for a spreadsheet or a slide",
    "agent:NAME card, me card": "an agent's scorecard: ACR 1 and 7 days, tier-1, escalations and volume against the "
    "team and the center (with significance), the last 8 weeks and the top repeat reasons",
    "why": "the contacts behind the number: what customers came back with, how fast, and every row as a CSV file",
    "share": "post the answer in the channel instead of only to you (a chart or CSV in its thread)",
    "help": "this help",
    "link @user agent:NAME": "(supervisors) link a Slack user to an agent; also unlink @user and links",
    "subscribe #channel daily 09:00 [team:NAME]": "(supervisors) a daily digest; also unsubscribe and subscriptions",
    "alert tier1 below 75% [team:NAME] 7d last:7d min:30 #channel": "(supervisors) a threshold alert; also alerts",
}
