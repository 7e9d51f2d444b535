"""Checks of the store's derived data shared by the store, bulk-write and webhook tests."""

from __future__ import annotations

from typing import Any

from bot.storage.sqlite import SQLiteContactStore
from bot.storage.sqlite_metrics import METRIC_CONTACTS_COLUMNS


def is_counted(row: dict[str, Any]) -> bool:
    """A contact the metrics count (a candidate): inbound, with an agent."""
    return row["direction"] == "inbound" and row["agent"] is not None


def assert_candidates_mirror_contacts(store: SQLiteContactStore) -> None:
    """``metric_contacts`` holds exactly the counted contacts, with their current values."""
    stored = {
        row[1]: row
        for row in store._writer.execute(f"SELECT {', '.join(METRIC_CONTACTS_COLUMNS)} FROM metric_contacts")
    }
    expected = {
        row["pk"]: tuple(row[column] for column in METRIC_CONTACTS_COLUMNS)
        for row in store.iter_contacts()
        if is_counted(row)
    }
    assert stored == expected
