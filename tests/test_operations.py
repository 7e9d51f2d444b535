"""What an operator runs the bot with: GET /metrics, LOG_FORMAT=json, backups, retention and erasure.

Through the real ``acr-bot serve`` process and the real commands, on real SQLite files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.http.signing import signed_headers
from tests.test_serve import SECRET, Process, start_serve
from tests.test_serve import processes as processes

RECORDS = [
    {"id": "a", "customer_id": "k1", "agent": "maria", "started_at": "2026-05-04T10:00:00Z"},
    {"id": "b", "customer_id": "k1", "agent": "maria", "started_at": "2026-05-05T10:00:00Z"},
]


def post(url: str, records: list[dict[str, object]]) -> httpx.Response:
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
