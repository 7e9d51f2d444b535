"""``POST /webhooks/interactions``: signed batches of contact records, stored whole or not at all.

Checks run in this order, each answering before the next is tried:

1. 503 ``WEBHOOK_SECRET`` is not set: unsigned data is never accepted.
2. 413 the body is larger than ``WEBHOOK_MAX_BODY_BYTES`` (by ``Content-Length``, and again while it streams in,
   so a chunked or mis-declared body cannot get past the limit).
3. 401 the signature headers are missing, garbled, more than 300 s off, or do not match the raw body.
   Unsigned senders learn nothing about the rest of the rules.
4. 415 the content type is not JSON or NDJSON.
5. 400 the body is not valid JSON / NDJSON (the error gives the line and column).
6. 422 one or more records are invalid: every problem is listed and nothing is stored.
7. 503 with ``Retry-After`` the store cannot take the batch now (an import holds the write lock for its whole
   file longer than SQLITE_BUSY_TIMEOUT_MS, or the disk is full): nothing is stored, and sending the same batch
   again later is safe. Never a 500 for these: a sender retries a 503 with backoff, where a 500 reads as a bug.
8. 200 ``{"accepted", "inserted", "updated", "unchanged", "stale"}``, sent only after the batch is committed.

Parsing, validation and the store write run in a worker thread so the event loop keeps answering (Slack needs its
acks within 3 s). Concurrent batches share store transactions (group commit, see ``bot.http.coalesce``); each
request's batch is still stored whole or not at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.http.bodies import read_body
from bot.http.coalesce import WriteCoalescer
from bot.http.responses import JSONResponse, error_response
from bot.http.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from bot.settings import Settings
from bot.storage import ContactStore
from bot.storage.errors import StoreUnavailable
from bot.telemetry import BATCHES_DEFERRED, RECORDS_REFUSED, WRITE_SECONDS, count_stored
from metrics.records import Contact, contact_row

log = logging.getLogger("acr_bot.webhook")

PATH = "/webhooks/interactions"
JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson"})
UTF8_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii"})
MAX_DETAILS = 1000  # a 10 MiB body of broken records must not become a gigabyte of error report
_BOM = b"\xef\xbb\xbf"
_NO_SECRET = (
    "the webhook is disabled because WEBHOOK_SECRET is not set; unsigned data is never accepted. "
    "Set WEBHOOK_SECRET in the environment or in .env (for example the output of "
    "python3 -c 'import secrets; print(secrets.token_hex(32))'), restart acr-bot serve, "
    "and sign each request with it (see the README section 'Webhook')"
)


class MalformedBody(Exception):
    """The body is not the JSON or NDJSON it claims to be; the message says where."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """The records of a batch: their decoded JSON values and, when the body was NDJSON, each one's line. Two lists
    rather than an object per record: a batch is hundreds of records, and building a frozen dataclass for each
    took 0.7 us a record, a twentieth of the request's Python before the store."""

    values: list[object]
    lines: list[int] | None = None


def media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """``Content-Type`` split into the lower-cased type and its parameters."""
    if not header:
        return "", {}
    kind, *params = header.split(";")
    parsed: dict[str, str] = {}
    for param in params:
        name, _, value = param.partition("=")
        parsed[name.strip().lower()] = value.strip().strip('"').lower()
    return kind.strip().lower(), parsed


def decode_body(body: bytes, *, ndjson: bool) -> Decoded:
    """The records of a body: one JSON object, a JSON array, or NDJSON (one value per line, blank lines skipped).

    Raises MalformedBody naming the line and column of the first syntax error.
    """
    body = body.removeprefix(_BOM)
    if not body.strip():
        raise MalformedBody("the body is empty; send a JSON object, a JSON array of objects, or NDJSON")
    if ndjson:
        values: list[object] = []
        lines: list[int] = []
        for number, line in enumerate(body.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                values.append(orjson.loads(line))
            except orjson.JSONDecodeError as problem:
                raise MalformedBody(f"invalid NDJSON at line {number}, column {problem.colno}: {problem.msg}") from None
            lines.append(number)
        return Decoded(values, lines)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as problem:
        hint = ""
        if problem.msg.startswith("unexpected content after document"):
            hint = " (several records one per line? send them as Content-Type: application/x-ndjson)"
        raise MalformedBody(
            f"invalid JSON at line {problem.lineno}, column {problem.colno}: {problem.msg}{hint}"
        ) from None
    if isinstance(value, dict):
        return Decoded([value])
    if isinstance(value, list):
        return Decoded(value)
    raise MalformedBody(
        f"expected a JSON object or an array of objects, got {type(value).__name__.replace('str', 'string')}"
    )


@dataclass
class Validated:
    """A batch after validation: the valid contacts, and the problems of the invalid records."""

    contacts: list[Contact]  # rows in Contact field order (plain tuples: every store's writer takes them)
    details: list[dict[str, Any]]  # one entry per bad field, at most MAX_DETAILS
    bad_records: int
    problems: int  # every bad field, listed or not


def validate(decoded: Decoded, settings: Settings) -> Validated:
    """Validate every record of a batch, collecting every problem rather than stopping at the first.

    The contacts are ``contact_row``'s plain tuples, not Contacts: a store's writer takes either (``BulkWriter``),
    and making a NamedTuple of each row was an eighth of the validation (0.45 of 3.25 us a record). One pass over
    the records, then, only when one is invalid, a second that lists the problems."""
    zone = settings.zone
    values = decoded.values
    rows = [contact_row(value, zone) for value in values]
    if list not in map(type, rows):  # every record valid (the usual case)
        return Validated(cast("list[Contact]", rows), [], 0, 0)
    result = Validated([], [], 0, 0)
    lines = decoded.lines
    for index, (value, row) in enumerate(zip(values, rows, strict=True)):
        if type(row) is not list:
            result.contacts.append(cast(Contact, row))
            continue
        problems = row
        result.bad_records += 1
        result.problems += len(problems)
        where: dict[str, Any] = {"index": index}
        if lines is not None:
            where["line"] = lines[index]
        record_id = value.get("id") if isinstance(value, dict) else None
        if isinstance(record_id, (str, int)) and not isinstance(record_id, bool):
            where["id"] = record_id
        for problem in problems[: MAX_DETAILS - len(result.details)]:
            result.details.append({**where, "field": problem.field, "message": problem.message})
    return result


class Webhook:
    """The endpoint, bound to its settings and store."""

    def __init__(self, settings: Settings, store: ContactStore):
        self.settings = settings
        self.store = store
        self.secret: bytes | None = (
            settings.webhook_secret.get_secret_value().encode() if settings.webhook_secret else None
        )
        self.max_body_bytes = settings.webhook_max_body_bytes
        self.writer = WriteCoalescer(store)

    @property
    def enabled(self) -> bool:
        return self.secret is not None

    def route(self) -> Route:
        return Route(PATH, self.handle, methods=["POST"], name="webhook_interactions")

    async def handle(self, request: Request) -> Response:
        if self.secret is None:
            return error_response(503, _NO_SECRET)
        body = await read_body(
            request,
            self.max_body_bytes,
            self.settings.http_body_timeout_seconds,
            f"the body is larger than WEBHOOK_MAX_BODY_BYTES ({self.max_body_bytes} bytes); "
            "split the records into smaller batches",
        )
        if isinstance(body, Response):
            return body
        try:
            verify(self.secret, body, request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER))
        except SignatureError as refused:
            log.warning("webhook refused from %s: %s", _client(request), refused)
            return error_response(401, f"invalid signature: {refused}")
        kind, params = media_type(request.headers.get("content-type"))
        if kind not in JSON_TYPES and kind not in NDJSON_TYPES:
            shown = kind or "none"
            return error_response(
                415,
                f"unsupported content type {shown!r}: send application/json (one object or an array) "
                "or application/x-ndjson (one object per line)",
            )
        charset = params.get("charset")
        if charset is not None and charset not in UTF8_CHARSETS:
            return error_response(415, f"unsupported charset {charset!r}: JSON must be sent as UTF-8")
        try:
            with WRITE_SECONDS.time():
                status, payload = await run_in_threadpool(self._store_batch, body, kind in NDJSON_TYPES)
        except StoreUnavailable as busy:  # nothing was stored; the same request later will be
            BATCHES_DEFERRED.inc()
            log.warning("webhook batch refused for now: %s", busy)
            return error_response(503, str(busy), headers={"Retry-After": str(busy.retry_after_seconds)})
        return JSONResponse(payload, status_code=status)

    def _store_batch(self, body: bytes, ndjson: bool) -> tuple[int, dict[str, Any]]:
        """Decode, validate and store one batch (in a worker thread: parsing and SQLite block)."""
        try:
            decoded = decode_body(body, ndjson=ndjson)
        except MalformedBody as problem:
            return 400, {"error": str(problem)}
        batch = validate(decoded, self.settings)
        if batch.bad_records:
            listed = "" if batch.problems <= MAX_DETAILS else f" (the first {MAX_DETAILS} problems are listed)"
            verb = "is" if batch.bad_records == 1 else "are"
            message = f"{batch.bad_records} of {len(decoded.values)} records {verb} invalid; nothing was stored{listed}"
            RECORDS_REFUSED.inc(len(decoded.values))
            return 422, {"error": message, "details": batch.details}
        counts = self.writer.upsert(batch.contacts)
        count_stored(counts)
        return 200, counts.as_dict()


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown client"
