"""Posting outbox messages to Slack: retries with backoff, never twice, never lost.

A message is stored first (``Outbox.enqueue``, unique key), then claimed (``begin_attempt``: only one process or
thread can claim a pending row), posted, and recorded with Slack's ``ts``. A 429 waits Retry-After; 5xx and
network errors back off exponentially; when the in-process attempts run out the row stays pending with a next
attempt time, and the scheduler's drain job (or the next start) tries again. Slack refusing a message for good
(``channel_not_found``, ``not_in_channel``...) marks it failed, with a log line.

Each post carries the outbox key in Slack message metadata, so a post whose fate is unknown can be looked up in
the channel history before it is posted again. Its fate is unknown ("in doubt") when the request may have reached
Slack without an answer coming back (a timeout or a dropped connection: Slack may have posted it), and when the
process that claimed the row ended mid-post. A claim records its process (``process_token``), so any other
process of this host recovers a dead process's claim at its next outbox run, without a restart; a claim from
another host is recovered once it is STALE_CLAIM_SECONDS old.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler

from bot.clock import Clock
from bot.storage.schedules import Outbox, OutboxEntry, OutboxMessage
from metrics.timeutil import US_PER_SECOND

log = logging.getLogger("acr_bot.scheduler")

METADATA_EVENT = "acr_bot_outbox"
IN_PROCESS_ATTEMPTS = 4  # per delivery run; then the row waits for the drain job
MAX_RUNS = 12  # delivery runs in total (with backoff up to 30 min between them: hours); then marked failed
MAX_WAIT_SECONDS = 60.0  # longest in-process wait (a longer Retry-After is left to the drain job)
BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 1800.0
STALE_CLAIM_SECONDS = 600  # a claim from another host (whose process cannot be checked) is abandoned after this
IN_DOUBT = "in doubt: "  # starts the last_error of a row whose last attempt may have been posted
_HOST = socket.gethostname()


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """Process ``pid``'s state letter and start time (clock ticks since boot), from /proc; None where that cannot
    be read. The start time tells a process from a later one that was given the same pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), fields[19].decode()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def process_token(pid: int | None = None) -> str:
    """``host:pid:start``: names a process in its outbox claims (this process unless ``pid`` is given)."""
    pid = os.getpid() if pid is None else pid
    return f"{_HOST}:{pid}:{_start_ticks(pid) or '?'}"


def claimant_running(token: str | None) -> bool | None:
    """Whether the process named by ``token`` still runs: None when that cannot be told (another host, or a
    claim recorded before claims named their process)."""
    if not token or token.count(":") < 2:
        return None
    host, pid_text, start = token.rsplit(":", 2)
    if host != _HOST or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, run by another user
    stat = _proc_stat(pid)
    if stat is None:
        return True  # it exists; no /proc to tell more
    state, now_start = stat
    return state not in ("Z", "X") and (start == "?" or now_start == start)


@dataclass
class DeliveryReport:
    sent: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # thread replies whose parent is not posted yet


class _Retry(Exception):
    """Try again later; ``in_doubt``: Slack may have posted it, so look in the channel before posting again."""

    def __init__(self, wait_seconds: float | None, error: str, in_doubt: bool = False):
        super().__init__(error)
        self.wait_seconds = wait_seconds
        self.error = error
        self.in_doubt = in_doubt


def _without_resending(client: WebClient) -> WebClient:
    """A copy of ``client`` that never re-sends a request on its own after a dropped connection (Slack may have
    posted it): the poster decides, after looking in the channel. Rate limits and 5xx are still retried."""
    careful = copy.copy(client)
    careful.retry_handlers = [h for h in client.retry_handlers if not isinstance(h, ConnectionErrorRetryHandler)]
    return careful


def _may_have_arrived(problem: BaseException) -> bool:
    """A network error after which Slack may have the post: anything but a connection that was never made."""
    reason = getattr(problem, "reason", problem)  # urllib wraps connect errors in URLError(reason)
    return not isinstance(reason, (ConnectionRefusedError, socket.gaierror))


class _Refused(Exception):
    """Slack answered with an error that retrying will not fix."""


class Poster:
    """Delivers outbox messages with ``client`` (a slack_sdk WebClient: chat.postMessage, files_upload_v2)."""

    def __init__(
        self,
        client: WebClient,
        outbox: Outbox,
        clock: Clock,
        *,
        sleep: Callable[[float], None] = time.sleep,
        attempts_now: int = IN_PROCESS_ATTEMPTS,
        backoff_seconds: float = BACKOFF_SECONDS,
    ):
        self.client = _without_resending(client)
        self.outbox = outbox
        self.clock = clock
        self.sleep = sleep
        self.attempts_now = attempts_now
        self.backoff_seconds = backoff_seconds
        self._lock = threading.Lock()  # one delivery at a time in this process: keeps thread order
        self.token = process_token()

    def deliver_due(self) -> DeliveryReport:
        """Deliver every pending message that is due, oldest first (a thread's parent before its replies)."""
        report = DeliveryReport()
        with self._lock:
            for entry in self.outbox.due_messages(self.clock.now_us()):
                self._deliver(entry, report)
        return report

    def recover_in_doubt(self) -> int:
        """Rows left "sending" by a process that has ended (at start, and at every outbox run). Found in the
        channel (by the key in the message metadata): recorded as sent. Otherwise: pending again, to be posted.
        Returns how many were found posted."""
        found = 0
        stale_before = self.clock.now_us() - STALE_CLAIM_SECONDS * US_PER_SECOND
        for entry in self.outbox.in_doubt_messages():
            running = claimant_running(entry.claimed_by)
            if running or (running is None and entry.next_attempt_us > stale_before):
                continue  # its process may be posting it right now
            try:
                ts = self._find_posted(entry)
            except _Retry as unknown:
                log.warning("outbox %s: interrupted delivery not checked yet (%s)", entry.key, unknown.error)
                continue
            if ts is not None:
                log.info("outbox %s: was posted before its process ended (ts %s); not posted again", entry.key, ts)
                self.outbox.mark_sent(entry.key, ts, self.clock.now_us())
                found += 1
            elif self.outbox.release_claim(entry.key, entry.claimed_by, self.clock.now_us(), "interrupted"):
                log.warning("outbox %s: its delivery was interrupted (process ended); posting it again", entry.key)
        return found

    # --- one message -----------------------------------------------------------------------------------

    def _deliver(self, entry: OutboxEntry, report: DeliveryReport) -> None:
        message = entry.message
        thread_ts: str | None = None
        if message.thread_key is not None:
            parent = self.outbox.outbox_entry(message.thread_key)
            if parent is not None and parent.status in ("pending", "sending"):
                report.waiting.append(message.key)
                return
            if parent is not None and parent.status == "sent":
                thread_ts = parent.ts
        if not self.outbox.begin_attempt(message.key, self.clock.now_us(), self.token):
            return  # claimed by someone else meanwhile
        runs = entry.attempts + 1
        in_doubt = (entry.last_error or "").startswith(IN_DOUBT)
        for attempt in range(self.attempts_now):
            try:
                ts = self._find_posted(entry) if in_doubt else None
                if ts is not None:
                    log.info("outbox %s: an earlier attempt was posted after all (ts %s)", message.key, ts)
                else:
                    ts = self._send(message, thread_ts)
            except _Refused as refused:
                self.outbox.mark_failed(message.key, str(refused))
                log.error("outbox %s: Slack refused it (%s); not retrying", message.key, refused)
                report.failed.append(message.key)
                return
            except _Retry as retry:
                in_doubt = in_doubt or retry.in_doubt
                last = attempt == self.attempts_now - 1
                if last and runs >= MAX_RUNS:
                    self.outbox.mark_failed(message.key, retry.error)
                    log.error("outbox %s: giving up after %d delivery runs (%s)", message.key, runs, retry.error)
                    report.failed.append(message.key)
                    return
                backoff = self.backoff_seconds * 2 ** (attempt if not last else runs + attempt)
                wait = min(retry.wait_seconds if retry.wait_seconds is not None else backoff, MAX_BACKOFF_SECONDS)
                if last or wait > MAX_WAIT_SECONDS:
                    error = IN_DOUBT + retry.error if in_doubt else retry.error
                    self.outbox.mark_retry(message.key, self.clock.now_us() + round(wait * US_PER_SECOND), error)
                    log.warning("outbox %s: %s; next attempt in %.0f s", message.key, retry.error, wait)
                    report.retrying.append(message.key)
                    return
                log.info("outbox %s: %s; retrying in %.1f s", message.key, retry.error, wait)
                self.sleep(wait)
                continue
            self.outbox.mark_sent(message.key, ts, self.clock.now_us())
            log.info("outbox %s: posted to %s (ts %s)", message.key, message.channel, ts)
            report.sent.append(message.key)
            return

    def _send(self, message: OutboxMessage, thread_ts: str | None) -> str | None:
        try:
            if message.file is not None and getattr(self.client, "token", None) is None:
                log.info("offline (no SLACK_BOT_TOKEN): would upload %s to %s", message.filename, message.channel)
                return None
            if message.file is not None:
                response = self.client.files_upload_v2(
                    channel=message.channel,
                    file=message.file,
                    filename=message.filename or "file",
                    title=message.title or message.filename or "file",
                    initial_comment=message.text,
                    thread_ts=thread_ts,
                )
                uploaded: dict[str, Any] = response.get("file") or {}
                return f"file:{uploaded['id']}" if uploaded.get("id") else None
            response = self.client.chat_postMessage(
                channel=message.channel,
                text=message.text,
                blocks=message.blocks,
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                metadata={"event_type": METADATA_EVENT, "event_payload": {"key": message.key}},
            )
            ts = response.get("ts")
            return None if ts is None else str(ts)
        except SlackApiError as problem:
            raise self._classify(problem) from None
        except (SlackClientError, OSError) as problem:  # network: refused, reset, timeout, failed upload
            error = f"network error: {type(problem).__name__}: {problem}"
            raise _Retry(None, error, _may_have_arrived(problem)) from None
        except Exception as problem:  # an odd answer or a bug: logged, retried later, never left claimed
            log.exception("outbox %s: unexpected failure while posting", message.key)
            raise _Retry(None, f"unexpected {type(problem).__name__}: {problem}") from None

    def _classify(self, problem: SlackApiError) -> Exception:
        response = problem.response
        status = response.status_code
        error = str(response.get("error", "")) if isinstance(response.data, dict) else ""
        if status == 429 or error == "ratelimited":
            retry_after = _retry_after(response.headers)
            return _Retry(retry_after, f"rate limited (429, Retry-After {retry_after:g} s)")
        if status >= 500 or error in ("internal_error", "fatal_error", "service_unavailable", "request_timeout"):
            return _Retry(None, f"Slack error {status} {error}".strip())
        return _Refused(f"{error or 'HTTP ' + str(status)}")

    def _find_posted(self, entry: OutboxEntry) -> str | None:
        """The ts of a message of ours with this key in the channel's recent history, or None when it is not
        there. Raises _Retry (in doubt) when Slack cannot tell: nothing may be posted before it can."""
        if entry.message.file is not None:
            return None
        try:
            response = self.client.conversations_history(
                channel=entry.message.channel,
                oldest=str(entry.created_us / US_PER_SECOND - 1),
                include_all_metadata=True,
                limit=200,
            )
        except (SlackApiError, SlackClientError, OSError) as problem:
            raise _Retry(None, f"cannot read the channel history to check: {problem}", in_doubt=True) from None
        messages: list[dict[str, Any]] = response.get("messages") or []
        for posted in messages:
            metadata = posted.get("metadata") or {}
            if (
                metadata.get("event_type") == METADATA_EVENT
                and (metadata.get("event_payload") or {}).get("key") == entry.key
            ):
                return str(posted.get("ts"))
        return None


def _retry_after(headers: Any) -> float:
    values = {str(k).lower(): v for k, v in (headers or {}).items()}
    raw = values.get("retry-after")
    if isinstance(raw, list):
        raw = raw[0] if raw else None
    try:
        return max(float(raw), 0.0) if raw is not None else BACKOFF_SECONDS
    except ValueError:
        return BACKOFF_SECONDS
