"""``acr-bot agents``: which Slack user is which agent (what ``/acr me`` answers about), and the agent roster
(``import``, ``export``, ``unknown``) that names the platforms' agent ids."""

from __future__ import annotations

import re

import click

from bot import roster
from bot.cli.common import command_store
from bot.presentation import plain
from metrics.errors import UserError

_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


@click.group("agents")
def agents() -> None:
    """Link Slack users to agent names, and keep the agent roster of the platforms' agent ids."""


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


@agents.command("import")
@click.argument("path", type=click.Path(dir_okay=False, allow_dash=True))
def import_roster(path: str) -> None:
    """Make the CSV file PATH the agent roster (- reads standard input).

    Columns: agent, team, tier, slack_user, ids; ids lists the platform ids that mean the agent, as
    platform:id words separated by spaces or semicolons (zendesk:8447388090494 twilio:WK0123...). The file
    replaces the roster whole, or (with any error, each listed) changes nothing. Stored contacts that still
    carry one of the ids get the agent's name, and its team and tier where they had none; contacts that
    already carry a name keep it, and its team and tier, as recorded when they arrived.
    """
    from bot.platforms import platform_names

    name = "<stdin>" if path == "-" else path
    try:
        with click.open_file(path, encoding="utf-8-sig") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as problem:
        raise UserError(f"{name}: cannot read: {getattr(problem, 'strerror', None) or problem}") from None
    entries, errors = roster.parse_csv(text, name, platform_names())
    if errors:
        for error in errors:
            click.echo(error, err=True)
        raise UserError(f"{name}: {len(errors)} error{'s' if len(errors) != 1 else ''}; the roster was not changed")
    remapped = command_store(create=True).replace_roster(entries)
    ids = sum(len(entry.ids) for entry in entries)
    linked = sum(entry.slack_user is not None for entry in entries)
    click.echo(
        f"Imported {len(entries)} agents with {ids} platform ids; {linked} Slack users linked; "
        f"{remapped} stored contacts re-mapped to their agent."
    )


@agents.command("export")
def export_roster() -> None:
    """Print the agent roster as CSV (the columns agents import reads)."""
    entries = command_store().roster()
    click.echo(roster.to_csv(entries), nl=False)


@agents.command("unknown")
def unknown_agents() -> None:
    """List the platform agent ids that no roster entry names: source, id and how many contacts carry it."""
    from bot.platforms import platform_names

    unknown = command_store().unknown_agents(platform_names())
    if not unknown:
        click.echo("Every agent of the platforms' contacts is in the roster.")
        return
    for source, agent, count in unknown:
        click.echo(f"{plain(source)}\t{plain(agent)}\t{count} contact{'s' if count != 1 else ''}")
