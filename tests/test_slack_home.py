"""The App Home tab over HTTP: app_home_opened -> views.publish at the fake Slack, per caller."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.storage import ContactStore
from tests.fake_slack import FakeSlack
from tests.slack_support import SlackServer, seed

SUPERVISOR = "U0SUPER"


@pytest.fixture
def server(store: ContactStore, slack_server: Callable[..., SlackServer]) -> SlackServer:
    seed(store, time.time())
    store.link_agent("U0MARIA", "maria")
    store.link_agent(SUPERVISOR, "bob")
    return slack_server(store, slack_supervisor_ids=SUPERVISOR)


def open_home(server: SlackServer, fake: FakeSlack, user: str, count: int = 1) -> dict[str, Any]:
    response = server.event({"type": "app_home_opened", "user": user, "channel": "D0", "tab": "home", "event_ts": "1"})
    assert response.status_code == 200
    call = fake.wait_for("/api/views.publish", count=count)[-1]
    assert call.body["user_id"] == user
    assert call.headers["Authorization"] == "Bearer xoxb-test-token"
    view = call.body["view"]
    assert isinstance(view, dict) and view["type"] == "home"
    return view


def headers(view: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in view["blocks"] if b["type"] == "header"]


def test_linked_agent_sees_herself_against_her_team(server: SlackServer, fake: FakeSlack) -> None:
    view = open_home(server, fake, "U0MARIA")
    text = json.dumps(view, ensure_ascii=False)
    assert headers(view) == ["ACR Bot"] and len(view["blocks"]) < 20
    assert "*You against your team* (agent `maria`)" in text and "*Teams*" not in text
    # maria 8 of 10 (tier-1 7 of 10); team billing: maria's 10 and bob's 2 (both resolved), 10 of 12
    assert "you (maria)" in text and "80.0%" in text and "70.0%" in text
    assert "team billing" in text and "83.3%" in text
    assert "You: tier-1 at the 70% target." in text  # TARGET_TIER1's default; ACR has no target by default


def test_supervisor_sees_teams_weakest_agents_and_own(server: SlackServer, fake: FakeSlack) -> None:
    view = open_home(server, fake, SUPERVISOR)
    text = json.dumps(view, ensure_ascii=False)
    assert "*Teams*, worst ACR first" in text and "billing" in text and "sales" in text
    assert "agent `bob`" in text and len(view["blocks"]) < 20
    assert "*Weakest agents*" not in text  # nobody has 30 matured contacts in the seed
    assert "All teams: tier-1 " in text and "the 70% target." in text
    # bob (linked to the supervisor): 2 of 2 now against 1 of 2 in the 30 days before: the arrow's change in words
    assert "You: ACR up 50.0 points, not significant (p = " in text and "), vs the 30 days before" in text


def test_unlinked_user_is_told_how_to_get_linked(server: SlackServer, fake: FakeSlack) -> None:
    view = open_home(server, fake, "U0NEW")
    assert "/acr link @you agent:NAME" in json.dumps(view)
    assert headers(view) == ["ACR Bot"]


def test_refresh_button_and_rate_limited_publish(server: SlackServer, fake: FakeSlack) -> None:
    open_home(server, fake, "U0MARIA")
    fake.fail("views.publish", 429, times=1, retry_after=1)
    assert server.action("U0MARIA", "home_refresh").status_code == 200
    calls = fake.wait_for("/api/views.publish", count=2, timeout=15)
    assert [c.status for c in fake.calls_to("views.publish")] == [200, 429, 200]
    assert calls[-1].body["user_id"] == "U0MARIA"


def test_messages_tab_is_ignored(server: SlackServer, fake: FakeSlack) -> None:
    server.event({"type": "app_home_opened", "user": "U0MARIA", "channel": "D0", "tab": "messages", "event_ts": "1"})
    time.sleep(0.3)
    assert fake.calls_to("views.publish") == []


def test_url_verification_answers_the_challenge(server: SlackServer) -> None:
    """What Slack sends when the Event Subscriptions request URL is saved (README step 5)."""
    body = json.dumps(
        {
            "token": "legacy-unused",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    )
    response = server.post(body, "application/json")
    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert server.post(body, "application/json", secret="wrong").status_code == 401


def test_supervisor_sees_the_weakest_agents_with_enough_contacts(
    store: ContactStore, slack_server: Callable[..., SlackServer], fake: FakeSlack
) -> None:
    seed(store, time.time())
    server = slack_server(store, slack_supervisor_ids=SUPERVISOR, digest_min_sample=3)
    view = open_home(server, fake, SUPERVISOR)
    text = json.dumps(view, ensure_ascii=False)
    weakest = text.split("*Weakest agents* (at least 3 matured contacts)")[1].split("```")[1]
    names = [line.split()[0] for line in weakest.strip("\\n").split("\\n")]
    assert names == ["maria", "Ann"]  # 80% of 10, then 100% of 3; bob and maria garcia have 2 each
