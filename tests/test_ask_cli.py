"""``acr-bot ask``: the Slack reply as text, from the same parser and handler."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.storage import ContactStore
from tests.slack_support import seed


@pytest.fixture
def runner(store: ContactStore, database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    seed(store, time.time())
    store.link_agent("U0MARIA", "maria")
    monkeypatch.setenv("DATABASE_URL", database_url)
    return CliRunner()


def test_ask_prints_the_reply(runner: CliRunner) -> None:
    result = runner.invoke(main, ["ask", "/acr agent:maria 7d"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ACR 80.0%  (agent maria)")
    assert "8 of 10 matured contacts had no repeat contact within 7 days" in result.output
    assert "95% interval" in result.output and "Period: last 30 days" in result.output


def test_ask_tier1_with_breakdown_and_words_without_the_command(runner: CliRunner) -> None:
    result = runner.invoke(main, ["ask", "/tier1", "team:billing", "by:agent"])
    assert result.exit_code == 0, result.output
    assert "Tier-1 resolution" in result.output and "maria" in result.output and "bob" in result.output
    assert runner.invoke(main, ["ask", "agent:maria"]).output.startswith("ACR 80.0%")


def test_ask_as_of_in_the_past(runner: CliRunner) -> None:
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30 * 86_400))
    result = runner.invoke(main, ["ask", "/acr agent:bob", "--as-of", past])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ACR 50.0%")
    bad = runner.invoke(main, ["ask", "/acr", "--as-of", "yesterday"])
    assert bad.exit_code == 1 and "--as-of" in bad.output


def test_ask_as_a_slack_user_applies_their_permissions(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_SUPERVISOR_IDS", "U0SUPER")
    assert runner.invoke(main, ["ask", "/acr me", "--user", "U0MARIA"]).output.startswith("ACR 80.0%")
    refused = runner.invoke(main, ["ask", "/acr agent:bob", "--user", "U0MARIA"])
    assert refused.exit_code == 1 and "only supervisors" in refused.output
    assert runner.invoke(main, ["ask", "/acr agent:bob", "--user", "U0SUPER"]).output.startswith("ACR 100.0%")
    assert "needs to know who you are" in runner.invoke(main, ["ask", "/acr me"]).output


def test_ask_errors_and_help(runner: CliRunner) -> None:
    result = runner.invoke(main, ["ask", "/acr agnet:maria"])
    assert result.exit_code == 1
    assert "Error: unknown word 'agnet:maria'. Did you mean agent:maria?" in result.output
    assert "Usage: /acr" in result.output
    assert runner.invoke(main, ["ask", "/nope 7d"]).exit_code == 1
    helped = runner.invoke(main, ["ask", "/acr help"])
    assert helped.exit_code == 0 and "since:YYYY-MM-DD" in helped.output
