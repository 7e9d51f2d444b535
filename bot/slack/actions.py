"""Interactive components: the App Home's Refresh button."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from bot.slack.answers import Answerer
from bot.slack.app_home import REFRESH_ACTION, publish_home
from bot.slack.commands import acknowledge


def register(app: App, answerer: Answerer) -> None:
    def refresh_home(body: dict[str, Any]) -> None:
        publish_home(answerer, app.client, body["user"]["id"])

    app.action(REFRESH_ACTION)(ack=acknowledge, lazy=[refresh_home])
