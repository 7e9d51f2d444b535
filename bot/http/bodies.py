"""Reading request bodies with a size cap, before anything else looks at them.

Every public endpoint reads its body through ``read_capped``: a body larger than the cap is refused as soon as it
is known to be too large (by ``Content-Length``, and again while it streams in, so a chunked or mis-declared body
cannot get past it), and nothing more of it is buffered. Signatures are checked only on bodies within the cap.
"""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from bot.http.responses import error_response

# The rest of an oversized body is never read, so the connection cannot be reused.
CLOSE = {"Connection": "close"}


class BodyTooLarge(Exception):
    """The body is larger than the cap; ``limit`` is the cap in bytes."""

    def __init__(self, limit: int):
        super().__init__(f"the body is larger than {limit} bytes")
        self.limit = limit


class BodyIncomplete(Exception):
    """The client went away before the whole body arrived."""


class BodyTooSlow(Exception):
    """The whole body did not arrive within the time allowed (a slow or stalled client)."""

    def __init__(self, seconds: float):
        super().__init__(f"the body did not arrive within {seconds:g} s")
        self.seconds = seconds


async def read_capped(request: Request, limit: int, timeout_seconds: float | None = None) -> bytes:
    """The raw body. Raises BodyTooLarge as soon as it is known to exceed ``limit`` bytes, BodyTooSlow when it has
    not all arrived within ``timeout_seconds``, BodyIncomplete when the client disconnects first."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
    except ClientDisconnect:
        raise BodyIncomplete() from None
    except TimeoutError:
        raise BodyTooSlow(timeout_seconds or 0) from None
    return b"".join(chunks)


async def read_body(request: Request, limit: int, timeout_seconds: float, too_large_message: str) -> bytes | Response:
    """``read_capped``, with each way it can fail as the answer to send: 413, 408 or 400."""
    try:
        return await read_capped(request, limit, timeout_seconds)
    except BodyTooLarge:
        return too_large(too_large_message)
    except BodyTooSlow as slow:
        return error_response(408, f"{slow}; send the request again", headers=CLOSE)
    except BodyIncomplete:
        return incomplete()


def too_large(message: str) -> Response:
    """413 that closes the connection (its unread rest cannot be skipped)."""
    return error_response(413, message, headers=CLOSE)


def incomplete() -> Response:
    return error_response(400, "the client disconnected before the whole body arrived")
