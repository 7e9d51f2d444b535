"""``GET /metrics`` in Prometheus text format, and the middleware that counts every request by route and status.

Unauthenticated, like ``/healthz``: it shows counts, never data. Keep the server on a private address or put
the scrape behind your proxy's access rules.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.storage import ContactStore
from bot.telemetry import HTTP_REQUESTS, REGISTRY, StoreCollector

PATH = "/metrics"


def metrics_route(store: ContactStore) -> Route:
    collector = StoreCollector(store)

    def scrape() -> bytes:
        from_store = CollectorRegistry(auto_describe=True)
        from_store.register(collector)
        return generate_latest(REGISTRY) + generate_latest(from_store)

    async def handle(request: Request) -> Response:
        return Response(await run_in_threadpool(scrape), media_type=CONTENT_TYPE_LATEST)

    return Route(PATH, handle, methods=["GET"], name="metrics")


class RequestMetricsMiddleware:
    """Counts each answered request as ``acr_http_requests_total{route, method, status}``. ``route`` is the path
    of a known route, else ``other`` (a scan of random paths must not create unbounded series)."""

    def __init__(self, app: ASGIApp, routes: Iterable[BaseRoute] = ()):
        self.app = app
        self.paths = frozenset(path for route in routes if isinstance(path := getattr(route, "path", None), str))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope.get("path", "") if scope.get("path") in self.paths else "other"
        method = str(scope.get("method", ""))

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                HTTP_REQUESTS.labels(route, method, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)
