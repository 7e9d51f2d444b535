"""Shared fixtures: a fresh SQLite store in a temporary file, and settings that never read the developer's .env."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.storage.sqlite import SQLiteContactStore


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests run in an empty directory (no .env) with no bot settings inherited from the shell."""
    for name in (
        "DATABASE_URL",
        "BOT_TIMEZONE",
        "WEBHOOK_SECRET",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_API_URL",
        "HOST",
        "PORT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "acr.db"


@pytest.fixture
def fresh_db(db_path: Path) -> Iterator[SQLiteContactStore]:
    """A new, migrated store on a real SQLite file."""
    store = SQLiteContactStore(db_path)
    yield store
    store.close()
