"""Reading request bodies with a size cap, before anything else looks at them.

Every public endpoint reads its body through ``read_capped``: a body larger than the cap is refused as soon as it
is known to be too large (by ``Content-Length``, and again while it streams in, so a chunked or mis-declared body
cannot get past it), and nothing more of it is buffered. Signatures are checked only on bodies within the cap.
"""

from __future__ import annotations

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


async def read_capped(request: Request, limit: int) -> bytes:
    """The raw body. Raises BodyTooLarge as soon as it is known to exceed ``limit`` bytes, BodyIncomplete when the
    client disconnects first."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise BodyIncomplete() from None
    return b"".join(chunks)


def too_large(message: str) -> Response:
    """413 that closes the connection (its unread rest cannot be skipped)."""
    return error_response(413, message, headers=CLOSE)


def incomplete() -> Response:
    return error_response(400, "the client disconnected before the whole body arrived")
