"""Amazon Connect: contact trace records (CTRs) from a Kinesis Data Firehose "HTTP endpoint" delivery.

Firehose's request: ``{"requestId", "timestamp", "records": [{"data": <base64>}]}`` (optionally gzip), with the
stream's access key in ``X-Amz-Firehose-Access-Key``; its answer ``{"requestId", "timestamp"}`` (200) or
``{"requestId", "timestamp", "errorMessage"}``. Firehose retries anything but a 200 (413 excepted) with the same
request id; a repeated delivery is harmless, as each CTR is stored idempotently under its ContactId, and a CTR
older (``LastUpdateTimestamp``) than the stored one is counted stale. Each record's data is one CTR, or several
JSON objects back to back (the form Firehose writes to S3, read by ``acr-bot ingest --format amazon-connect``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec
import orjson
from pybase64 import b64decode
from starlette.responses import Response

from bot.http.responses import JSONResponse
from bot.ingest.events_format import Unusual
from bot.platforms.base import Event, Incoming, Outcome, Platform, Refused
from bot.roster import Lookup, RosterEntry
from bot.settings import Settings
from metrics.records import ID_MAX_CHARS, REASON_MAX_CHARS, TEXT_MAX_CHARS, TIER_MAX
from metrics.timeutil import InstantCache, fast_instant

SOURCE = "amazon-connect"
ACCESS_KEY_HEADER = "X-Amz-Firehose-Access-Key"
REQUEST_ID_HEADER = "X-Amz-Firehose-Request-Id"
CHANNELS = {"VOICE": "phone", "CHAT": "chat", "TASK": "other", "EMAIL": "email"}
OUTBOUND_METHODS = frozenset({"OUTBOUND", "CALLBACK"})
CONTINUATION_METHODS = frozenset({"TRANSFER", "QUEUE_TRANSFER"})
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
MAX_ERROR_CHARS = 8192  # Firehose's limit for errorMessage
NO_ROSTER: Lookup = {}


class _Agent(msgspec.Struct, gc=False):
    Username: Any = None


class _Queue(msgspec.Struct, gc=False):
    Name: Any = None


class _Endpoint(msgspec.Struct, gc=False):
    Address: Any = None


class Ctr(msgspec.Struct, gc=False):
    """The fields of a CTR the mapping reads. Decoded straight from the JSON (``CtrMapper.loads``), the dozens of
    other fields are skipped without being built: about a third of the time of decoding the CTR into dicts, and
    no objects for the garbage collector (gc=False: values from JSON hold no cycles). A value the mapping does
    not take as it comes is ``Any``, so its checks stay in one place (validation)."""

    ContactId: Any = None
    Agent: _Agent | None = None
    Queue: _Queue | None = None
    Channel: Any = None
    CustomerEndpoint: _Endpoint | None = None
    InitiationMethod: Any = None
    PreviousContactId: Any = None
    InitiationTimestamp: Any = None
    DisconnectTimestamp: Any = None
    LastUpdateTimestamp: Any = None
    Attributes: dict[str, Any] | None = None


_NESTED = ("Agent", "Queue", "CustomerEndpoint", "Attributes")  # JSON objects in a CTR; anything else there is none


def ctr_of(value: dict[str, Any]) -> Ctr:
    """A CTR decoded as dicts, as a Ctr: a nested part that is not a JSON object (null, text ...) is left out."""
    fields = {name: value[name] for name in Ctr.__struct_fields__ if name in value}
    for name in _NESTED:
        if name in fields and not isinstance(fields[name], dict):
            del fields[name]
    return msgspec.convert(fields, Ctr)


class CtrMapper:
    """CTR -> contact record, with the contact attributes the settings name (pure; also used by file import)."""

    def __init__(self, settings: Settings):
        self.customer_attribute = settings.connect_customer_attribute
        self.reason_attribute = settings.connect_reason_attribute
        self.resolved_attribute = settings.connect_resolved_attribute
        self.escalated_attribute = settings.connect_escalated_attribute
        self.decode_ctr = msgspec.json.Decoder(Ctr).decode  # raises msgspec.DecodeError, a ValueError

    def loads(self, data: bytes) -> Any:
        """The JSON value of ``data``: a Ctr when it is an object, else the value as orjson gives it. Raises
        orjson.JSONDecodeError (with orjson's message) when it is not one JSON value."""
        try:
            return self.decode_ctr(data)
        except msgspec.DecodeError:  # not an object, a nested part of another type, or not JSON: said as before
            pass
        value = orjson.loads(data)
        return ctr_of(value) if type(value) is dict else value

    def record(self, ctr: Ctr | dict[str, Any]) -> dict[str, Any] | None:
        """The record of one CTR, or None when it has no customer (most tasks): not a contact metrics can use.

        Fields the CTR lacks are left out, so that validation names them (``started_at: is required``).
        """
        if type(ctr) is dict:
            ctr = ctr_of(ctr)
        assert isinstance(ctr, Ctr)
        attributes = ctr.Attributes or {}
        customer = _text(attributes.get(self.customer_attribute)) if self.customer_attribute else None
        if customer is None and ctr.CustomerEndpoint is not None:
            customer = _text(ctr.CustomerEndpoint.Address)
        if customer is None:
            return None
        record: dict[str, Any] = {"id": ctr.ContactId, "source": SOURCE, "customer_id": customer}
        if ctr.Agent is not None and (username := _text(ctr.Agent.Username)) is not None:
            record["agent"] = username
        if ctr.Queue is not None and (queue_name := _text(ctr.Queue.Name)) is not None:
            record["queue"] = queue_name
        channel = ctr.Channel
        record["channel"] = CHANNELS.get(channel.upper(), "other") if isinstance(channel, str) else "other"
        method = ctr.InitiationMethod
        if isinstance(method, str) and method in OUTBOUND_METHODS:
            record["direction"] = "outbound"
        elif (
            isinstance(method, str)
            and method in CONTINUATION_METHODS
            and (previous := _text(ctr.PreviousContactId)) is not None
        ):
            record["parent_id"] = previous
        for field, value in (
            ("started_at", ctr.InitiationTimestamp),
            ("ended_at", ctr.DisconnectTimestamp),
            ("updated_at", ctr.LastUpdateTimestamp),
        ):
            if value is not None:
                record[field] = value
        if self.reason_attribute and (reason := _text(attributes.get(self.reason_attribute))) is not None:
            record["reason"] = reason
        for field, name in (("resolved", self.resolved_attribute), ("escalated", self.escalated_attribute)):
            if name and (flag := _flag(attributes.get(name))) is not None:
                record[field] = flag
        return record

    def row(
        self, ctr: Ctr, raw: str | bytes, instants: InstantCache, known: Lookup = NO_ROSTER
    ) -> tuple[Any, ...] | None:
        """The contact of one CTR as a row in Contact field order, made straight from the CTR: what validating
        ``record(ctr)`` after the roster ``known`` (``bot.roster.apply``) gives, for the usual CTR. None when the
        CTR has no customer.

        Raises Unusual for whatever the checks here do not vouch for (an invalid or over-long value, a rare
        timestamp form): the caller then takes the general path, so every error message stays there. Mapping
        to a record dict and validating it took about as long as decoding the CTR.
        """
        attributes = ctr.Attributes or {}
        customer = _text(attributes.get(self.customer_attribute)) if self.customer_attribute else None
        if customer is None:
            endpoint = ctr.CustomerEndpoint
            if endpoint is None or (customer := _text(endpoint.Address)) is None:
                return None
        # Each text as validation keeps it: stripped (as _text gives it), at most its limit, no NUL.
        contact_id = ctr.ContactId
        if (
            type(contact_id) is not str
            or not 0 < len(contact_id := contact_id.strip()) <= ID_MAX_CHARS
            or "\x00" in contact_id
            or len(customer) > ID_MAX_CHARS
            or "\x00" in customer
        ):
            raise Unusual
        agent = _text(ctr.Agent.Username) if ctr.Agent is not None else None
        team, tier = None, 1
        if agent is not None:
            if known and (entry := known.get((SOURCE, agent))) is not None:
                agent, team, tier = _rostered(entry)
            elif len(agent) > TEXT_MAX_CHARS or "\x00" in agent:
                raise Unusual
        queue = _text(ctr.Queue.Name) if ctr.Queue is not None else None
        if queue is not None and (len(queue) > TEXT_MAX_CHARS or "\x00" in queue):
            raise Unusual
        channel = ctr.Channel
        method = ctr.InitiationMethod
        direction, parent_id = "inbound", None
        if type(method) is str:
            if method in OUTBOUND_METHODS:
                direction = "outbound"
            elif (
                method in CONTINUATION_METHODS
                and (parent_id := _text(ctr.PreviousContactId)) is not None
                and (len(parent_id) > ID_MAX_CHARS or "\x00" in parent_id)
            ):
                raise Unusual
        reason = _text(attributes.get(self.reason_attribute)) if self.reason_attribute else None
        if reason is not None and (len(reason) > REASON_MAX_CHARS or "\x00" in reason):
            raise Unusual
        resolved = _flag(attributes.get(self.resolved_attribute)) if self.resolved_attribute else None
        escalated = _flag(attributes.get(self.escalated_attribute)) is True if self.escalated_attribute else False
        if (started_us := fast_instant(ctr.InitiationTimestamp, instants)) is None:
            raise Unusual
        ended_us = updated_us = None
        if ctr.DisconnectTimestamp is not None and (
            (ended_us := fast_instant(ctr.DisconnectTimestamp, instants)) is None or ended_us < started_us
        ):
            raise Unusual
        if (
            ctr.LastUpdateTimestamp is not None
            and (updated_us := fast_instant(ctr.LastUpdateTimestamp, instants)) is None
        ):
            raise Unusual
        return (
            SOURCE,
            contact_id,
            customer,
            agent,
            team,
            queue,
            reason,
            CHANNELS.get(channel.upper(), "other") if type(channel) is str else "other",
            direction,
            tier,
            escalated,
            resolved,
            parent_id,
            started_us,
            ended_us,
            updated_us,
            raw,
        )


class AmazonConnect(Platform):
    name = SOURCE
    title = "Amazon Connect"
    secret_setting = "connect_firehose_access_key"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.mapper = CtrMapper(settings)

    def verify(self, incoming: Incoming) -> None:
        assert self.secret is not None
        key = incoming.headers.get(ACCESS_KEY_HEADER)
        if key is None:
            raise Refused(401, f"missing {ACCESS_KEY_HEADER} header (set the stream's access key)")
        if not hmac.compare_digest(key.encode(), self.secret):
            raise Refused(401, f"{ACCESS_KEY_HEADER} does not match CONNECT_FIREHOSE_ACCESS_KEY")

    def decode(self, incoming: Incoming) -> list[Event]:
        try:  # the usual delivery: orjson reads the envelope, pybase64 (SIMD) the base64 of each record
            envelope = orjson.loads(incoming.body)
            request_id, records = envelope["requestId"], envelope["records"]
            if type(request_id) is not str or not request_id or type(records) is not list:
                raise TypeError
            payloads = [b64decode(record["data"], validate=True) for record in records]
        except (ValueError, KeyError, TypeError):  # anything else is looked at step by step, to say what is wrong
            return self._decode_checked(incoming)
        incoming.notes["request_id"] = request_id
        events: list[Event] = []
        append, decode_ctr = events.append, self.mapper.decode_ctr
        for index, data in enumerate(payloads):
            try:  # the usual record: one CTR (as json_objects reads it, without the generator)
                append(Event(decode_ctr(data), data.strip().decode()))
            except ValueError:  # several back to back, not an object, not UTF-8 ...: said step by step
                self._add_events(events, index, data)
        return events

    def _decode_checked(self, incoming: Incoming) -> list[Event]:
        try:
            envelope = orjson.loads(incoming.body)
        except orjson.JSONDecodeError as problem:
            raise Refused(400, f"the body is not JSON ({problem.msg} at line {problem.lineno})") from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("records"), list):
            raise Refused(400, 'expected a Firehose delivery: {"requestId": ..., "records": [{"data": ...}]}')
        request_id = envelope.get("requestId")
        if not isinstance(request_id, str) or not request_id:
            raise Refused(400, "the delivery has no requestId")
        incoming.notes["request_id"] = request_id
        events: list[Event] = []
        for index, item in enumerate(envelope["records"]):
            data = item.get("data") if isinstance(item, dict) else None
            if not isinstance(data, str):
                raise Refused(400, f"records[{index}] has no data string")
            try:
                payload = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise Refused(400, f"records[{index}].data is not base64") from None
            self._add_events(events, index, payload)
        return events

    def _add_events(self, events: list[Event], index: int, payload: bytes) -> None:
        """The CTRs of one Firehose record's data (one, or several back to back) added to ``events``."""
        try:
            for value, raw in json_objects(payload, self.mapper.loads):
                if not isinstance(value, Ctr):
                    raise ValueError("is not a JSON object (a contact trace record)")
                events.append(Event(value, raw))
        except ValueError as problem:
            raise Refused(400, f"records[{index}].data {problem}") from None

    def records(self, event: Event) -> list[dict[str, Any]]:
        record = self.mapper.record(event.value)
        return [] if record is None else [record]

    def contact_row(self, event: Event, instants: InstantCache, known: Lookup) -> tuple[Any, ...] | None:
        return self.mapper.row(event.value, event.raw, instants, known)

    def ok(self, incoming: Incoming, outcome: Outcome) -> Response:
        return JSONResponse({"requestId": _request_id(incoming), "timestamp": _now_ms()})

    def refused(self, incoming: Incoming | None, status: int, message: str, details: Sequence[Any] = ()) -> Response:
        if details:
            message += ": " + "; ".join(
                f"CTR {d.get('id') or d['index']}: {d['field']}: {d['message']}" for d in details
            )
        body = {
            "requestId": _request_id(incoming),
            "timestamp": _now_ms(),
            "errorMessage": message[:MAX_ERROR_CHARS],
        }
        return JSONResponse(body, status_code=status)


def json_objects(data: bytes, loads: Callable[[bytes], Any] = orjson.loads) -> Iterator[tuple[Any, str]]:
    """The JSON values of ``data`` written back to back (whitespace between them optional), each as ``loads``
    gives it, with its text.

    Raises ValueError naming the position of the first one that is not valid JSON. Fast path: the usual
    single object goes to ``loads`` whole; several are cut where one ends (found by the standard decoder).
    """
    try:
        value = loads(data)
        text = data.strip().decode()
    except ValueError:  # (UnicodeDecodeError too: said below)
        pass
    else:
        yield value, text
        return
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None
    decoder = json.JSONDecoder()
    position, size = 0, len(text)
    while True:
        while position < size and text[position] in " \t\r\n":
            position += 1
        if position == size:
            return
        try:
            _, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as problem:
            raise ValueError(f"is not valid JSON at character {problem.pos}: {problem.msg}") from None
        piece = text[position:end]
        yield loads(piece.encode()), piece
        position = end


def _text(value: object) -> str | None:
    if isinstance(value, str) and (stripped := value.strip()):
        return stripped
    return None


def _rostered(entry: RosterEntry) -> tuple[str, str | None, int]:
    """The agent, team and tier a roster entry gives a record (``bot.roster.apply``), as validation keeps them;
    Unusual when it would refuse them."""
    agent, team, tier = entry.agent, entry.team, 1 if entry.tier is None else entry.tier
    if type(agent) is not str or not 0 < len(agent := agent.strip()) <= TEXT_MAX_CHARS or "\x00" in agent:
        raise Unusual
    if team is not None and (
        type(team) is not str or not 0 < len(team := team.strip()) <= TEXT_MAX_CHARS or "\x00" in team
    ):
        raise Unusual
    if type(tier) is not int or not 1 <= tier <= TIER_MAX:
        raise Unusual
    return agent, team, tier


def _flag(value: object) -> bool | None:
    """A contact attribute (always text) read as a boolean; anything but true/false, yes/no, 1/0 is not given."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def _request_id(incoming: Incoming | None) -> str:
    """The delivery's requestId (the header's copy until the body is decoded, or when it cannot be)."""
    if incoming is None:
        return ""
    return str(incoming.notes.get("request_id") or incoming.headers.get(REQUEST_ID_HEADER, ""))


def _now_ms() -> int:
    return int(time.time() * 1000)
