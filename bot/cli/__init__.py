"""The ``acr-bot`` command line: a thin edge over the core. Domain errors become one ``Error: ...`` line."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from metrics.errors import UserError

log = logging.getLogger("acr_bot")


# The commands, each in the module of bot.cli named like it (as a click command or group of that name).
COMMANDS = (
    "serve", "ask", "agents", "report", "why",
    "digest", "alerts", "subscriptions",  # the scheduler's jobs and what they run on
    "ingest", "demo",  # bulk import and demo data
    "db",  # moving a store (SQLite <-> PostgreSQL)
    "contacts", "backup",  # what was stored, erasure and backups
)  # fmt: skip


class _Group(click.Group):
    """The commands of ``COMMANDS``, each imported when first looked up (click's lazy loading: ``list_commands``
    and ``get_command``): a command run loads its own module, not every command's (the Slack SDK, the scheduler,
    Connect's mapper: ~0.4 s of every ``acr-bot ingest``); ``--help`` loads them all, for their short help.
    And UserError (and any unexpected failure) becomes one ``Error:`` line and exit status 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            self.add_command(getattr(importlib.import_module(f"bot.cli.{cmd_name}"), cmd_name))
        return super().get_command(ctx, cmd_name)

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
