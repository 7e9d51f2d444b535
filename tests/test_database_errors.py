"""A database that is missing, damaged or not a file gets one clear line naming it, from every command; a new
one is never created silently (through the real commands, on real files)."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner, Result

from bot.cli import main


def run(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"DATABASE_URL": database_url}, catch_exceptions=False)


def test_a_command_run_where_there_is_no_database_says_where_it_looked_and_creates_nothing(tmp_path: Path) -> None:
    """From the new-user list: run from another directory, `report` silently created an empty data/acr.db."""
    result = CliRunner().invoke(main, ["report", "acr"], catch_exceptions=False)  # cwd: an empty directory
    assert result.exit_code == 1
    expected = f"Error: no database at {tmp_path / 'data' / 'acr.db'} (DATABASE_URL sqlite:///data/acr.db, read from "
    assert result.stderr.startswith(expected), result.stderr
    assert "there is no .env in" in result.stderr and "acr-bot ingest FILE" in result.stderr
    assert not (tmp_path / "data").exists()


def test_ingest_creates_the_database_saying_so_and_names_it_in_its_summary(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(orjson.dumps({"id": "a", "customer_id": "k", "started_at": "2026-05-04T10:00:00Z"}) + b"\n")
    db = tmp_path / "new" / "acr.db"
    result = run(f"sqlite:///{db}", "ingest", str(path))
    assert result.exit_code == 0, result.output
    assert f"Creating a new database at {db}" in result.stderr
    assert result.stdout.rstrip().endswith(f"0 stale (database {db})")
    again = run(f"sqlite:///{db}", "ingest", str(path))
    assert "Creating" not in again.stderr


def test_a_damaged_database_is_named_with_what_to_do(tmp_path: Path) -> None:
    """Defect 10: "unexpected DatabaseError", no file named."""
    db = tmp_path / "acr.db"
    db.write_bytes(b"this is not SQLite at all" * 1000)
    result = run(f"sqlite:///{db}", "report", "acr")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {db} is not a SQLite database or is damaged"), result.stderr
    assert "restore it from a backup" in result.stderr and "unexpected" not in result.stderr


def test_a_directory_as_the_database_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "acr.db"
    folder.mkdir()
    result = run(f"sqlite:///{folder}", "report", "acr")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot open the database {folder}: it is a directory"), result.stderr
