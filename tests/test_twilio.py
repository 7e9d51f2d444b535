"""``POST /webhooks/twilio``: signed TaskRouter event callbacks over real HTTP into the real app.

Signature vectors: twilio-python's own tests, twilio/twilio-python tests/unit/test_request_validator.py (commit
e2df36ac5141ce5b540b2de72a520cd2b39e81cd: auth token "12345", URL https://mycompany.com/myapp.php?foo=1&bar=2, its
parameters and expected signatures, with and without ports; the duplicate-parameter vector IK+Dwps556ElfBT0I3Rgjkr1wJU=
of test_compute_signature_duplicate_multi_dict is in a later version of the same file).
Event callbacks: the form parameters of twilio.com/docs/taskrouter/api/event/reference ("Event Callbacks": EventType,
AccountSid, WorkspaceSid, WorkspaceName, EventDescription, ResourceType, ResourceSid, Timestamp, and the Task and
Worker field data of reservation and task events), with our own values.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest

from bot.platforms.twilio import _url_forms, signature
from metrics.timeutil import iso_utc
from tests.platform_support import App

TOKEN = "twilio-auth-token-0123"
PUBLIC_URL = "https://acr.example.com"
PATH = "/webhooks/twilio"
TASK = "WT8f2d3c6a0b1e4d5f6a7b8c9d0e1f2a3b"
ATTRIBUTES = {"from": "+15558675310", "direction": "inbound", "customers": {"phone": "+15558675310"}}


def event(kind: str, timestamp: int, **extra: str) -> dict[str, str]:
    """A TaskRouter event callback's parameters."""
    params = {
        "EventType": kind,
        "AccountSid": "AC0000000000000000000000000000001",
        "WorkspaceSid": "WS0000000000000000000000000000001",
        "WorkspaceName": "Flex Task Assignment",
        "EventDescription": f"{kind} for Task {TASK}",
        "ResourceType": "Reservation" if kind.startswith("reservation.") else "Task",
        "ResourceSid": TASK,
        "Timestamp": str(timestamp),
        "TaskSid": TASK,
        "TaskAttributes": orjson.dumps(ATTRIBUTES).decode(),
        "TaskAge": str(timestamp - 1_736_330_000),
        "TaskPriority": "0",
        "TaskAssignmentStatus": "assigned",
        "TaskChannelUniqueName": "voice",
        "TaskQueueSid": "WQ0000000000000000000000000000001",
    }
    if kind.startswith("reservation."):
        params |= {"WorkerSid": "WK0000000000000000000000000000001", "WorkerName": "alice",
                   "ReservationSid": "WR0000000000000000000000000000001"}  # fmt: skip
    return params | extra


def send(app: App, params: dict[str, str] | bytes, *, token: str = TOKEN, url: str | None = None,
         given: str | None = None, gzipped: bool = False) -> httpx.Response:  # fmt: skip
    body = params if isinstance(params, bytes) else urlencode(params).encode()
    fields: dict[str, list[str]] = {}
    if isinstance(params, dict):
        for name, value in params.items():
            fields.setdefault(name, []).append(value)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": given or signature(token.encode(), url or PUBLIC_URL + PATH, fields),
    }
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return app.client.post(PATH, content=body, headers=headers)


@pytest.fixture
def twilio(start_app: Callable[..., App]) -> App:
    return start_app(twilio_auth_token=TOKEN, public_url=PUBLIC_URL + "/")


# --- twilio-python's published vectors ---------------------------------------------------------------------

VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": ["CA1234567890ABCDE"],
    "Digits": ["1234"],
    "From": ["+14158675309"],
    "To": ["+18005551212"],
    "Caller": ["+14158675309"],
}


def test_signature_matches_twilio_pythons_vectors() -> None:
    assert signature(b"12345", VECTOR_URL, VECTOR_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    duplicates = {"Sid": ["CA123"], "SidAccount": ["AC123"], "Digits": ["5678", "1234", "1234"]}  # sorted, deduplicated
    assert signature(b"12345", VECTOR_URL, duplicates) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (VECTOR_URL.replace(".com", ".com:1234"), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),  # removes the port on https
        (VECTOR_URL.replace(".com", ".com:1234").replace("https", "http"), "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
        (VECTOR_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),  # adds the port on https
        (VECTOR_URL.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4="),  # adds the port on http
    ],
)
def test_urls_are_tried_with_and_without_their_port_like_twilio_python(url: str, expected: str) -> None:
    assert expected in {signature(b"12345", form, VECTOR_PARAMS) for form in _url_forms(url)}


# --- the endpoint --------------------------------------------------------------------------------------


def test_a_task_is_one_contact_from_queue_to_wrap_up(twilio: App) -> None:
    created = send(twilio, event("task.created", 1_736_330_000))
    assert created.status_code == 200, created.text
    row = twilio.stored("twilio")[TASK]
    assert (row["customer_id"], row["agent"], row["channel"], row["queue"]) == (
        "+15558675310", None, "phone", "WQ0000000000000000000000000000001")  # fmt: skip
    assert send(twilio, event("reservation.accepted", 1_736_330_042)).json()["updated"] == 1
    assert send(twilio, event("reservation.wrapup", 1_736_330_400)).json()["updated"] == 1
    row = twilio.stored("twilio")[TASK]
    assert row["agent"] == "WK0000000000000000000000000000001"
    assert (iso_utc(row["started_us"]), iso_utc(row["ended_us"])) == ("2025-01-08T09:53:20Z", "2025-01-08T10:00:00Z")


def test_duplicates_older_events_and_reassignment(twilio: App) -> None:
    wrapup = event("reservation.wrapup", 1_736_330_400)
    assert send(twilio, wrapup).json()["inserted"] == 1
    assert send(twilio, wrapup, gzipped=True).json()["unchanged"] == 1  # Twilio retries
    assert send(twilio, event("reservation.accepted", 1_736_330_042)).json()["stale"] == 1
    other_worker = event("reservation.completed", 1_736_330_500, WorkerSid="WK0000000000000000000000000000002")
    assert send(twilio, other_worker).json()["updated"] == 1
    assert twilio.stored("twilio")[TASK]["agent"] == "WK0000000000000000000000000000002"


def test_events_that_are_not_contacts_are_ignored(twilio: App) -> None:
    worker = {"EventType": "worker.activity.update", "WorkerSid": "WK1", "Timestamp": "1736330000"}
    nobody = event("task.created", 1_736_330_000, TaskAttributes="{}")  # no customer to count
    for params in (worker, event("task.updated", 1_736_330_000), nobody):
        response = send(twilio, params)
        assert response.status_code == 200
        assert response.json()["ignored"] == 1
    assert twilio.store.count_contacts() == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"given": "bm9wZQ=="}, "X-Twilio-Signature does not match"),
        ({"token": "another-token"}, "X-Twilio-Signature does not match"),
        ({"url": "http://127.0.0.1:3000" + PATH}, "is PUBLIC_URL the URL Twilio calls?"),
    ],
)
def test_a_bad_signature_is_401_and_stores_nothing(twilio: App, change: dict[str, Any], message: str) -> None:
    response = send(twilio, event("task.created", 1_736_330_000), **change)
    assert response.status_code == 401
    assert message in response.json()["error"]
    assert twilio.store.count_contacts() == 0


def test_malformed_bodies_store_nothing(twilio: App) -> None:
    assert send(twilio, {"TaskSid": TASK}).status_code == 400  # no EventType
    assert send(twilio, b"%zz=\xff").status_code in (400, 401)
    assert send(twilio, event("task.created", 1_736_330_000, TaskAge="x", Timestamp="later")).status_code == 422
    assert twilio.store.count_contacts() == 0


def test_the_endpoint_needs_the_token_and_the_public_url(start_app: Callable[..., App]) -> None:
    response = send(start_app(twilio_auth_token=TOKEN), event("task.created", 1_736_330_000))
    assert response.status_code == 503
    assert "PUBLIC_URL is not set" in response.json()["error"]
