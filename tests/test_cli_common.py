"""What every command shares (bot/cli/common.py): one ``--as-of`` type, and a store that is closed however the
command ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.cli.common import AsOf
from bot.storage import open_store


def every_command(group: click.Group, path: str = "acr-bot") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from every_command(command, f"{path} {name}")


def test_every_as_of_is_the_one_parameter_type() -> None:
    as_of = {
        path: param
        for path, command in every_command(main)
        for param in command.params
        if "--as-of" in getattr(param, "opts", ())
    }
    assert {"acr-bot ask", "acr-bot report", "acr-bot digest", "acr-bot alerts", "acr-bot demo"} <= set(as_of)
    assert {path: type(param.type).__name__ for path, param in as_of.items() if not isinstance(param.type, AsOf)} == {}


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [(["agents", "link", "U0MARIA", "maria"], 0), (["agents", "unlink", "U0NOBODY"], 1), (["report", "acr"], 0)],
    ids=["success", "error", "report"],
)
def test_a_command_closes_its_store_however_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], exit_code: int
) -> None:
    """SQLite removes a database's write-ahead log when its last connection closes: no ``-wal`` file left
    behind means the command closed every connection it opened, on success and on error alike."""
    db = tmp_path / "acr.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    open_store(f"sqlite:///{db}").close()  # (a missing database is an error for these commands)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == exit_code, result.output
    assert db.exists() and not Path(f"{db}-wal").exists()
