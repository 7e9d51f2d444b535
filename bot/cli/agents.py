"""``acr-bot agents link|unlink|list``: which Slack user is which agent (what ``/acr me`` answers about)."""

from __future__ import annotations

import re

import click

from bot.cli.common import command_store
from bot.presentation import plain
from metrics.errors import UserError

_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


@click.group("agents")
def agents() -> None:
    """Link Slack users to agent names (the agent name exactly as in the contact data)."""


def _user(value: str) -> str:
    user_id = value.strip().removeprefix("<@").split("|")[0].removesuffix(">")
    if not _SLACK_USER_ID.fullmatch(user_id):
        raise UserError(f"{value!r} is not a Slack user id (like U0123ABCD; in Slack: profile, More, Copy member ID)")
    return user_id


@agents.command("link")
@click.argument("slack_user")
@click.argument("agent")
def link(slack_user: str, agent: str) -> None:
    """Link SLACK_USER (a user id like U0123ABCD) to AGENT."""
    user_id = _user(slack_user)
    name = agent.strip()
    if not name:
        raise UserError("AGENT is empty")
    store = command_store()
    known = name in store.dimension_values("agent")
    store.link_agent(user_id, name, linked_by=None)
    click.echo(f"Linked {user_id} to agent {name!r}." + ("" if known else " (no contacts for this agent yet)"))


@agents.command("unlink")
@click.argument("slack_user")
def unlink(slack_user: str) -> None:
    """Remove the link of SLACK_USER."""
    user_id = _user(slack_user)
    removed = command_store().unlink_agent(user_id)
    if not removed:
        raise UserError(f"{user_id} is not linked to an agent")
    click.echo(f"Unlinked {user_id}.")


@agents.command("list")
def list_links() -> None:
    """Every link: Slack user id, agent, who linked it and when."""
    links = command_store().list_agent_links()
    if not links:
        click.echo("No Slack users are linked to agents. Link one with: acr-bot agents link U0123ABCD maria")
        return
    for item in links:
        click.echo(f"{item.slack_user_id}\t{plain(item.agent)}\t{item.linked_by or 'cli'}\t{item.linked_at}")
