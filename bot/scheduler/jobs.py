"""The scheduled jobs, shared by the APScheduler jobs of ``acr-bot serve`` and by ``acr-bot digest``/``alerts``.

Every run is idempotent: what is due is decided from the database (subscriptions, rule state, the outbox keys),
never from what the scheduler remembers, so running a job twice, late, or in two places posts nothing twice.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import date, tzinfo

from bot.clock import Clock
from bot.presentation import Message
from bot.scheduler import chart, periodic
from bot.scheduler.alerts import Evaluation, alert_query, evaluate
from bot.scheduler.delivery import DeliveryReport, Poster
from bot.scheduler.digest import Compute, compose, gather, render
from bot.scheduler.times import DailySchedule, parse_local_time
from bot.settings import Settings
from bot.storage import ContactStore
from bot.storage.schedules import AlertRule, OutboxMessage, Subscription, scope_label
from metrics.engine import compute
from metrics.query import METRICS, Metric
from metrics.significance import previous_query
from metrics.timeutil import US_PER_HOUR, from_us, load_zone

log = logging.getLogger("acr_bot.scheduler")


def schedule_of(subscription: Subscription, default_zone: tzinfo) -> DailySchedule:
    zone = load_zone(subscription.zone) if subscription.zone else default_zone
    at = parse_local_time(subscription.local_time)
    if subscription.cadence == "weekly":
        return DailySchedule(at, zone, weekday=subscription.cadence_day)
    if subscription.cadence == "monthly":
        return DailySchedule(at, zone, month_day=subscription.cadence_day)
    return DailySchedule(at, zone, subscription.weekdays_only)


def digest_key(subscription: Subscription, day: date) -> str:
    """One digest per channel, scope, cadence and local date (daily keys keep their first form)."""
    kind = "digest" if subscription.cadence == "daily" else f"digest-{subscription.cadence}"
    return f"{kind}:{subscription.channel}:{subscription.scope or '*'}:{day.isoformat()}"


@dataclass(frozen=True, slots=True)
class DueDigest:
    subscription: Subscription
    day: date
    due_us: int
    key: str
    status: str  # "due", "posted" (already in the outbox), "missed" (past the grace period)


@dataclass
class DigestRun:
    digests: list[tuple[DueDigest, Message | None]] = field(default_factory=list)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)


class Jobs:
    """Digests and alerts for one store, Slack client (via ``poster``) and clock."""

    def __init__(
        self, settings: Settings, store: ContactStore, poster: Poster, clock: Clock, compute_fn: Compute = compute
    ):
        self.settings = settings
        self.store = store
        self.poster = poster
        self.clock = clock
        self.compute = compute_fn
        self._missed_logged: set[str] = set()
        self._digest_lock = threading.Lock()  # two digest jobs at 09:00 would only compose the same digest twice
        self._alert_lock = threading.Lock()  # the start-up run and the hourly run never evaluate at once

    # --- digests ---------------------------------------------------------------------------------------

    def latest_digests(
        self,
        now_us: int,
        channel: str | None = None,
        subscription_id: int | None = None,
        *,
        before_creation: bool = False,
    ) -> list[DueDigest]:
        """Each subscription's most recent occurrence at or before ``now`` (not before it was created, unless
        ``before_creation``: a dry run may look at any day)."""
        found: list[DueDigest] = []
        grace_us = round(self.settings.digest_grace_hours * US_PER_HOUR)
        outbox = self.store.outbox()
        for subscription in self.store.schedules().list_subscriptions():
            if channel is not None and subscription.channel != channel:
                continue
            if subscription_id is not None and subscription.id != subscription_id:
                continue
            latest = schedule_of(subscription, self.settings.zone).latest_at_or_before(now_us)
            if latest is None or (latest[1] < subscription.created_us and not before_creation):
                continue
            day, due_us = latest
            key = digest_key(subscription, day)
            if outbox.outbox_entry(key) is not None:
                status = "posted"
            elif now_us - due_us > grace_us:
                status = "missed"
            else:
                status = "due"
            found.append(DueDigest(subscription, day, due_us, key, status))
        return found

    def run_digests(
        self, channel: str | None = None, *, subscription_id: int | None = None, dry_run: bool = False
    ) -> DigestRun:
        """Write every due digest to the outbox (with its chart), then deliver. ``dry_run``: compose only."""
        with self._digest_lock:
            return self._run_digests(channel, subscription_id, dry_run)

    def _run_digests(self, channel: str | None, subscription_id: int | None, dry_run: bool) -> DigestRun:
        now_us = self.clock.now_us()
        run = DigestRun()
        for due in self.latest_digests(now_us, channel, subscription_id, before_creation=dry_run):
            if due.status == "missed":
                if due.key not in self._missed_logged and not dry_run:
                    self._missed_logged.add(due.key)
                    log.warning(
                        "digest %s was due at %s, more than DIGEST_GRACE_HOURS=%g ago: skipped",
                        due.key,
                        from_us(due.due_us, self.settings.zone).isoformat(),
                        self.settings.digest_grace_hours,
                    )
                if not dry_run:
                    continue
            if due.status == "posted" and not dry_run:
                continue
            try:
                messages, rendered = self.compose_digest(due, with_chart=not dry_run)
            except Exception:  # one broken digest does not hold back the others; the next run tries again
                log.exception("digest %s: composing it failed", due.key)
                continue
            run.digests.append((due, rendered))
            if dry_run:
                continue
            fresh = self.store.outbox().enqueue(messages, now_us)
            if fresh[0]:
                log.info("digest %s for %s written to the outbox", due.key, scope_label(due.subscription.scope))
        if not dry_run:
            run.delivery = self.poster.deliver_due()
        return run

    def targets(self) -> dict[Metric, float | None]:
        """TARGET_ACR and TARGET_TIER1 as fractions (None when unset), for the digests and their charts."""
        return {metric: self.settings.target(metric) for metric in METRICS}

    def compose_digest(self, due: DueDigest, *, with_chart: bool = True) -> tuple[list[OutboxMessage], Message]:
        """The digest message and its chart (a file posted in the digest's thread), as of its scheduled time."""
        subscription = due.subscription
        zone = schedule_of(subscription, self.settings.zone).zone
        if subscription.cadence != "daily":
            return self._compose_periodic(due, zone, with_chart)
        inputs = gather(self.store, subscription.scope, due.due_us, zone, self.compute)
        firing = [rule for rule in self.store.schedules().list_alert_rules() if rule.state.firing]
        targets = self.targets()
        digest = compose(
            inputs, firing, self.settings.digest_min_sample, zone, targets, data_since_us=self.store.data_since_us()
        )
        message = render(digest, zone)
        messages = [OutboxMessage(due.key, subscription.channel, message.text, message.blocks)]
        if not with_chart:
            return messages, message
        try:
            title = f"Daily ACR and tier-1 rate, last 30 days — {scope_label(subscription.scope)}"
            png = chart.trend_chart(digest.days, title, self.settings.digest_min_sample, targets)
        except Exception:  # the text digest goes out without its chart
            log.exception("digest %s: drawing the trend chart failed; sending the text only", due.key)
        else:
            messages.append(
                OutboxMessage(
                    key=due.key + ":chart",
                    channel=subscription.channel,
                    text="Trend: daily ACR (7-day window) and tier-1 resolution, last 30 days",
                    thread_key=due.key,
                    file=png,
                    filename=f"acr-trend-{due.day.isoformat()}.png",
                    title=title,
                )
            )
        return messages, message

    def _compose_periodic(self, due: DueDigest, zone: tzinfo, with_chart: bool) -> tuple[list[OutboxMessage], Message]:
        """A weekly or monthly digest and its trend chart (in the digest's thread), as of its scheduled time."""
        subscription = due.subscription
        min_sample = self.settings.digest_min_sample
        digest = periodic.gather(self.store, subscription.scope, subscription.cadence, due.due_us, zone, self.compute)
        targets = self.targets()
        message = periodic.render(digest, zone, min_sample, targets, data_since_us=self.store.data_since_us())
        messages = [OutboxMessage(due.key, subscription.channel, message.text, message.blocks)]
        if not with_chart:
            return messages, message
        try:
            png = periodic.chart(digest, zone, min_sample, targets)
        except Exception:  # the text digest goes out without its chart
            log.exception("digest %s: drawing the trend chart failed; sending the text only", due.key)
            return messages, message
        unit = "week" if subscription.cadence == "weekly" else "month"
        messages.append(
            OutboxMessage(
                key=due.key + ":chart",
                channel=subscription.channel,
                text=f"Trend: ACR and tier-1 resolution per {unit}",
                thread_key=due.key,
                file=png,
                filename=f"acr-{subscription.cadence}-{due.day.isoformat()}.png",
                title=f"ACR per {unit} — {scope_label(subscription.scope)}",
            )
        )
        return messages, message

    # --- alerts ----------------------------------------------------------------------------------------

    def run_alerts(self, *, dry_run: bool = False) -> list[tuple[AlertRule, Evaluation]]:
        """Evaluate every rule now; store each new state together with its messages, then deliver."""
        with self._alert_lock:
            return self._run_alerts(dry_run)

    def _run_alerts(self, dry_run: bool) -> list[tuple[AlertRule, Evaluation]]:
        now_us = self.clock.now_us()
        zone = self.settings.zone
        results: list[tuple[AlertRule, Evaluation]] = []
        schedules = self.store.schedules()
        for rule in schedules.list_alert_rules():
            try:
                query = alert_query(rule, now_us)
                result = self.compute(self.store, query, zone)
                before = self.compute(self.store, previous_query(query, result.since_us, result.until_us), zone)
            except Exception:
                log.exception("alert #%d: evaluation failed", rule.id)
                continue
            hysteresis = self.settings.alert_hysteresis_points
            evaluation = evaluate(rule, result.total, now_us, hysteresis, zone, before.total)
            results.append((rule, evaluation))
            if dry_run:
                continue
            schedules.save_alert_evaluation(rule.id, evaluation.state, evaluation.messages, now_us)
            if evaluation.transition != "none":
                log.info("alert #%d: %s (%s)", rule.id, evaluation.transition, evaluation.reason)
        if not dry_run:
            self.poster.deliver_due()
        return results
