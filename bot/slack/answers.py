"""The one handler behind ``/acr``, ``/tier1``, the App Home and ``acr-bot ask``: words in, a reply out.

It parses, checks who may see what, asks the engine, and renders. It never raises: a problem the user can fix
becomes a short explanation with the usage line; anything else is logged with a request id that the user sees.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.clock import Clock, SystemClock
from bot.export import export_csv
from bot.names import CASE_FOLDED, resolve_names
from bot.presentation import (
    Message,
    code,
    error_message,
    instant_words,
    is_known_name,
    note_message,
    period_words,
    quote_name,
)
from bot.scorecard import build_scorecard
from bot.settings import Settings
from bot.slack.blocks import (
    METRIC_LABELS,
    WHY_ROWS_SHOWN,
    Answer,
    WhyAnswer,
    answer_chart,
    answer_message,
    chart_title,
    file_stem,
    help_message,
    pending_hint,
    trend_breakdown,
    why_message,
    windows_message,
)
from bot.slack.card import card_message
from bot.slack.grammar import LinkCommand, Question, parse
from bot.storage import ContactStore
from bot.why_report import csv_chunks, mask
from metrics.engine import compute
from metrics.errors import UserError
from metrics.query import PERIOD_BREAKDOWNS, MetricQuery, MetricResult
from metrics.significance import previous_query
from metrics.why import WhyQuery, WhyRow, WhySummary
from metrics.windows import window_sensitivity

log = logging.getLogger("acr_bot.slack")

GROUP_CACHE_SECONDS = 300.0
_GROUP_ID = re.compile(r"S[A-Z0-9]{2,}")
Compute = Callable[[ContactStore, MetricQuery, Any], MetricResult]


@dataclass(frozen=True, slots=True)
class Reply:
    """What the user gets: the message, whether it goes to the whole channel, and whether it is an answer."""

    message: Message
    in_channel: bool = False
    ok: bool = True
    files: tuple[ReplyFile, ...] = ()  # uploaded with the reply: in its thread when shared, else by DM


@dataclass(frozen=True, slots=True)
class ReplyFile:
    """A file that goes with a reply (a chart, a CSV export), made only after the reply was posted (drawing a
    chart takes longer than the user should wait for the numbers)."""

    filename: str
    title: str
    render: Callable[[], bytes]


class Supervisors:
    """Who may ask about anyone: SLACK_SUPERVISOR_IDS plus the members of SLACK_SUPERVISOR_GROUP.

    Group members come from ``usergroups.users.list`` (a handle is first looked up with ``usergroups.list``)
    and are cached for GROUP_CACHE_SECONDS; if Slack cannot be asked, the last known members are kept.
    """

    def __init__(self, ids: frozenset[str], group: str | None, client: WebClient | None):
        self.ids = ids
        self.group = group.strip().removeprefix("@") if group else None
        self._client = client
        self._lock = threading.Lock()
        self._members: frozenset[str] = frozenset()
        self._fetched_at: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings, client: WebClient | None) -> Supervisors:
        return cls(settings.supervisor_ids, settings.slack_supervisor_group, client)

    @property
    def configured(self) -> bool:
        """With no supervisors configured everyone may ask everything (``acr-bot serve`` warns)."""
        return bool(self.ids or self.group)

    def is_supervisor(self, user_id: str) -> bool:
        return user_id in self.ids or user_id in self.group_members()

    def allows(self, user_id: str | None) -> bool:
        """The supervisor rule, for every question, link, schedule and button: the operator at the command line
        (``None``), everyone while no supervisor is configured, else the supervisors only."""
        return user_id is None or not self.configured or self.is_supervisor(user_id)

    def group_members(self) -> frozenset[str]:
        if self.group is None or self._client is None:
            return frozenset()
        with self._lock:
            fresh = self._fetched_at is not None and time.monotonic() - self._fetched_at < GROUP_CACHE_SECONDS
            if not fresh:
                try:
                    self._members = self._fetch(self._client, self.group)
                except (SlackApiError, SlackClientError, OSError, KeyError, TypeError) as problem:
                    log.warning(
                        "cannot read supervisor group %s from Slack (%s); keeping the last known", self.group, problem
                    )
                self._fetched_at = time.monotonic()
            return self._members

    @staticmethod
    def _fetch(client: WebClient, group: str) -> frozenset[str]:
        group_id = group
        if not _GROUP_ID.fullmatch(group):
            listed = client.usergroups_list()
            groups: list[dict[str, Any]] = listed.get("usergroups", [])
            matches = [g["id"] for g in groups if g.get("handle") == group]
            if not matches:
                log.warning("no Slack user group with handle %r (SLACK_SUPERVISOR_GROUP)", group)
                return frozenset()
            group_id = matches[0]
        response = client.usergroups_users_list(usergroup=group_id)
        users: list[str] = response.get("users", [])
        return frozenset(str(user) for user in users)


class Answerer:
    """Answers the words of a slash command for one caller. Shared by Slack, the App Home and the CLI."""

    def __init__(
        self,
        settings: Settings,
        store: ContactStore,
        supervisors: Supervisors,
        compute_fn: Compute = compute,
        clock: Clock | None = None,
    ):
        self.settings = settings
        self.store = store
        self.supervisors = supervisors
        self._compute = compute_fn
        self.clock = clock or SystemClock()

    # --- entry points ----------------------------------------------------------------------------------

    def handle(
        self,
        command: str,
        text: str,
        user_id: str | None,
        *,
        as_of_us: int | None = None,
        request_id: str | None = None,
    ) -> Reply:
        """The reply to ``command text`` from ``user_id`` (None: the operator at the command line, who may see
        everything). Never raises."""
        rid = request_id or uuid.uuid4().hex[:12]
        try:
            parsed = parse(command, text)
            if isinstance(parsed, LinkCommand):
                return self._link(parsed, user_id)
            if parsed.help:
                return Reply(help_message())
            return self._answer(parsed, user_id, self.now_us(as_of_us))
        except UserError as problem:
            return Reply(error_message(str(problem)), ok=False)
        except Exception:
            log.exception("request %s: %s %r from %s failed", rid, command, text, user_id)
            return Reply(_internal_error(rid), ok=False)

    def caller_agent(self, user_id: str) -> str | None:
        return self.store.agent_for_user(user_id)

    def compute_answer(self, question: Question, as_of_us: int) -> Answer:
        """The question's result and the previous period of the same length (totals only)."""
        zone = self.settings.zone
        query = question.to_query(as_of_us, zone)
        result = self._compute(self.store, query, zone)
        if result.until_us <= result.since_us:
            raise UserError(
                f"the period starts after now (as of {instant_words(as_of_us, zone)}): nothing to count yet"
            )
        previous = self._compute(self.store, previous_query(query, result.since_us, result.until_us), zone)
        return Answer(
            question,
            result,
            previous,
            target=self.settings.target(question.metric),
            data_since_us=self.store.data_since_us(),
        )

    # --- questions -------------------------------------------------------------------------------------

    def _answer(self, question: Question, user_id: str | None, as_of_us: int) -> Reply:
        question = self._resolve_people(question, user_id)
        refusal = self._refusal(question, user_id)
        if refusal is not None:
            return Reply(refusal, ok=False)
        answer = self.compute_answer(question, as_of_us)
        total = answer.result.total
        if total.matured + total.pending == 0:
            resolved = self._resolve_case(question)
            if resolved is not None:
                question, note = resolved
                answer = self.compute_answer(question, as_of_us)
                answer = replace(answer, notes=(*answer.notes, note))
                total = answer.result.total
        if total.matured + total.pending == 0:
            self._explain_empty(question, answer)
        if question.card:
            return self._card(answer)
        if question.windows:  # the same scope and period, scored for several windows on one cohort
            found = window_sensitivity(
                self.store, answer.result.query, question.windows, self.settings.zone, self._compute, quick=self.store
            )
            return Reply(windows_message(found, answer, self.settings.zone), in_channel=question.share)
        hint = pending_hint(answer)
        if hint is not None:
            answer = replace(answer, notes=(*answer.notes, hint))
        files = self._files(answer, as_of_us)
        if question.why:
            return self._why(answer, user_id, files)
        return Reply(answer_message(answer, self.settings.zone), in_channel=question.share, files=files)

    def _files(self, answer: Answer, as_of_us: int) -> tuple[ReplyFile, ...]:
        """The chart (asked with ``chart``, and always for a trend) and the CSV export (``export``)."""
        question, zone = answer.question, self.settings.zone
        stem = file_stem(answer, zone)
        files: list[ReplyFile] = []
        if question.chart or question.by in PERIOD_BREAKDOWNS:
            series = answer
            if question.by is None:  # the same question as a trend: by day, or by week or month when long
                query = answer.result.query
                by = trend_breakdown(answer.result.until_us - answer.result.since_us)
                series = replace(answer, result=self._compute(self.store, replace(query, by=by), zone))
            if series.result.rows:
                draw = partial(answer_chart, series, zone, self.settings.digest_min_sample)
                files.append(ReplyFile(f"{stem}.png", chart_title(series, zone), draw))
        if question.export:
            csv_text = export_csv(answer.result, zone).encode()
            files.append(ReplyFile(f"{stem}.csv", f"{chart_title(answer, zone)} (CSV)", lambda: csv_text))
        return tuple(files)

    def _card(self, answer: Answer) -> Reply:
        """One agent's scorecard over the question's period (``bot.scorecard``)."""
        zone, question, result = self.settings.zone, answer.question, answer.result
        card = build_scorecard(self.store, self._compute, result.query, zone)
        period = f"{question.period_words()}: {period_words(result.since_us, result.until_us, zone)}"
        asked = f"{question.command} {question.words}".strip()
        return Reply(card_message(card, zone, asked, period), in_channel=question.share)

    def _resolve_case(self, question: Question) -> tuple[Question, str] | None:
        """Names typed in another letter case (``team:Billing``) read as the one stored name that matches, if
        exactly one does; None when nothing was read differently. Asked only when the exact names found no
        contact, so a question with the stored names never pays for the lookup."""
        filters, changed = resolve_names(question.filters, self.store.dimension_values)
        if not changed:
            return None
        note = "Read " + ", ".join(f"{d}:{typed} as {d}:{stored}" for d, typed, stored in changed) + "."
        return replace(question, filters=filters), note

    def _why(self, answer: Answer, user_id: str | None, files: tuple[ReplyFile, ...]) -> Reply:
        """The answer, what drives it and its first rows; every row as a CSV (customer ids whole for supervisors,
        masked for others while MASK_CUSTOMER_IDS is on)."""
        zone, query = self.settings.zone, answer.result.query
        first: list[WhyRow] = []
        summary = WhySummary(query.metric)

        def rows() -> Iterator[WhyRow]:
            for row in summary.extend(self.store.why_rows(WhyQuery.of(query))):
                if len(first) < WHY_ROWS_SHOWN:
                    first.append(row)
                yield row

        masked_csv = self.settings.mask_customer_ids and not self.supervisors.allows(user_id)
        content = "".join(csv_chunks(rows(), zone, mask if masked_csv else str)).encode()
        by_reason = self._compute(self.store, replace(query, by="reason"), zone)
        shared = answer.question.share
        message = why_message(
            WhyAnswer(answer, summary, first, {row.key: row.counts for row in by_reason.rows}, shared),
            zone,
            masked=self.settings.mask_customer_ids,
            url_template=self.settings.contact_url_template,
        )
        title = f"{METRIC_LABELS[query.metric]}: the contacts behind the number ({summary.rows:,} rows)"
        if summary.rows:
            files = (*files, ReplyFile(f"{file_stem(answer, zone)}-why.csv", title, lambda: content))
        return Reply(message, in_channel=shared, files=files)

    def _resolve_people(self, question: Question, user_id: str | None) -> Question:
        """``me`` and ``@user`` become the linked agent's name."""
        if question.me:
            if user_id is None:
                raise UserError("`me` needs to know who you are: run acr-bot ask with --user SLACK_USER_ID")
            agent = self.caller_agent(user_id)
            if agent is None:
                raise UserError(
                    "your Slack user is not linked to an agent name yet. A supervisor can link you with "
                    "/acr link @you agent:NAME"
                )
            return question.with_agent(agent)
        if question.agent_user is not None:
            agent = self.caller_agent(question.agent_user)
            if agent is None:
                raise UserError(
                    f"<@{question.agent_user}> is not linked to an agent name. A supervisor can link them with "
                    f"/acr link <@{question.agent_user}> agent:NAME"
                )
            return question.with_agent(agent)
        return question

    def _refusal(self, question: Question, user_id: str | None) -> Message | None:
        """Agents may see their own numbers and team-level numbers; other agents' numbers are for supervisors."""
        if not question.asks_about_agents or self.supervisors.allows(user_id):
            return None
        assert user_id is not None
        own = self.caller_agent(user_id)
        if own is not None and question.agent == own and question.by != "agent":
            return None
        if question.by == "agent":
            what = "a breakdown by agent"
        elif question.why:
            what = "the contacts behind other agents' numbers"
        else:
            what = "another agent's numbers"
        hint = (
            "You can always ask about yourself with `/acr me`."
            if own is not None
            else "Once a supervisor links your Slack user to your agent name, `/acr me` shows your own numbers."
        )
        return note_message(
            f"Sorry, only supervisors can see {what}. {hint}",
            f"Sorry, only supervisors can see {what}. {hint.replace('`', '')}",
        )

    def _explain_empty(self, question: Question, answer: Answer) -> None:
        """No contact at all in scope: name an unknown agent/team/... with close matches, else say it is empty."""
        for dimension, value in question.filters:
            if dimension not in CASE_FOLDED:
                continue
            known = self.store.dimension_values(dimension)
            if value not in known:
                by_lower = {k.lower(): k for k in known}
                close = [by_lower[m] for m in difflib.get_close_matches(value.lower(), list(by_lower), n=3, cutoff=0.6)]
                hint = f" Did you mean {', '.join(f'{dimension}:{quote_name(c)}' for c in close)}?" if close else ""
                raise UserError(f"no {dimension} named {value!r} in the data.{hint}")
        scope = ", ".join(f"{d} {v!r}" for d, v in question.filters) or "any agent"
        period = period_words(answer.result.since_us, answer.result.until_us, self.settings.zone)
        raise UserError(f"no inbound contacts handled by {scope} in {period}. Try a longer period (last:90d).")

    # --- links -----------------------------------------------------------------------------------------

    def _link(self, command: LinkCommand, user_id: str | None) -> Reply:
        if not self.supervisors.allows(user_id):
            text = "Sorry, only supervisors can link Slack users to agents."
            return Reply(note_message(text, text), ok=False)
        if command.action == "links":
            links = self.store.list_agent_links()
            if not links:
                text = "No Slack users are linked to agents yet. Link one with /acr link @user agent:NAME"
                return Reply(note_message(text, text))
            mrkdwn = "\n".join(f"<@{link.slack_user_id}> → {code(link.agent)}" for link in links)
            plain = "\n".join(f"{link.slack_user_id} -> {link.agent}" for link in links)
            return Reply(note_message(mrkdwn, plain))
        assert command.user_id is not None
        if command.action == "unlink":
            removed = self.store.unlink_agent(command.user_id)
            text = f"<@{command.user_id}> is {'no longer' if removed else 'not'} linked to an agent."
            return Reply(note_message(text, text.replace("<@", "").replace(">", "")))
        assert command.agent is not None
        note = self._check_agent_name(command.agent)
        self.store.link_agent(command.user_id, command.agent, linked_by=user_id)
        log.info("linked Slack user %s to agent %r (by %s)", command.user_id, command.agent, user_id or "cli")
        mrkdwn = f"Linked <@{command.user_id}> to agent {code(command.agent)}.{note}"
        return Reply(note_message(mrkdwn, f"Linked {command.user_id} to agent {command.agent}.{note}"))

    def _check_agent_name(self, agent: str) -> str:
        """Refuse a likely typo (a close match exists); accept a new name with a note."""
        if is_known_name("agent", agent, self.store.dimension_values("agent")):
            return ""
        return " (no contacts for this agent yet)"

    def now_us(self, as_of_us: int | None = None) -> int:
        return self.clock.now_us() if as_of_us is None else as_of_us


def _internal_error(rid: str) -> Message:
    text = (
        f"Sorry, something went wrong on our side while answering (request id {rid}). "
        "Please try again; if it keeps happening, give the request id to whoever runs the bot."
    )
    return note_message(f":x: {text}", text)
