"""Delivery that survives faults: Slack outages, restarts and crashes never lose a message and never post twice."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import threading

import pytest

from bot.clock import ManualClock
from bot.scheduler.delivery import STALE_CLAIM_SECONDS, Poster
from bot.slack.app import build_web_client
from bot.storage import ContactStore, open_store
from bot.storage.schedules import OutboxMessage
from tests.fake_slack import FakeSlack
from tests.scheduler_support import at, quick_client, settings_for

NOW = at("2026-03-09 09:00")
SECOND_US = 1_000_000


def poster_for(
    database_url: str, fake: FakeSlack, clock: ManualClock, *, quick: bool = False, **options: object
) -> tuple[ContactStore, Poster]:
    store = open_store(database_url)
    config = settings_for(database_url, fake)
    client = quick_client(config) if quick else build_web_client(config)
    return store, Poster(client, store.outbox(), clock, **options)  # type: ignore[arg-type]


def message(key: str = "digest:C1:*:2026-03-09", **more: object) -> OutboxMessage:
    return OutboxMessage(key=key, channel="C1", text=f"hello {key}", **more)  # type: ignore[arg-type]


@pytest.mark.slow
def test_outage_500_then_429_then_success_delays_but_delivers_exactly_once(database_url: str, fake: FakeSlack) -> None:
    fake.fail("chat.postMessage", 500)
    fake.fail("chat.postMessage", 429, retry_after=1)
    clock = ManualClock(NOW)
    store, poster = poster_for(database_url, fake, clock)
    try:
        assert store.outbox().enqueue([message()], NOW) == [True]
        report = poster.deliver_due()
        assert report.sent == ["digest:C1:*:2026-03-09"]
        calls = fake.calls_to("chat.postMessage")
        assert [c.status for c in calls] == [500, 429, 200]
        assert calls[2].at - calls[1].at >= 0.95  # waited Retry-After
        entry = store.outbox().outbox_entry("digest:C1:*:2026-03-09")
        assert entry is not None and entry.status == "sent" and entry.ts is not None
        # later runs, and enqueuing the same key again, post nothing more
        assert store.outbox().enqueue([message()], NOW) == [False]
        clock.advance(3600)
        assert poster.deliver_due().sent == []
        assert len(fake.posts()) == 1
    finally:
        store.close()


def test_long_outage_leaves_the_message_pending_until_slack_is_back(database_url: str, fake: FakeSlack) -> None:
    clock = ManualClock(NOW)
    store, poster = poster_for(database_url, fake, clock, quick=True, attempts_now=2, backoff_seconds=0.05)
    try:
        store.outbox().enqueue([message()], NOW)
        fake.fail("chat.postMessage", 503, times=1_000)  # down for good, as far as this run can tell
        report = poster.deliver_due()
        assert report.retrying == ["digest:C1:*:2026-03-09"] and report.sent == []
        entry = store.outbox().outbox_entry("digest:C1:*:2026-03-09")
        assert entry is not None and entry.status == "pending" and entry.next_attempt_us > NOW
        failed_calls = len(fake.calls_to("chat.postMessage"))
        assert poster.deliver_due().sent == []  # not due yet: no call at all
        assert len(fake.calls_to("chat.postMessage")) == failed_calls
        fake._failures.clear()  # Slack is back
        clock.advance(3600)
        assert poster.deliver_due().sent == ["digest:C1:*:2026-03-09"]
        assert len(fake.posts()) == 1
    finally:
        store.close()


def test_network_error_is_retried(database_url: str) -> None:
    """Nothing listens on the API URL: a network error, retried later, never a crash or a lost row."""
    with FakeSlack() as down:
        pass  # started and stopped: its port now refuses connections
    clock = ManualClock(NOW)
    store, poster = poster_for(database_url, down, clock, quick=True, attempts_now=1)
    try:
        store.outbox().enqueue([message()], NOW)
        report = poster.deliver_due()
        assert report.retrying == ["digest:C1:*:2026-03-09"]
        entry = store.outbox().outbox_entry("digest:C1:*:2026-03-09")
        assert entry is not None and entry.status == "pending" and "network error" in (entry.last_error or "")
    finally:
        store.close()


def test_crash_after_writing_before_posting_is_delivered_on_restart(database_url: str, fake: FakeSlack) -> None:
    clock = ManualClock(NOW)
    store = open_store(database_url)
    store.outbox().enqueue([message()], NOW)
    store.close()  # the process dies here
    store, poster = poster_for(database_url, fake, clock)
    try:
        poster.recover_in_doubt()
        assert poster.deliver_due().sent == ["digest:C1:*:2026-03-09"]
        assert poster.deliver_due().sent == []
        assert len(fake.posts()) == 1
    finally:
        store.close()


@pytest.mark.parametrize("slack_has_it", [True, False])
def test_crash_during_posting_is_checked_against_the_channel_before_posting_again(
    database_url: str, fake: FakeSlack, slack_has_it: bool
) -> None:
    store = open_store(database_url)
    store.outbox().enqueue([message()], NOW)
    assert store.outbox().begin_attempt("digest:C1:*:2026-03-09", NOW)  # claimed, then the process died
    store.close()
    history = [{"ts": "1700000000.000001", "metadata": {"event_type": "acr_bot_outbox",
                "event_payload": {"key": "digest:C1:*:2026-03-09"}}}] if slack_has_it else []  # fmt: skip
    fake.answer("conversations.history", {"ok": True, "messages": history})
    clock = ManualClock(NOW + (STALE_CLAIM_SECONDS + 1) * SECOND_US)
    store, poster = poster_for(database_url, fake, clock)
    try:
        assert poster.recover_in_doubt() == (1 if slack_has_it else 0)
        poster.deliver_due()
        entry = store.outbox().outbox_entry("digest:C1:*:2026-03-09")
        assert entry is not None and entry.status == "sent"
        assert len(fake.posts()) == (0 if slack_has_it else 1)
        if slack_has_it:
            assert entry.ts == "1700000000.000001"
    finally:
        store.close()


def test_a_fresh_claim_of_another_process_is_left_alone(database_url: str, fake: FakeSlack) -> None:
    clock = ManualClock(NOW)
    store, poster = poster_for(database_url, fake, clock)
    try:
        store.outbox().enqueue([message()], NOW)
        assert store.outbox().begin_attempt("digest:C1:*:2026-03-09", NOW)  # someone is posting it right now
        assert not store.outbox().begin_attempt("digest:C1:*:2026-03-09", NOW)  # a second claim fails
        poster.recover_in_doubt()
        assert poster.deliver_due().sent == []
        assert fake.calls_to("conversations.history") == [] and fake.posts() == []
    finally:
        store.close()


def test_concurrent_deliveries_from_two_processes_post_each_message_once(database_url: str, fake: FakeSlack) -> None:
    clock = ManualClock(NOW)
    keys = [f"alert:{i}:1:fire" for i in range(12)]
    store_a, poster_a = poster_for(database_url, fake, clock)
    store_b, poster_b = poster_for(database_url, fake, clock)
    try:
        store_a.outbox().enqueue([message(k) for k in keys], NOW)
        threads = [threading.Thread(target=p.deliver_due) for p in (poster_a, poster_b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        posted = sorted(c.body["metadata"]["event_payload"]["key"] for c in fake.posts())
        assert posted == sorted(keys)
    finally:
        store_a.close()
        store_b.close()


def test_thread_reply_waits_for_its_parent_and_uses_its_ts(database_url: str, fake: FakeSlack) -> None:
    clock = ManualClock(NOW)
    store, poster = poster_for(database_url, fake, clock, quick=True, attempts_now=1)
    try:
        parent, reply = message("alert:1:1:fire"), message("alert:1:1:recover", thread_key="alert:1:1:fire")
        store.outbox().enqueue([parent, reply], NOW)
        fake.fail("chat.postMessage", 500, times=3)  # the parent fails this time (with the client's retries)
        report = poster.deliver_due()
        assert report.retrying == ["alert:1:1:fire"] and report.waiting == ["alert:1:1:recover"]
        clock.advance(3600)
        report = poster.deliver_due()
        assert report.sent == ["alert:1:1:fire", "alert:1:1:recover"]
        parent_ts = store.outbox().outbox_entry("alert:1:1:fire").ts  # type: ignore[union-attr]
        assert fake.posts()[1].body["thread_ts"] == parent_ts
    finally:
        store.close()


def test_a_message_slack_refuses_is_failed_and_logged_not_retried(
    database_url: str, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    fake.answer("chat.postMessage", {"ok": False, "error": "channel_not_found"})
    clock = ManualClock(NOW)
    store, poster = poster_for(database_url, fake, clock)
    try:
        store.outbox().enqueue([message()], NOW)
        with caplog.at_level(logging.ERROR, logger="acr_bot.scheduler"):
            assert poster.deliver_due().failed == ["digest:C1:*:2026-03-09"]
        assert "channel_not_found" in caplog.text
        entry = store.outbox().outbox_entry("digest:C1:*:2026-03-09")
        assert entry is not None and entry.status == "failed"
        clock.advance(3600)
        poster.deliver_due()
        assert len(fake.calls_to("chat.postMessage")) == 1
    finally:
        store.close()


def test_server_start_delivers_what_was_pending_and_shutdown_stops_the_scheduler(
    database_url: str, fake: FakeSlack
) -> None:
    """The real app lifespan of ``acr-bot serve``: the scheduler starts with the app and first empties the outbox."""
    from bot.http.app import build_app
    from bot.scheduler.service import SchedulerService, scheduler_lifespan

    store = open_store(database_url)
    try:
        store.outbox().enqueue([message()], NOW)  # written by a process that died before posting
        config = settings_for(database_url, fake)
        service = SchedulerService(config, store, quick_client(config))
        app = build_app(config, store, lifespans=[scheduler_lifespan(service)])

        async def serve_until_posted() -> None:
            async with app.router.lifespan_context(app):  # what uvicorn runs at start and at shutdown
                await asyncio.to_thread(fake.wait_for, "chat.postMessage", 1, 10.0)
                assert service.scheduler.running
                assert {job.id for job in service.scheduler.get_jobs()} >= {"alerts", "outbox"}

        asyncio.run(serve_until_posted())
        assert not service.scheduler.running
        entry = store.outbox().outbox_entry("digest:C1:*:2026-03-09")
        assert entry is not None and entry.status == "sent"
        assert len(fake.posts()) == 1
    finally:
        store.close()


def test_offline_mode_logs_instead_of_posting(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Without SLACK_BOT_TOKEN the server still runs its jobs: messages and uploads are logged, not sent."""
    from bot.settings import load_settings

    store = open_store(database_url)
    try:
        client = build_web_client(load_settings(database_url=database_url))
        poster = Poster(client, store.outbox(), ManualClock(NOW))
        chart = message("digest:C1:*:2026-03-09:chart", file=b"\x89PNG...", filename="c.png", thread_key="x")
        store.outbox().enqueue([message(), chart], NOW)
        with caplog.at_level(logging.INFO):
            report = poster.deliver_due()
        assert sorted(report.sent) == ["digest:C1:*:2026-03-09", "digest:C1:*:2026-03-09:chart"]
        assert "would call chat.postMessage" in caplog.text and "would upload c.png" in caplog.text
    finally:
        store.close()


def _claim_and_die(database_url: str, key: str, now_us: int) -> None:
    """Another process claims ``key`` (as a poster does just before its Slack call) and is killed mid-post."""
    script = (
        "import os, signal, sys\n"
        "from bot.scheduler.delivery import process_token\n"
        "from bot.storage import open_store\n"
        "store = open_store(sys.argv[1])\n"
        "assert store.outbox().begin_attempt(sys.argv[2], int(sys.argv[3]), process_token())\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, database_url, key, str(now_us)], check=False)
    assert proc.returncode == -signal.SIGKILL


def test_the_claim_of_a_killed_process_is_recovered_by_the_next_outbox_run_without_a_restart(
    database_url: str, fake: FakeSlack
) -> None:
    """Defect 2: recovery ran only at start-up and only for claims older than 600 s; the row stayed "sending"."""
    from bot.scheduler.service import SchedulerService

    store = open_store(database_url)
    try:
        store.outbox().enqueue([message()], NOW)
        _claim_and_die(database_url, "digest:C1:*:2026-03-09", NOW)
        entry = store.outbox().outbox_entry("digest:C1:*:2026-03-09")
        assert entry is not None and entry.status == "sending"
        config = settings_for(database_url, fake)
        service = SchedulerService(config, store, quick_client(config), clock=ManualClock(NOW + SECOND_US))
        service.drain()  # the 30-second outbox job of the running server, one second after the claim
        entry = store.outbox().outbox_entry("digest:C1:*:2026-03-09")
        assert entry is not None and entry.status == "sent"
        assert len(fake.calls_to("conversations.history")) == 1  # looked in the channel first
        service.drain()
        assert len(fake.posts()) == 1
    finally:
        store.close()


def test_a_live_claim_of_another_process_is_left_alone_however_old(database_url: str, fake: FakeSlack) -> None:
    from bot.scheduler.delivery import process_token

    clock = ManualClock(NOW)
    store, poster = poster_for(database_url, fake, clock)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store.outbox().enqueue([message()], NOW)
        assert store.outbox().begin_attempt("digest:C1:*:2026-03-09", NOW, process_token(sleeper.pid))
        clock.advance(2 * STALE_CLAIM_SECONDS)
        poster.recover_in_doubt()
        poster.deliver_due()
        assert fake.posts() == [] and fake.calls_to("conversations.history") == []
    finally:
        sleeper.kill()
        sleeper.wait()
        store.close()


def test_a_post_that_timed_out_is_looked_up_in_the_channel_not_posted_again(database_url: str, fake: FakeSlack) -> None:
    """Defect 3: Slack accepted the post but answered after the client's timeout; the retry posted a copy."""
    clock = ManualClock(NOW)
    store, poster = poster_for(database_url, fake, clock, quick=True, backoff_seconds=0.01)
    poster.client.timeout = 1
    try:
        store.outbox().enqueue([message()], NOW)
        fake.stall("chat.postMessage", seconds=3)
        report = poster.deliver_due()
        assert report.sent == ["digest:C1:*:2026-03-09"]
        posts = fake.posts()
        assert len(posts) == 1, [c.body for c in posts]
        entry = store.outbox().outbox_entry("digest:C1:*:2026-03-09")
        assert entry is not None and entry.status == "sent"
        assert entry.ts == fake.history["C1"][0]["ts"]
        assert len(fake.calls_to("conversations.history")) == 1
    finally:
        store.close()


def test_a_timed_out_post_stays_in_doubt_while_the_channel_cannot_be_read(database_url: str, fake: FakeSlack) -> None:
    """When Slack cannot say whether the post arrived, nothing is posted; once it can, the answer is used."""
    clock = ManualClock(NOW)
    store, poster = poster_for(database_url, fake, clock, quick=True, attempts_now=2, backoff_seconds=0.01)
    poster.client.timeout = 1
    try:
        store.outbox().enqueue([message()], NOW)
        fake.stall("chat.postMessage", seconds=3)
        fake.fail("conversations.history", 503, times=3)  # the client retries 5xx twice itself
        report = poster.deliver_due()
        assert report.retrying == ["digest:C1:*:2026-03-09"]
        entry = store.outbox().outbox_entry("digest:C1:*:2026-03-09")
        assert entry is not None and entry.status == "pending" and (entry.last_error or "").startswith("in doubt")
        clock.advance(3600)
        assert poster.deliver_due().sent == ["digest:C1:*:2026-03-09"]
        assert len(fake.posts()) == 1
    finally:
        store.close()
