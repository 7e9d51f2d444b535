"""The slack-bolt App of ``acr-bot serve``, its Web API client, and the Starlette route that mounts it.

Thin on purpose: listeners live in ``commands`` (the one ``/acr`` and ``/tier1`` router), ``schedules`` (the
alert buttons), ``app_home`` and ``actions``, each with an order-free ``register``; the answers in ``answers``.
The scheduler reaches Slack only through what ``acr-bot serve`` injects: the same Web API client (base URL,
retries, token or offline logging) for its posts, and ``bot.ports.Schedules`` for the schedule words.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltContext, BoltRequest
from slack_bolt.adapter.starlette.handler import to_starlette_response
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.web import SlackResponse
from slack_sdk.webhook import WebhookClient, WebhookResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.ports import Schedules
from bot.settings import Settings
from bot.slack.answers import Answerer, Supervisors
from bot.storage import ContactStore

log = logging.getLogger("acr_bot.slack")

EVENTS_PATH = "/slack/events"
# Slack's own requests are small (a slash command or a button press is a few KiB; a modal submission with every
# block tens of KiB). The endpoint is public, so anything larger is refused before its signature is checked.
EVENTS_MAX_BODY_BYTES = 1024 * 1024
API_TIMEOUT_SECONDS = 15
LISTENER_THREADS = 8


def retry_handlers() -> list[RetryHandler]:
    """Retries for every Slack call: 429 (waits Retry-After), 500/503, and dropped connections."""
    return [
        RateLimitErrorRetryHandler(max_retry_count=3),
        ServerErrorRetryHandler(max_retry_count=2),
        ConnectionErrorRetryHandler(max_retry_count=2),
    ]


class OfflineWebClient(WebClient):
    """The Web API without a token: every call is logged instead of sent (``acr-bot serve`` offline mode)."""

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:
        payload = kwargs.get("json") or kwargs.get("data") or kwargs.get("params") or {}
        log.info("offline (no SLACK_BOT_TOKEN): would call %s %s", api_method, _short(payload))
        return SlackResponse(
            client=self,
            http_verb="POST",
            api_url=self.base_url + api_method,
            req_args={},
            data={"ok": True, "offline": True},
            headers={},
            status_code=200,
        )


def build_web_client(settings: Settings) -> WebClient:
    """The Web API client: SLACK_API_URL, retries, and the bot token (offline logging without one)."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    kind = WebClient if token else OfflineWebClient
    return kind(
        token=token, base_url=settings.slack_api_url, timeout=API_TIMEOUT_SECONDS, retry_handlers=retry_handlers()
    )


class RetryingRespond(Respond):
    """``respond()`` that retries like the Web API client (bolt's own posts to response_url only once), and
    logs the reply in offline mode."""

    def __init__(self, response_url: str | None, offline: bool):
        super().__init__(response_url=response_url)
        self.offline = offline

    def __call__(  # type: ignore[override]
        self,
        text: str = "",
        blocks: Sequence[dict[str, Any]] | None = None,
        response_type: str | None = None,
        replace_original: bool | None = None,
        delete_original: bool | None = None,
        **more: Any,
    ) -> WebhookResponse:
        if self.response_url is None:
            raise ValueError("respond is unsupported here as there is no response_url")
        message: dict[str, Any] = {"text": text, **more}
        if blocks is not None:
            message["blocks"] = list(blocks)
        for key, value in (
            ("response_type", response_type),
            ("replace_original", replace_original),
            ("delete_original", delete_original),
        ):
            if value is not None:
                message[key] = value
        if self.offline:
            log.info("offline (no SLACK_BOT_TOKEN): reply %s", _short(message))
        client = WebhookClient(self.response_url, timeout=API_TIMEOUT_SECONDS, retry_handlers=retry_handlers())
        response = client.send_dict(message)
        if response.status_code != 200:
            log.error("posting to response_url failed: HTTP %s %s", response.status_code, response.body[:200])
        return response


def bolt_app(settings: Settings, client: WebClient) -> App:
    """The bolt App with request verification on, and no listener yet (``register_listeners``).

    Authorization is a local function (no ``auth.test`` on the request path, so the first ack is as fast as
    the others, and the server starts even when Slack is unreachable or no token is set).
    """
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""

    def authorize(enterprise_id: str | None, team_id: str | None, user_id: str | None) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id, bot_token=token)

    from concurrent.futures import ThreadPoolExecutor

    bolt_logger = logging.getLogger("slack_bolt.App")
    quiet = _DropTokenWarnings()
    bolt_logger.addFilter(quiet)  # bolt warns that `authorize` wins over the token: that is the intent here
    try:
        app = App(
            name="acr-bot",
            signing_secret=signing_secret,
            client=client,
            authorize=authorize,
            request_verification_enabled=True,
            # Listeners are an ack (on the request thread) plus lazy functions (in the executor): a busy
            # executor never delays an ack, as it would if the ack itself waited for a free worker.
            process_before_response=True,
            listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="slack"),
        )
    finally:
        bolt_logger.removeFilter(quiet)
    offline = token is None

    @app.middleware
    def _retrying_respond(context: BoltContext, next: Any) -> Any:
        if context.response_url:
            context["respond"] = RetryingRespond(context.response_url, offline)
        return next()

    return app


def register_listeners(app: App, answerer: Answerer, schedules: Schedules | None) -> None:
    """Every listener group, in any order (without ``schedules`` the schedule words and the alert buttons are
    not offered)."""
    from bot.slack import actions, app_home, commands
    from bot.slack import schedules as alert_buttons

    commands.register(app, answerer, schedules)
    if schedules is not None:
        alert_buttons.register(app, answerer, schedules)
    app_home.register(app, answerer)
    actions.register(app, answerer)


@dataclass(frozen=True)
class SlackBot:
    """What ``acr-bot serve`` mounts: the bolt App (its ``client`` is what the scheduler posts with) and the
    route for ``build_app(extra_routes=...)``."""

    app: App
    routes: list[BaseRoute]

    @property
    def client(self) -> WebClient:
        return self.app.client


def build_slack(
    settings: Settings,
    store: ContactStore,
    answerer: Answerer | None = None,
    schedules: Schedules | None = None,
    client: WebClient | None = None,
) -> SlackBot:
    """The Slack part of the server, with its warnings about missing configuration logged once."""
    warn_about_configuration(settings)
    app = bolt_app(settings, client or build_web_client(settings))
    register_listeners(
        app, answerer or Answerer(settings, store, Supervisors.from_settings(settings, app.client)), schedules
    )
    return SlackBot(app, slack_routes(settings, app))


def warn_about_configuration(settings: Settings) -> None:
    """What ``acr-bot serve`` says at start about Slack: offline mode, no signing secret, no supervisors."""
    if settings.slack_bot_token is None:
        log.warning("SLACK_BOT_TOKEN is not set: Slack offline mode, Web API calls are logged instead of sent")
    if settings.slack_signing_secret is None:
        log.warning("SLACK_SIGNING_SECRET is not set: POST %s answers 503 until it is", EVENTS_PATH)
    if not settings.supervisor_ids and not settings.slack_supervisor_group:
        log.warning(
            "no supervisors configured (SLACK_SUPERVISOR_IDS / SLACK_SUPERVISOR_GROUP): "
            "everyone in Slack may see every agent's numbers"
        )


def slack_routes(settings: Settings, bolt_app: App) -> list[BaseRoute]:
    """``POST /slack/events`` for ``build_app(extra_routes=...)``.

    bolt's Starlette adapter calls the synchronous ``App.dispatch`` on the event loop (it blocks the whole
    server while middleware runs); here dispatch runs in Starlette's thread pool instead. Listeners ack at
    once and do their work in bolt's own executor, so the HTTP answer never waits for a question.
    """
    configured = settings.slack_signing_secret is not None

    async def events(request: Request) -> Response:
        if not configured:
            return JSONResponse(
                {"error": "Slack is not configured: set SLACK_SIGNING_SECRET (see README, Connect to Slack)"},
                status_code=503,
            )
        from bot.http.app import request_id
        from bot.http.bodies import read_body

        body = await read_body(
            request,
            EVENTS_MAX_BODY_BYTES,
            settings.http_body_timeout_seconds,
            f"the body is larger than {EVENTS_MAX_BODY_BYTES} bytes; Slack never sends that much",
        )
        if isinstance(body, Response):
            return body

        bolt_request = BoltRequest(
            body=body.decode("utf-8", errors="replace"),
            query=dict(request.query_params),
            headers={k: [v] for k, v in request.headers.items()},
            context={"request_id": request_id(request.scope)},
        )
        bolt_response = await run_in_threadpool(bolt_app.dispatch, bolt_request)
        return to_starlette_response(bolt_response)

    return [Route(EVENTS_PATH, events, methods=["POST"])]


class _DropTokenWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "`token`" not in record.getMessage()


def _short(payload: Any, limit: int = 2000) -> str:
    text = json.dumps(payload, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"
