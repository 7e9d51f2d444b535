"""What every command shares (bot/cli/common.py): one ``--as-of`` type, and a store that is closed however the
command ends."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bot.cli import COMMANDS, main
from bot.cli.common import AsOf
from bot.storage import open_store
from tests.cli_docs import subcommands


def every_command(group: click.Group, path: str = "acr-bot") -> Iterator[tuple[str, click.Command]]:
    for name, command in subcommands(group).items():
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


@pytest.mark.slow
def test_a_command_run_imports_its_own_module_only(tmp_path: Path) -> None:
    """``acr-bot ingest`` loads neither the other commands nor what only they need (the Slack SDK, the scheduler,
    Connect's mapper): ~0.1-0.4 s of start-up on every run. In a fresh interpreter, as the console script runs."""
    records = tmp_path / "one.jsonl"
    records.write_text(
        '{"id": "1", "customer_id": "c1", "agent": "ana", "started_at": "2026-03-02T10:00:00Z"}\n', encoding="utf-8"
    )
    script = (
        "import sys\n"
        "from bot.cli import main\n"
        "try:\n"
        f"    main(['ingest', '--no-progress', {str(records)!r}])\n"
        "except SystemExit as end:\n"
        "    assert not end.code, end.code\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'acr.db'}"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert run.returncode == 0, run.stderr
    assert "1 inserted" in run.stdout
    loaded = set(run.stdout.split("\n")[-2].split())
    others = {f"bot.cli.{name}" for name in COMMANDS if name != "ingest"}
    assert "bot.cli.ingest" in loaded
    assert not loaded & others, sorted(loaded & others)
    assert not {module for module in loaded if module.startswith(("slack_sdk", "bot.scheduler", "bot.slack"))}
    assert "bot.platforms.amazon_connect" not in loaded


def test_every_command_is_listed_and_found_by_name() -> None:
    """The lazily imported commands are all there, each the command of its own module."""
    assert sorted(subcommands(main)) == sorted(COMMANDS)
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output
        assert subcommands(main)[name].name == name
    assert "nosuch" not in subcommands(main)
    assert CliRunner().invoke(main, ["nosuch"]).exit_code == 2
