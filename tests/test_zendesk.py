"""``POST /webhooks/zendesk``: signed Zendesk ticket events over real HTTP into the real app and a real SQLite file.

Payload: ``tests/payloads/zendesk-ticket-created.json``, a ``zen:event-type:ticket.created`` body: the "sample request
body" that ``ProcessTickets`` of gwinteractive/tco-vo-agent, src/process_users.go (commit
ea3d01abf9a0146e094f473444206969d931fdb3) quotes from its Zendesk webhook, copied value for value. Its envelope and
``detail`` fields are those of developer.zendesk.com/api-reference/webhooks/event-types/ticket-events (its own
per-event example payloads were not available to copy); the later events are that body changed as that page
describes them.

Signature: developer.zendesk.com/documentation/webhooks/verifying: base64(HMAC-SHA256(secret, TIMESTAMP + BODY)),
its NodeJS example keyed by the static test secret below. That page publishes no expected signature. An earlier
version of it (developer.zendesk.com/documentation/event-connectors/webhooks/verifying) published one vector, but
that vector is HMAC(BODY + TIMESTAMP), the order its text then gave; see test_the_superseded_docs_vector_*.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import orjson
import pytest

from bot.platforms.base import Incoming, Refused
from bot.platforms.zendesk import TIMESTAMP_HEADER, Zendesk
from bot.settings import load_settings
from bot.storage import open_store
from metrics.records import Contact, parse_contact
from metrics.timeutil import iso_utc
from tests.platform_support import PAYLOADS, App

SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="  # SIGNING_SECRET of Zendesk's NodeJS example
PATH = "/webhooks/zendesk"
CREATED = orjson.loads((PAYLOADS / "zendesk-ticket-created.json").read_bytes())


def solved(at: str = "2025-01-08T11:40:00Z", assignee: str = "8447388090494") -> dict[str, Any]:
    """The same ticket after it was solved: a ``ticket.status_changed`` event, as Zendesk documents it."""
    detail = {**CREATED["detail"], "status": "SOLVED", "updated_at": at, "assignee_id": assignee}
    return {**CREATED, "type": "zen:event-type:ticket.status_changed", "detail": detail,
            "event": {"current": "SOLVED", "previous": "OPEN"}, "id": "e2", "time": at}  # fmt: skip


def now_stamp(offset_seconds: int = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(secret: str, stamp: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).digest()).decode()


def send(app: App, event: Any, *, secret: str = SECRET, stamp: str | None = None, gzipped: bool = False,
         signature: str | None = None) -> httpx.Response:  # fmt: skip
    body = event if isinstance(event, bytes) else orjson.dumps(event)
    stamp = now_stamp() if stamp is None else stamp
    headers = {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "X-Zendesk-Webhook-Signature": signature or sign(secret, stamp, body),
    }
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return app.client.post(PATH, content=body, headers=headers)


@pytest.fixture
def zendesk(start_app: Callable[..., App]) -> App:
    return start_app(zendesk_webhook_secret=SECRET)


def test_a_ticket_event_stores_the_ticket_as_one_contact(zendesk: App) -> None:
    response = send(zendesk, CREATED)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "inserted": 1, "updated": 0, "unchanged": 0, "stale": 0, "ignored": 0}
    row = zendesk.stored("zendesk")["5158"]
    assert (row["customer_id"], row["agent"], row["channel"], row["direction"]) == (
        "8447388090494", "8447388090494", "other", "inbound")  # fmt: skip
    assert (iso_utc(row["started_us"]), row["ended_us"], row["resolved"]) == ("2025-01-08T10:12:07Z", None, None)
    assert orjson.loads(row["raw"]) == CREATED


def test_solved_reopened_and_reassigned(zendesk: App) -> None:
    """Solved: ended and resolved. Reopened: the same contact, open again. Reassigned: the latest assignee."""
    assert send(zendesk, CREATED).status_code == 200
    assert send(zendesk, solved()).json()["updated"] == 1
    row = zendesk.stored("zendesk")["5158"]
    assert (iso_utc(row["ended_us"]), row["resolved"]) == ("2025-01-08T11:40:00Z", 1)
    reopened = {**solved(), "detail": {**solved()["detail"], "status": "OPEN", "updated_at": "2025-01-09T08:00:00Z"}}
    assert send(zendesk, reopened).json()["updated"] == 1
    row = zendesk.stored("zendesk")["5158"]
    assert (row["ended_us"], row["resolved"]) == (None, None)
    resolved_again = solved(at="2025-01-09T09:30:00Z", assignee="900001")
    assert send(zendesk, resolved_again).json()["updated"] == 1
    row = zendesk.stored("zendesk")["5158"]
    assert (row["agent"], iso_utc(row["ended_us"])) == ("900001", "2025-01-09T09:30:00Z")
    assert zendesk.store.count_contacts() == 1


def test_duplicates_and_older_versions_change_nothing(zendesk: App) -> None:
    assert send(zendesk, solved()).status_code == 200
    assert send(zendesk, solved()).json()["unchanged"] == 1  # Zendesk retries a delivery
    assert send(zendesk, CREATED, gzipped=True).json()["stale"] == 1  # the creation event, arriving late
    assert zendesk.stored("zendesk")["5158"]["resolved"] == 1


def test_events_that_are_not_tickets_are_ignored(zendesk: App) -> None:
    user_event = {**CREATED, "type": "zen:event-type:user.created", "detail": {"id": "1"}}
    no_requester = {**CREATED, "detail": {**CREATED["detail"], "requester_id": None}}
    for event in (user_event, no_requester):
        response = send(zendesk, event)
        assert response.status_code == 200
        assert response.json()["ignored"] == 1
    assert zendesk.store.count_contacts() == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"signature": "AAAA"}, "X-Zendesk-Webhook-Signature does not match the body"),
        ({"secret": "another-secret"}, "X-Zendesk-Webhook-Signature does not match the body"),
        ({"stamp": now_stamp(-3600)}, "s old"),
        ({"stamp": "yesterday"}, "must be an ISO 8601 time"),
    ],
)
def test_forged_or_stale_requests_are_401_and_store_nothing(zendesk: App, change: dict[str, str], message: str) -> None:
    response = send(zendesk, CREATED, **change)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert message in response.json()["error"]
    assert zendesk.store.count_contacts() == 0


def test_malformed_bodies_and_bad_records_store_nothing(zendesk: App) -> None:
    assert send(zendesk, b"{oops").status_code == 400
    assert send(zendesk, [CREATED]).status_code == 400  # not an event object
    undated = {**CREATED, "detail": {**CREATED["detail"], "created_at": None}}
    response = send(zendesk, undated)
    assert response.status_code == 422
    assert response.json()["details"] == [{"index": 0, "id": "5158", "field": "started_at", "message": "is required"}]
    assert zendesk.store.count_contacts() == 0


def test_without_the_secret_the_endpoint_is_disabled(start_app: Callable[..., App]) -> None:
    app = start_app()
    response = send(app, CREATED)
    assert response.status_code == 503
    assert "ZENDESK_WEBHOOK_SECRET is not set" in response.json()["error"]


# Zendesk's only published vector, from the earlier "Verifying webhook authenticity" page: its secret, body, timestamp
# and the signature it gave, which is base64(HMAC-SHA256(secret, BODY + TIMESTAMP)).
DOCS_SECRET = "HRkRd4BeOAoUkfZr-mhauJT64rvBASlJRoIyPsd3zeA="
DOCS_BODY = b'{"say": "hello"}'
DOCS_TIMESTAMP = "2021-07-25T10:00:00Z"
DOCS_SIGNATURE = "tRDSF7URY8BLCDlaBcQ7FHu051Zk+aAB0NKMP53teMw="


def verify_at_docs_time(signature: str) -> None:
    """The Zendesk verifier on the docs' request (its body is no event, so not the HTTP path), with the freshness
    check stubbed: the docs' timestamp is years old."""
    platform = Zendesk(load_settings(zendesk_webhook_secret=DOCS_SECRET))
    headers = {"X-Zendesk-Webhook-Signature-Timestamp": DOCS_TIMESTAMP, "X-Zendesk-Webhook-Signature": signature}
    with mock.patch("bot.platforms.zendesk.check_fresh") as fresh:
        platform.verify(Incoming(headers=headers, path=PATH, body=DOCS_BODY))
    fresh.assert_called_once_with(datetime.fromisoformat(DOCS_TIMESTAMP).timestamp(), TIMESTAMP_HEADER)


def test_the_superseded_docs_vector_signs_body_then_timestamp_and_is_refused() -> None:
    """Zendesk's current page says TIMESTAMP + BODY (so do its NodeJS example and every client we found); the
    vector published with the earlier text is BODY + TIMESTAMP. We follow the current text: the old vector is
    refused, and the same secret, body and timestamp signed in the documented order are accepted."""
    body_first = hmac.new(DOCS_SECRET.encode(), DOCS_BODY + DOCS_TIMESTAMP.encode(), hashlib.sha256).digest()
    assert base64.b64encode(body_first).decode() == DOCS_SIGNATURE  # what the old vector is
    with pytest.raises(Refused) as refused:
        verify_at_docs_time(DOCS_SIGNATURE)
    assert refused.value.status == 401
    assert str(refused.value).startswith("X-Zendesk-Webhook-Signature does not match the body")
    verify_at_docs_time(sign(DOCS_SECRET, DOCS_TIMESTAMP, DOCS_BODY))


def stored_counter(app: App, result: str) -> float:
    """``acr_records_stored_total{result=...}`` as /metrics shows it now (counters are per process: compare)."""
    line = f'acr_records_stored_total{{result="{result}"}} '
    found = [row for row in app.client.get("/metrics").text.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


@pytest.mark.slow
def test_a_request_during_a_long_import_gets_503_with_retry_after_then_succeeds(
    start_app: Callable[..., App], db_path: Path
) -> None:
    """As the generic webhook (issue 15, defect 5): an import holds SQLite's write lock for its whole file; a
    platform's request waited for the busy timeout and got a 500. Now: a retryable 503 with Retry-After (Zendesk
    retries it), nothing stored; then the same request is stored and counted in /metrics."""
    zendesk = start_app(zendesk_webhook_secret=SECRET, sqlite_busy_timeout_ms=300)
    importer = open_store(f"sqlite:///{db_path}")  # another process's `acr-bot ingest`, mid-file
    try:
        with importer.bulk() as writer:
            imported = parse_contact({"id": "i1", "customer_id": "k", "started_at": "2025-01-01T00:00:00Z"}, UTC)
            assert isinstance(imported, Contact)
            writer.add([imported])
            response = send(zendesk, CREATED)
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "5"
            assert "busy with another write" in response.json()["error"]
        assert zendesk.stored("zendesk") == {}
        inserted_before = stored_counter(zendesk, "inserted")
        retried = send(zendesk, CREATED)
        assert retried.status_code == 200 and retried.json()["inserted"] == 1
        assert stored_counter(zendesk, "inserted") == inserted_before + 1
        assert set(zendesk.stored("zendesk")) == {"5158"}
    finally:
        importer.close()
