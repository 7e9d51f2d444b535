"""The adapters depend only downward: Slack and the scheduler never import each other (not even inside a
function), and what both render or share lives in neutral modules that import neither."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parent.parent / "bot"
ADAPTERS = ("bot.slack", "bot.scheduler", "bot.cli", "bot.http")
FORBIDDEN = {
    "bot/slack": ("bot.scheduler",),
    "bot/scheduler": ("bot.slack",),
    "bot/presentation.py": ADAPTERS,
    "bot/ports.py": ADAPTERS,
}


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """Every module a file of ``package`` imports, at any depth (``import a.b``, ``from a.b import c``, relative
    imports resolved), with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def _package(path: Path) -> str:
    return ".".join(path.relative_to(BOT.parent).parts[:-1])


def files_of(place: str) -> list[Path]:
    target = BOT.parent / place
    if target.is_dir():
        return sorted(target.rglob("*.py"))
    return [target] if target.exists() else []


def violations(place: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(BOT.parent)}:{line} imports {module}"
        for path in files_of(place)
        for line, module in imported_modules(path.read_text(encoding="utf-8"), _package(path))
        if any(module == prefix or module.startswith(prefix + ".") for prefix in forbidden)
    ]


@pytest.mark.parametrize("place", sorted(FORBIDDEN))
def test_adapters_do_not_import_each_other(place: str) -> None:
    assert files_of(place), f"{place} is gone: update FORBIDDEN in this test"
    assert violations(place, FORBIDDEN[place]) == []


def test_the_check_sees_every_kind_of_import() -> None:
    """The walker itself: a top-level, a nested and a relative import are all found."""
    source = "import bot.slack.app\ndef later():\n    from bot.slack.blocks import answer_message\nfrom ..slack import grammar\n"
    found = imported_modules(source, "bot.scheduler")
    assert (1, "bot.slack.app") in found
    assert (3, "bot.slack.blocks") in found
    assert (4, "bot.slack.grammar") in found


def test_the_command_line_and_the_postgresql_store_load_without_pandas() -> None:
    """pandas takes half a second to import, paid by every ``acr-bot`` command that loads it (an ingest of
    1,000,000 contacts into PostgreSQL lasts about 30): only building rollups needs it, and imports it there.
    (The SQLite store loads it anyway: sqlite-utils imports it when it is installed.)"""
    code = "import sys, bot.cli, bot.cli.ingest, bot.storage.postgres; print('pandas' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=BOT.parent)
    assert loaded.stdout.strip() == "False"
