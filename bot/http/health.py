"""``GET /healthz``: whether the database answers, plus what an operator checks first."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.http.responses import JSONResponse
from bot.settings import Settings
from bot.storage import ContactStore

log = logging.getLogger("acr_bot.health")


def package_version() -> str:
    try:
        return version("acr-bot")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


class Health:
    """The health endpoint, bound to its settings and store."""

    def __init__(self, settings: Settings, store: ContactStore):
        self.store = store
        self.about = {
            "version": package_version(),
            "database": settings.database_url.split(":", 1)[0],
            "timezone": settings.bot_timezone,
            "webhook": "enabled" if settings.webhook_secret else "disabled (WEBHOOK_SECRET is not set)",
        }

    def route(self) -> Route:
        return Route("/healthz", self.handle, methods=["GET"], name="healthz")

    async def handle(self, request: Request) -> Response:
        try:
            contacts = await run_in_threadpool(self.store.count_contacts)
        except Exception as problem:
            log.error("health check: the database does not answer: %s: %s", type(problem).__name__, problem)
            return JSONResponse(
                {"status": "error", "error": f"the database does not answer ({type(problem).__name__})", **self.about},
                status_code=503,
            )
        # leader: this process runs the scheduler; standby: another server does; disabled: none here.
        role = getattr(request.app.state, "scheduler_role", None)
        scheduler = role() if role is not None else "disabled"
        return JSONResponse({"status": "ok", "contacts": contacts, **self.about, "scheduler": scheduler})
