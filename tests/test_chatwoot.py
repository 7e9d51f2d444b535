"""``POST /webhooks/chatwoot``: signed Chatwoot conversation events over real HTTP into the real app.

Payload: ``tests/payloads/chatwoot-conversation-status-changed.json``, the ``conversation_status_changed`` sample of
Chatwoot's own documentation: chatwoot/docs, docs/product/others/webhook-events.md (commit
eb65c964b9b20374f4d973c8d3e025574034d56e), copied value for value.

Signature: Chatwoot's since 4.11.2 (chatwoot/chatwoot pull request #13573, lib/webhooks/trigger.rb):
X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>, X-Chatwoot-Timestamp in unix seconds,
receivers to refuse timestamps more than about 5 minutes old. No test vector is published: Chatwoot's own spec
(spec/lib/webhooks/trigger_spec.rb) recomputes the expected signature from the timestamp of each run.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from metrics.timeutil import iso_utc
from tests.platform_support import PAYLOADS, App

SECRET = "chatwoot-webhook-secret"
PATH = "/webhooks/chatwoot"
CHANGED = orjson.loads((PAYLOADS / "chatwoot-conversation-status-changed.json").read_bytes())


def send(app: App, event: Any, *, secret: str = SECRET, stamp: int | str | None = None,
         signature: str | None = None, gzipped: bool = False) -> httpx.Response:  # fmt: skip
    body = event if isinstance(event, bytes) else orjson.dumps(event)
    stamp = str(int(time.time()) if stamp is None else stamp)
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Chatwoot-Timestamp": stamp,
        "X-Chatwoot-Signature": signature or f"sha256={digest}",
        "X-Chatwoot-Delivery": "d-1",
    }
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return app.client.post(PATH, content=body, headers=headers)


@pytest.fixture
def chatwoot(start_app: Callable[..., App]) -> App:
    return start_app(chatwoot_webhook_secret=SECRET)


def test_a_conversation_event_is_one_contact(chatwoot: App) -> None:
    response = send(chatwoot, CHANGED)
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == 1
    row = chatwoot.stored("chatwoot")["10"]
    assert (row["customer_id"], row["agent"], row["channel"], row["resolved"]) == ("jane@acme.inc", "1", "chat", None)
    assert iso_utc(row["started_us"]) == "2021-07-23T18:02:49Z"  # the first message: the sample has no created_at


def test_resolved_reopened_and_reassigned(chatwoot: App) -> None:
    resolved = {**CHANGED, "status": "resolved", "timestamp": 1627063600, "created_at": 1627063300}
    assert send(chatwoot, resolved).json()["inserted"] == 1
    row = chatwoot.stored("chatwoot")["10"]
    assert (iso_utc(row["ended_us"]), row["resolved"]) == ("2021-07-23T18:06:40Z", 1)
    reassigned = {
        **resolved,
        "status": "open",
        "timestamp": 1627063900,
        "meta": {**CHANGED["meta"], "assignee": {"id": 7, "type": "user"}, "team": {"id": 3, "name": "billing"}},
        "event": "conversation_updated",
    }
    assert send(chatwoot, reassigned, gzipped=True).json()["updated"] == 1
    row = chatwoot.stored("chatwoot")["10"]
    assert (row["agent"], row["team"], row["ended_us"], row["resolved"]) == ("7", "billing", None, None)
    assert send(chatwoot, resolved).json()["stale"] == 1  # an earlier event, delivered late
    assert send(chatwoot, reassigned).json()["unchanged"] == 1


def test_events_that_are_not_conversations_are_ignored(chatwoot: App) -> None:
    message = {"event": "message_created", "id": 118, "content": "hi", "conversation": {"id": 10}}
    widget = {"event": "webwidget_triggered", "id": 12, "contact": {"id": 14}}
    for event in (message, widget):
        assert send(chatwoot, event).json()["ignored"] == 1
    assert chatwoot.store.count_contacts() == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"signature": "sha256=" + "0" * 64}, "X-Chatwoot-Signature does not match the body"),
        ({"secret": "someone-else"}, "X-Chatwoot-Signature does not match the body"),
        ({"stamp": int(time.time()) - 3600}, "s old"),
        ({"stamp": "soon"}, "must be whole unix seconds"),
    ],
)
def test_forged_or_stale_requests_are_401(chatwoot: App, change: dict[str, Any], message: str) -> None:
    response = send(chatwoot, CHANGED, **change)
    assert response.status_code == 401
    assert message in response.json()["error"]
    assert chatwoot.store.count_contacts() == 0


def test_malformed_bodies_store_nothing(chatwoot: App) -> None:
    assert send(chatwoot, b"[1, 2").status_code == 400
    assert send(chatwoot, {"id": 10}).status_code == 400  # no event name
    assert send(chatwoot, {**CHANGED, "id": None}).status_code == 422
    assert chatwoot.store.count_contacts() == 0


def test_without_the_secret_the_endpoint_is_disabled(start_app: Callable[..., App]) -> None:
    response = send(start_app(), CHANGED)
    assert response.status_code == 503
    assert "CHATWOOT_WEBHOOK_SECRET is not set" in response.json()["error"]
