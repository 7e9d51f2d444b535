"""Twilio Flex / TaskRouter: the Workspace's event callbacks (Workspace settings, Event Callback URL).

Signed as Twilio signs every webhook: ``X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + each POST
parameter's name and value, sorted))``, where the URL is the one Twilio called: ``PUBLIC_URL`` + the path (and
query). Like Twilio's own validator, the URL is also tried with its default port added or removed. The scheme has
no timestamp; a replayed event is harmless (idempotent, and an older ``Timestamp`` is stale).

A task is one contact. The reservation events name the worker, so they carry the whole contact; ``task.created``
and ``task.canceled`` give the task before any worker took it (queued, or abandoned). The other events (workers,
queues, task updates) are not contacts.
"""

from __future__ import annotations

import base64
import hmac
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import orjson

from bot.platforms.base import Event, Incoming, Platform, Refused, first_text, hmac_digest, mapping, text
from bot.settings import Settings

SIGNATURE_HEADER = "X-Twilio-Signature"
WORKER_EVENTS = frozenset({"reservation.accepted", "reservation.wrapup", "reservation.completed"})
ENDED_EVENTS = frozenset({"reservation.wrapup", "reservation.completed", "task.canceled"})
TASK_EVENTS = frozenset({"task.created", "task.canceled"})
CHANNELS = {"voice": "phone", "chat": "chat", "sms": "sms", "email": "email", "video": "video"}
_DEFAULT_PORTS = {"https": 443, "http": 80}


class Twilio(Platform):
    name = "twilio"
    title = "Twilio Flex"
    secret_setting = "twilio_auth_token"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.public_url = (settings.public_url or "").rstrip("/")

    def unset_settings(self) -> list[str]:
        return [*super().unset_settings(), *([] if self.public_url else ["PUBLIC_URL"])]

    def verify(self, incoming: Incoming) -> None:
        assert self.secret is not None
        given = incoming.headers.get(SIGNATURE_HEADER)
        if given is None:
            raise Refused(401, f"missing {SIGNATURE_HEADER} header")
        params = _form(incoming.body)
        url = self.public_url + incoming.path
        signed = given.strip().encode()
        if not any(hmac.compare_digest(signature(self.secret, u, params).encode(), signed) for u in _url_forms(url)):
            raise Refused(
                401,
                f"{SIGNATURE_HEADER} does not match (base64 HMAC-SHA1 with TWILIO_AUTH_TOKEN of {url} followed by "
                "the sorted parameters; is PUBLIC_URL the URL Twilio calls?)",
            )

    def decode(self, incoming: Incoming) -> list[Event]:
        params = _form(incoming.body)
        if "EventType" not in params:
            raise Refused(400, "expected a TaskRouter event callback: form parameters with EventType")
        event = {name: values[0] for name, values in params.items()}
        return [Event(event, orjson.dumps(event).decode())]

    def records(self, event: Event) -> list[dict[str, Any]]:
        """A reservation or task event -> the task as one contact; any other event -> none."""
        value = event.value
        kind = value["EventType"]
        if kind not in WORKER_EVENTS and kind not in TASK_EVENTS:
            return []
        attributes = _attributes(value.get("TaskAttributes"))
        customers = mapping(attributes.get("customers"))
        customer = first_text(
            customers.get("external_id"),
            customers.get("phone"),
            customers.get("email"),
            attributes.get("from"),
            attributes.get("caller"),
            attributes.get("customerAddress"),
            attributes.get("name"),
        )
        if customer is None:
            return []
        record: dict[str, Any] = {"id": text(value.get("TaskSid")), "source": self.name, "customer_id": customer}
        if kind in WORKER_EVENTS and (worker := text(value.get("WorkerSid"))) is not None:
            record["agent"] = worker
        if (queue := first_text(value.get("TaskQueueName"), value.get("TaskQueueSid"))) is not None:
            record["queue"] = queue
        channel = value.get("TaskChannelUniqueName")
        record["channel"] = CHANNELS.get(channel, "other") if isinstance(channel, str) else "other"
        if attributes.get("direction") == "outbound":
            record["direction"] = "outbound"
        stamp = text(value.get("Timestamp"))
        moment: float | str | None = int(stamp) if stamp is not None and stamp.isdigit() else stamp
        age = text(value.get("TaskAge"))
        if (created := text(value.get("TaskDateCreated"))) is not None:
            record["started_at"] = created
        elif isinstance(moment, int) and age is not None and age.isdigit():
            record["started_at"] = moment - int(age)
        if moment is not None:
            record["updated_at"] = moment
            if kind in ENDED_EVENTS:
                record["ended_at"] = moment
        return [record]


def signature(secret: bytes, url: str, params: dict[str, list[str]]) -> str:
    """Twilio's request signature of a POST to ``url`` with form ``params`` (twilio-python's compute_signature)."""
    signed = url + "".join(name + value for name in sorted(params) for value in sorted(set(params[name])))
    return base64.b64encode(hmac_digest(secret, signed.encode(), "sha1")).decode()


def _form(body: bytes) -> dict[str, list[str]]:
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "the body is not form-encoded parameters (application/x-www-form-urlencoded)") from None
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params


def _url_forms(url: str) -> list[str]:
    """``url``, then it with the scheme's default port removed or added (Twilio signs either form)."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    host = parts.hostname or ""
    other = (
        parts._replace(netloc=host)
        if parts.port is not None
        else parts._replace(netloc=f"{host}:{default}")
        if default
        else None
    )
    return [url] if other is None else [url, urlunsplit(other)]


def _attributes(value: object) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}
