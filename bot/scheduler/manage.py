"""Managing subscriptions and alert rules: the one place that validates and stores them, for Slack and the CLI.

Every method returns a short confirmation as a ``Message`` (Block Kit + plain text) or raises UserError.
``ScheduleManager`` is the ``bot.ports.Schedules`` that the Slack listeners receive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import tzinfo

from bot.clock import Clock
from bot.ports import SNOOZE_ACTION, Pressed
from bot.presentation import (
    Message,
    error_message,
    escape,
    instant_words,
    is_known_name,
    list_message,
    note_message,
    percent,
)
from bot.scheduler.alerts import BUTTON_SNOOZE_HOURS
from bot.scheduler.digest import rule_words
from bot.scheduler.jobs import schedule_of
from bot.scheduler.times import WEEKDAY_NAMES
from bot.scheduler.words import (
    ALERT_USAGE,
    SCHEDULE_WORDS,
    SUBSCRIBE_USAGE,
    AddAlert,
    ListAlerts,
    ListSubscriptions,
    RemoveAlert,
    ScheduleCommand,
    SnoozeAlert,
    Subscribe,
    Unsubscribe,
    parse_schedule_command,
)
from bot.storage import ContactStore
from bot.storage.schedules import AlertRule, Cadence, Subscription, scope_filters, scope_label
from metrics.errors import UserError
from metrics.timeutil import US_PER_HOUR, from_us

log = logging.getLogger("acr_bot.scheduler")


def channel_mrkdwn(channel: str) -> str:
    """A stored channel as Slack shows it: ``<#C123>`` for an id, the name otherwise."""
    return f"<#{channel}>" if channel[:1] in ("C", "G") and channel.isalnum() else escape(channel)


def subscription_words(subscription: Subscription, zone: tzinfo, mark: Callable[[str], str]) -> str:
    schedule = schedule_of(subscription, zone)
    if subscription.cadence == "weekly" and subscription.cadence_day is not None:
        days = f"weekly on {WEEKDAY_NAMES[subscription.cadence_day].capitalize()}s"
    elif subscription.cadence == "monthly":
        days = f"monthly on day {subscription.cadence_day}"
    else:
        days = "weekdays" if subscription.weekdays_only else "daily"
    return (
        f"#{subscription.id}: {mark(subscription.channel)} {days} at {subscription.local_time} "
        f"{getattr(schedule.zone, 'key', str(schedule.zone))}, {scope_label(subscription.scope)}"
    )


def alert_words(
    rule: AlertRule, zone: tzinfo, now_us: int, mark: Callable[[str], str], text: Callable[[str], str] = str
) -> str:
    state = rule.state
    if state.firing:
        status = f"FIRING since {instant_words(state.fired_us or now_us, zone)}"
        if state.acknowledged_by:
            status += f", acknowledged by {state.acknowledged_by}"
    else:
        status = "ok"
    if state.evaluated_us is not None:
        status += f"; last {percent(state.last_rate)} (n={state.last_matured:,})"
    if rule.snoozed_until_us is not None and rule.snoozed_until_us > now_us:
        status += f"; snoozed until {instant_words(rule.snoozed_until_us, zone)}"
    return f"#{rule.id}: {text(rule_words(rule))} → {mark(rule.channel)} [{text(status)}]"


class ScheduleManager:
    """Adds, lists and removes subscriptions and alert rules; ``on_change`` tells the running scheduler (in
    ``acr-bot serve``: ``SchedulerService.request_sync``)."""

    words = SCHEDULE_WORDS

    def __init__(self, store: ContactStore, zone: tzinfo, clock: Clock, on_change: Callable[[], None] | None = None):
        self.store = store
        self.zone = zone
        self.clock = clock
        self.on_change = on_change

    def run(self, words: list[str], user_id: str | None, here: str | None) -> Message:
        """``/acr subscribe ...`` & co. from Slack: parsed, run, and confirmed (a UserError carries the usage)."""
        try:
            command = parse_schedule_command(words)
            message = self.execute(command, user_id, here)
        except UserError as problem:
            usage = "" if "Usage:" in str(problem) else f" Usage: {SUBSCRIBE_USAGE}; {ALERT_USAGE}"
            raise UserError(f"{problem}{usage}") from None
        if isinstance(command, Subscribe):
            hint = " (A private channel: invite the bot first, /invite @ACR Bot.)"
            return note_message(message.text + hint, message.plain + hint)
        return message

    def press(self, action_id: str, value: str, user_id: str | None) -> Pressed:
        """Snooze (for BUTTON_SNOOZE_HOURS) or acknowledge the alert episode named by a button's value."""
        try:
            rule_text, _, episode_text = value.partition(":")
            rule_id, episode = int(rule_text), int(episode_text)
        except ValueError:
            words = "This button is from an older message and no longer works."
            return Pressed(note_message(words, words), ok=False)
        try:
            if action_id == SNOOZE_ACTION:
                self.snooze(rule_id, BUTTON_SNOOZE_HOURS * US_PER_HOUR, user_id)
                rule = self.store.schedules().alert_rule(rule_id)
                until = from_us(rule.snoozed_until_us or 0, self.zone) if rule else None
                words = f"<@{user_id}> snoozed alert #{rule_id}" + (f" until {until:%a %H:%M %Z}." if until else ".")
            else:
                if not self.store.schedules().acknowledge_alert(rule_id, episode, user_id or "someone"):
                    words = f"Alert #{rule_id} is not firing any more (or was removed): nothing to acknowledge."
                    return Pressed(note_message(words, words), ok=False)
                log.info("alert #%d episode %d acknowledged by %s", rule_id, episode, user_id)
                words = f"<@{user_id}> acknowledged alert #{rule_id}: no more reminders until it recovers."
        except UserError as problem:
            return Pressed(error_message(str(problem)), ok=False)
        return Pressed(note_message(words, words), ok=True)

    def execute(self, command: ScheduleCommand, user_id: str | None, here: str | None) -> Message:
        """Run a parsed command for ``user_id`` typed in channel ``here`` (the default channel)."""
        if isinstance(command, ListSubscriptions):
            return self.list_subscriptions()
        if isinstance(command, ListAlerts):
            return self.list_alerts()
        if isinstance(command, Subscribe):
            channel = _channel(command.channel, here)
            return self.subscribe(
                channel, command.scope, command.local_time, command.zone, command.weekdays_only, user_id,
                cadence=command.cadence, cadence_day=command.cadence_day,
            )  # fmt: skip
        if isinstance(command, Unsubscribe):
            return self.unsubscribe(_channel(command.channel, here), command.scope, command.cadence)
        if isinstance(command, AddAlert):
            return self.add_alert(command, _channel(command.channel, here), user_id)
        if isinstance(command, RemoveAlert):
            return self.remove_alert(command.rule_id)
        assert isinstance(command, SnoozeAlert)
        return self.snooze(command.rule_id, command.duration_us)

    # --- subscriptions ---------------------------------------------------------------------------------

    def subscribe(
        self,
        channel: str,
        scope: str,
        local_time: str,
        zone: str | None,
        weekdays_only: bool,
        user_id: str | None,
        *,
        cadence: Cadence = "daily",
        cadence_day: int | None = None,
    ) -> Message:
        self.check_scope(scope)
        subscription, new = self.store.schedules().save_subscription(
            channel, scope, local_time, zone, weekdays_only, user_id, self.clock.now_us(), cadence, cadence_day
        )
        self._changed()
        log.info("subscription %s by %s: %s", "added" if new else "updated", user_id or "cli", subscription)
        verb = "Subscribed" if new else "Updated"
        schedule = schedule_of(subscription, self.zone)
        _, next_us = schedule.next_after(self.clock.now_us())
        first = f" First digest: {from_us(next_us, schedule.zone):%a %Y-%m-%d %H:%M %Z}."
        return list_message(
            f"{verb} {subscription_words(subscription, self.zone, channel_mrkdwn)}.{first}",
            f"{verb} {subscription_words(subscription, self.zone, str)}.{first}",
        )

    def unsubscribe(self, channel: str, scope: str, cadence: Cadence | None = None) -> Message:
        schedules = self.store.schedules()
        matches = [
            s
            for s in schedules.list_subscriptions()
            if s.channel == channel and s.scope == scope and cadence in (None, s.cadence)
        ]
        if not matches:
            raise UserError(f"no digest subscription for {channel} ({scope_label(scope)}); see /acr subscriptions")
        if len(matches) > 1:
            kinds = " or ".join(s.cadence for s in matches)
            raise UserError(f"{channel} has a {kinds} digest of {scope_label(scope)}: say which, e.g. unsubscribe "
                            f"{channel} {matches[-1].cadence}")  # fmt: skip
        schedules.remove_subscription(matches[0].id)
        self._changed()
        kind = "" if matches[0].cadence == "daily" else f"{matches[0].cadence} "
        return list_message(
            f"Unsubscribed {channel_mrkdwn(channel)} from the {kind}{scope_label(scope)} digest.",
            f"Unsubscribed {channel} from the {kind}{scope_label(scope)} digest.",
        )

    def remove_subscription(self, subscription_id: int) -> Message:
        if not self.store.schedules().remove_subscription(subscription_id):
            raise UserError(f"no subscription #{subscription_id}; see acr-bot subscriptions list")
        self._changed()
        return list_message(f"Removed subscription #{subscription_id}.", f"Removed subscription #{subscription_id}.")

    def list_subscriptions(self) -> Message:
        subscriptions = self.store.schedules().list_subscriptions()
        if not subscriptions:
            text = "No digest subscriptions yet. Add one with /acr subscribe #channel daily 09:00 [team:NAME]"
            return list_message(text, text)
        return list_message(
            "\n".join(subscription_words(s, self.zone, channel_mrkdwn) for s in subscriptions),
            "\n".join(subscription_words(s, self.zone, str) for s in subscriptions),
        )

    # --- alerts ----------------------------------------------------------------------------------------

    def add_alert(self, command: AddAlert, channel: str, user_id: str | None) -> Message:
        note = self.check_scope(command.scope)
        rule = self.store.schedules().add_alert_rule(
            command.metric,
            command.threshold,
            command.window_us,
            command.last_days,
            command.scope,
            command.min_matured,
            channel,
            command.strict,
            user_id,
            self.clock.now_us(),
        )
        log.info("alert rule #%d added by %s: %s", rule.id, user_id or "cli", rule_words(rule))
        return list_message(
            f"Added alert #{rule.id}: {escape(rule_words(rule))} → {channel_mrkdwn(channel)}.{escape(note)} It is "
            "checked on the alert schedule.",
            f"Added alert #{rule.id}: {rule_words(rule)} -> {channel}.{note}",
        )

    def check_scope(self, scope: str) -> str:
        """Refuse a likely typo in a scope (a close match exists in the data); accept a new name with a note."""
        filters = scope_filters(scope)
        if not filters:
            return ""
        dimension, value = filters[0]
        if is_known_name(dimension, value, self.store.dimension_values(dimension)):
            return ""
        return f" (no contacts for {dimension} {value} yet)"

    def remove_alert(self, rule_id: int) -> Message:
        if not self.store.schedules().remove_alert_rule(rule_id):
            raise UserError(f"no alert rule #{rule_id}; see /acr alerts")
        return list_message(f"Removed alert #{rule_id}.", f"Removed alert #{rule_id}.")

    def snooze(self, rule_id: int, duration_us: int, user_id: str | None = None) -> Message:
        until_us = self.clock.now_us() + duration_us
        if not self.store.schedules().snooze_alert_rule(rule_id, until_us):
            raise UserError(f"no alert rule #{rule_id}; see /acr alerts")
        until = from_us(until_us, self.zone)
        log.info("alert #%d snoozed until %s by %s", rule_id, until.isoformat(), user_id or "cli")
        text = f"Alert #{rule_id} is snoozed until {until:%a %Y-%m-%d %H:%M %Z}."
        return list_message(text, text)

    def list_alerts(self) -> Message:
        rules = self.store.schedules().list_alert_rules()
        if not rules:
            text = "No alert rules yet. Add one with /acr alert tier1 below 75% team:NAME #channel"
            return list_message(text, text)
        now_us = self.clock.now_us()
        return list_message(
            "\n".join(alert_words(r, self.zone, now_us, channel_mrkdwn, escape) for r in rules),
            "\n".join(alert_words(r, self.zone, now_us, str) for r in rules),
        )

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("could not reschedule after a subscription change (the next sync will)")


def _channel(channel: str | None, here: str | None) -> str:
    if channel is not None:
        return channel
    if here is None:
        raise UserError("name the Slack channel, like #support-leads")
    return here
