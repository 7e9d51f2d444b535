"""``reason`` as a dimension: the ``reason:`` filter and ``by:reason`` in Slack (signed HTTP, fake Slack), ``--reason``
and ``--by reason`` in ``acr-bot report``, rollups by reason, and the migration of a store made before it.
The engine's property test (tests/test_metrics_engine.py) holds reason filters and breakdowns to the reference."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from bot.cli import main
from bot.storage import ContactStore
from bot.storage.postgres import PostgresContactStore
from bot.storage.postgres_migrations import MIGRATIONS
from bot.storage.sqlite import SQLiteContactStore
from bot.storage.sqlite_migrations import migrations
from metrics.engine import compute
from metrics.periods import local_date
from metrics.query import MetricQuery
from metrics.timeutil import US_PER_DAY, UTC, parse_instant
from tests.fake_slack import FakeSlack
from tests.slack_support import DAY, add_contacts, all_text, running, slack_settings
from tests.store_support import needs_rollups

AS_OF = "2026-03-20T12:00:00Z"
AS_OF_S = parse_instant(AS_OF, UTC) / 1_000_000


def records() -> list[dict[str, Any]]:
    """20 days ago: 4 "billing" contacts, 3 of them repeated (the repeat itself is an "outage" contact); 4 "outage"
    contacts, none repeated; 2 without a reason."""
    out: list[dict[str, Any]] = []
    start = AS_OF_S - 20 * DAY
    for i in range(4):
        out.append({"id": f"b{i}", "customer_id": f"kb{i}", "agent": "maria", "reason": "billing", "started_at": start})
        if i < 3:
            out.append(
                {"id": f"r{i}", "customer_id": f"kb{i}", "agent": "omar", "reason": "outage", "started_at": start + DAY}
            )
    for i in range(4):
        out.append({"id": f"o{i}", "customer_id": f"ko{i}", "agent": "omar", "reason": "outage", "started_at": start})
    for i in range(2):
        out.append({"id": f"n{i}", "customer_id": f"kn{i}", "agent": "maria", "started_at": start})
    return out


@pytest.fixture
def reasons_db(store: ContactStore, database_url: str, monkeypatch: pytest.MonkeyPatch) -> ContactStore:
    add_contacts(store, records())
    monkeypatch.setenv("DATABASE_URL", database_url)
    return store


def report_json(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["report", *args, "--as-of", AS_OF, "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_report_filters_and_breaks_down_by_reason(reasons_db: ContactStore) -> None:
    billing = report_json("acr", "--reason", "billing")
    assert billing["filters"] == {"reason": "billing"}
    assert (billing["matured"], billing["resolved"]) == (4, 1)
    by_reason = report_json("acr", "--by", "reason")
    assert by_reason["by"] == "reason"
    rows = {row["key"]: (row["matured"], row["resolved"]) for row in by_reason["rows"]}
    assert rows == {"billing": (4, 1), "outage": (7, 7)}  # the 2 without a reason: only in the total
    assert (by_reason["matured"], by_reason["resolved"]) == (13, 10)
    both = report_json("acr", "--reason", "outage", "--agent", "omar", "--by", "reason")
    assert [(row["key"], row["matured"]) for row in both["rows"]] == [("outage", 7)]


def test_rollups_by_reason_give_the_same_answer_and_follow_a_changed_reason(reasons_db: ContactStore) -> None:
    store = reasons_db
    as_of = parse_instant(AS_OF, UTC)
    query = MetricQuery("acr", 7 * US_PER_DAY, as_of - 30 * US_PER_DAY, as_of, as_of, by="reason")
    counted = compute(store, query, UTC, use_rollups=False)
    store.refresh_rollups(UTC)
    rolled = compute(store, query, UTC)
    assert rolled.rows == counted.rows and rolled.total == counted.total
    # a delivery that only changes a contact's reason moves it to the other reason
    changed = next(r for r in records() if r["id"] == "b3") | {"reason": "outage"}
    add_contacts(store, [changed])
    for rollups in (True, False):
        rows = {row.key: row.counts.matured for row in compute(store, query, UTC, use_rollups=rollups).rows}
        assert rows == {"billing": 3, "outage": 8}


def test_the_rollups_keep_buckets_by_reason(reasons_db: ContactStore) -> None:
    needs_rollups(reasons_db)
    reasons_db.refresh_rollups(UTC)
    with reasons_db.metric_reader(UTC, refresh_days=0) as reader:
        first = parse_instant("2026-02-28T00:00:00Z", UTC)
        data = reader.rollup_days("reason", local_date(first, UTC), local_date(parse_instant(AS_OF, UTC), UTC))
        assert data is not None and {"billing", "outage"} <= set(data.values)


def test_a_store_made_before_reasons_is_migrated(db_path: Path) -> None:
    """Contacts stored before the reason column existed get their reason as the store opens."""
    db = Database(sqlite3.connect(db_path))
    migrations.apply(db, stop_before="m_metric_contacts_reason")
    store_columns = [row[1] for row in db.execute("PRAGMA table_info(metric_contacts)").fetchall()]
    assert "reason" not in store_columns
    db.execute(
        "INSERT INTO contacts (source, id, customer_id, agent, reason, channel, direction, tier, escalated, "
        "started_us, raw) VALUES ('api', 'old', 'k', 'maria', 'billing', 'phone', 'inbound', 1, 0, ?, '{}')",
        [parse_instant("2026-03-01T00:00:00Z", UTC)],
    )
    db.execute(
        "INSERT INTO metric_contacts (started_us, pk, end_us, tier, escalated, agent, channel) "
        "SELECT started_us, pk, end_us, tier, escalated, agent, channel FROM contacts"
    )
    db.conn.commit()
    db.conn.close()
    store = SQLiteContactStore(db_path)
    try:
        as_of = parse_instant(AS_OF, UTC)
        query = MetricQuery("acr", 7 * US_PER_DAY, as_of - 30 * US_PER_DAY, as_of, as_of, (("reason", "billing"),))
        assert compute(store, query, UTC).total.matured == 1
    finally:
        store.close()


def test_a_postgresql_store_made_before_reasons_is_migrated(postgres_url: str) -> None:
    """The same on PostgreSQL: migration 007 gives the candidates stored before it their reason."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ DEFAULT now())")
        for name, statements in MIGRATIONS[: [name for name, _ in MIGRATIONS].index("007_metric_contacts_reason")]:
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
        conn.execute(
            "INSERT INTO contacts (source, id, customer_id, agent, reason, channel, direction, tier, escalated, "
            "started_us, raw, received_at) VALUES ('api', 'old', 'k', 'maria', 'billing', 'phone', 'inbound', 1, "
            "false, %s, '{}', '2026-03-01T00:00:00Z')",
            (parse_instant("2026-03-01T00:00:00Z", UTC),),
        )
        conn.execute(
            "INSERT INTO metric_contacts (pk, started_us, end_us, tier, escalated, agent, channel) "
            "SELECT pk, started_us, end_us, tier, escalated, agent, channel FROM contacts"
        )
    store = PostgresContactStore(postgres_url)
    try:
        as_of = parse_instant(AS_OF, UTC)
        query = MetricQuery("acr", 7 * US_PER_DAY, as_of - 30 * US_PER_DAY, as_of, as_of, (("reason", "billing"),))
        assert compute(store, query, UTC).total.matured == 1
        assert store.dimension_values("reason") == ["billing"]
        assert store.data_since_us() == parse_instant("2026-03-01T00:00:00Z", UTC)
    finally:
        store.close()


# --- Slack ------------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


def test_slack_reason_filter_and_breakdown(fake: FakeSlack, store: ContactStore, database_url: str) -> None:
    shift = time.time() - AS_OF_S  # the same contacts, relative to now
    add_contacts(store, [{**r, "started_at": r["started_at"] + shift} for r in records()])
    with running(slack_settings(database_url, fake.api_url), store) as server:
        response = server.command("reason:billing", response_url=fake.response_url("f"))
        assert response.status_code == 200
        text = all_text(fake.reply("f"))
        assert "ACR 25.0%" in text and "reason `billing`" in text and "1 of 4 matured contacts" in text
        server.command("by:reason", response_url=fake.response_url("b"))
        table = next(b["text"]["text"] for b in fake.reply("b")["blocks"] if "```" in b.get("text", {}).get("text", ""))
        assert "Worst first, by reason" in table
        lines = [line.split() for line in table.split("\n")[3:-1]]
        assert [line[1] for line in lines] == ["billing", "outage"]
        server.command("reason:biling", response_url=fake.response_url("t"))
        assert "no reason named 'biling' in the data. Did you mean reason:billing?" in all_text(fake.reply("t"))
