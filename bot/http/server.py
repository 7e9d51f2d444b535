"""The uvicorn server of ``acr-bot serve``, with limits that keep slow and stalled clients from taking it over.

uvicorn times out idle keep-alive connections, but not a connection that never finishes its request headers
(one byte now and then, or nothing at all): 1,100 such connections once made ``/healthz`` and real senders
fail. Here:

- a request's headers must arrive within HTTP_HEADER_TIMEOUT_SECONDS of the connection (or of the previous
  response), else the connection is closed (``GuardedHttpToolsProtocol``);
- a request's body must arrive within HTTP_BODY_TIMEOUT_SECONDS, else 408 (``bot.http.bodies.read_capped``);
- at most HTTP_MAX_CONNECTIONS connections are served at once; a request beyond that is answered 503 (uvicorn's
  ``limit_concurrency``), never reset, and the stalled connections holding the slots go within the header
  timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bot.settings import Settings


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus a deadline for each request's headers."""

    header_timeout_seconds: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()  # the next request on this keep-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_seconds, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        in_flight = self.cycle is not None and not self.cycle.response_complete
        if not in_flight and not self.transport.is_closing():
            self.transport.close()


def server_config(app: Any, settings: Settings, **options: Any) -> Config:
    """uvicorn's Config for ``app`` with the limits of ``settings`` (HTTP_*)."""
    protocol = type(
        "ConfiguredProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout_seconds": settings.http_header_timeout_seconds},
    )
    return Config(
        app,
        http=protocol,
        limit_concurrency=settings.http_max_connections,
        timeout_keep_alive=5,
        **options,
    )
