"""Documentation cannot drift from the code: every command, option and setting is documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from bot.cli import main
from tests.cli_docs import subcommands, walk

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


@pytest.mark.slow
def test_cli_reference_is_up_to_date() -> None:
    """docs/cli.md holds every command's --help; regenerate it with `make docs`."""
    result = subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", "-I", str(REPO), "docs/cli.md"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", walk(main), ids=lambda path: " ".join(path))
def test_every_command_is_documented(path: tuple[str, ...]) -> None:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = subcommands(command)[name]
    assert command.help, f"acr-bot {' '.join(path)} has no help text"
    for parameter in command.params:
        if isinstance(parameter, click.Option) and not parameter.hidden:
            assert parameter.help, f"acr-bot {' '.join(path)} {parameter.opts[0]} has no help text"
    if len(path) == 1:
        assert f"acr-bot {path[0]}" in README, f"README does not mention `acr-bot {path[0]}`"
