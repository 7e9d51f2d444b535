"""What every surface shows (Slack, the scheduler's posts, the command line): messages, escaping, numbers, dates.

Neutral on purpose: ``bot/slack`` and ``bot/scheduler`` both render with it and never import each other. Pure,
no I/O. One escaping rule for everything that came from data: ``escape`` for mrkdwn, ``code`` for a name in a
code span, ``cell`` for a monospaced table, ``plain`` for a terminal.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from metrics.errors import UserError
from metrics.periods import local_midnight_us
from metrics.query import Counts
from metrics.significance import change_between, target_distance_points
from metrics.timeutil import US_PER_DAY, from_us

Block = dict[str, Any]
NAME_WIDTH = 24  # a name in a monospaced table
_SPECIAL_MENTION = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WORD_JOINER = "\u2060"


@dataclass(frozen=True, slots=True)
class Message:
    """What to post: Block Kit blocks, the notification text, and the same reply as plain text."""

    blocks: list[Block]
    text: str
    plain: str


# --- escaping ------------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Text safe inside mrkdwn: Slack's three entities escaped (so no ``<!channel>``/``<@U..>``/links),
    ``@channel``/``@here``/``@everyone`` broken with a word joiner, control characters made spaces."""
    text = _CONTROL.sub(" ", text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL_MENTION.sub(lambda m: "@" + _WORD_JOINER + m.group(1), text)


def code(text: str) -> str:
    """A name as an inline code span: escaped, and formatting characters inside it are shown as they are."""
    return "`" + escape(text).replace("`", "ˋ") + "`"


def cell(text: str, width: int = NAME_WIDTH) -> str:
    """A name for a monospaced table: one line, no backticks, cut to ``width`` (escape the whole table after)."""
    text = _CONTROL.sub(" ", text).replace("`", "ˋ")
    return text if len(text) <= width else text[: width - 1] + "…"


def plain(text: str) -> str:
    """User text for a terminal: one line, no control characters."""
    return _CONTROL.sub(" ", text)


# --- names from the data -------------------------------------------------------------------------------


def quote_name(name: str) -> str:
    """A name as it is typed in a command: quoted when it holds a space."""
    return f'"{name}"' if any(ch.isspace() for ch in name) else name


def is_known_name(dimension: str, value: str, known: Sequence[str]) -> bool:
    """Is ``value`` a stored name? A likely typo of one (a close match exists) is refused with a UserError naming
    the matches; a name the data does not have yet is accepted (False), for the caller to note."""
    if value in known:
        return True
    close = difflib.get_close_matches(value, known, n=3, cutoff=0.75)
    if close:
        names = ", ".join(f"{dimension}:{quote_name(name)}" for name in close)
        raise UserError(f"no {dimension} named {value!r} in the data. Did you mean {names}?")
    return False


# --- numbers and dates ---------------------------------------------------------------------------------


def percent(rate: float | None) -> str:
    """A rate as a percentage with one decimal, or "no data" when it is undefined (never 0)."""
    return "no data" if rate is None else f"{rate * 100:.1f}%"


def interval_span(counts: Counts, digits: int = 1, none: str = "") -> str:
    """The 95% interval as ``71.2–86.0%`` (``none`` when nothing matured)."""
    interval = counts.interval
    if interval is None:
        return none
    return f"{interval[0] * 100:.{digits}f}–{interval[1] * 100:.{digits}f}%"


def interval_words(counts: Counts) -> str:
    interval = counts.interval
    if interval is None:
        return "no interval (nothing matured)"
    return f"95% interval {interval[0] * 100:.1f}%–{interval[1] * 100:.1f}%"


def change_words(now: Counts, before: Counts | None) -> str | None:
    """``down 2.3 points, not significant (p = 0.19)`` / ``up 3.1 points, significant``; None when either rate
    is undefined. A change is never shown without whether it is significant (CONTRACT section 2)."""
    if before is None:
        return None
    change = change_between(now, before)
    if change.points is None or change.p_value is None:
        return None
    shown = round(change.points, 1)
    if shown == 0 and change.significant:
        shown = round(change.points, 2)  # a tiny but significant change (huge samples) is not "unchanged"
    size = abs(shown)
    if shown == 0:
        moved = "unchanged"
    else:
        decimals = 1 if size == round(size, 1) else 2
        moved = f"{'up' if shown > 0 else 'down'} {size:.{decimals}f} point{'' if size == 1 else 's'}"
    if change.significant:
        return f"{moved}, significant"
    return f"{moved}, not significant (p = {p_value_words(change.p_value)})"


def p_value_words(p_value: float) -> str:
    """Two significant digits (0.19, 0.051, 1), and ``< 0.001`` below that."""
    return "< 0.001" if p_value < 0.001 else f"{p_value:.2g}"


def target_words(rate: float | None, target: float | None) -> str | None:
    """``3.3 points below the 70% target`` (or above, or at it); None without a rate or a target."""
    points = target_distance_points(rate, target)
    if points is None or target is None:
        return None
    goal = f"the {target * 100:g}% target"
    size = abs(round(points, 1))
    if size == 0:
        return f"at {goal}"
    return f"{size:.1f} point{'' if size == 1 else 's'} {'above' if points > 0 else 'below'} {goal}"


def period_words(since_us: int, until_us: int, zone: tzinfo) -> str:
    """The period in the bot's time zone: whole days as dates (last day inclusive), else dates with times."""
    start, end = from_us(since_us, zone), from_us(until_us, zone)
    whole_days = local_midnight_us(start.date(), zone) == since_us and local_midnight_us(end.date(), zone) == until_us
    if whole_days:
        last = from_us(until_us - 1, zone)
        if last.date() == start.date():
            return f"{start:%a %Y-%m-%d} ({start.tzname()})"
        return f"{start:%a %Y-%m-%d} to {last:%a %Y-%m-%d} ({start.tzname()})"
    zone_name = end.tzname() if start.tzname() == end.tzname() else f"{start.tzname()}/{end.tzname()}"
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} ({zone_name})"


def length_words(length_us: int) -> str:
    """A period's length: ``7 days`` (a DST day of 23 or 25 hours is still a day to a reader), else hours."""
    days = length_us / US_PER_DAY
    if abs(days - round(days)) < 0.05:
        whole = round(days)
        return f"{whole} day{'' if whole == 1 else 's'}"
    hours = length_us / (US_PER_DAY / 24)
    return f"{hours:.0f} hours"


def day_words(us: int, zone: tzinfo) -> str:
    """The calendar day of an instant in the bot's time zone: ``2026-03-09``."""
    return f"{from_us(us, zone):%Y-%m-%d}"


def instant_words(us: int, zone: tzinfo) -> str:
    """An instant as people read it in the bot's time zone: ``2026-03-09 09:00 CET``."""
    return f"{from_us(us, zone):%Y-%m-%d %H:%M %Z}"


# --- short messages ------------------------------------------------------------------------------------


def section(mrkdwn: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def context(mrkdwn: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn}]}


def error_message(problem: str) -> Message:
    """A short explanation (it already carries the usage line when the words were wrong)."""
    shown = escape(problem)
    return Message(blocks=[section(f":warning: {shown}")], text=shown, plain=f"Error: {plain(problem)}")


def note_message(mrkdwn: str, plain_text: str) -> Message:
    """A short confirmation or refusal: ``mrkdwn`` must already be escaped where it holds user text."""
    return Message(blocks=[section(mrkdwn)], text=mrkdwn, plain=plain(plain_text))


def list_message(mrkdwn: str, plain_text: str) -> Message:
    """A confirmation or list; unlike ``note_message`` the plain text keeps its lines (one per item)."""
    return Message(
        blocks=[section(mrkdwn)], text=mrkdwn, plain="\n".join(plain(line) for line in plain_text.splitlines())
    )
