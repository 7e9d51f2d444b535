"""The ``acr-bot`` command line: a thin edge over the core. Domain errors become one ``Error: ...`` line."""

from __future__ import annotations

import logging
import sys
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


def _register() -> None:
    """Attach the commands. Each lives in its own module of ``bot.cli``, named like the command."""
    # (imports here keep ``acr-bot --help`` fast and avoid import cycles)
    from bot.cli.agents import agents
    from bot.cli.alerts import alerts
    from bot.cli.ask import ask
    from bot.cli.backup import backup
    from bot.cli.contacts import contacts
    from bot.cli.db import db
    from bot.cli.demo import demo
    from bot.cli.digest import digest
    from bot.cli.ingest import ingest
    from bot.cli.report import report
    from bot.cli.serve import serve
    from bot.cli.subscriptions import subscriptions
    from bot.cli.why import why

    commands: list[click.Command] = [serve, ask, agents, report, why]
    commands += [digest, alerts, subscriptions]  # the scheduler's jobs and what they run on
    commands += [ingest, demo]  # bulk import and demo data
    commands += [db]  # moving a store (SQLite <-> PostgreSQL)
    commands += [contacts, backup]  # what was stored, erasure and backups
    for command in commands:
        main.add_command(command)


_register()
