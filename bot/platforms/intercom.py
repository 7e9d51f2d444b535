"""Intercom: conversation notifications from an app's webhook subscriptions (Developer Hub, Webhooks).

Signed as Intercom documents ("Signed notifications"): ``X-Hub-Signature: sha1=<hex HMAC-SHA1(client secret,
body)>``. The scheme has no timestamp; a replayed notification is harmless (idempotent, and an older
``updated_at`` is stale). A conversation is one contact; every ``conversation.*`` notification carries the whole
conversation in ``data.item``, in the API version the app uses (``user``/``assignee`` before 2.0,
``contacts``/``admin_assignee_id``/``source`` since), so each maps to its current record.
"""

from __future__ import annotations

from typing import Any

from bot.platforms.base import Event, Incoming, Platform, check_digest, first_text, hmac_digest, json_event

SIGNATURE_HEADER = "X-Hub-Signature"
# source.type of a conversation (API 2.x) -> our channel (anything else: other)
CHANNELS = {
    "conversation": "chat",
    "chat": "chat",
    "email": "email",
    "phone_call": "phone",
    "call": "phone",
    "sms": "sms",
    "whatsapp": "social",
    "facebook": "social",
    "instagram": "social",
    "twitter": "social",
}


class Intercom(Platform):
    name = "intercom"
    title = "Intercom"
    secret_setting = "intercom_client_secret"

    def verify(self, incoming: Incoming) -> None:
        assert self.secret is not None
        expected = "sha1=" + hmac_digest(self.secret, incoming.body, "sha1").hex()
        given = incoming.headers.get(SIGNATURE_HEADER)
        check_digest(expected, given, SIGNATURE_HEADER, "sha1= hex HMAC-SHA1 of the body with INTERCOM_CLIENT_SECRET")

    def decode(self, incoming: Incoming) -> list[Event]:
        return json_event(incoming, "topic", 'an Intercom notification: {"type": "notification_event", "topic": ...}')

    def records(self, event: Event) -> list[dict[str, Any]]:
        """A conversation notification -> the conversation as one contact; any other topic (ping ...) -> none."""
        value = event.value
        data = value.get("data")
        item = data.get("item") if isinstance(data, dict) else None
        if not value["topic"].startswith("conversation.") or not isinstance(item, dict):
            return []
        if value["topic"] == "conversation.deleted":
            return []
        customer = _customer(item)
        if customer is None:
            return []
        record: dict[str, Any] = {"id": first_text(item.get("id")), "source": self.name, "customer_id": customer}
        assignee = item.get("assignee")
        agent = first_text(
            item.get("admin_assignee_id"),
            assignee.get("id") if isinstance(assignee, dict) and assignee.get("type") == "admin" else None,
        )
        if agent is not None:
            record["agent"] = agent
        source = item.get("source")
        source = source if isinstance(source, dict) else {}
        kind = source.get("type")
        record["channel"] = CHANNELS.get(kind, "other") if isinstance(kind, str) else "chat"
        first_message = item.get("conversation_message")
        started_by_admin = isinstance(first_message, dict) and _author_type(first_message) == "admin"
        if source.get("delivered_as") == "admin_initiated" or _author_type(source) == "admin" or started_by_admin:
            record["direction"] = "outbound"
        if (created := item.get("created_at")) is not None:
            record["started_at"] = created
        if (updated := item.get("updated_at")) is not None:
            record["updated_at"] = updated
        if item.get("state") == "closed" or item.get("open") is False:
            statistics = item.get("statistics")
            closed = statistics.get("last_close_at") if isinstance(statistics, dict) else None
            if (ended := closed if closed is not None else updated) is not None:
                record["ended_at"] = ended
            record["resolved"] = True
        return [record]


def _customer(item: dict[str, Any]) -> str | None:
    """The customer: the first contact's external id (or Intercom id) since API 2.0; the user's before."""
    contacts = item.get("contacts")
    if isinstance(contacts, dict) and isinstance(contacts.get("contacts"), list) and contacts["contacts"]:
        first = contacts["contacts"][0]
        if isinstance(first, dict):
            return first_text(first.get("external_id"), first.get("id"))
    user = item.get("user")
    if isinstance(user, dict):
        return first_text(user.get("user_id"), user.get("email"), user.get("id"))
    return None


def _author_type(part: dict[str, Any]) -> object:
    author = part.get("author")
    return author.get("type") if isinstance(author, dict) else None
