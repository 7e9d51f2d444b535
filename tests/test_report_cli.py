"""``acr-bot report``: options, the three output formats, errors, and the worked example of docs/metrics.md."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.storage import open_store
from tests.builders import valid

DOCS = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
JSON_KEYS = [
    "metric",
    "window",
    "window_seconds",
    "since",
    "until",
    "as_of",
    "filters",
    "matured",
    "resolved",
    "pending",
    "rate",
    "ci_low",
    "ci_high",
]


def docs_blocks() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    text = DOCS.read_text()
    jsonl = re.search(r"```jsonl\n(.*?)```", text, re.S)
    expected = re.search(r"```json\n(.*?)```", text, re.S)
    assert jsonl is not None and expected is not None, "docs/metrics.md lost its worked example"
    return [json.loads(line) for line in jsonl.group(1).splitlines() if line.strip()], json.loads(expected.group(1))


@pytest.fixture
def example_db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The worked example of docs/metrics.md in a real store, configured through the environment."""
    records, _ = docs_blocks()
    store = open_store(database_url)
    store.upsert([valid(record) for record in records])
    store.close()
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["report", *args], catch_exceptions=False)


def report_json(*args: str) -> dict[str, Any]:
    result = run(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_docs_worked_example_matches_the_engine(example_db: str) -> None:
    _, expected = docs_blocks()
    common = ["--as-of", expected["as_of"], "--window", expected["window"], "--last", expected["last"]]
    for metric in ("acr", "tier1"):
        out = report_json(metric, *common)
        assert {k: out[k] for k in ("matured", "resolved", "pending")} == expected[metric]
    by_agent = report_json("acr", *common, "--by", "agent")
    assert {row["key"]: [row["matured"], row["resolved"], row["pending"]] for row in by_agent["rows"]} == (
        expected["acr_by_agent"]
    )
    # The percentages the page states follow from those counts.
    text = DOCS.read_text()
    assert "4 / 6 = **66.7%**" in text and "**1 / 5 = 20%**" in text


def test_json_has_exactly_the_contract_keys(example_db: str) -> None:
    out = report_json("acr", "--as-of", "2026-03-20T12:00:00Z", "--agent", "maria")
    assert list(out) == JSON_KEYS
    assert out["metric"] == "acr" and out["window"] == "7d" and out["window_seconds"] == 7 * 86400
    assert out["since"] == "2026-02-18T12:00:00Z" and out["until"] == "2026-03-20T12:00:00Z"
    assert out["as_of"] == "2026-03-20T12:00:00Z"
    assert out["filters"] == {"agent": "maria"}
    assert (out["matured"], out["resolved"], out["pending"]) == (3, 2, 1)
    assert out["rate"] == pytest.approx(2 / 3)
    assert 0 < out["ci_low"] < 2 / 3 < out["ci_high"] < 1


def test_json_breakdown_rows(example_db: str) -> None:
    out = report_json("tier1", "--as-of", "2026-03-20T12:00:00Z", "--by", "agent")
    assert list(out) == [*JSON_KEYS, "by", "rows"]
    assert out["by"] == "agent"
    assert [row["key"] for row in out["rows"]] == ["maria", "omar"]  # lee only handled tier 2
    assert list(out["rows"][0]) == ["key", "matured", "resolved", "pending", "rate", "ci_low", "ci_high"]


def test_no_data_is_null_in_json_and_words_in_text(example_db: str) -> None:
    out = report_json("acr", "--as-of", "2026-03-20T12:00:00Z", "--agent", "nobody")
    assert (out["matured"], out["rate"], out["ci_low"], out["ci_high"]) == (0, None, None, None)
    text = run("acr", "--as-of", "2026-03-20T12:00:00Z", "--agent", "nobody").output
    assert "no data" in text and "0.0%" not in text
    assert "No contact counts here: no inbound contact with an agent and agent=nobody started in this period" in text
    # A period the data does not cover says why it is empty, too (the README's fixed dates once answered nothing).
    empty = run("acr", "--as-of", "2026-03-20T12:00:00Z", "--since", "2025-01-01", "--until", "2025-01-31").output
    assert "no inbound contact with an agent started in this period. Check the period" in empty
    full = run("acr", "--as-of", "2026-03-20T12:00:00Z").output
    assert "No contact counts here" not in full


def test_calendar_period_and_by_day_in_new_york(example_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TIMEZONE", "America/New_York")
    out = report_json(
        "acr", "--as-of", "2026-03-20T12:00:00Z", "--since", "2026-03-07", "--until", "2026-03-10", "--by", "day"
    )
    assert out["since"] == "2026-03-07T05:00:00Z"  # midnight EST
    assert out["until"] == "2026-03-11T04:00:00Z"  # midnight EDT after the 10th
    assert [row["key"] for row in out["rows"]] == ["2026-03-07", "2026-03-08", "2026-03-09", "2026-03-10"]
    assert [row["matured"] for row in out["rows"]] == [0, 0, 0, 1]  # c7 at 08:00 EDT on the 10th


def test_until_is_clipped_to_as_of_in_output(example_db: str) -> None:
    out = report_json("acr", "--as-of", "2026-03-05T00:00:00Z", "--since", "2026-03-01", "--until", "2026-03-31")
    assert out["until"] == "2026-03-05T00:00:00Z"
    assert out["matured"] == 0 and out["pending"] == 3  # c1, c3 and c4: all ended within 7 days of as_of


def test_text_report_is_a_readable_table(example_db: str) -> None:
    result = run("acr", "--as-of", "2026-03-20T12:00:00Z", "--by", "agent")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("ACR (Active Contact Resolution)")
    assert "window 7d" in lines[1]
    maria = next(line for line in lines if line.startswith("maria"))
    assert "66.7%" in maria and "–" in maria
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[1:2] == ["66.7%"]
    assert "pending" in result.output


def test_csv_has_a_header_and_a_line_per_row(example_db: str) -> None:
    result = run("acr", "--as-of", "2026-03-20T12:00:00Z", "--by", "agent", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [row["agent"] for row in rows] == ["lee", "maria", "omar"]
    assert rows[1]["matured"] == "3" and rows[1]["rate %"] == "66.7"
    assert (rows[1]["95% low %"], rows[1]["95% high %"]) == ("20.8", "93.9")
    assert rows[1]["metric"] == "ACR" and rows[1]["window"] == "7d" and rows[1]["as of"] == "2026-03-20 12:00 UTC"
    single = list(csv.DictReader(io.StringIO(run("acr", "--as-of", "2026-03-01T00:00:00Z", "--format", "csv").output)))
    assert single == [
        {"scope": "all agents", "metric": "ACR", "window": "7d", "period": "2026-01-30 to 2026-02-28",
         "as of": "2026-03-01 00:00 UTC", "rate %": "", "95% low %": "", "95% high %": "", "matured": "0",
         "resolved": "0", "pending": "0"}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["acr", "--window", "91d"], "window '91d'"),
        (["acr", "--window", "soon"], "window 'soon'"),
        (["acr", "--since", "2026-02-30"], "date '2026-02-30' does not exist"),
        (["acr", "--since", "2026-03-10", "--until", "2026-03-01"], "after until"),
        (["acr", "--last", "30d", "--since", "2026-03-01"], "--last and --since/--until cannot be combined"),
        (["acr", "--last", "x"], "period 'x'"),
        (["acr", "--as-of", "tomorrow"], "--as-of"),
        (["acr", "--agent", " "], "--agent is empty"),
    ],
)
def test_bad_options_are_one_clear_error(example_db: str, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["report", *args])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output
    assert "Traceback" not in result.output


def test_unknown_metric_or_breakdown_is_refused(example_db: str) -> None:
    assert CliRunner().invoke(main, ["report", "nps"]).exit_code == 2
    assert CliRunner().invoke(main, ["report", "acr", "--by", "mood"]).exit_code == 2


def test_text_output_shows_names_from_the_data_without_control_characters(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name holding a terminal escape sequence is printed with the escape made a space (presentation.plain)."""
    hostile = "eve\x1b[2J\x07"
    record = {"id": "c1", "customer_id": "k1", "agent": hostile, "started_at": "2026-03-01T10:00:00Z"}
    store = open_store(database_url)
    store.upsert([valid(record)])
    store.close()
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = run("acr", "--as-of", "2026-03-20T00:00:00Z", "--by", "agent", "--agent", hostile)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "agent=eve [2J " in result.output
    assert any(line.startswith("eve [2J ") for line in result.output.splitlines())


def test_compare_adds_the_previous_period_with_its_significance(example_db: Path) -> None:
    out = report_json("acr", "--as-of", "2026-03-20T12:00:00Z", "--last", "10d", "--compare")
    assert list(out) == [*JSON_KEYS, "previous"]
    previous = out["previous"]
    assert list(previous) == [
        "since", "until", "matured", "resolved", "pending", "rate", "change_points", "p_value", "significant",
    ]  # fmt: skip
    assert (previous["since"], previous["until"]) == ("2026-02-28T12:00:00Z", "2026-03-10T12:00:00Z")
    # now: c7 repeated (c9 pending); before: c1..c5, c1 repeated
    assert (out["matured"], out["resolved"]) == (1, 0)
    assert (previous["matured"], previous["resolved"], previous["pending"]) == (5, 4, 0)
    assert previous["rate"] == pytest.approx(0.8)
    assert previous["change_points"] == pytest.approx(-80.0)
    pooled = 4 / 6
    z = (0 - 0.8) / (pooled * (1 - pooled) * (1 + 1 / 5)) ** 0.5
    assert previous["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), abs=1e-12)
    assert previous["significant"] is False  # one contact against five: p = 0.12
    text = run("acr", "--as-of", "2026-03-20T12:00:00Z", "--last", "10d", "--compare").output
    assert "previous 2026-02-28 12:00 UTC to 2026-03-10 12:00 UTC: 80.0% (5 matured); down 80.0 points, " in text
    assert "not significant (p = 0.12)" in text


def test_compare_is_null_when_a_period_has_no_matured_contact(example_db: Path) -> None:
    out = report_json("acr", "--as-of", "2026-03-20T12:00:00Z", "--last", "3d", "--compare")
    previous = out["previous"]
    assert out["matured"] == 0 and previous["matured"] == 0  # c9 pending now; nothing 03-14..03-17
    assert (previous["change_points"], previous["p_value"], previous["significant"]) == (None, None, None)
    assert "no change to show" in run("acr", "--as-of", "2026-03-20T12:00:00Z", "--last", "3d", "--compare").output
