"""What one adapter asks of another, so ``bot/slack`` and ``bot/scheduler`` never import each other.

``bot/scheduler`` implements ``Schedules`` (``ScheduleManager``); ``acr-bot serve`` builds it and hands it to the
Slack listeners, which know nothing else of the scheduler. The alert buttons' action ids live here because the
scheduler draws the buttons and Slack routes their clicks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.presentation import Message

SNOOZE_ACTION = "acr_alert_snooze"
ACK_ACTION = "acr_alert_ack"
ALERT_ACTIONS = (SNOOZE_ACTION, ACK_ACTION)


@dataclass(frozen=True, slots=True)
class Pressed:
    """What a button press did: the note to show, and whether it changed anything (then it goes in the thread)."""

    message: Message
    ok: bool


class Schedules(Protocol):
    """Digests and alerts managed from Slack: ``/acr subscribe|unsubscribe|subscriptions|alert|alerts ...`` and
    the alert messages' Snooze / Acknowledge buttons. Who may use them is the caller's decision."""

    @property
    def words(self) -> tuple[str, ...]:
        """The first words after ``/acr`` that are schedule commands."""
        ...

    def run(self, words: list[str], user_id: str | None, here: str | None) -> Message:
        """Run the command ``words`` for ``user_id``, typed in channel ``here``; a confirmation or a list.

        :raises UserError: the words are wrong (the message carries the usage) or name nothing that exists.
        """
        ...

    def press(self, action_id: str, value: str, user_id: str | None) -> Pressed:
        """Snooze or acknowledge the alert episode named by a button's ``value``. Never raises UserError."""
        ...
