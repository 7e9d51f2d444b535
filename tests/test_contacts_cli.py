"""``acr-bot contacts get``: the stored record as JSON, through the real command and a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner, Result

from bot.cli import main
from bot.storage import open_store


def run(db_path: Path, *args: str, stdin: bytes | None = None) -> Result:
    env = {"DATABASE_URL": f"sqlite:///{db_path}", "BOT_TIMEZONE": "Europe/Berlin"}
    return CliRunner().invoke(main, list(args), input=stdin, env=env, catch_exceptions=False)


def test_get_prints_the_schema_fields_in_utc_and_the_raw_record(db_path: Path) -> None:
    record = {
        "id": "c1",
        "source": "crm",
        "customer_id": "k1",
        "agent": "maria",
        "channel": "Chat",
        "escalated": True,
        "started_at": "2026-05-04 12:00:00",  # wall time in BOT_TIMEZONE (Berlin, UTC+2 in May)
        "ended_at": 1777889100,
        "updated_at": "2026-05-04T10:06:00.5Z",
        "wrapup": "refund sent",
    }
    assert run(db_path, "ingest", "-", stdin=orjson.dumps(record)).exit_code == 0
    result = run(db_path, "contacts", "get", "crm", "c1")
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.stdout)
    received = shown.pop("received_at")
    assert received.endswith("Z")
    assert shown == {
        "id": "c1",
        "source": "crm",
        "customer_id": "k1",
        "agent": "maria",
        "team": None,
        "queue": None,
        "reason": None,
        "channel": "chat",
        "direction": "inbound",
        "tier": 1,
        "escalated": True,
        "resolved": None,
        "parent_id": None,
        "started_at": "2026-05-04T10:00:00Z",
        "ended_at": "2026-05-04T10:05:00Z",
        "updated_at": "2026-05-04T10:06:00.500000Z",
        "raw": record,
    }


def test_an_unknown_contact_is_one_line_and_exit_1(db_path: Path) -> None:
    open_store(f"sqlite:///{db_path}").close()  # the database exists (a missing one is an error of its own)
    result = run(db_path, "contacts", "get", "crm", "nope")
    assert result.exit_code == 1
    assert result.stderr == "Error: no contact with source 'crm' and id 'nope'\n"
    assert result.stdout == ""
