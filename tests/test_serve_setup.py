"""What ``acr-bot serve`` sets up in its process before uvicorn runs (the server itself is stopped at that point)."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner

from bot.cli import main
from bot.cli.serve import YOUNG_COLLECTION_OBJECTS


def test_serve_collects_young_objects_only_after_a_batch_worth_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the default threshold (700) the garbage collector walked a webhook batch's records 2-3 times a batch of
    500; the server raises it once its long-lived objects are frozen, and keeps the older generations' own."""
    seen: dict[str, Any] = {}

    def run(server: uvicorn.Server, sockets: Any = None) -> None:  # instead of serving: what serve set up
        seen["threshold"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'acr.db'}")
    threshold, root = gc.get_threshold(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(main, ["serve", "--port", "0"])
    finally:  # (this process's own collector and logging as they were)
        gc.set_threshold(*threshold)
        gc.unfreeze()
        root.handlers[:] = handlers
        root.setLevel(level)
    assert result.exit_code == 0, result.output
    assert seen["frozen"] > 0
    assert seen["threshold"] == (YOUNG_COLLECTION_OBJECTS, *threshold[1:])
    assert YOUNG_COLLECTION_OBJECTS >= 10 * 500  # a batch of 500 makes about two young objects a record
