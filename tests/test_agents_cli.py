"""``acr-bot agents link|unlink|list``: the Slack user <-> agent links, stored in the database."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.storage import ContactStore, open_store
from tests.slack_support import seed


@pytest.fixture
def runner(store: ContactStore, database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    seed(store, time.time())
    monkeypatch.setenv("DATABASE_URL", database_url)
    return CliRunner()


def test_link_list_unlink(runner: CliRunner, database_url: str) -> None:
    assert runner.invoke(main, ["agents", "list"]).output.startswith("No Slack users are linked")
    linked = runner.invoke(main, ["agents", "link", "U0MARIA", "maria"])
    assert linked.exit_code == 0 and linked.output == "Linked U0MARIA to agent 'maria'.\n"
    new = runner.invoke(main, ["agents", "link", "<@U0NEW|x>", "newbie"])
    assert new.exit_code == 0 and "no contacts for this agent yet" in new.output
    listed = runner.invoke(main, ["agents", "list"]).output.splitlines()
    assert [line.split("\t")[:3] for line in listed] == [["U0MARIA", "maria", "cli"], ["U0NEW", "newbie", "cli"]]
    relinked = runner.invoke(main, ["agents", "link", "U0MARIA", "maria garcia"])
    assert relinked.exit_code == 0
    store = open_store(database_url)
    try:
        assert store.agent_for_user("U0MARIA") == "maria garcia"
    finally:
        store.close()
    assert runner.invoke(main, ["agents", "unlink", "U0MARIA"]).output == "Unlinked U0MARIA.\n"
    again = runner.invoke(main, ["agents", "unlink", "U0MARIA"])
    assert again.exit_code == 1 and "Error: U0MARIA is not linked" in again.output


def test_bad_user_id(runner: CliRunner) -> None:
    result = runner.invoke(main, ["agents", "link", "maria", "maria"])
    assert result.exit_code == 1 and "is not a Slack user id" in result.output
    assert runner.invoke(main, ["agents", "link", "U0A", "  "]).exit_code == 1
