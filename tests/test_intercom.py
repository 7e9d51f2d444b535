"""``POST /webhooks/intercom``: signed Intercom conversation notifications over real HTTP into the real app.

Payload: ``tests/payloads/intercom-conversation-admin-closed.json``, a ``conversation.admin.closed`` notification as
Intercom sent it: ``input.body`` of hull/hull-connectors,
packages/connectors/hull-intercom/test/unit/purplefusion/fixtures/webhook-conversation-admin-closed.js (commit
cdbb01befdbffc1e76504adeb8d01fcb43a9b6ae), the recorded input of a webhook test in Hull's Intercom connector, copied
value for value; and ``tests/payloads/intercom-sample-conversation-admin-closed.json``, Intercom's own sample of that
notification, byte for byte: intercom-archive/intercom-webhooks, sample_webhook_output/conversation.admin.closed.txt
(commit 69a389a926f9e36a2c167d588d5df7f454d90f10). Topics and envelope as in
developers.intercom.com/docs/references/webhooks/webhook-models.

Signature: Intercom's "Signed Notifications" (developers.intercom.com/intercom-api-reference/v1.0/reference/
signed-notifications): X-Hub-Signature: sha1=<hex HMAC-SHA1(client secret, body)>. No test vector is published: that
page's example request shows sha1=21ff2e149e0fdcac6f947740f6177f6434bda921 but not the secret that signed it, and
Intercom's sample receivers (intercom-archive/intercom-webhooks) publish none either.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from metrics.timeutil import iso_utc
from tests.platform_support import PAYLOADS, App

SECRET = "intercom-client-secret"
PATH = "/webhooks/intercom"
CLOSED = orjson.loads((PAYLOADS / "intercom-conversation-admin-closed.json").read_bytes())
INTERCOM_SAMPLE = (PAYLOADS / "intercom-sample-conversation-admin-closed.json").read_bytes()


def send(app: App, event: Any, *, secret: str = SECRET, signature: str | None = None) -> httpx.Response:
    body = event if isinstance(event, bytes) else orjson.dumps(event)
    signed = signature or "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return app.client.post(PATH, content=body, headers={"Content-Type": "application/json", "X-Hub-Signature": signed})


def conversation(**changes: Any) -> dict[str, Any]:
    """The notification with its conversation changed."""
    event = copy.deepcopy(CLOSED)
    event["data"]["item"].update(changes)
    return event


@pytest.fixture
def intercom(start_app: Callable[..., App]) -> App:
    return start_app(intercom_client_secret=SECRET)


def test_a_closed_conversation_is_one_resolved_contact(intercom: App) -> None:
    response = send(intercom, CLOSED)
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == 1
    row = intercom.stored("intercom")["137324500000000"]
    assert (row["customer_id"], row["agent"], row["channel"], row["resolved"]) == (
        "234523452345345",
        "3330619",
        "chat",
        1,
    )
    assert row["direction"] == "outbound"  # the first message is the admin's: the center started it
    assert [iso_utc(row[k]) for k in ("started_us", "ended_us", "updated_us")] == [
        "2020-08-05T13:40:05Z",
        "2020-08-05T13:49:28Z",
        "2020-08-05T13:49:28Z",
    ]


def test_intercoms_own_sample_a_visitor_conversation_closed_by_an_admin(intercom: App) -> None:
    """Intercom's sample, sent as its bytes: a user with no user_id or email is counted by its Intercom id."""
    response = send(intercom, INTERCOM_SAMPLE)
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == 1
    row = intercom.stored("intercom")["4584686769"]
    assert (row["customer_id"], row["agent"], row["channel"], row["direction"], row["resolved"]) == (
        "57179c30c776e05d4c0002a8", "266487", "chat", "inbound", 1)  # fmt: skip
    assert [iso_utc(row[k]) for k in ("started_us", "ended_us")] == ["2016-04-20T15:12:21Z", "2016-04-20T15:13:30Z"]
    assert row["raw"] == INTERCOM_SAMPLE.decode()  # kept as delivered


def test_api_2_conversations_reopened_and_reassigned(intercom: App) -> None:
    """Since API 2.0 the conversation names its contacts, admin assignee and source."""
    item = {
        "contacts": {
            "type": "contact.list",
            "contacts": [{"type": "contact", "id": "6329bd", "external_id": "crm-77"}],
        },
        "admin_assignee_id": 991,
        "source": {"type": "email", "delivered_as": "customer_initiated", "author": {"type": "user", "id": "6329bd"}},
        "conversation_message": None,
        "user": None,
        "assignee": None,
    }
    opened = conversation(**item, state="open", open=True, updated_at=1596635000)
    assert send(intercom, opened).json()["inserted"] == 1
    row = intercom.stored("intercom")["137324500000000"]
    assert (row["customer_id"], row["agent"], row["channel"], row["direction"]) == ("crm-77", "991", "email", "inbound")
    assert (row["ended_us"], row["resolved"]) == (None, None)
    closed = conversation(
        **{**item, "admin_assignee_id": 992}, statistics={"last_close_at": 1596635400}, updated_at=1596635401
    )
    assert send(intercom, closed).json()["updated"] == 1
    row = intercom.stored("intercom")["137324500000000"]
    assert (row["agent"], iso_utc(row["ended_us"]), row["resolved"]) == ("992", "2020-08-05T13:50:00Z", 1)
    assert send(intercom, opened).json()["stale"] == 1  # the earlier notification, re-sent late
    assert send(intercom, closed).json()["unchanged"] == 1  # and a retried one


def test_other_topics_are_ignored(intercom: App) -> None:
    ping = {"type": "notification_event", "topic": "ping", "data": {"item": {"type": "ping", "message": "hi"}}}
    user = {**CLOSED, "topic": "user.created", "data": {"item": {"type": "user", "id": "u1"}}}
    deleted = {**CLOSED, "topic": "conversation.deleted"}
    for event in (ping, user, deleted):
        assert send(intercom, event).json()["ignored"] == 1
    assert intercom.store.count_contacts() == 0


@pytest.mark.parametrize(
    "change",
    [{"signature": "sha1=" + "0" * 40}, {"secret": "someone-else"}, {"signature": "sha256=abc"}],
)
def test_a_bad_signature_is_401_and_stores_nothing(intercom: App, change: dict[str, str]) -> None:
    response = send(intercom, CLOSED, **change)
    assert response.status_code == 401
    assert "X-Hub-Signature does not match the body" in response.json()["error"]
    unsigned = intercom.client.post(PATH, content=orjson.dumps(CLOSED), headers={"Content-Type": "application/json"})
    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "missing X-Hub-Signature header")
    assert intercom.store.count_contacts() == 0


def test_malformed_bodies_store_nothing(intercom: App) -> None:
    assert send(intercom, b"not json").status_code == 400
    assert send(intercom, {"type": "notification_event"}).status_code == 400  # no topic
    assert send(intercom, conversation(created_at="whenever")).status_code == 422
    assert intercom.store.count_contacts() == 0


def test_without_the_secret_the_endpoint_is_disabled(start_app: Callable[..., App]) -> None:
    response = send(start_app(), CLOSED)
    assert response.status_code == 503
    assert "INTERCOM_CLIENT_SECRET is not set" in response.json()["error"]
