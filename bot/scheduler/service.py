"""APScheduler 3.x inside ``acr-bot serve``: one BackgroundScheduler, jobs in memory rebuilt from the database.

The job store is memory only, on purpose: what must not be lost or repeated is in the database (subscriptions,
rule state, the outbox), and every job decides from there. So:
- at start, interrupted deliveries are resolved, pending outbox rows delivered, a digest missed while the
  server was down is sent if still within DIGEST_GRACE_HOURS (else skipped with a log line), alerts evaluated;
- one digest job per subscription, on a trigger that follows the subscription's local time across DST;
  ``misfire_grace_time`` is the grace period (a run delayed by a busy or suspended process still happens
  within it) and ``coalesce`` folds several missed runs into one (the outbox key makes a repeat harmless);
- with RETENTION_DAYS, contacts older than that are purged daily (the first time a minute after start);
- the alert job runs every ALERT_INTERVAL_MINUTES; the outbox job every 30 s recovers the claims of processes
  that ended mid-post, retries what Slack refused for now and picks up subscriptions changed by another process
  (``acr-bot subscriptions``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk import WebClient

from bot.clock import Clock, SystemClock
from bot.scheduler.delivery import Poster
from bot.scheduler.digest import Compute
from bot.scheduler.jobs import Jobs, schedule_of
from bot.scheduler.leader import SchedulerElection
from bot.scheduler.times import DailySchedule
from bot.settings import Settings
from bot.storage import ContactStore, retention_of
from bot.telemetry import CONTACTS_PURGED, ROLLUP_DAYS_REBUILT, ROLLUP_LAST_REFRESH, SCHEDULER_RUNS
from metrics.engine import compute
from metrics.timeutil import US_PER_DAY, from_us, to_us

log = logging.getLogger("acr_bot.scheduler")

OUTBOX_SECONDS = 30
# Metric rollups go stale where contacts are written; rebuilding a bounded number of days per run keeps
# questions on the fast path without holding the writer lock long enough to delay webhook deliveries.
ROLLUP_MINUTES = 5
ROLLUP_DAYS_PER_RUN = 14
RETENTION_FIRST_DELAY_SECONDS = 60  # the first purge after start: once the start-up jobs are done


class DailyTrigger(BaseTrigger):
    """An APScheduler trigger that fires at a ``DailySchedule``'s occurrences (local wall time, DST-correct)."""

    def __init__(self, schedule: DailySchedule):
        self.schedule = schedule

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        after_us = to_us(previous_fire_time) if previous_fire_time is not None else to_us(now) - 1
        _, due_us = self.schedule.next_after(after_us)
        return from_us(due_us, UTC)

    def __str__(self) -> str:
        days = "weekdays" if self.schedule.weekdays_only else "daily"
        return f"{days} at {self.schedule.at:%H:%M} {self.schedule.zone}"


class SchedulerService:
    """The scheduler of one server process. ``start``/``shutdown`` are called by the app's lifespan."""

    def __init__(
        self,
        settings: Settings,
        store: ContactStore,
        client: WebClient,
        clock: Clock | None = None,
        compute_fn: Compute = compute,
    ):
        self.settings = settings
        self.clock = clock or SystemClock()
        self.poster = Poster(client, store.outbox(), self.clock)
        self.jobs = Jobs(settings, store, self.poster, self.clock, compute_fn)
        self.store = store
        grace_seconds = max(1, round(settings.digest_grace_hours * 3600))
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace_seconds},
        )
        self._digest_jobs: dict[str, tuple[str, str | None, bool, str]] = {}
        self._sync_lock = threading.Lock()

    def start(self) -> None:
        self.scheduler.start()
        now = datetime.now(UTC)
        self.scheduler.add_job(
            self._guarded(self.catch_up, "startup"), id="startup", name="start: outbox and missed digests"
        )
        minutes = self.settings.alert_interval_minutes
        self.scheduler.add_job(
            self._guarded(self.jobs.run_alerts, "alerts"),
            IntervalTrigger(minutes=minutes, timezone=UTC),
            id="alerts",
            name=f"alerts every {minutes} min",
            misfire_grace_time=minutes * 60,
        )
        self.scheduler.add_job(
            self._guarded(self.drain, "outbox"),
            IntervalTrigger(seconds=OUTBOX_SECONDS, timezone=UTC),
            id="outbox",
            name="outbox retries and subscription sync",
            next_run_time=now + timedelta(seconds=OUTBOX_SECONDS),
            misfire_grace_time=OUTBOX_SECONDS,
        )
        self.scheduler.add_job(
            self._guarded(self.refresh_rollups, "rollups"),
            IntervalTrigger(minutes=ROLLUP_MINUTES, timezone=UTC),
            id="rollups",
            name=f"metric rollups every {ROLLUP_MINUTES} min",
            next_run_time=now + timedelta(seconds=5),
            misfire_grace_time=ROLLUP_MINUTES * 60,
        )
        if self.settings.retention_days is not None:
            self.scheduler.add_job(
                self._guarded(self.purge_old_contacts, "retention"),
                IntervalTrigger(hours=24, timezone=UTC),
                id="retention",
                name=f"purge contacts older than {self.settings.retention_days} days, daily",
                next_run_time=now + timedelta(seconds=RETENTION_FIRST_DELAY_SECONDS),
                misfire_grace_time=24 * 3600,
            )
        self.sync_subscriptions()
        log.info("scheduler started: %d digest subscription(s), alerts every %d min", len(self._digest_jobs), minutes)

    def request_sync(self) -> None:
        """Reschedule the digest jobs now, if running (a subscription changed in Slack; ``ScheduleManager``'s
        ``on_change``). A stopped scheduler picks the change up when it starts."""
        if self.scheduler.running:
            self.sync_subscriptions()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
            log.info("scheduler stopped")

    def catch_up(self) -> None:
        """At start: finish interrupted deliveries, send what is pending or missed (within grace), check alerts."""
        self.poster.recover_in_doubt()
        self.poster.deliver_due()
        self.jobs.run_digests()
        self.jobs.run_alerts()

    def refresh_rollups(self) -> int:
        """Rebuild the most recent stale metric rollup days (a bounded number per run); returns how many."""
        rebuilt = self.store.refresh_rollups(self.settings.zone, max_days=ROLLUP_DAYS_PER_RUN)
        ROLLUP_DAYS_REBUILT.inc(rebuilt)
        if rebuilt:
            log.info("rebuilt metric rollups of %d day(s)", rebuilt)
        if rebuilt < ROLLUP_DAYS_PER_RUN:  # nothing left to rebuild: up to date as of now
            ROLLUP_LAST_REFRESH.set_to_current_time()
        return rebuilt

    def purge_old_contacts(self) -> int:
        """RETENTION_DAYS: delete the contacts that started more than that many days ago; returns how many."""
        days = self.settings.retention_days
        if days is None:
            return 0
        purged = retention_of(self.store).purge_contacts_before(self.clock.now_us() - days * US_PER_DAY)
        CONTACTS_PURGED.inc(purged)
        if purged:
            log.info("retention: purged %d contact(s) that started more than %d days ago", purged, days)
        return purged

    def drain(self) -> None:
        self.poster.recover_in_doubt()  # claims of a process that ended: recovered now, not at the next start
        self.poster.deliver_due()
        self.sync_subscriptions()

    def sync_subscriptions(self) -> None:
        """Make the digest jobs match the subscriptions in the database (added, changed, removed)."""
        with self._sync_lock:
            wanted: dict[str, Any] = {}
            for subscription in self.store.schedules().list_subscriptions():
                spec = (subscription.local_time, subscription.zone, subscription.weekdays_only, subscription.channel)
                wanted[f"digest:{subscription.id}"] = (subscription, spec)
            for job_id in set(self._digest_jobs) - set(wanted):
                self.scheduler.remove_job(job_id)
                del self._digest_jobs[job_id]
                log.info("digest job %s removed", job_id)
            for job_id, (subscription, spec) in wanted.items():
                if self._digest_jobs.get(job_id) == spec:
                    continue
                trigger = DailyTrigger(schedule_of(subscription, self.settings.zone))
                self.scheduler.add_job(
                    self._guarded(functools.partial(self.jobs.run_digests, subscription_id=subscription.id), "digest"),
                    trigger,
                    id=job_id,
                    name=f"digest {subscription.channel} {subscription.scope or '*'} {trigger}",
                    replace_existing=True,
                )
                self._digest_jobs[job_id] = spec
                log.info("digest job %s: %s", job_id, trigger)

    @staticmethod
    def _guarded(job: Callable[[], object], name: str) -> Callable[[], None]:
        """A job never dies silently: its failure is logged (and counted) and the next run tries again."""

        def run() -> None:
            try:
                job()
            except Exception:
                SCHEDULER_RUNS.labels(name, "failed").inc()
                log.exception("scheduled job %s failed; it runs again on its next trigger", name)
            else:
                SCHEDULER_RUNS.labels(name, "ok").inc()

        return run


def scheduler_lifespan(
    service: SchedulerService | SchedulerElection,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A ``build_app(lifespans=...)`` hook: the scheduler (or the election that runs it) runs while the server does."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if isinstance(service, SchedulerElection):
            app.state.scheduler_role = lambda: service.role  # for /healthz
        await asyncio.to_thread(service.start)
        try:
            yield
        finally:
            await asyncio.to_thread(service.shutdown)

    return lifespan


def server_scheduler(settings: Settings, store: ContactStore, client: WebClient) -> SchedulerElection | None:
    """The scheduler of ``acr-bot serve`` (started by ``scheduler_lifespan``), unless SCHEDULER_ENABLED=false:
    run by this process while it holds the database's scheduler lease (``bot.scheduler.leader``), so however
    many servers share the database, one runs it."""
    if not settings.scheduler_enabled:
        log.warning("SCHEDULER_ENABLED=false: no digests or alerts from this server")
        return None
    return SchedulerElection(
        store.scheduler_lease(),
        lambda: SchedulerService(settings, store, client),
        poll_seconds=settings.scheduler_lease_poll_seconds,
    )
