"""Renders the `acr-bot` command reference (docs/cli.md) from the click commands themselves."""

from __future__ import annotations

import click
from click.testing import CliRunner

from bot.cli import main


def subcommands(group: click.Group) -> dict[str, click.Command]:
    """The commands of ``group`` by name, as click finds them (the top group imports each when looked up)."""
    context = click.Context(group)
    found = {name: group.get_command(context, name) for name in group.list_commands(context)}
    return {name: command for name, command in found.items() if command is not None}


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path under ``group``: ("serve",), ("agents", "link"), ..."""
    paths: list[tuple[str, ...]] = []
    for name, command in sorted(subcommands(group).items()):
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(walk(command, (*prefix, name)))
    return paths


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=100, prog_name="acr-bot")
    assert result.exit_code == 0, result.output
    return result.output


def render_reference() -> str:
    parts = ["\n"]
    for path in walk(main):
        parts.append(f"## acr-bot {' '.join(path)}\n\n```\n{help_text(path).rstrip()}\n```\n\n")
    return "".join(parts)
