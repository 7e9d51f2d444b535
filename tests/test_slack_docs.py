"""Every word of /acr and every option of ``acr-bot ask``/``agents`` is in the help, the README and the manifest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from bot.cli.agents import agents
from bot.cli.ask import ask
from bot.slack.blocks import help_text
from bot.slack.grammar import COMMANDS, FLAG_WORDS, LINK_WORDS, VALUE_KEYWORDS
from metrics.query import BREAKDOWNS

ROOT = Path(__file__).resolve().parents[1]
WORDS = [
    *(f"{keyword}:" for keyword in VALUE_KEYWORDS),
    *(f"by:{breakdown}" for breakdown in BREAKDOWNS),
    *FLAG_WORDS,
    *LINK_WORDS,
    "7d",
    "12h",
]


def readme_slack_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Connect to Slack")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def manifest() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "slack" / "manifest.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("word", WORDS)
def test_every_word_is_in_the_help_and_the_readme(word: str) -> None:
    assert word in help_text(), f"{word} missing from /acr help"
    assert f"`{word}" in readme_slack_section() or f" {word}" in readme_slack_section(), f"{word} missing from README"


def _options(command: click.Command) -> list[str]:
    found: list[str] = []
    for param in command.params:
        if isinstance(param, click.Option):
            found.extend(opt for opt in param.opts if opt.startswith("--"))
    return found


def test_every_cli_option_and_subcommand_is_in_the_readme() -> None:
    section = readme_slack_section()
    for option in _options(ask):
        assert option in section, f"acr-bot ask {option} missing from README"
    assert isinstance(agents, click.Group)
    for name in agents.commands:
        assert f"acr-bot agents {name}" in section, f"acr-bot agents {name} missing from README"


def test_manifest_declares_both_commands_events_and_scopes() -> None:
    app = manifest()
    commands = {c["command"]: c for c in app["features"]["slash_commands"]}
    assert set(commands) == set(COMMANDS)
    for command in commands.values():
        assert command["url"].endswith("/slack/events")
        assert command["should_escape"] is True  # mentions arrive as <@U..|name>
        for word in (
            "agent:",
            "team:",
            "queue:",
            "channel:",
            "last:",
            "since:",
            "until:",
            "by:",
            "me",
            "share",
            "help",
        ):
            assert word in command["usage_hint"]
    settings = app["settings"]
    assert settings["event_subscriptions"]["request_url"].endswith("/slack/events")
    assert "app_home_opened" in settings["event_subscriptions"]["bot_events"]
    assert settings["interactivity"]["is_enabled"] and settings["interactivity"]["request_url"].endswith(
        "/slack/events"
    )
    assert app["features"]["app_home"]["home_tab_enabled"] is True
    assert {"commands", "chat:write", "usergroups:read"} <= set(app["oauth_config"]["scopes"]["bot"])


def test_the_readme_names_exactly_the_scopes_the_manifest_asks_for() -> None:
    """A private channel needs groups:history and groups:read; the README once listed four scopes of six."""
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    assert {"groups:history", "groups:read", "channels:read", "files:write"} <= scopes
    step = readme_slack_section().split("the scopes (", 1)[1].split("), interactivity", 1)[0]
    assert set(re.findall(r"`([a-z]+(?::[a-z.]+)?)`", step)) - {"SLACK_SUPERVISOR_GROUP"} == scopes


def test_supervisor_settings_are_documented() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    for name in ("SLACK_SUPERVISOR_IDS=", "SLACK_SUPERVISOR_GROUP="):
        assert name in example
        assert name.rstrip("=") in readme_slack_section()
