"""The App Home tab: the caller's own numbers when linked to an agent, the teams' numbers for supervisors."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.presentation import Block, code, escape, section
from bot.slack.answers import Answerer
from bot.slack.blocks import answer_message
from bot.slack.commands import acknowledge
from bot.slack.grammar import USAGE, Question
from metrics.errors import UserError
from metrics.query import METRICS

log = logging.getLogger("acr_bot.slack")
REFRESH_ACTION = "home_refresh"


def register(app: App, answerer: Answerer) -> None:
    def home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        publish_home(answerer, app.client, event["user"])

    app.event("app_home_opened")(ack=acknowledge, lazy=[home_opened])


def publish_home(answerer: Answerer, client: WebClient, user_id: str, as_of_us: int | None = None) -> None:
    """Build the caller's Home and publish it; failures are logged with an id, never raised into bolt."""
    view = home_view(answerer, user_id, as_of_us)
    try:
        client.views_publish(user_id=user_id, view=view)
    except Exception:
        log.exception("could not publish the App Home of %s", user_id)


def home_view(answerer: Answerer, user_id: str, as_of_us: int | None = None) -> dict[str, Any]:
    now = answerer.now_us(as_of_us)
    blocks: list[Block] = [{"type": "header", "text": {"type": "plain_text", "text": "ACR Bot"}}]
    agent = answerer.caller_agent(user_id)
    everyone = answerer.supervisors.allows(user_id)
    if agent is not None:
        blocks.append(section(f"*Your numbers* (agent {code(agent)}), last 30 days, 7-day repeat window"))
        for metric in METRICS:
            blocks.extend(_answer_blocks(answerer, Question(metric, filters=(("agent", agent),)), now))
        blocks.append({"type": "divider"})
    if everyone:
        blocks.append(section("*Teams*, last 30 days, 7-day repeat window, worst first"))
        for metric in METRICS:
            blocks.extend(_answer_blocks(answerer, Question(metric, by="team"), now))
        blocks.append({"type": "divider"})
    if agent is None and not everyone:
        blocks.append(
            section(
                "Your Slack user is not linked to an agent name yet, so there is nothing personal to show. "
                "A supervisor can link you with `/acr link @you agent:NAME`; then `/acr me` and this tab show "
                "your numbers."
            )
        )
    blocks.append(
        {
            "type": "actions",
            "elements": [
                {"type": "button", "action_id": REFRESH_ACTION, "text": {"type": "plain_text", "text": "Refresh"}}
            ],
        }
    )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(USAGE)}]})
    return {"type": "home", "blocks": blocks[:100]}


def _answer_blocks(answerer: Answerer, question: Question, as_of_us: int) -> list[Block]:
    try:
        answer = answerer.compute_answer(question, as_of_us)
    except UserError as problem:
        return [section(f":warning: {escape(str(problem))}")]
    except Exception:
        rid = uuid.uuid4().hex[:12]
        log.exception("request %s: App Home %s failed", rid, question.metric)
        return [section(f":x: Could not compute this (request id {rid}).")]
    blocks = answer_message(answer, answerer.settings.zone).blocks
    return [block for block in blocks if not (block["type"] == "context" and "asked:" in str(block))]
