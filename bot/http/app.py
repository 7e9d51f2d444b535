"""The one ASGI app of ``acr-bot serve``: webhook, health, and whatever routes other parts mount into it.

Composable on purpose: the Slack app passes its ``POST /slack/events`` route in ``extra_routes`` and the scheduler
passes a lifespan hook; ``build_app`` knows neither.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.http.health import Health
from bot.http.metrics import RequestMetricsMiddleware, metrics_route
from bot.http.responses import JSONResponse, error_response
from bot.http.webhook import Webhook
from bot.platforms import platform_routes
from bot.settings import Settings
from bot.storage import ContactStore
from bot.telemetry import REQUEST_ID

log = logging.getLogger("acr_bot.http")

LifespanHook = Callable[[Starlette], AbstractAsyncContextManager[None]]
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_KEY = "acr_bot.request_id"


def build_app(
    settings: Settings,
    store: ContactStore,
    extra_routes: Sequence[BaseRoute] = (),
    lifespans: Sequence[LifespanHook] = (),
) -> Starlette:
    """The app. ``lifespans`` are entered in order at startup and left in reverse order at shutdown."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as hooks:
            hooks.callback(decoders.close)  # (last: after the server has answered its requests)
            for hook in lifespans:
                await hooks.enter_async_context(hook(app))
            yield

    webhook = Webhook(settings, store)
    platforms, decoders = platform_routes(settings, store)
    routes = [
        webhook.route(),
        *platforms,
        Health(settings, store).route(),
        metrics_route(store),
        *extra_routes,
    ]
    app = Starlette(
        routes=routes,
        # outermost first: the request id is set before anything is counted or logged
        middleware=[Middleware(RequestIdMiddleware), Middleware(RequestMetricsMiddleware, routes=routes)],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.webhook_enabled = webhook.enabled
    app.state.platform_decoders = decoders
    return app


def request_id(scope: Scope) -> str:
    """The id of the current request, as sent back in ``X-Request-Id`` and written in the logs."""
    return str(scope.get(_REQUEST_ID_KEY, "-"))


async def _http_error(request: Request, exc: Exception) -> Response:
    """404, 405 and other HTTP errors raised by routing, as JSON."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = exc.detail
    return error_response(exc.status_code, message, headers=exc.headers)


class RequestIdMiddleware:
    """Gives every request an id (sent back as ``X-Request-Id``) and turns any unexpected exception into a JSON
    500 that carries the id, logged with its traceback; a stack trace never reaches a client."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex[:16]
        scope[_REQUEST_ID_KEY] = rid
        REQUEST_ID.set(rid)  # on every log record of this request (LOG_FORMAT=json shows it)
        header = (REQUEST_ID_HEADER.lower().encode(), rid.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("request %s: %s %s failed", rid, scope.get("method"), scope.get("path"))
            if started:
                raise  # the response is half sent; the server closes the connection
            response = JSONResponse(
                {"error": f"internal error (request id {rid}); the server log has the details", "request_id": rid},
                status_code=500,
            )
            await response(scope, receive, send_with_id)
