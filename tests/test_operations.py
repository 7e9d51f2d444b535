"""What an operator runs the bot with: GET /metrics, LOG_FORMAT=json, backups, retention and erasure.

Through the real ``acr-bot serve`` process and the real commands, on real SQLite files; retention and erasure on
every store backend (a real PostgreSQL server too).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from bot.cli import main
from bot.demo import generate, iter_records
from bot.http.signing import signed_headers
from bot.storage import open_store
from metrics.records import Contact, parse_contact
from metrics.timeutil import UTC, parse_instant
from tests.store_support import Databases, assert_candidates_mirror_contacts, stored_contacts
from tests.test_serve import SECRET, Process, start_serve
from tests.test_serve import processes as processes

RECORDS = [
    {"id": "a", "customer_id": "k1", "agent": "maria", "started_at": "2026-05-04T10:00:00Z"},
    {"id": "b", "customer_id": "k1", "agent": "maria", "started_at": "2026-05-05T10:00:00Z"},
]


def post(url: str, records: list[dict[str, Any]]) -> httpx.Response:
    body = orjson.dumps(records)
    headers = {"Content-Type": "application/json", **signed_headers(SECRET, body)}
    return httpx.post(url + "/webhooks/interactions", content=body, headers=headers, timeout=10)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(url + "/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


@pytest.fixture
def serve(tmp_path: Path, processes: list[Process]) -> Process:  # (operations of the SQLite server process)
    server = start_serve(f"sqlite:///{tmp_path / 'acr.db'}", tmp_path / "serve.log", LOG_FORMAT="json")
    processes.append(server)
    return server


@pytest.mark.slow
def test_metrics_count_requests_records_latency_outbox_and_scheduler_runs(serve: Process) -> None:
    assert post(serve.url, RECORDS).status_code == 200
    assert post(serve.url, [{"id": "bad"}]).status_code == 422
    metrics = scrape(serve.url)
    route = (("method", "POST"), ("route", "/webhooks/interactions"))
    assert metrics[("acr_http_requests_total", (*route[:1], route[1], ("status", "200")))] == 1
    assert metrics[("acr_http_requests_total", (*route[:1], route[1], ("status", "422")))] == 1
    assert metrics[("acr_records_stored_total", (("result", "inserted"),))] == 2
    assert metrics[("acr_records_refused_total", ())] == 1
    assert metrics[("acr_store_write_seconds_count", ())] == 2
    assert metrics[("acr_contacts", ())] == 2
    assert metrics[("acr_outbox_depth", ())] == 0 and metrics[("acr_outbox_oldest_pending_age_seconds", ())] == 0
    httpx.get(serve.url + "/no/such/path", timeout=5)
    deadline = time.monotonic() + 30
    while (("acr_scheduler_runs_total", (("job", "rollups"), ("outcome", "ok")))) not in (metrics := scrape(serve.url)):
        assert time.monotonic() < deadline, "the scheduler's rollup job never ran"
        time.sleep(0.2)
    assert metrics[("acr_scheduler_runs_total", (("job", "startup"), ("outcome", "ok")))] == 1
    assert metrics[("acr_rollup_last_refresh_timestamp_seconds", ())] > time.time() - 60
    assert metrics[("acr_http_requests_total", (("method", "GET"), ("route", "other"), ("status", "404")))] == 1


def test_json_logs_carry_the_request_id(serve: Process) -> None:
    response = post(serve.url, [])  # signed, empty: stored as nothing; now an unsigned one, which is logged
    assert response.status_code == 200
    refused = httpx.post(serve.url + "/webhooks/interactions", content=b"[]", timeout=10)
    assert refused.status_code == 401
    rid = refused.headers["X-Request-Id"]
    deadline = time.monotonic() + 10
    while rid not in serve.log_text():
        assert time.monotonic() < deadline, serve.log_text()
        time.sleep(0.05)
    entries = [json.loads(line) for line in serve.log_text().splitlines() if line.startswith("{")]
    assert entries and all({"time", "level", "logger", "message", "request_id"} <= set(e) for e in entries)
    mine = [e for e in entries if e["request_id"] == rid]  # the bot's own line and uvicorn's access line
    [warning] = [e for e in mine if e["level"] == "WARNING"]
    assert any(e["logger"] == "uvicorn.access" for e in mine)
    assert warning["level"] == "WARNING" and "webhook refused" in warning["message"]
    assert not [line for line in serve.log_text().splitlines() if line.strip() and not line.startswith("{")]


# --- retention, erasure and backups (on every store backend where the store is concerned) -------------------

AS_OF = "2026-06-01T12:00:00Z"
AS_OF_US = 1_780_315_200_000_000  # AS_OF in µs
DAY_US = 86_400_000_000


def demo_records(count: int = 3000) -> list[dict[str, Any]]:
    data = generate(count, seed=7, as_of_us=AS_OF_US, days=90, zone=UTC)
    return list(iter_records(data))


def load(database_url: str, records: list[dict[str, Any]]) -> None:
    store = open_store(database_url)
    try:
        store.upsert([contact for r in records if isinstance(contact := parse_contact(r, UTC), Contact)])
        store.refresh_rollups(UTC)  # rollups built: a delete must mark what it changes
    finally:
        store.close()


def cli(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"DATABASE_URL": database_url}, catch_exceptions=False)


def answers(database_url: str) -> list[Any]:
    """What the metrics say about the stored contacts (several questions), and every derived value."""
    found = []
    for metric in ("acr", "tier1"):
        for by in ("agent", "team", "day"):
            result = cli(
                database_url, "report", metric, "--last", "60d", "--by", by, "--as-of", AS_OF, "--format", "json"
            )
            assert result.exit_code == 0, result.output
            found.append(json.loads(result.stdout))
    store = open_store(database_url)
    try:
        contacts = [{k: v for k, v in row.items() if k not in ("pk", "received_at")} for row in stored_contacts(store)]
        assert_candidates_mirror_contacts(store)
    finally:
        store.close()
    return [found, contacts]


@pytest.mark.slow
def test_retention_purges_old_contacts_and_what_remains_answers_exactly(
    database_url: str, databases: Databases
) -> None:
    """RETENTION_DAYS=45: the scheduler's daily job deletes contacts that started more than 45 days before now;
    every answer about what remains equals that of a database that only ever held what remains."""
    from bot.clock import ManualClock
    from bot.scheduler.service import SchedulerService
    from bot.settings import load_settings
    from bot.slack.app import build_web_client

    records = demo_records()
    load(database_url, records)
    config = load_settings(database_url=database_url, retention_days=45)
    store = open_store(database_url)
    try:
        service = SchedulerService(config, store, build_web_client(config), clock=ManualClock(AS_OF_US))
        service.start()
        try:
            assert "retention" in {job.id for job in service.scheduler.get_jobs()}
        finally:
            service.shutdown()
        purged = service.purge_old_contacts()
    finally:
        store.close()
    cutoff = AS_OF_US - 45 * DAY_US
    kept = [r for r in records if parse_instant(r["started_at"], UTC) >= cutoff]
    assert 0 < purged == len(records) - len(kept) and kept
    reference_url = databases.fresh_url()
    load(reference_url, kept)
    assert answers(database_url) == answers(reference_url)


@pytest.mark.slow
def test_contacts_forget_erases_a_customer_and_corrects_every_rate(database_url: str, databases: Databases) -> None:
    records = demo_records()
    load(database_url, records)
    counts = Counter(r["customer_id"] for r in records)
    customer = max(counts, key=lambda c: (counts[c], c))  # one who came back: repeats change when they go
    result = cli(database_url, "contacts", "forget", "--customer", customer)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Erased {counts[customer]} contacts of customer {customer!r} from ")
    reference_url = databases.fresh_url()
    load(reference_url, [r for r in records if r["customer_id"] != customer])
    assert answers(database_url) == answers(reference_url)
    again = cli(database_url, "contacts", "forget", "--customer", customer)
    assert again.stdout.startswith(f"Erased 0 contacts of customer {customer!r}")


@pytest.mark.slow
def test_backup_is_a_consistent_copy_of_the_live_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'acr.db'}"
    records = demo_records(500)
    load(url, records)
    writer = open_store(url)
    try:
        with writer.bulk() as batch:  # a write in progress (another process) while the backup runs
            batch.add([c for r in demo_records(600)[500:] if isinstance(c := parse_contact(r, UTC), Contact)])
            result = cli(url, "backup", str(tmp_path / "copy.db"))
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"Backed up {tmp_path / 'acr.db'} (500 contacts) to {tmp_path / 'copy.db'}")
    finally:
        writer.close()
    assert answers(f"sqlite:///{tmp_path / 'copy.db'}") == answers(url_with(tmp_path / "ref.db", records))
    again = cli(url, "backup", str(tmp_path / "copy.db"))
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_backup_of_a_postgresql_database_says_in_one_line_to_use_pg_dump(tmp_path: Path) -> None:
    """Refused before connecting (nothing listens on this port), naming the tool instead, without the password."""
    url = "postgresql://acr:s3cret@127.0.0.1:9/acr"
    result = CliRunner().invoke(main, ["backup", str(tmp_path / "copy.db")], env={"DATABASE_URL": url})
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: acr-bot backup copies SQLite databases; back up PostgreSQL with pg_dump "
        '(pg_dump --format=custom --file=PATH "$DATABASE_URL"; restore with pg_restore)'
    ]
    assert not (tmp_path / "copy.db").exists() and "s3cret" not in result.output


def url_with(path: Path, records: list[dict[str, Any]]) -> str:
    load(f"sqlite:///{path}", records)
    return f"sqlite:///{path}"
