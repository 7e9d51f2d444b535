"""Zendesk: ticket events from a webhook subscribed to them (Admin Center, Webhooks, "Zendesk events").

Signed as Zendesk documents (developer.zendesk.com/documentation/webhooks/verifying):
``X-Zendesk-Webhook-Signature: base64(HMAC-SHA256(signing secret, timestamp + body))`` with the timestamp
(ISO 8601) in ``X-Zendesk-Webhook-Signature-Timestamp``. A ticket is one contact: every ticket event carries the
whole ticket in ``detail``, so each maps to the ticket's current record, versioned by ``detail.updated_at``.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from bot.platforms.base import (
    Event,
    Incoming,
    Platform,
    Refused,
    check_digest,
    check_fresh,
    first_text,
    hmac_digest,
    json_event,
    text,
)

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
TICKET_EVENT = "zen:event-type:ticket."
SOLVED = frozenset({"SOLVED", "CLOSED"})
# via.channel of the ticket -> our channel (anything else: other)
CHANNELS = {
    "email": "email",
    "mail": "email",
    "web": "other",
    "web_form": "other",
    "web_service": "other",
    "api": "other",
    "voice": "phone",
    "phone_call_inbound": "phone",
    "phone_call_outbound": "phone",
    "chat": "chat",
    "chat_transcript": "chat",
    "native_messaging": "chat",
    "messaging": "chat",
    "sms": "sms",
    "facebook": "social",
    "twitter": "social",
    "instagram_dm": "social",
    "whatsapp": "social",
    "line": "social",
    "wechat": "social",
}


class Zendesk(Platform):
    name = "zendesk"
    title = "Zendesk"
    secret_setting = "zendesk_webhook_secret"

    def verify(self, incoming: Incoming) -> None:
        assert self.secret is not None
        stamp = incoming.headers.get(TIMESTAMP_HEADER)
        if stamp is None:
            raise Refused(401, f"missing {TIMESTAMP_HEADER} header")
        try:
            moment = datetime.fromisoformat(stamp.strip())
        except ValueError:
            raise Refused(401, f"{TIMESTAMP_HEADER} must be an ISO 8601 time, got {stamp[:40]!r}") from None
        if moment.tzinfo is None:
            raise Refused(401, f"{TIMESTAMP_HEADER} has no UTC offset: {stamp[:40]!r}")
        check_fresh(moment.timestamp(), TIMESTAMP_HEADER)
        expected = base64.b64encode(hmac_digest(self.secret, stamp.encode() + incoming.body, "sha256")).decode()
        given = incoming.headers.get(SIGNATURE_HEADER)
        check_digest(
            expected, given, SIGNATURE_HEADER, "base64 HMAC-SHA256 of timestamp + body with ZENDESK_WEBHOOK_SECRET"
        )

    def decode(self, incoming: Incoming) -> list[Event]:
        return json_event(incoming, "type", 'a Zendesk event: {"type": "zen:event-type:...", "detail": {...}, ...}')

    def records(self, event: Event) -> list[dict[str, Any]]:
        """A ticket event -> the ticket as one contact; any other event (user, organization ...) -> none."""
        value = event.value
        detail = value.get("detail")
        if not value["type"].startswith(TICKET_EVENT) or not isinstance(detail, dict):
            return []
        customer = text(detail.get("requester_id"))
        if customer is None:
            return []
        record: dict[str, Any] = {"id": text(detail.get("id")), "source": self.name, "customer_id": customer}
        if (assignee := text(detail.get("assignee_id"))) is not None:
            record["agent"] = assignee
        via = detail.get("via")
        channel = via.get("channel") if isinstance(via, dict) else None
        record["channel"] = CHANNELS.get(channel.lower(), "other") if isinstance(channel, str) else "other"
        if channel == "phone_call_outbound":
            record["direction"] = "outbound"
        if (created := detail.get("created_at")) is not None:
            record["started_at"] = created
        updated = first_text(detail.get("updated_at"), value.get("time"))
        if updated is not None:
            record["updated_at"] = updated
        status = detail.get("status")
        if isinstance(status, str) and status.upper() in SOLVED and updated is not None:
            record["ended_at"] = updated
            record["resolved"] = True
        return [record]
