"""Block Kit and plain-text replies, rendered from hand-made results: numbers, dates, ranking, escaping."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from bot.presentation import change_words, code, error_message, escape, period_words, target_words
from bot.slack.blocks import MAX_ROWS, Answer, answer_message, help_message, ranked_rows, trend_mark
from bot.slack.grammar import HELP_WORDS, Question, parse
from metrics.query import Counts, MetricQuery, MetricResult, Row
from metrics.timeutil import US_PER_DAY, parse_instant

AS_OF = parse_instant("2026-11-23T12:00:00Z", UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def result(total: Counts, rows: list[Row] | None = None, by: str | None = None, days: int = 30) -> MetricResult:
    query = MetricQuery("acr", 7 * US_PER_DAY, AS_OF - days * US_PER_DAY, AS_OF, AS_OF, by=by)  # type: ignore[arg-type]
    return MetricResult(query, query.since_us, query.until_us, total, rows or [])


def answer(text: str, res: MetricResult, previous: MetricResult | None = None) -> Answer:
    parsed = parse("/acr", text)
    assert isinstance(parsed, Question)
    return Answer(parsed, res, previous)


def test_answer_states_rate_counts_interval_period_and_change() -> None:
    now = result(Counts(matured=10, resolved=8, pending=2))
    before = MetricResult(now.query, AS_OF - 60 * US_PER_DAY, AS_OF - 30 * US_PER_DAY, Counts(20, 15, 0))
    message = answer_message(answer("agent:maria", now, before), UTC)
    header = {"type": "plain_text", "text": "ACR 80.0% ▲5.0 pts", "emoji": False}  # the trend beside the number
    assert message.blocks[0] == {"type": "header", "text": header}
    text = json.dumps(message.blocks)
    assert "8 of 10 matured contacts had no repeat contact within 7 days" in text
    assert "2 more are pending" in text
    assert "95% interval 49.0%\\u201394.3%" in text
    assert "last 30 days: 2026-10-24 12:00 to 2026-11-23 12:00 (UTC)" in text
    assert "Previous 30 days" in text and "75.0% (20 matured), up 5.0 points" in text
    assert "ACR 80.0%" in message.plain and "8 of 10 matured" in message.plain and "up 5.0 points" in message.plain


def test_no_data_is_never_zero() -> None:
    message = answer_message(answer("", result(Counts(matured=0, resolved=0, pending=4))), UTC)
    assert message.blocks[0]["text"]["text"] == "ACR no data"
    assert "all 4 are pending" in message.plain and "0.0%" not in message.plain


def test_change_words() -> None:
    assert change_words(Counts(10, 8), Counts(10, 9)) == "down 10.0 points, not significant (p = 0.53)"
    assert change_words(Counts(10, 8), Counts(10, 8)) == "unchanged, not significant (p = 1)"
    assert change_words(Counts(100, 81), Counts(100, 80)).startswith("up 1.0 point, not significant")  # type: ignore[union-attr]
    assert change_words(Counts(1250, 912), Counts(1250, 941)) == "down 2.3 points, not significant (p = 0.19)"
    assert change_words(Counts(2000, 1400), Counts(2000, 1462)) == "down 3.1 points, significant"
    assert change_words(Counts(10, 0), Counts(10, 0)) == "unchanged, not significant (p = 1)"
    assert change_words(Counts(10, 8), Counts(0, 0, 3)) is None
    assert change_words(Counts(10, 8), None) is None


def test_period_words_in_the_bot_zone_across_dst() -> None:
    spring = parse_instant("2026-03-29T00:00:00", BERLIN)
    assert period_words(spring, spring + 23 * 3600 * 10**6, BERLIN) == "Sun 2026-03-29 (CET)"
    autumn = parse_instant("2026-10-24T00:00:00", BERLIN)
    assert period_words(autumn, autumn + 49 * 3600 * 10**6, BERLIN) == "Sat 2026-10-24 to Sun 2026-10-25 (CEST)"
    assert period_words(AS_OF - US_PER_DAY, AS_OF, BERLIN) == "2026-11-22 13:00 to 2026-11-23 13:00 (CET)"
    new_york = ZoneInfo("America/New_York")
    start = parse_instant("2026-03-07T12:00:00", new_york)
    assert period_words(start, start + US_PER_DAY, new_york) == "2026-03-07 12:00 to 2026-03-08 13:00 (EST/EDT)"


def test_breakdown_worst_first_small_samples_marked_and_capped() -> None:
    rows = [Row(f"agent{i:02d}", Counts(100, 50 + i)) for i in range(MAX_ROWS + 5)]
    rows.append(Row("tiny", Counts(3, 0)))
    rows.append(Row("waiting", Counts(0, 0, 9)))
    ans = answer("by:agent", result(Counts(1000, 700), rows, by="agent"))
    ranked = ranked_rows(ans)
    assert [r.key for r in ranked[:2]] == ["tiny", "agent00"] and ranked[-1].key == "waiting"
    message = answer_message(ans, UTC)
    table = next(b["text"]["text"] for b in message.blocks if "```" in b.get("text", {}).get("text", ""))
    lines = table.split("\n")[3:-1]
    assert len(lines) == MAX_ROWS
    assert re.match(r"\s+1\s+tiny\s+0\.0%†", lines[0])
    assert max(len(line) for line in lines) <= 52  # narrow enough for a phone
    assert re.match(r"\s+2\s+agent00\s+50\.0%▼\s+\d", lines[1])  # 50 of 100 against 70% for the rest
    text = json.dumps(message.blocks, ensure_ascii=False)
    assert "▼/▲ significantly below/above the rest of this scope (p &lt; 0.05)." in text
    assert "7 more rows not shown" in text and "fewer than 30 matured contacts" in text
    assert "7 more rows not shown" in message.plain


def test_a_tiny_sample_does_not_top_the_breakdown() -> None:
    """The issue's "weakest agents": 18 contacts at 61% against 1,900 at 70%, clearly below the team (80%)."""
    rows = [Row("new", Counts(18, 11)), Row("steady", Counts(1900, 1330)), Row("good", Counts(6000, 5000))]
    ans = answer("by:agent", result(Counts(7918, 6341), rows, by="agent"))
    assert [r.key for r in ranked_rows(ans)] == ["steady", "new", "good"]
    plain_text = answer_message(ans, UTC).plain
    assert re.search(r"steady\s+70\.0%▼", plain_text) and re.search(r"good\s+83\.3%▲", plain_text)
    assert re.search(r"new\s+61\.1%†▼\s+\d", plain_text)  # small, yet below the rest (p = 0.045)


def test_by_day_stays_in_date_order() -> None:
    rows = [Row("2026-11-20", Counts(10, 9)), Row("2026-11-21", Counts(10, 1)), Row("2026-11-22", Counts(10, 5))]
    ans = answer("by:day", result(Counts(30, 15), rows, by="day"))
    assert [r.key for r in ranked_rows(ans)] == ["2026-11-20", "2026-11-21", "2026-11-22"]


def test_slack_limits_are_respected() -> None:
    rows = [Row("x" * 200 + str(i), Counts(1000, 500)) for i in range(200)]
    message = answer_message(answer("by:queue", result(Counts(10**6, 5 * 10**5, 10**5), rows, by="queue")), UTC)
    assert len(message.blocks) <= 50
    for block in message.blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000


_mention_words = st.sampled_from(["@channel", "@here", "@everyone", "<!channel>", "<@U123>", "<#C1|x>", "*", "`", "&"])


@given(st.lists(st.one_of(st.text(max_size=10), _mention_words), max_size=8).map("".join))
def test_escape_never_lets_text_ping_or_link(text: str) -> None:
    shown = escape(text)
    assert "<" not in shown and ">" not in shown
    assert not re.search(r"@(channel|here|everyone)\b", shown, re.IGNORECASE)
    cleaned = re.sub(r"[\x00-\x1f\x7f]", " ", text)
    assert html.unescape(shown.replace("\u2060", "")) == cleaned
    inner = code(text)[1:-1]
    assert "`" not in inner


def test_help_and_errors() -> None:
    message = help_message()
    for word in HELP_WORDS:
        assert escape(word) in json.dumps(message.blocks, ensure_ascii=False)
        assert word in message.plain
    error = error_message("unknown word '<!channel>'")
    assert "<!channel>" not in json.dumps(error.blocks) and error.plain.startswith("Error: ")


def test_target_words() -> None:
    assert target_words(0.667, 0.70) == "3.3 points below the 70% target"
    assert target_words(0.75, 0.70) == "5.0 points above the 70% target"
    assert target_words(0.70, 0.70) == "at the 70% target"
    assert target_words(0.685, 0.725) == "4.0 points below the 72.5% target"
    assert target_words(None, 0.70) is None and target_words(0.5, None) is None


def test_answer_shows_the_target_and_says_when_the_previous_period_has_far_less_data() -> None:
    now = result(Counts(matured=100, resolved=67, pending=2))
    before = MetricResult(now.query, AS_OF - 60 * US_PER_DAY, AS_OF - 30 * US_PER_DAY, Counts(12, 10, 0))
    data_start = AS_OF - 40 * US_PER_DAY  # inside the previous period
    parsed = parse("/acr", "")
    assert isinstance(parsed, Question)
    message = answer_message(Answer(parsed, now, before, target=0.70, data_since_us=data_start), UTC)
    assert "3.0 points below the 70% target." in message.plain
    assert "far less data (12 matured; the data starts 2026-10-14, inside it), so no comparison." in message.plain
    assert "points," not in message.plain
    compared = answer_message(Answer(parsed, now, before, target=None, data_since_us=before.since_us), UTC)
    assert "target" not in compared.plain and "down 16.3 points, not significant (p = 0.25)" in compared.plain


def test_no_trend_beside_the_number_when_the_previous_period_has_far_less_data() -> None:
    """The compare line says "far less data ..., so no comparison"; the big number must not show a change then."""
    day = 86_400_000_000
    as_of = 40 * day
    now = MetricResult(
        MetricQuery("acr", 7 * day, as_of - 30 * day, as_of, as_of), as_of - 30 * day, as_of, Counts(600, 480)
    )
    before = MetricResult(
        MetricQuery("acr", 7 * day, as_of - 60 * day, as_of - 30 * day, as_of),
        as_of - 60 * day,
        as_of - 30 * day,
        Counts(20, 10),
    )
    question = Question("acr")
    assert trend_mark(Answer(question, now, before, data_since_us=as_of - 60 * day)) == " ▲30.0 pts"
    assert trend_mark(Answer(question, now, before, data_since_us=as_of - 31 * day)) == ""
