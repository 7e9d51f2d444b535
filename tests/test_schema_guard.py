"""A database that a newer acr-bot has migrated is refused, never written: a newer version may store or mark things
in ways this one cannot read or keep up (compressed raws, versioned dirty marks) and would answer wrongly."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import psycopg
import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.storage import open_store
from bot.storage.errors import StoreUnavailable

NEWER = "m_from_a_newer_acr_bot"


def record_newer_migration(database_url: str) -> None:
    """What a newer acr-bot leaves behind: a migration this program does not have, recorded as applied."""
    if database_url.startswith("sqlite:///"):
        with closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as conn, conn:
            conn.execute(
                "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('acr-bot', ?, '2027-01-01')",
                (NEWER,),
            )
    else:
        with psycopg.connect(database_url, autocommit=True) as server:
            server.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (NEWER,))


def test_a_database_migrated_by_a_newer_version_is_refused(database_url: str) -> None:
    store = open_store(database_url)
    store.close()
    record_newer_migration(database_url)
    with pytest.raises(StoreUnavailable) as refused:
        open_store(database_url)
    assert NEWER in str(refused.value) and "newer acr-bot" in str(refused.value)
    assert "password" not in str(refused.value)


def test_the_cli_says_so_in_one_line(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    open_store(database_url).close()
    record_newer_migration(database_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = CliRunner().invoke(main, ["contacts", "get", "api", "c1"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: the database ") and NEWER in result.output
    assert "Traceback" not in result.output
