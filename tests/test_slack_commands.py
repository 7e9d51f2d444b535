"""/acr and /tier1 over HTTP against the real server, signed like Slack, replies caught by a fake Slack."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.slack.app import LISTENER_THREADS
from bot.storage import ContactStore
from metrics.engine import compute
from metrics.query import MetricQuery, MetricResult
from tests.fake_slack import FakeSlack
from tests.slack_support import (
    FORM,
    INJECTION_AGENT,
    SECRET,
    SlackServer,
    all_text,
    command_form,
    running,
    seed,
    signed_post,
    slack_settings,
)

SUPERVISOR = "U0SUPER"
MARIA_USER = "U0MARIA"
OTHER_USER = "U0OTHER"


@pytest.fixture
def store(store: ContactStore) -> ContactStore:
    """The conftest store (on each backend), with the seeded contacts."""
    seed(store, time.time())
    return store


@pytest.fixture
def server(store: ContactStore, slack_server: Callable[..., SlackServer]) -> SlackServer:
    """Everyone may ask everything (no supervisors configured)."""
    return slack_server(store)


@pytest.fixture
def guarded(store: ContactStore, slack_server: Callable[..., SlackServer]) -> SlackServer:
    """One supervisor configured; maria's Slack user linked to her agent name."""
    store.link_agent(MARIA_USER, "maria")
    return slack_server(store, slack_supervisor_ids=SUPERVISOR)


def ask(server: SlackServer, fake: FakeSlack, text: str, name: str, **kwargs: Any) -> dict[str, Any]:
    response = server.command(text, response_url=fake.response_url(name), **kwargs)
    assert response.status_code == 200, response.text
    return fake.reply(name)


def body_text(reply: dict[str, Any]) -> str:
    return all_text(reply)


# --- valid commands of each form ---------------------------------------------------------------------


def test_acr_for_an_agent_states_everything(server: SlackServer, fake: FakeSlack) -> None:
    reply = ask(server, fake, "agent:maria 7d", "a")
    text = body_text(reply)
    assert reply["response_type"] == "ephemeral"
    assert reply["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "ACR 80.0%", "emoji": False}}
    assert "8 of 10 matured contacts had no repeat contact within 7 days" in text
    assert "1 more is pending" in text
    assert "95% interval" in text
    assert "last 30 days" in text and "repeat window 7 days" in text
    assert "agent `maria`" in text


def test_tier1_counts_escalations(server: SlackServer, fake: FakeSlack) -> None:
    reply = ask(server, fake, "agent:maria", "t", command="/tier1")
    assert reply["blocks"][0]["text"]["text"] == "Tier-1 resolution 70.0%"
    assert "7 of 10 matured tier-1 contacts" in body_text(reply)


def test_previous_period_is_compared_in_points(server: SlackServer, fake: FakeSlack) -> None:
    reply = ask(server, fake, "agent:bob", "p")
    text = body_text(reply)
    assert reply["blocks"][0]["text"]["text"].startswith("ACR 100.0%")
    assert "Previous 30 days" in text and "50.0% (2 matured), up 50.0 points, not significant (p = 0.25)" in text


def test_the_previous_period_with_far_less_data_is_not_compared(server: SlackServer, fake: FakeSlack) -> None:
    """The data starts 45 days ago, inside the previous 30 days, which hold a few matured contacts against 12."""
    text = body_text(ask(server, fake, "team:billing", "f"))
    assert re.search(r"far less data \(\d matured; the data starts [-\d]+, inside it\), so no comparison", text)
    assert "points," not in text


def test_breakdown_is_ranked_worst_first_with_sample_sizes(server: SlackServer, fake: FakeSlack) -> None:
    reply = ask(server, fake, "by:agent last:30d", "b")
    table = next(b["text"]["text"] for b in reply["blocks"] if "```" in b.get("text", {}).get("text", ""))
    names = [line.split()[1] for line in table.split("\n")[3:-1]]
    assert names[0] == "maria"  # 80% is the worst
    assert re.search(r"maria\s+80\.0%†", table)  # 10 matured: a small sample, marked
    assert "fewer than 30 matured contacts" in body_text(reply)


def test_quoted_names_channel_and_calendar_dates(server: SlackServer, fake: FakeSlack) -> None:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    start = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 29 * 86_400))
    reply = ask(server, fake, f'agent:"maria garcia" channel:CHAT since:{start} until:{today}', "q")
    assert reply["blocks"][0]["text"]["text"].startswith("ACR 100.0%")
    assert "2 of 2 matured contacts" in body_text(reply)
    assert f"{start}" in body_text(reply)


def test_by_day_keeps_date_order(server: SlackServer, fake: FakeSlack) -> None:
    reply = ask(server, fake, "by:day last:3d 12h", "d")
    text = body_text(reply)
    assert "*By day:*" in text
    dates = re.findall(r"\d{4}-\d{2}-\d{2}(?= )", text.split("```")[1])
    assert dates == sorted(dates) and len(dates) >= 3


def test_share_posts_in_channel(server: SlackServer, fake: FakeSlack) -> None:
    reply = ask(server, fake, "team:billing share", "s")
    assert reply["response_type"] == "in_channel"


def test_help_lists_every_word(server: SlackServer, fake: FakeSlack) -> None:
    text = body_text(ask(server, fake, "help", "h"))
    for word in ("agent:", "team:", "queue:", "channel:", "last:", "since:", "until:", "by:", "me", "share", "link"):
        assert word in text


def test_mentions_resolve_to_the_linked_agent(server: SlackServer, fake: FakeSlack, store: ContactStore) -> None:
    store.link_agent(MARIA_USER, "maria")
    reply = ask(server, fake, f"<@{MARIA_USER}|maria.s>", "m1")
    assert reply["blocks"][0]["text"]["text"].startswith("ACR 80.0%")
    reply = ask(server, fake, f"agent:<@{MARIA_USER}>", "m2")
    assert reply["blocks"][0]["text"]["text"].startswith("ACR 80.0%")
    reply = ask(server, fake, "<@U0NOBODY|ghost>", "m3")
    assert "is not linked to an agent" in body_text(reply)


def test_me_answers_about_the_caller(server: SlackServer, fake: FakeSlack, store: ContactStore) -> None:
    store.link_agent(MARIA_USER, "maria")
    assert ask(server, fake, "me", "me1", user=MARIA_USER)["blocks"][0]["text"]["text"].startswith("ACR 80.0%")
    assert "not linked to an agent name yet" in body_text(ask(server, fake, "me", "me2", user=OTHER_USER))


def test_channel_reference_is_read_as_its_name(server: SlackServer, fake: FakeSlack) -> None:
    reply = ask(server, fake, "queue:<#C0123|refunds>", "c")
    assert "queue `refunds`" in body_text(reply)


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("agnet:maria", "Did you mean agent:maria?"),
        ("bananas", "unknown word 'bananas'"),
        ("by:agnt", "Did you mean by:agent?"),
        ("since:2026-02-30", "does not exist"),
        ("91d", "longer than the maximum of 90d"),
        ("agent:mari", "Did you mean agent:maria"),
        ("team:biling", "Did you mean team:billing"),
        ("agent:maria since:2020-01-01 until:2020-01-31", "no inbound contacts handled by agent 'maria'"),
        ('agent:"maria', "is not closed"),
    ],
)
def test_errors_are_short_ephemeral_explanations_with_usage(
    server: SlackServer, fake: FakeSlack, text: str, expected: str
) -> None:
    """The usage line only when a word was wrong; an unknown name or an empty period is not a wrong word."""
    reply = ask(server, fake, text, "e")
    shown = body_text(reply)
    assert reply["response_type"] == "ephemeral"
    assert expected in shown
    word_was_wrong = not text.startswith(("agent:mari", "team:"))
    assert ("Usage: /acr" in shown) == word_was_wrong
    assert "Traceback" not in shown


def test_unexpected_failure_shows_a_request_id_and_logs_it(
    fake: FakeSlack, store: ContactStore, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(source: Any, query: MetricQuery, zone: Any) -> MetricResult:
        raise RuntimeError("disk on fire")

    with running(slack_settings(database_url, fake.api_url), store, broken) as server:
        reply = ask(server, fake, "7d", "x")
    text = body_text(reply)
    found = re.search(r"request id ([0-9a-f]+)", text)
    assert found is not None and "disk on fire" not in text and "Traceback" not in text
    assert any(found.group(1) in r.getMessage() and r.exc_info for r in caplog.records)


# --- signatures --------------------------------------------------------------------------------------


def test_bad_signature_is_refused(server: SlackServer, fake: FakeSlack) -> None:
    response = server.command("7d", response_url=fake.response_url("bad"), secret="not-the-secret")
    assert response.status_code == 401
    time.sleep(0.2)
    assert fake.calls_to("/respond/bad") == []


def test_stale_timestamp_is_refused(server: SlackServer, fake: FakeSlack) -> None:
    response = server.command("7d", response_url=fake.response_url("old"), timestamp=int(time.time()) - 600)
    assert response.status_code == 401
    time.sleep(0.2)
    assert fake.calls_to("/respond/old") == []


def test_without_signing_secret_the_endpoint_says_how_to_set_it(
    fake: FakeSlack, store: ContactStore, database_url: str
) -> None:
    settings = slack_settings(database_url, fake.api_url, slack_signing_secret=None)
    with running(settings, store) as server:
        response = server.command("7d", response_url=fake.response_url("n"))
    assert response.status_code == 503 and "SLACK_SIGNING_SECRET" in response.text


# --- permissions -------------------------------------------------------------------------------------


def test_supervisor_may_ask_about_anyone(guarded: SlackServer, fake: FakeSlack) -> None:
    assert ask(guarded, fake, "agent:bob", "s1", user=SUPERVISOR)["blocks"][0]["text"]["text"].startswith("ACR 100.0%")
    assert "```" in body_text(ask(guarded, fake, "by:agent", "s2", user=SUPERVISOR))


def test_agent_may_ask_about_themselves_only(guarded: SlackServer, fake: FakeSlack) -> None:
    assert ask(guarded, fake, "me by:day", "a1", user=MARIA_USER)["blocks"][0]["text"]["text"].startswith("ACR 80.0%")
    assert ask(guarded, fake, "agent:maria", "a2", user=MARIA_USER)["blocks"][0]["text"]["text"].startswith("ACR 80.0%")
    refused = body_text(ask(guarded, fake, "agent:bob", "a3", user=MARIA_USER))
    assert "only supervisors can see another agent's numbers" in refused and "/acr me" in refused
    refused = body_text(ask(guarded, fake, "me by:agent", "a4", user=MARIA_USER))
    assert "only supervisors can see a breakdown by agent" in refused


def test_team_numbers_are_for_everyone(guarded: SlackServer, fake: FakeSlack) -> None:
    reply = ask(guarded, fake, "team:billing", "t1", user=OTHER_USER)
    assert reply["blocks"][0]["type"] == "header"
    refused = body_text(ask(guarded, fake, "agent:maria", "t2", user=OTHER_USER))
    assert "only supervisors" in refused and "Once a supervisor links" in refused


def test_supervisor_group_members_are_supervisors(fake: FakeSlack, store: ContactStore, database_url: str) -> None:
    fake.answer("usergroups.list", {"ok": True, "usergroups": [{"id": "S0LEADS", "handle": "support-leads"}]})
    fake.answer("usergroups.users.list", {"ok": True, "users": ["U0LEAD"]})
    settings = slack_settings(database_url, fake.api_url, slack_supervisor_group="@support-leads")
    with running(settings, store) as server:
        assert ask(server, fake, "agent:bob", "g1", user="U0LEAD")["blocks"][0]["text"]["text"].startswith("ACR 100.0%")
        assert "only supervisors" in body_text(ask(server, fake, "agent:bob", "g2", user=OTHER_USER))
    assert fake.calls_to("usergroups.users.list")[0].body["usergroup"] == "S0LEADS"
    assert len(fake.calls_to("usergroups.users.list")) == 1  # cached
    assert fake.calls_to("usergroups.users.list")[0].headers["Authorization"] == "Bearer xoxb-test-token"


def test_link_by_supervisor_then_me(guarded: SlackServer, fake: FakeSlack, store: ContactStore) -> None:
    refused = body_text(ask(guarded, fake, f"link <@{OTHER_USER}|o> agent:bob", "l0", user=MARIA_USER))
    assert "only supervisors can link" in refused
    done = body_text(ask(guarded, fake, f"link <@{OTHER_USER}|o> agent:bob", "l1", user=SUPERVISOR))
    assert "Linked <@U0OTHER> to agent `bob`" in done
    assert store.agent_for_user(OTHER_USER) == "bob"
    assert ask(guarded, fake, "me", "l2", user=OTHER_USER)["blocks"][0]["text"]["text"].startswith("ACR 100.0%")
    assert "Did you mean agent:bob" in body_text(ask(guarded, fake, f"link <@{OTHER_USER}> agent:bobb", "l3"))
    assert "U0OTHER" in body_text(ask(guarded, fake, "links", "l4", user=SUPERVISOR))
    ask(guarded, fake, f"unlink <@{OTHER_USER}>", "l5", user=SUPERVISOR)
    assert store.agent_for_user(OTHER_USER) is None


# --- escaping ----------------------------------------------------------------------------------------


def test_names_from_the_data_cannot_ping_or_format(server: SlackServer, fake: FakeSlack) -> None:
    reply = ask(server, fake, "team:sales by:agent", "i")
    text = body_text(reply)
    assert INJECTION_AGENT not in text
    assert "<!channel>" not in text and "@here" not in text
    assert "Ann &amp; &lt;!channel…" in text  # escaped, and cut to the table's name width
    reply = ask(server, fake, 'agent:"Ann &amp; &lt;!channel&gt; *bold* @here"', "i2")
    text = body_text(reply)
    assert reply["blocks"][0]["text"]["text"].startswith("ACR 100.0%")
    assert "`Ann &amp; &lt;!channel&gt; *bold* @\u2060here`" in text


# --- reliability -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_rate_limited_response_url_is_retried(server: SlackServer, fake: FakeSlack) -> None:
    fake.fail("/respond/rl", 429, times=1, retry_after=1)
    fake.fail("/respond/rl", 500, times=1)
    server.command("agent:maria", response_url=fake.response_url("rl"))
    calls = fake.wait_for("/respond/rl", status=None, count=3, timeout=15)
    assert [c.status for c in calls] == [429, 500, 200]
    assert calls[1].at - calls[0].at >= 0.9  # waited for Retry-After
    assert calls[2].body["blocks"][0]["text"]["text"].startswith("ACR 80.0%")


@pytest.mark.slow
def test_rate_limited_web_api_is_retried(fake: FakeSlack, store: ContactStore, database_url: str) -> None:
    fake.fail("usergroups.users.list", 429, times=1, retry_after=1)
    fake.answer("usergroups.users.list", {"ok": True, "users": ["U0LEAD"]})
    settings = slack_settings(database_url, fake.api_url, slack_supervisor_group="S0LEADS")
    with running(settings, store) as server:
        assert ask(server, fake, "agent:bob", "w", user="U0LEAD")["blocks"][0]["text"]["text"].startswith("ACR 100.0%")
    assert [c.status for c in fake.calls_to("usergroups.users.list")] == [429, 200]


def test_ack_is_immediate_while_questions_are_slow(fake: FakeSlack, store: ContactStore, database_url: str) -> None:
    """Every question is held until the test releases it, and there are more questions than listener threads:
    each ack must still come back at once (Slack gives up after 3 s), and every answer must follow."""
    release = threading.Event()

    def slow(source: Any, query: MetricQuery, zone: Any) -> MetricResult:
        release.wait(30)
        return compute(source, query, zone)

    questions = LISTENER_THREADS + 4
    with running(slack_settings(database_url, fake.api_url), store, slow) as server:
        acks = []
        for n in range(questions):
            started = time.perf_counter()
            response = server.command("agent:maria", response_url=fake.response_url(f"slow{n}"))
            acks.append(time.perf_counter() - started)
            assert response.status_code == 200 and response.text == ""
        assert max(acks) < 1.0, acks
        time.sleep(0.3)
        assert fake.calls_to("/respond/slow") == []  # all still computing
        release.set()
        for n in range(questions):
            assert fake.reply(f"slow{n}")["blocks"][0]["text"]["text"].startswith("ACR 80.0%")


def test_offline_mode_logs_instead_of_calling_slack(
    fake: FakeSlack, store: ContactStore, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    settings = slack_settings(
        database_url, fake.api_url, slack_bot_token=None, slack_supervisor_ids=SUPERVISOR, slack_supervisor_group="S0X"
    )
    with running(settings, store) as server:
        reply = ask(server, fake, "agent:maria", "off", user=SUPERVISOR)
        assert reply["blocks"][0]["text"]["text"].startswith("ACR 80.0%")
        assert "only supervisors" in body_text(ask(server, fake, "agent:maria", "off2", user=OTHER_USER))
        server.bot.client.chat_postMessage(channel="C1", text="digest")
    assert not fake.calls_to("/api/")
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "SLACK_BOT_TOKEN is not set" in messages
    for logged in ("would call chat.postMessage", "would call usergroups.users.list", "reply", "ACR 80.0%"):
        assert logged in messages


def test_supervisor_ids_setting_is_validated() -> None:
    from bot.settings import load_settings
    from metrics.errors import UserError

    assert load_settings(slack_supervisor_ids="U0AAA, W0BBB U0CCC").supervisor_ids == {"U0AAA", "W0BBB", "U0CCC"}
    with pytest.raises(UserError, match="SLACK_SUPERVISOR_IDS: 'maria' is not a Slack user id"):
        load_settings(slack_supervisor_ids="U0AAA,maria")


@pytest.mark.slow
def test_the_acr_bot_serve_process_answers_slack(
    fake: FakeSlack, store: ContactStore, database_url: str, tmp_path: Path
) -> None:
    """The real ``acr-bot serve`` process, as deployed: signed command in, Block Kit reply out."""
    from tests.test_serve import start_serve

    env = {"SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": fake.api_url}
    process = start_serve(database_url, tmp_path / "serve.log", **env)
    try:
        with httpx.Client(timeout=10) as http:
            form = command_form("agent:maria share", "/acr", SUPERVISOR, fake.response_url("proc"))
            response = signed_post(http, process.url + "/slack/events", form, FORM)
            assert response.status_code == 200
            reply = fake.reply("proc")
            assert reply["response_type"] == "in_channel"
            assert reply["blocks"][0]["text"]["text"].startswith("ACR 80.0%")
            forged = signed_post(http, process.url + "/slack/events", form, FORM, secret="wrong")
            assert forged.status_code == 401
    finally:
        process.proc.terminate()
        process.proc.wait(15)
    assert "everyone in Slack may see every agent's numbers" in process.log_text()  # no supervisors: warned
