"""Chatwoot: conversation events from an account webhook (Settings, Integrations, Webhooks), Chatwoot 4.11.2+.

Signed as Chatwoot does since 4.11.2: ``X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(webhook secret,
"{timestamp}.{body}")>`` with the unix timestamp in ``X-Chatwoot-Timestamp``. A conversation is one contact;
``conversation_created``, ``conversation_updated``, ``conversation_status_changed`` (and the older
``conversation_opened`` / ``conversation_resolved``) carry the whole conversation, so each maps to its current record.
"""

from __future__ import annotations

import re
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
    mapping,
    text,
)

SIGNATURE_HEADER = "X-Chatwoot-Signature"
TIMESTAMP_HEADER = "X-Chatwoot-Timestamp"
CONVERSATION_EVENTS = frozenset(
    {
        "conversation_created",
        "conversation_updated",
        "conversation_status_changed",
        "conversation_opened",
        "conversation_resolved",
    }
)
# the conversation's channel (its inbox type) -> our channel (anything else: other)
CHANNELS = {
    "Channel::WebWidget": "chat",
    "Channel::Email": "email",
    "Channel::Sms": "sms",
    "Channel::TwilioSms": "sms",
    "Channel::Whatsapp": "social",
    "Channel::FacebookPage": "social",
    "Channel::Instagram": "social",
    "Channel::TwitterProfile": "social",
    "Channel::Telegram": "social",
    "Channel::Line": "social",
    "Channel::Voice": "phone",
}
_UNIX_SECONDS = re.compile(r"[0-9]{1,15}")


class Chatwoot(Platform):
    name = "chatwoot"
    title = "Chatwoot"
    secret_setting = "chatwoot_webhook_secret"

    def verify(self, incoming: Incoming) -> None:
        assert self.secret is not None
        stamp = incoming.headers.get(TIMESTAMP_HEADER)
        if stamp is None:
            raise Refused(401, f"missing {TIMESTAMP_HEADER} header (Chatwoot 4.11.2 or later signs its webhooks)")
        if not _UNIX_SECONDS.fullmatch(stamp.strip()):
            raise Refused(401, f"{TIMESTAMP_HEADER} must be whole unix seconds, got {stamp[:40]!r}")
        check_fresh(int(stamp), TIMESTAMP_HEADER)
        digest = hmac_digest(self.secret, stamp.strip().encode() + b"." + incoming.body, "sha256").hex()
        check_digest(
            "sha256=" + digest,
            incoming.headers.get(SIGNATURE_HEADER),
            SIGNATURE_HEADER,
            "sha256= hex HMAC-SHA256 of '{timestamp}.{body}' with CHATWOOT_WEBHOOK_SECRET",
        )

    def decode(self, incoming: Incoming) -> list[Event]:
        return json_event(incoming, "event", 'a Chatwoot webhook event: {"event": ..., ...}')

    def records(self, event: Event) -> list[dict[str, Any]]:
        """A conversation event -> the conversation as one contact; any other event (messages ...) -> none."""
        value = event.value
        if value["event"] not in CONVERSATION_EVENTS:
            return []
        meta = mapping(value.get("meta"))
        sender = mapping(meta.get("sender"))
        customer = first_text(
            sender.get("identifier"), sender.get("email"), sender.get("phone_number"), sender.get("id")
        )
        if customer is None:
            return []
        record: dict[str, Any] = {"id": text(value.get("id")), "source": self.name, "customer_id": customer}
        assignee = meta.get("assignee")
        if isinstance(assignee, dict) and (agent := text(assignee.get("id"))) is not None:
            record["agent"] = agent
        team = meta.get("team")
        if isinstance(team, dict) and (team_name := text(team.get("name"))) is not None:
            record["team"] = team_name
        channel = value.get("channel")
        record["channel"] = CHANNELS.get(channel, "other") if isinstance(channel, str) else "other"
        # created_at since Chatwoot 2.x; older payloads only date their messages and last activity.
        messages = value.get("messages") if isinstance(value.get("messages"), list) else []
        message_times = [
            m["created_at"] for m in messages if isinstance(m, dict) and isinstance(m.get("created_at"), int)
        ]
        started = value.get("created_at")
        if started is None:
            started = min(message_times) if message_times else value.get("timestamp")
        if started is not None:
            record["started_at"] = started
        updated = value.get("updated_at") if value.get("updated_at") is not None else value.get("timestamp")
        if updated is not None:
            record["updated_at"] = updated
        if value.get("status") == "resolved" and updated is not None:
            record["ended_at"] = updated
            record["resolved"] = True
        return [record]
