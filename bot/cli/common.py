"""Helpers shared by the commands: settings, the store, logging."""

from __future__ import annotations

import logging

from bot.settings import Settings, load_settings
from bot.storage import ContactStore, open_store


def settings() -> Settings:
    """The validated settings (a bad value raises UserError, shown as one ``Error:`` line)."""
    return load_settings()


def store_for(config: Settings) -> ContactStore:
    return open_store(
        config.database_url,
        synchronous=config.sqlite_synchronous,
        busy_timeout_ms=config.sqlite_busy_timeout_ms,
    )


def setup_logging(config: Settings) -> None:
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
