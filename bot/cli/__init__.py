"""The ``acr-bot`` command line: a thin edge over the core. Domain errors become one ``Error: ...`` line."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

import click

from metrics.errors import UserError

log = logging.getLogger("acr_bot")


class _Group(click.Group):
    """Turns UserError (and any unexpected failure) into one ``Error:`` line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as problem:
            click.echo(f"Error: {problem}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as problem:
            log.debug("unexpected failure", exc_info=True)
            click.echo(
                f"Error: unexpected {type(problem).__name__}: {problem} (run with ACR_BOT_DEBUG=1 for details)",
                err=True,
            )
            if _debug():
                raise
            sys.exit(1)


def _debug() -> bool:
    import os

    return os.environ.get("ACR_BOT_DEBUG", "") not in ("", "0")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="acr-bot")
def main() -> None:
    """ACR Bot: Active Contact Resolution and tier-1 resolution for contact centers, in Slack."""


# The commands, each in the module of bot.cli named like it (as a click command or group of that name).
COMMANDS = (
    "serve", "ask", "agents", "report", "why",
    "digest", "alerts", "subscriptions",  # the scheduler's jobs and what they run on
    "ingest", "demo",  # bulk import and demo data
    "db",  # moving a store (SQLite <-> PostgreSQL)
    "contacts", "backup",  # what was stored, erasure and backups
)  # fmt: skip


class _LazyCommands(MutableMapping[str, click.Command]):
    """The group's commands by name, each imported when first looked up: a command run loads its own module,
    not every command's (the Slack SDK, the scheduler, Connect's mapper: ~0.4 s of every ``acr-bot ingest``).
    Listing the names imports nothing; ``--help`` imports them all, for their short help."""

    def __init__(self, names: Iterable[str]):
        self._names = list(names)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            if name not in self._names:
                raise KeyError(name)
            self._loaded[name] = getattr(importlib.import_module(f"bot.cli.{name}"), name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        if name not in self._names:
            self._names.append(name)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self._loaded.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


main.commands = _LazyCommands(COMMANDS)
