"""The path every platform webhook shares: verify -> decode -> map -> validate -> store, and the answer.

A platform module says only what is its own: how a request is authenticated (``verify``), how its body becomes
events (``decode``), and which contact records each event means (``records``, zero or more in the ingest schema
of CONTRACT section 1). Everything else is here, the same for every platform:

1. 503 the platform's secret setting is unset (the answer names the setting): unsigned data is never accepted.
2. 413 the body (or, with ``Content-Encoding: gzip``, its decompressed form) is larger than
   ``WEBHOOK_MAX_BODY_BYTES``; nothing more than that is ever buffered.
3. 401 the request is not authenticated by the platform's scheme (missing, stale, forged).
4. 400 the body cannot be decoded (not the platform's envelope, bad base64, bad JSON ...).
5. 422 an event maps to a record that is invalid (every problem listed).
6. 503 with ``Retry-After`` the store cannot take the request now (busy with an import's write lock, a full disk),
   or the process decoding it stopped: nothing was stored, and the platform's own retry delivers it again (as the
   generic webhook answers).
7. 200 once the whole request is stored in one transaction: each event is stored as records, or is not a
   contact (counted ``ignored``); each record keeps the platform's raw event (``acr-bot contacts get``), and a
   platform agent id the roster knows becomes the agent's name, with its team and tier (``bot.roster``).

Nothing is stored from a refused request. Steps 2-5 run in decoding processes (``PLATFORM_DECODE_WORKERS``,
``bot.platforms.decoding``), which also compress the raws as the store keeps them; the server's process reads
bodies and writes, and writes share the group commit of ``bot.http.coalesce``.
"""

from __future__ import annotations

import copy
import hmac
import logging
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, ClassVar, Final, NamedTuple, Protocol

import orjson
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from bot import roster
from bot.http.coalesce import WriteCoalescer
from bot.http.responses import JSONResponse, error_response
from bot.ingest.events_format import Unusual
from bot.settings import Settings
from bot.storage import ContactStore, PackedContacts, RawPacker, RawPacking, UpsertCounts
from bot.storage.errors import StoreUnavailable
from bot.telemetry import BATCHES_DEFERRED, RECORDS_REFUSED, WRITE_SECONDS, count_stored
from metrics.records import Contact, parse_contact
from metrics.timeutil import InstantCache, instant_cache

log = logging.getLogger("acr_bot.platforms")

MAX_DETAILS = 100  # problems listed in one answer
_WIDTH: Final = len(Contact._fields)
_RAW: Final = Contact._fields.index("raw")
_KEY: Final = itemgetter(Contact._fields.index("source"), Contact._fields.index("id"))


class Refused(Exception):
    """The request is refused with ``status``; the message says why, for the sender."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request as a platform module sees it: headers, the path with its query, and the (decompressed) body."""

    headers: Mapping[str, str]
    path: str  # with the query string, as the sender addressed it
    body: bytes
    notes: dict[str, Any] = field(default_factory=dict)  # what decode learnt that the answer needs


class Event(NamedTuple):
    """One platform event: its decoded value and its text as delivered (kept as each record's raw). A tuple:
    a delivery makes hundreds, and a frozen dataclass took three times as long to build."""

    value: Any
    raw: str


@dataclass
class Outcome:
    """What one request did: the store's counts, and the events that were not contacts."""

    counts: UpsertCounts = field(default_factory=UpsertCounts)
    ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        return {**self.counts.as_dict(), "ignored": self.ignored}


class DecoderStopped(Exception):
    """The process decoding a request stopped, or was killed for not answering in time, before it answered:
    nothing was stored, and sending the request again is safe (a new process takes it)."""


class Decoders(Protocol):
    """Where requests are decoded (``bot.platforms.decoding``): ``Platform.decode_delivery`` of the platform
    ``name``, in this process or in another one. Raises DecoderStopped when that process dies or does not
    answer in time."""

    def decode(
        self,
        name: str,
        headers: Headers,
        path: str,
        body: bytes,
        entries: Sequence[roster.RosterEntry],
        packer: RawPacker | None,
    ) -> Decoded:
        """``entries``: the store's roster (``ContactStore.roster``), which the decoders make a lookup of once a
        change."""
        ...

    def close(self) -> None: ...


class Platform(ABC):
    """One platform's webhook. Subclasses set the class attributes and the three steps."""

    name: ClassVar[str]  # the records' source and the endpoint: POST /webhooks/{name}
    title: ClassVar[str]  # how people write the platform's name
    secret_setting: ClassVar[str]  # the Settings field holding the secret (its env name is the upper case)

    def __init__(self, settings: Settings):
        self.settings = settings
        secret: SecretStr | None = getattr(settings, self.secret_setting)
        self.secret: bytes | None = secret.get_secret_value().encode() if secret else None

    @property
    def path(self) -> str:
        return f"/webhooks/{self.name}"

    @abstractmethod
    def verify(self, incoming: Incoming) -> None:
        """Raise Refused(401, ...) unless the request is authentic (compare digests with hmac.compare_digest)."""

    @abstractmethod
    def decode(self, incoming: Incoming) -> list[Event]:
        """The events of the body; Refused(400, ...) when it is not the platform's envelope."""

    @abstractmethod
    def records(self, event: Event) -> list[dict[str, Any]]:
        """The contact records (ingest schema) an event means; [] when it is not a contact."""

    def contact_row(self, event: Event, instants: InstantCache, known: roster.Lookup) -> Sequence[Any] | None:
        """The fast path, where a platform has one: the Contact row of an event that means one contact, made
        straight from the event (the roster ``known`` applied), or None when it is not a contact. Raises Unusual
        for anything else, as the default does: ``records``, the roster and validation then take the event."""
        raise Unusual

    def ok(self, incoming: Incoming, outcome: Outcome) -> Response:
        """The answer to a stored request."""
        return JSONResponse(outcome.as_dict())

    def refused(self, incoming: Incoming | None, status: int, message: str, details: Sequence[Any] = ()) -> Response:
        """The answer to a refused request."""
        return error_response(status, message, details=list(details) if details else None)

    def unset_settings(self) -> list[str]:
        """The settings (environment names) this endpoint needs that are not set."""
        return [] if self.secret is not None else [self.secret_setting.upper()]

    def unset_message(self, unset: list[str]) -> str:
        names = " and ".join(unset)
        verb = "is" if len(unset) == 1 else "are"
        return (
            f"the {self.title} endpoint is disabled because {names} {verb} not set; unsigned data is never accepted. "
            f"Set {names} in the environment or in .env and restart acr-bot serve "
            f"(see the README section 'Connect {self.title}')"
        )

    def decode_delivery(
        self, headers: Headers, path: str, body: bytes, known: roster.Lookup, packer: RawPacker | None
    ) -> Decoded:
        """Steps 2-5 of the module's list for one request's body (gunzip, verify, decode, map, validate), and its
        contacts' raws packed by ``packer`` (the store's: ``RawPacking``; None: raws as text). Pure: no store, no
        I/O, so it runs in a decoding process (``bot.platforms.decoding``) as well as here."""
        incoming = Incoming(headers, path, body)
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            limit = self.settings.webhook_max_body_bytes
            unpacked = gunzip_limited(body, limit)
            if unpacked is None:
                return Decoded(incoming.notes, status=413, message=too_large_message(limit))
            if isinstance(unpacked, str):
                return Decoded(incoming.notes, status=400, message=unpacked)
            incoming = Incoming(headers, path, unpacked, incoming.notes)
        try:
            self.verify(incoming)
        except Refused as refused:
            return Decoded(incoming.notes, status=refused.status, message=str(refused), unverified=True)
        try:  # (the events go as soon as they are contacts: fewer objects for the garbage collector to see)
            contacts, ignored, details = self._contacts(self.decode(incoming), known)
        except Refused as refused:
            return Decoded(incoming.notes, status=refused.status, message=str(refused))
        if details:
            plural = "s" if len(details) != 1 else ""
            return Decoded(
                incoming.notes,
                status=422,
                message=f"{len(details)} problem{plural} in the mapped records; nothing was stored",
                details=details[:MAX_DETAILS],
                refused=len(contacts) + len({(d["index"], d["id"]) for d in details}),
            )
        contacts.sort(key=_KEY)  # (stable: a key's rows keep their order) the order a store writes best, made here
        values = list(chain.from_iterable(contacts))
        if packer is not None and values:
            own = copy.copy(packer)  # (a compressor of its own: zstd's are not thread-safe; ~70 us to make)
            values[_RAW::_WIDTH] = [own.pack(raw.encode()) for raw in values[_RAW::_WIDTH]]
        return Decoded(incoming.notes, values, packed=packer is not None, ignored=ignored)

    def _contacts(
        self, events: Iterable[Event], known: roster.Lookup
    ) -> tuple[list[Sequence[Any]], int, list[dict[str, Any]]]:
        """The contacts of the events (the fast path's rows as plain tuples, which the garbage collector stops
        tracking, unlike a NamedTuple; Contacts from the general path), how many events were not contacts, and
        the problems of the invalid ones."""
        contacts: list[Sequence[Any]] = []
        details: list[dict[str, Any]] = []
        ignored = 0
        zone, name = self.settings.zone, self.name
        instants, fast_row = instant_cache(zone), self.contact_row
        for index, event in enumerate(events):
            try:
                row = fast_row(event, instants, known)
            except Unusual:
                pass
            else:
                if row is None:
                    ignored += 1
                else:
                    contacts.append(row)
                continue
            records = self.records(event)
            if not records:
                ignored += 1
            for record in records:
                parsed = parse_contact(roster.apply(record, name, known), zone, raw=event.raw)
                if isinstance(parsed, Contact):
                    contacts.append(parsed)
                else:
                    where = {"index": index, "id": record.get("id")}
                    details.extend({**where, "field": p.field, "message": p.message} for p in parsed)
        return contacts, ignored, details


@dataclass(slots=True)
class Decoded:
    """What ``Platform.decode_delivery`` made of a request: its contacts, or the refusal to answer. Small to send
    back from a decoding process: the contacts are one flat list of values."""

    notes: dict[str, Any]  # what decoding learnt that the answer needs (``Incoming.notes``)
    values: list[Any] = field(default_factory=list)  # the contacts' values, row after row, in Contact field order
    packed: bool = False  # raws as the packer made them (else text)
    ignored: int = 0  # events that are not contacts
    status: int = 0  # a refusal's HTTP status; 0: decoded
    message: str = ""
    details: list[dict[str, Any]] = field(default_factory=list)
    unverified: bool = False  # refused by ``verify`` (logged, with the sender)
    refused: int = 0  # records refused as invalid (422)


class PlatformEndpoint:
    """Serves one Platform at its path: the body is read here, decoded by ``decoders`` (worker processes, or this
    one: ``bot.platforms.decoding``) and stored through the shared group-commit writer."""

    def __init__(self, platform: Platform, writer: WriteCoalescer, store: ContactStore, decoders: Decoders):
        self.platform = platform
        self.writer = writer
        self.store = store
        self.decoders = decoders
        self.max_body_bytes = platform.settings.webhook_max_body_bytes
        self._packer: RawPacker | None = None  # the store's, once it has one (see _raw_packer)

    def route(self) -> Route:
        return Route(self.platform.path, self.handle, methods=["POST"], name=f"webhook_{self.platform.name}")

    async def handle(self, request: Request) -> Response:
        platform = self.platform
        if unset := platform.unset_settings():
            return platform.refused(None, 503, platform.unset_message(unset))
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return self._too_large(None)
        try:
            body = await read_limited(request, self.max_body_bytes)
        except ClientDisconnect:
            return platform.refused(None, 400, "the client disconnected before the whole body arrived")
        if body is None:
            return self._too_large(None)
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip"):
            incoming = Incoming(request.headers, path, body)
            return platform.refused(incoming, 415, f"unsupported Content-Encoding {encoding!r}: send gzip or none")
        with WRITE_SECONDS.time():
            return await run_in_threadpool(self._store, request.headers, path, body, _client(request))

    def _store(self, headers: Headers, path: str, body: bytes, client: str) -> Response:
        """Decode, map, validate and store one request (in a worker thread: decoding is waited for, SQLite
        blocks)."""
        platform = self.platform
        entries = self.store.roster()  # per request (the same list while unchanged): a new one applies from the next
        packer = self._raw_packer()
        try:
            decoded = self.decoders.decode(platform.name, headers, path, body, entries, packer)
        except DecoderStopped as stopped:
            log.error("%s webhook from %s: %s", platform.name, client, stopped)
            return _retry_later(platform.refused(Incoming(headers, path, body), 503, str(stopped)), 1)
        incoming = Incoming(headers, path, body, decoded.notes)
        if decoded.status:
            if decoded.unverified:
                log.warning("%s webhook refused from %s: %s", platform.name, client, decoded.message)
            if decoded.status == 413:
                return self._too_large(incoming)
            RECORDS_REFUSED.inc(decoded.refused)
            return platform.refused(incoming, decoded.status, decoded.message, decoded.details)
        contacts = PackedContacts(decoded.values, packer if decoded.packed else None)
        try:
            counts = self.writer.upsert(contacts)
        except StoreUnavailable as busy:  # nothing was stored; the same request later will be
            BATCHES_DEFERRED.inc()
            log.warning("%s webhook refused for now: %s", platform.name, busy)
            return _retry_later(platform.refused(incoming, 503, str(busy)), busy.retry_after_seconds)
        count_stored(counts)
        return platform.ok(incoming, Outcome(counts, decoded.ignored))

    def _raw_packer(self) -> RawPacker | None:
        """What the decoders pack raws with: the store's newest dictionary (``RawPacking``), so that the one writer
        does not compress them. None until the store has one (the first long raws it writes train it) or when the
        store keeps raws as they are."""
        if self._packer is None and isinstance(self.store, RawPacking):
            self._packer = self.store.raw_packer(())
        return self._packer

    def _too_large(self, incoming: Incoming | None) -> Response:
        response = self.platform.refused(incoming, 413, too_large_message(self.max_body_bytes))
        response.headers["Connection"] = "close"  # the rest of the body is never read
        return response


def too_large_message(limit: int) -> str:
    return f"the body is larger than WEBHOOK_MAX_BODY_BYTES ({limit} bytes, decompressed); send smaller batches"


def _retry_later(response: Response, seconds: int) -> Response:
    response.headers["Retry-After"] = str(seconds)
    return response


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The raw body, or None as soon as it grows past ``limit`` bytes (nothing more is buffered)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def gunzip_limited(data: bytes, limit: int) -> bytes | str | None:
    """``data`` gunzipped; None when the result would pass ``limit`` bytes (a zip bomb costs no more than that),
    or a message when it is not gzip."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as problem:
        return f"Content-Encoding is gzip but the body is not valid gzip ({problem})"
    if len(out) > limit:
        return None
    if not inflater.eof:
        return "Content-Encoding is gzip but the body is cut short"
    return out


# --- helpers for the platform modules -------------------------------------------------------------------

MAX_SKEW_SECONDS = 300  # a signed timestamp further than this from our clock is refused (a replay, or a bad clock)


def check_fresh(seconds: float, header: str, *, clock: Callable[[], float] = time.time) -> None:
    """Refuse (401) a signature timestamp more than MAX_SKEW_SECONDS away from now."""
    skew = clock() - seconds
    if abs(skew) > MAX_SKEW_SECONDS:
        direction = "old" if skew > 0 else "in the future"
        raise Refused(
            401,
            f"{header} is {abs(int(skew))} s {direction}; at most {MAX_SKEW_SECONDS} s of clock skew is accepted",
        )


def check_digest(expected: str, given: str | None, header: str, what: str) -> None:
    """Refuse (401) unless ``given`` equals ``expected`` (constant-time); ``what`` says how it is computed."""
    if given is None:
        raise Refused(401, f"missing {header} header")
    if not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise Refused(401, f"{header} does not match the body ({what})")


def hmac_digest(secret: bytes, message: bytes, algorithm: str) -> bytes:
    return hmac.new(secret, message, algorithm).digest()


def json_body(incoming: Incoming) -> Any:
    """The body as JSON, or Refused(400) saying where it is broken."""
    try:
        return orjson.loads(incoming.body)
    except orjson.JSONDecodeError as problem:
        raise Refused(400, f"the body is not JSON ({problem.msg} at line {problem.lineno})") from None


def json_event(incoming: Incoming, kind: str, expected: str) -> list[Event]:
    """A body that is one JSON event object naming its kind in the string field ``kind``; Refused(400) saying
    what was ``expected`` otherwise. The event's raw text is the body as delivered."""
    value = json_body(incoming)
    if not isinstance(value, dict) or not isinstance(value.get(kind), str):
        raise Refused(400, f"expected {expected}")
    return [Event(value, incoming.body.decode())]


def text(value: object) -> str | None:
    """A platform value as record text: strings stripped, ids given as numbers in decimal; else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and (stripped := value.strip()):
        return stripped
    return None


def mapping(value: object) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (platforms send null for absent objects)."""
    return value if isinstance(value, dict) else {}


def first_text(*values: object) -> str | None:
    """The first of ``values`` that is usable text (``text``)."""
    for value in values:
        if (found := text(value)) is not None:
            return found
    return None


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown client"
