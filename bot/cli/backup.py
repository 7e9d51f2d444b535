"""``acr-bot backup PATH``: a consistent copy of the live SQLite database, while the server keeps running."""

from __future__ import annotations

from pathlib import Path

import click

from bot.cli.common import command_store, database_label, settings
from metrics.errors import UserError


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup(path: Path) -> None:
    """Copy the database to PATH (a new file) with SQLite's online backup: one consistent snapshot, taken while
    the server goes on writing. Restore: stop the server, replace the database file with the copy (and delete
    its -wal and -shm files), start the server. See README, Backups."""
    from bot.storage.sqlite import SQLiteContactStore

    config = settings()
    if not config.database_url.startswith("sqlite:"):
        raise UserError(
            "acr-bot backup copies SQLite databases; back up PostgreSQL with pg_dump "
            '(pg_dump --format=custom --file=PATH "$DATABASE_URL"; restore with pg_restore)'
        )
    if path.exists():
        raise UserError(f"{path} already exists; name a new file (a backup never overwrites anything)")
    if not path.parent.is_dir():
        raise UserError(f"{path.parent} is not a directory")
    store = command_store()
    assert isinstance(store, SQLiteContactStore)
    contacts = store.count_contacts()
    store.backup(path)
    click.echo(f"Backed up {database_label(config)} ({contacts:,} contacts) to {path.resolve()}")
