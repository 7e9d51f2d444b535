"""``why``: the contacts behind a number, through a real store file, equal to a plain-loop reading of the contract
after random delivery orders and updates; and its summary (causes, reasons, channels, time to return)."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.cli import main
from bot.storage import ContactStore
from metrics import definitions as rules
from metrics.engine import compute
from metrics.query import MetricQuery
from metrics.records import Contact
from metrics.why import Repeat, WhyQuery, WhyRow, summarize
from tests.fake_slack import FakeSlack
from tests.slack_support import SlackServer, add_contacts, all_text
from tests.test_metrics_engine import NEW_YORK, questions, records, to_contact


def reference_rows(contacts: list[Contact], query: WhyQuery) -> list[WhyRow]:
    """CONTRACT sections 2 and 3 read literally: the rules of ``metrics.definitions`` in plain loops over every
    contact, no derived data, no SQL; the first repeat is the earliest of all repeats (ties: ``(source, id)``)."""
    rows: list[WhyRow] = []
    until = rules.clip_until(query.until_us, query.as_of_us)
    for c in contacts:
        if not rules.is_candidate(c, query.filters, query.since_us, until):
            continue
        if not rules.in_population(query.metric, c.tier):
            continue
        if not rules.is_matured(c.end_us, query.window_us, query.as_of_us):
            continue  # pending: not behind the number
        repeats = [s for s in contacts if rules.is_repeat_of(s, c, query.window_us)]
        first = min(repeats, key=lambda s: (s.started_us, s.source, s.id)) if repeats else None
        if rules.is_success(query.metric, repeated=first is not None, escalated=c.escalated, resolved=c.resolved):
            continue
        causes: list[Any] = []
        if query.metric == "tier1":
            if c.escalated:
                causes.append("escalated")
            if c.resolved is False:
                causes.append("not_resolved")
        if first is not None:
            causes.append("repeat")
        repeat = None
        if first is not None:
            repeat = Repeat(
                first.source, first.id, first.agent, first.channel, first.reason, first.started_us,
                first.started_us - c.end_us,
            )  # fmt: skip
        shown = (c.source, c.id, c.customer_id, c.agent or "", c.team, c.queue, c.channel, c.reason)
        rows.append(WhyRow(*shown, c.started_us, c.ended_us, tuple(causes), repeat))
    rows.sort(key=lambda row: (row.started_us, row.source, row.id))
    return rows


@pytest.mark.slow
@settings(
    max_examples=int(os.environ.get("ACR_HYPOTHESIS_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    deliveries=st.lists(st.lists(records, min_size=1, max_size=12), min_size=1, max_size=4),
    asked=st.lists(questions(), min_size=1, max_size=4),
)
def test_why_rows_equal_reference(
    new_store: Callable[[], ContactStore], deliveries: list[list[dict[str, Any]]], asked: list[MetricQuery]
) -> None:
    """On every backend: a new store for each example, the deliveries in order (updates and reorders among them)."""
    with closing(new_store()) as store:
        final: dict[str, Contact] = {}
        for batch in deliveries:
            contacts = [to_contact(record) for record in batch]
            store.upsert(contacts)
            for c in contacts:
                final[c.id] = c  # the last delivered version wins
        contacts = list(final.values())
        for query in asked:
            why = WhyQuery.of(query)
            rows = list(store.why_rows(why))
            assert rows == reference_rows(contacts, why)
            # the rows are exactly the matured contacts the rate counts as not resolved
            total = compute(store, replace(query, by=None), NEW_YORK).total
            assert len(rows) == total.matured - total.resolved
            summary = summarize(query.metric, rows)
            assert summary.rows == len(rows)
            assert summary.repeats == sum(row.repeat is not None for row in rows)
            assert sorted(summary.return_seconds) == sorted(
                row.repeat.return_seconds for row in rows if row.repeat is not None
            )


# --- Slack: the signed HTTP path against the fake Slack ---------------------------------------------------

SUPERVISOR, MARIA_USER, OMAR_USER = "U0SUPER", "U0MARIA", "U0OMAR"
DAY_S = 86_400


def why_records(now: float) -> list[dict[str, Any]]:
    """maria, 20 days ago: 4 billing contacts by phone; the customers of two come back 2 and 30 hours later, one by
    chat for "outage", one by phone for "billing" (to omar). omar: 2 contacts, one repeated."""
    start = now - 20 * DAY_S
    out: list[dict[str, Any]] = []
    for i in range(4):
        out.append(
            {"id": f"m{i}", "customer_id": f"+49151000000{i}", "agent": "maria", "team": "billing",
             "channel": "phone", "reason": "billing", "started_at": start + i, "ended_at": start + i + 600}
        )  # fmt: skip
    out.append({"id": "back0", "customer_id": "+491510000000", "agent": "omar", "team": "billing", "channel": "chat",
                "reason": "outage", "started_at": start + 600 + 2 * 3600})  # fmt: skip
    out.append({"id": "back1", "customer_id": "+491510000001", "agent": "omar", "team": "billing", "channel": "phone",
                "reason": "billing", "started_at": start + 601 + 30 * 3600})  # fmt: skip
    out.append({"id": "o0", "customer_id": "+491519999990", "agent": "omar", "team": "billing", "channel": "chat",
                "reason": "outage", "started_at": start - DAY_S})  # fmt: skip
    out.append({"id": "o0-again", "customer_id": "+491519999990", "channel": "chat", "started_at": start - DAY_S + 60})
    return out


def why_server(store: ContactStore, slack_server: Callable[..., SlackServer], **config: Any) -> SlackServer:
    """The real server on the fake Slack with ``why_records``; maria linked, one supervisor."""
    add_contacts(store, why_records(time.time()))
    store.link_agent(MARIA_USER, "maria")
    return slack_server(store, slack_supervisor_ids=SUPERVISOR, **config)


def test_why_shared_posts_the_summary_and_the_csv_in_its_thread(
    store: ContactStore, slack_server: Callable[..., SlackServer], fake: FakeSlack
) -> None:
    server = why_server(store, slack_server)
    response = server.command("agent:maria why share", user=SUPERVISOR, response_url=fake.response_url("w"))
    assert response.status_code == 200
    [post] = fake.wait_for("chat.postMessage")
    assert post.body["channel"] == "C0CHAN"
    text = all_text(post.body)
    assert "ACR 50.0%" in text and "2 of 4 matured contacts were not resolved." in text
    assert (
        "Came back with (the repeat contact's reason, by failures explained): billing 50% (1 of 2); outage 50%" in text
    )
    assert (
        "Came back for the same reason: 50% (1 of 2); through another channel: 50% (1 of 2) (phone → chat 1)." in text
    )
    assert "Time to return: median 16.0 hours (quartiles 9.0 hours to 23.0 hours)." in text
    assert "All 2 rows: a CSV file in this thread." in text
    assert "+4•••••••••00" in text and "+491510000000" not in text  # masked in Slack by default
    [completed] = fake.wait_for("files.completeUploadExternal")
    assert completed.body["channel_id"] == "C0CHAN" and completed.body["thread_ts"] == "1700000000.000001"
    [csv_text] = fake.uploads().values()
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert [row["Contact"] for row in rows] == ["m0", "m1"]
    assert rows[0]["Customer"] == "+491510000000"  # whole for a supervisor
    assert rows[0]["Came back via"] == "chat" and rows[0]["Came back for"] == "outage"
    assert rows[1]["Hours to return"] == "30.00" and rows[1]["Came back to (agent)"] == "omar"
    assert fake.calls_to("/respond/w") == []  # the reply went through chat.postMessage, in a thread-able message


def test_why_private_answers_ephemerally_and_sends_the_csv_by_direct_message(
    store: ContactStore, slack_server: Callable[..., SlackServer], fake: FakeSlack
) -> None:
    server = why_server(store, slack_server, mask_customer_ids=False)
    server.command("agent:maria why", user=SUPERVISOR, response_url=fake.response_url("p"))
    reply = fake.reply("p")
    assert reply["response_type"] == "ephemeral"
    assert "All 2 rows: in a CSV file." in all_text(reply)
    assert "The CSV file is on its way to your direct messages with the bot." in all_text(reply)
    assert "+491510000000" in all_text(reply)  # MASK_CUSTOMER_IDS=false: whole
    [opened] = fake.wait_for("conversations.open")
    assert opened.body["users"] == SUPERVISOR
    [completed] = fake.wait_for("files.completeUploadExternal")
    assert completed.body["channel_id"] == "D0DIRECT" and "thread_ts" not in completed.body
    assert fake.calls_to("chat.postMessage") == []


def test_why_about_another_agent_is_refused_but_about_yourself_is_masked(
    store: ContactStore, slack_server: Callable[..., SlackServer], fake: FakeSlack
) -> None:
    server = why_server(store, slack_server)
    server.command("agent:omar why", user=MARIA_USER, response_url=fake.response_url("no"))
    refused = all_text(fake.reply("no"))
    assert "only supervisors can see the contacts behind other agents' numbers" in refused
    server.command("team:billing why", user=MARIA_USER, response_url=fake.response_url("team"))
    assert "only supervisors can see" in all_text(fake.reply("team"))
    server.command("me why", user=MARIA_USER, response_url=fake.response_url("me"))
    assert "2 of 4 matured contacts were not resolved." in all_text(fake.reply("me"))
    fake.wait_for("files.completeUploadExternal")
    [csv_text] = fake.uploads().values()
    assert "+491510000000" not in csv_text and "+4•••••••••00" in csv_text  # not a supervisor: masked
    assert len(fake.calls_to("files.getUploadURLExternal")) == 1  # nothing uploaded for the refusals


def test_why_links_contact_ids_with_the_url_template_and_tier1_says_why_rows_failed(
    store: ContactStore, slack_server: Callable[..., SlackServer], fake: FakeSlack
) -> None:
    template = "https://example.zendesk.com/agent/tickets/{id}"
    server = why_server(store, slack_server, contact_url_template=template)
    server.command("agent:maria why", command="/tier1", user=SUPERVISOR, response_url=fake.response_url("t"))
    text = all_text(fake.reply("t"))
    assert "<https://example.zendesk.com/agent/tickets/m0|m0>" in text
    assert (
        "Why they failed (a contact can have several causes): escalated 0, marked not resolved 0, came back 2." in text
    )


def readme_example(title: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Run the ``acr-bot`` commands of the README section ``title`` (its ``sh`` block) on a new database: the last
    command's output, and the output the section shows (the block after)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index(title) :]
    commands = section[section.index("```sh\n") + 6 : section.index("```\n\n```\n")]
    shown = section[section.index("```\n\n```\n") + 9 :]
    shown = shown[: shown.index("\n```")]
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'demo.db'}")
    output = ""
    for line in commands.strip().splitlines():
        words = shlex.split(line.split("#", 1)[0])
        assert words[0] == "acr-bot"
        result = CliRunner().invoke(main, words[1:], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        output = result.output
    return output.rstrip("\n"), shown


def test_readme_why_example_is_what_the_demo_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's `why` example, made again from the demo data by the commands it shows."""
    output, shown = readme_example("### Why: the contacts behind a number", tmp_path, monkeypatch)
    assert output == shown


def test_docs_worked_example_rows(store: ContactStore, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/metrics.md states the rows of its worked example; ``acr-bot why`` must give exactly those."""
    from tests.test_report_cli import docs_blocks

    records, _ = docs_blocks()
    add_contacts(store, records)
    monkeypatch.setenv("DATABASE_URL", database_url)

    def rows(metric: str) -> list[tuple[str, list[str], float | None]]:
        result = CliRunner().invoke(main, ["why", metric, "--as-of", "2026-03-20T12:00:00Z", "--format", "json"])
        assert result.exit_code == 0, result.output
        out = json.loads(result.output)
        return [(r["id"], r["causes"], r["repeat"] and r["repeat"]["return_seconds"]) for r in out["rows"]]

    assert rows("acr") == [("c1", ["repeat"], 276_600.0), ("c7", ["repeat"], 604_800.0)]
    assert rows("tier1") == [
        ("c1", ["repeat"], 276_600.0), ("c3", ["escalated"], None), ("c5", ["not_resolved"], None),
        ("c7", ["repeat"], 604_800.0),
    ]  # fmt: skip
    text = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    assert "276,600 s" in text and "604,800 s" in text
