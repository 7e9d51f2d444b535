"""The words of /acr and /tier1: one parser for Slack and ``acr-bot ask``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.slack.grammar import USAGE, LinkCommand, Question, parse, parse_line, tokenize
from metrics.errors import UserError
from metrics.timeutil import US_PER_DAY, US_PER_HOUR, parse_instant


def question(text: str, command: str = "/acr") -> Question:
    parsed = parse(command, text)
    assert isinstance(parsed, Question)
    return parsed


def test_defaults() -> None:
    q = question("")
    assert (q.metric, q.filters, q.window_us, q.last_days, q.by, q.share, q.me, q.help) == (
        "acr",
        (),
        7 * US_PER_DAY,
        None,
        None,
        False,
        False,
        False,
    )
    assert question("", "/tier1").metric == "tier1"


def test_every_word() -> None:
    q = question("agent:maria team:billing queue:refunds channel:Phone 12h by:day share")
    assert q.filters == (("agent", "maria"), ("team", "billing"), ("queue", "refunds"), ("channel", "phone"))
    assert q.window_us == 12 * US_PER_HOUR and q.by == "day" and q.share
    assert question("last:14d").last_days == 14
    assert question("window:3d").window_us == 3 * US_PER_DAY
    q = question("since:2026-03-01 until:2026-03-31")
    assert (q.since, q.until) == (date(2026, 3, 1), date(2026, 3, 31))
    assert question("me").me and question("help").help


def test_keywords_are_case_insensitive_values_are_not() -> None:
    assert question("AGENT:Maria BY:Team SHARE").filters == (("agent", "Maria"),)
    assert question("By:TEAM").by == "team"


def test_quoted_values_and_slack_quotes() -> None:
    assert question('agent:"maria garcia"').agent == "maria garcia"
    assert question("agent:“maria garcia” 3d").agent == "maria garcia"
    assert question('team:"a b c" agent:x').filters == (("agent", "x"), ("team", "a b c"))


def test_mentions_and_channel_references() -> None:
    assert question("<@U123ABC|maria>").agent_user == "U123ABC"
    assert question("agent:<@U123ABC>").agent_user == "U123ABC"
    assert question("<@U1AB|maria garcia> 3d").window_us == 3 * US_PER_DAY  # a label with a space stays whole
    assert question("queue:<#C0123|refunds>").filters == (("queue", "refunds"),)
    assert question("team:#billing").filters == (("team", "billing"),)
    with pytest.raises(UserError, match="channel reference without a name"):
        question("queue:<#C0123>")


def test_slack_escapes_are_undone_in_values() -> None:
    assert question("team:R&amp;D").filters == (("team", "R&D"),)
    assert question("agent:a&lt;b&gt;").agent == "a<b>"


def test_link_commands() -> None:
    assert parse("/acr", "link <@U0AB|maria> agent:maria") == LinkCommand("link", "U0AB", "maria")
    assert parse("/acr", 'LINK U0AB agent:"maria garcia"') == LinkCommand("link", "U0AB", "maria garcia")
    assert parse("/acr", "unlink <@U0AB>") == LinkCommand("unlink", "U0AB", None)
    assert parse("/acr", "links") == LinkCommand("links")
    for bad, message in [
        ("link agent:maria", "needs a user"),
        ("link <@U0AB>", "needs the agent's name"),
        ("link @maria agent:maria", "was not sent as a Slack mention"),
        ("link <@U0AB> <@U0CD> agent:x", "one user"),
        ("links now", "takes no other words"),
    ]:
        with pytest.raises(UserError, match=message):
            parse("/acr", bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("agnet:maria", "Did you mean agent:maria"),
        ("shre", "Did you mean share"),
        ("hepl", "Did you mean help"),
        ("by:agnt", "Did you mean by:agent"),
        ("by:year", "is not a breakdown"),
        ("91d", "longer than the maximum of 90d"),
        ("0d", "is empty"),
        ("7w", "not a number of days, hours or minutes"),
        ("last:abc", "not a number of days"),
        ("since:2026-02-30", "does not exist"),
        ("since:03/01/2026", "YYYY-MM-DD"),
        ("since:2026-03-10 until:2026-03-01", "is after"),
        ("last:7d since:2026-03-01", "not both"),
        ("2026-03-01", "looks like a date"),
        ("agent:maria agent:bob", "given twice"),
        ("me agent:bob", "both name an agent"),
        ("agent:", "needs a value"),
        ('agent:"maria', "is not closed"),
        ("@maria", "pick them from the @ menu"),
        ("7d link <@U0AB> agent:x", "must be the first word"),
    ],
)
def test_errors_name_the_problem_with_usage(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as raised:
        parse("/acr", text)
    assert USAGE in str(raised.value)


def test_unknown_command() -> None:
    with pytest.raises(UserError, match="unknown command"):
        parse("/foo", "7d")


def test_parse_line_for_the_cli() -> None:
    assert parse_line("/tier1 agent:maria 7d") == question("agent:maria 7d", "/tier1")
    assert isinstance(parse_line("/acr links"), LinkCommand)
    assert parse_line("agent:maria") == question("agent:maria")  # /acr is meant


def test_to_query_periods_in_the_bot_zone() -> None:
    as_of = parse_instant("2026-03-10T12:00:00Z", UTC)
    q = question("last:7d").to_query(as_of, UTC)
    assert (q.since_us, q.until_us) == (as_of - 7 * US_PER_DAY, as_of)
    berlin = ZoneInfo("Europe/Berlin")
    q = question("since:2026-03-29 until:2026-03-29").to_query(parse_instant("2026-04-05T00:00:00Z", UTC), berlin)
    assert q.until_us - q.since_us == 23 * US_PER_HOUR  # the spring-forward day
    new_york = ZoneInfo("America/New_York")
    q = question("since:2026-11-01 until:2026-11-01").to_query(parse_instant("2026-11-05T00:00:00Z", UTC), new_york)
    assert q.until_us - q.since_us == 25 * US_PER_HOUR  # the fall-back day
    assert q.since_us == parse_instant("2026-11-01T04:00:00Z", UTC)  # local midnight, EDT
    with pytest.raises(ValueError):
        question("me").to_query(as_of, UTC)
    assert question("me").with_agent("maria").to_query(as_of, UTC).filters == (("agent", "maria"),)


_plain_word = st.text(alphabet=st.characters(categories=("L", "N"), include_characters="-_."), min_size=1, max_size=12)


@given(st.lists(_plain_word, max_size=8))
def test_tokenize_splits_plain_words_on_any_spaces(words: list[str]) -> None:
    assert tokenize("  \t".join(words)) == words


@given(st.text(alphabet=st.characters(exclude_characters="\"“”„‘’'<>&", exclude_categories=["Cs"]), max_size=40))
def test_any_quoted_agent_name_is_read_back(name: str) -> None:
    if not name.strip() or name.strip()[0] in "#@":  # a leading # or @ is Slack-speak, dropped
        return
    assert question(f'agent:"{name}"').agent == name.strip()


@given(st.text(max_size=60))
def test_any_text_parses_or_gives_a_user_error(text: str) -> None:
    try:
        parsed = parse("/acr", text)
    except UserError as problem:
        assert str(problem).strip()
    else:
        assert isinstance(parsed, (Question, LinkCommand))


@given(st.permutations(["agent:maria", "team:billing", "3d", "last:14d", "by:queue", "share"]))
def test_word_order_does_not_matter(words: list[str]) -> None:
    reference = replace(question("agent:maria team:billing 3d last:14d by:queue share"), words="")
    assert replace(question(" ".join(words)), words="") == reference
