"""``POST /webhooks/amazon-connect``: Firehose HTTP-endpoint deliveries of contact trace records, over real HTTP
into the real app and a real SQLite file.

Payloads (tests/payloads), each copied value for value from the file named:
- ``amazon-connect-ctr-versions.jsonl``: three deliveries of one CTR (LastUpdateTimestamp 2022-01-05T17:48:35Z,
  2022-01-11T03:41:32Z, 2022-01-11T04:09:47Z): "Case1" to "Case3" of the "CTR Samples" page of
  kyopark2014/call-center-analytics, samples.md (commit 35afe88c0e1ed26e88edf62e2f24a83498158b55), one contact whose
  versions differ only in Attributes and LastUpdateTimestamp; field names as in AWS's contact records data model
  (docs.aws.amazon.com/connect/latest/adminguide/ctr-data-model.html).
- ``amazon-connect-ctr-inbound.json``: ``event_ctr_01()`` of yaoCXone/test-AC-CTP-github-to-lambda-py,
  src/event_samples.py (commit 460d7bbd80ebe9d8bd2597e859802e23f9dd432a), an inbound voice CTR with its agent.
The envelope is Firehose's, as in AWS's "HTTP Endpoint Delivery Request and Response Specifications"
(awsdocs/amazon-kinesis-data-firehose-developer-guide, doc_source/httpdeliveryrequestresponse.md, commit
cd0c32b348c3016b1c956bf510b37c3a19531026).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import orjson
import psutil
import pybase64
import pytest
from click.testing import CliRunner, Result
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import bot.ingest.batch
from bot import roster
from bot.cli import main
from bot.ingest import ingest_file
from bot.ingest.events_format import Unusual
from bot.platforms.amazon_connect import AmazonConnect, Ctr, CtrMapper
from bot.platforms.base import Incoming
from bot.roster import RosterEntry
from bot.settings import load_settings
from bot.storage import open_store
from metrics.records import contact_row
from metrics.timeutil import instant_cache, iso_utc
from tests.platform_support import PAYLOADS, App
from tests.store_support import stored_contacts
from tests.test_records_fast_path import FIELD_VALUES, ZONES, iso_texts, outcome
from tests.test_serve import Process, check_store, start_serve

KEY = "firehose-access-key-0123456789"
PATH = "/webhooks/amazon-connect"
SOURCE = "amazon-connect"
VERSIONS = [orjson.loads(line) for line in (PAYLOADS / "amazon-connect-ctr-versions.jsonl").read_bytes().splitlines()]
INBOUND = orjson.loads((PAYLOADS / "amazon-connect-ctr-inbound.json").read_bytes())
MAPPER = CtrMapper(load_settings()).record


def envelope(ctrs: list[Any], request_id: str | None = None) -> dict[str, Any]:
    """A Firehose delivery: each CTR base64-encoded in its own record."""
    return {
        "requestId": request_id or str(uuid.uuid4()),
        "timestamp": 1578090901599,
        "records": [
            {"data": base64.b64encode(ctr if isinstance(ctr, bytes) else orjson.dumps(ctr)).decode()} for ctr in ctrs
        ],
    }


def deliver(
    app: App,
    body: dict[str, Any] | bytes,
    *,
    key: str | None = KEY,
    gzipped: bool = False,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST as Firehose does: JSON, its headers (the request id twice), optionally gzip."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    sent = {"Content-Type": "application/json", "X-Amz-Firehose-Protocol-Version": "1.0"}
    if isinstance(body, dict):
        sent["X-Amz-Firehose-Request-Id"] = body["requestId"]
    if key is not None:
        sent["X-Amz-Firehose-Access-Key"] = key
    if gzipped:
        raw = gzip.compress(raw)
        sent["Content-Encoding"] = "gzip"
    sent.update(headers or {})
    return app.client.post(PATH, content=raw, headers=sent)


@pytest.fixture
def connect(start_app: Callable[..., App]) -> App:
    return start_app(connect_firehose_access_key=KEY)


def assert_firehose_answer(response: httpx.Response, status: int, request_id: str, error: str | None = None) -> None:
    """Firehose's own response format: JSON with requestId and a millisecond timestamp (+ errorMessage)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert "content-encoding" not in response.headers
    body = response.json()
    assert body["requestId"] == request_id
    assert isinstance(body["timestamp"], int) and body["timestamp"] > 1_700_000_000_000
    if error is None:
        assert set(body) == {"requestId", "timestamp"}
    else:
        assert set(body) == {"requestId", "timestamp", "errorMessage"}
        assert error in body["errorMessage"], body["errorMessage"]


def test_a_delivery_stores_each_ctr_as_the_contract_maps_it(connect: App) -> None:
    delivery = envelope([INBOUND, VERSIONS[0]])
    assert_firehose_answer(deliver(connect, delivery), 200, delivery["requestId"])
    stored = connect.stored(SOURCE)
    row = stored["15a5cf14-3212-45a1-9f86-a8e97db8afaf"]
    assert {k: row[k] for k in ("customer_id", "agent", "queue", "channel", "direction", "parent_id")} == {
        "customer_id": "+17208401003",
        "agent": "admin1",
        "queue": "BasicQueue",
        "channel": "phone",
        "direction": "inbound",
        "parent_id": None,
    }
    assert [iso_utc(row[k]) for k in ("started_us", "ended_us", "updated_us")] == [
        "2022-04-08T14:59:38Z",
        "2022-04-08T15:01:22Z",
        "2022-04-08T15:03:02Z",
    ]
    assert orjson.loads(row["raw"]) == INBOUND  # the platform's raw event is kept
    other = stored["6fe40d2a-1a89-4d73-bfcf-5d9c33894f47"]
    assert (other["agent"], other["queue"], other["customer_id"]) == (
        "Steve.Lusk",
        "TCC Refrig AC LLA",
        "+190011112222",
    )


def test_repeated_request_id_and_older_versions_change_nothing(connect: App) -> None:
    contact_id = "6fe40d2a-1a89-4d73-bfcf-5d9c33894f47"
    newest = envelope([VERSIONS[2]])
    assert deliver(connect, newest).status_code == 200
    assert deliver(connect, newest).status_code == 200  # Firehose's retry: the same X-Amz-Firehose-Request-Id
    older = envelope([VERSIONS[0], VERSIONS[1]])  # re-sent out of order, after the newest
    assert_firehose_answer(deliver(connect, older), 200, older["requestId"])
    row = connect.stored(SOURCE)[contact_id]
    assert iso_utc(row["updated_us"]) == "2022-01-11T04:09:47Z"
    assert orjson.loads(row["raw"]) == VERSIONS[2]
    assert connect.store.count_contacts() == 1


def test_versions_in_order_each_replace_the_last(connect: App) -> None:
    for version in VERSIONS:
        assert deliver(connect, envelope([version])).status_code == 200
    row = connect.stored(SOURCE)["6fe40d2a-1a89-4d73-bfcf-5d9c33894f47"]
    assert orjson.loads(row["raw"]) == VERSIONS[2]


def test_gzip_and_several_ctrs_back_to_back_in_one_record(connect: App) -> None:
    second = {
        **INBOUND,
        "ContactId": "second-contact",
        "CustomerEndpoint": {"Address": "+15550001", "Type": "TELEPHONE_NUMBER"},
    }
    back_to_back = orjson.dumps(INBOUND) + orjson.dumps(second) + b"\n"
    delivery = envelope([back_to_back])
    assert_firehose_answer(deliver(connect, delivery, gzipped=True), 200, delivery["requestId"])
    assert set(connect.stored(SOURCE)) == {"15a5cf14-3212-45a1-9f86-a8e97db8afaf", "second-contact"}


def test_transfers_callbacks_channels_and_tasks(connect: App) -> None:
    transfer = {
        **INBOUND,
        "ContactId": "leg-2",
        "InitiationMethod": "TRANSFER",
        "PreviousContactId": INBOUND["ContactId"],
    }
    callback = {**INBOUND, "ContactId": "cb-1", "InitiationMethod": "CALLBACK", "Channel": "VOICE"}
    chat = {**INBOUND, "ContactId": "chat-1", "Channel": "CHAT"}
    email = {**INBOUND, "ContactId": "email-1", "Channel": "EMAIL", "Agent": None}
    task = {**INBOUND, "ContactId": "task-1", "Channel": "TASK", "CustomerEndpoint": None}  # no customer: ignored
    delivery = envelope([INBOUND, transfer, callback, chat, email, task])
    assert deliver(connect, delivery).status_code == 200
    stored = connect.stored(SOURCE)
    assert "task-1" not in stored
    assert stored["leg-2"]["parent_id"] == INBOUND["ContactId"]
    assert stored["cb-1"]["direction"] == "outbound"
    assert (stored["chat-1"]["channel"], stored["email-1"]["channel"], stored["email-1"]["agent"]) == (
        "chat",
        "email",
        None,
    )


def test_contact_attributes_named_by_settings(start_app: Callable[..., App]) -> None:
    app = start_app(
        connect_firehose_access_key=KEY,
        connect_customer_attribute="crmId",
        connect_reason_attribute="reason",
        connect_resolved_attribute="resolved",
        connect_escalated_attribute="escalated",
    )
    attributes = {"crmId": "CRM-991", "reason": "billing dispute", "resolved": "No", "escalated": "yes"}
    with_attributes = {**INBOUND, "Attributes": attributes}
    task = {
        **INBOUND,
        "ContactId": "task-2",
        "Channel": "TASK",
        "CustomerEndpoint": None,
        "Attributes": {"crmId": "CRM-7"},
    }
    unclear = {**INBOUND, "ContactId": "c-3", "Attributes": {"resolved": "maybe"}}  # not a boolean: not given
    assert deliver(app, envelope([with_attributes, task, unclear])).status_code == 200
    stored = app.stored(SOURCE)
    row = stored[INBOUND["ContactId"]]
    assert (row["customer_id"], row["reason"], row["resolved"], row["escalated"]) == (
        "CRM-991",
        "billing dispute",
        0,
        1,
    )
    assert stored["task-2"]["customer_id"] == "CRM-7"  # a task with a customer attribute is a contact
    assert (stored["c-3"]["customer_id"], stored["c-3"]["resolved"]) == ("+17208401003", None)


@pytest.mark.parametrize(
    ("key", "message"),
    [(None, "missing X-Amz-Firehose-Access-Key"), ("wrong-key", "does not match CONNECT_FIREHOSE_ACCESS_KEY")],
)
def test_a_missing_or_wrong_access_key_is_401_and_stores_nothing(connect: App, key: str | None, message: str) -> None:
    delivery = envelope([INBOUND])
    assert_firehose_answer(deliver(connect, delivery, key=key), 401, delivery["requestId"], message)
    assert connect.store.count_contacts() == 0


def test_without_the_setting_the_endpoint_is_disabled(start_app: Callable[..., App]) -> None:
    app = start_app()
    response = deliver(app, envelope([INBOUND]))
    assert response.status_code == 503
    assert "CONNECT_FIREHOSE_ACCESS_KEY is not set" in response.json()["errorMessage"]
    assert app.store.count_contacts() == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the body is not JSON"),
        (orjson.dumps({"requestId": "r-1", "records": "nope"}), "expected a Firehose delivery"),
        (orjson.dumps({"records": []}), "the delivery has no requestId"),
        (orjson.dumps({"requestId": "r-1", "records": [{"data": "@@@"}]}), "records[0].data is not base64"),
        (orjson.dumps({"requestId": "r-1", "records": [{}]}), "records[0] has no data string"),
        (orjson.dumps(envelope([b'{"ContactId": '], "r-1")), "records[0].data is not valid JSON"),
        (orjson.dumps(envelope([b"[1, 2]"], "r-1")), "records[0].data is not a JSON object"),
    ],
)
def test_a_malformed_envelope_is_400_and_stores_nothing(connect: App, body: bytes, message: str) -> None:
    response = deliver(connect, body, headers={"X-Amz-Firehose-Request-Id": "r-1"})
    assert_firehose_answer(response, 400, "r-1", message)
    assert connect.store.count_contacts() == 0


def test_one_bad_ctr_refuses_the_whole_delivery(connect: App) -> None:
    broken = {**INBOUND, "ContactId": "broken", "InitiationTimestamp": "yesterday"}
    delivery = envelope([INBOUND, broken])
    assert_firehose_answer(deliver(connect, delivery), 422, delivery["requestId"], "CTR broken: started_at")
    assert connect.store.count_contacts() == 0
    garbled = envelope([INBOUND, b"{}{"])
    assert_firehose_answer(deliver(connect, garbled), 400, garbled["requestId"], "records[1].data is not valid JSON")
    assert connect.store.count_contacts() == 0


def test_too_large_and_bad_gzip_bodies(start_app: Callable[..., App]) -> None:
    app = start_app(connect_firehose_access_key=KEY, webhook_max_body_bytes=4096)
    big = envelope([INBOUND] * 3)
    assert deliver(app, big).status_code == 413
    bomb = envelope([{**INBOUND, "Padding": "x" * 20_000}])  # small once gzipped, too large unpacked
    assert_firehose_answer(deliver(app, bomb, gzipped=True), 413, bomb["requestId"], "WEBHOOK_MAX_BODY_BYTES")
    not_gzip = deliver(app, b"plain", headers={"Content-Encoding": "gzip", "X-Amz-Firehose-Request-Id": "r-9"})
    assert_firehose_answer(not_gzip, 400, "r-9", "not valid gzip")
    assert app.store.count_contacts() == 0


# --- a crash mid-stream ---------------------------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[list[Process]]:
    """Every ``acr-bot serve`` a test started is killed at the end, whatever happened."""
    started: list[Process] = []
    yield started
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


def synthetic_ctr(worker: int, number: int, i: int) -> dict[str, Any]:
    """The inbound CTR above as another contact: a fresh ContactId, customers that overlap across deliveries."""
    minute = (number * 7919 + i * 104729) % 100_000
    started = iso_utc((1_780_000_000 + minute * 60) * 1_000_000)
    return {
        **INBOUND,
        "ContactId": f"w{worker}-d{number}-{i}",
        "CustomerEndpoint": {"Address": f"+1555{(number * 50 + i) % 97:07d}", "Type": "TELEPHONE_NUMBER"},
        "InitiationTimestamp": started,
        "DisconnectTimestamp": started,
        "LastUpdateTimestamp": started,
    }


@dataclass
class FirehoseSender:
    """Streams deliveries of ``size`` CTRs until the server goes away, remembering which were acknowledged."""

    url: str
    worker: int
    size: int = 100
    acknowledged: list[str] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for number in range(100_000):
                ctrs = [synthetic_ctr(self.worker, number, i) for i in range(self.size)]
                delivery = envelope(ctrs)
                headers = {"X-Amz-Firehose-Access-Key": KEY, "X-Amz-Firehose-Request-Id": delivery["requestId"]}
                try:
                    response = client.post(
                        PATH,
                        content=gzip.compress(orjson.dumps(delivery)),
                        headers={**headers, "Content-Type": "application/json", "Content-Encoding": "gzip"},
                    )
                except httpx.TransportError:
                    return
                self.answered.append(response.status_code)
                if response.status_code != 200:
                    return
                self.acknowledged.extend(ctr["ContactId"] for ctr in ctrs)
                self.delivered.append(delivery)


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_acknowledged_ctr(db_path: Path, tmp_path: Path, servers: list[Process]) -> None:
    database_url = f"sqlite:///{db_path}"
    server = start_serve(database_url, tmp_path / "serve.log", CONNECT_FIREHOSE_ACCESS_KEY=KEY)
    servers.append(server)
    senders = [FirehoseSender(server.url, worker) for worker in range(3)]
    threads = [threading.Thread(target=sender.run) for sender in senders]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while sum(len(sender.acknowledged) for sender in senders) < 1000 and time.monotonic() < deadline:
        time.sleep(0.01)
    decoding = psutil.Process(server.proc.pid).children()  # its decoding processes (bot.platforms.decoding)
    assert decoding
    server.proc.kill()  # while the senders keep streaming: some deliveries are in flight, unanswered
    assert server.proc.wait(timeout=10) == -signal.SIGKILL
    assert not psutil.wait_procs(decoding, timeout=10)[1], "the decoding processes outlived their server"
    for thread in threads:
        thread.join(timeout=30)
    acknowledged = [contact for sender in senders for contact in sender.acknowledged]
    assert len(acknowledged) >= 1000, "the senders should have streamed for a while before the kill"
    for sender in senders:
        assert set(sender.answered) <= {200}, sender.answered

    restarted = start_serve(database_url, tmp_path / "restarted.log", CONNECT_FIREHOSE_ACCESS_KEY=KEY)
    servers.append(restarted)
    assert check_store(database_url, acknowledged) >= len(acknowledged)
    # Firehose retries a delivery it had no answer for, with the same request id: harmless.
    retried = next(sender for sender in senders if sender.delivered).delivered[0]
    response = httpx.post(
        restarted.url + PATH,
        content=orjson.dumps(retried),
        headers={"X-Amz-Firehose-Access-Key": KEY, "X-Amz-Firehose-Request-Id": retried["requestId"]},
    )
    assert_firehose_answer(response, 200, retried["requestId"])
    assert check_store(database_url, acknowledged) == restarted_count(restarted)
    restarted.proc.send_signal(signal.SIGINT)
    assert restarted.proc.wait(timeout=30) == 0


def restarted_count(process: Process) -> int:
    return int(httpx.get(process.url + "/healthz").json()["contacts"])


# --- the same CTRs from files: acr-bot ingest --format amazon-connect -------------------------------------


def ingest(db_path: Path, *paths: Path) -> Result:
    env = {"DATABASE_URL": f"sqlite:///{db_path}"}
    args = ["ingest", "--format", "amazon-connect", *map(str, paths)]
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def firehose_object(ctrs: list[dict[str, Any]]) -> bytes:
    """What Firehose writes to S3: the records' data back to back, no separator."""
    return b"".join(orjson.dumps(ctr) for ctr in ctrs)


def test_ingest_reads_firehose_s3_objects_plain_and_gzip(tmp_path: Path, db_path: Path) -> None:
    task = {**INBOUND, "ContactId": "task-1", "Channel": "TASK", "CustomerEndpoint": None}
    plain = tmp_path / "connect-stream-1-2022-01-11-04-10-00-0001"
    plain.write_bytes(firehose_object([VERSIONS[1], VERSIONS[2], VERSIONS[0], INBOUND, task]))
    result = ingest(db_path, plain)
    assert result.exit_code == 0, result.output
    assert f"{plain}: 5 records: 2 inserted, 1 updated, 0 unchanged, 1 stale, 1 ignored" in result.stdout
    packed = tmp_path / "connect-stream-1-2022-01-11-04-10-00-0001.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes().replace(b"}{", b"}\n{")))  # whitespace between is fine too
    again = ingest(db_path, packed)
    assert again.exit_code == 0, again.output
    assert f"{packed}: 5 records: 0 inserted, 0 updated, 2 unchanged, 2 stale, 1 ignored" in again.stdout
    assert "Total: 1 file: 0 inserted, 0 updated, 2 unchanged, 2 stale, 1 ignored" in again.stdout
    shown = CliRunner().invoke(
        main, ["contacts", "get", SOURCE, INBOUND["ContactId"]], env={"DATABASE_URL": f"sqlite:///{db_path}"}
    )
    assert orjson.loads(shown.stdout)["raw"] == INBOUND


def test_ingest_names_each_bad_ctr_and_stores_nothing(tmp_path: Path, db_path: Path) -> None:
    broken = {**INBOUND, "ContactId": "broken-1", "InitiationTimestamp": None}
    path = tmp_path / "objects"
    path.write_bytes(orjson.dumps(INBOUND) + b"\n" + orjson.dumps(broken) + b"\n" + b'{"ContactId": ')
    open_store(f"sqlite:///{db_path}").close()  # stderr holds only the problems (not that a database was created)
    result = ingest(db_path, path)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        f"{path}:2: started_at: is required (ContactId broken-1)",
        f"{path}:3: record: malformed JSON: unexpected end of data (column 14)",
    ]
    assert result.stderr.splitlines()[-1] == f"{path}: 2 errors in 3 records; nothing stored from this file"
    with closing(open_store(f"sqlite:///{db_path}")) as store:
        assert store.count_contacts() == 0


def test_parallel_readers_cut_between_objects_and_recover_from_a_cut_inside_a_string(
    tmp_path: Path, db_path: Path
) -> None:
    """Blocks end between two objects; a "}{" inside a string can fool the cut, and the file is then read again
    by one reader: the stored contacts are the same as when read in one piece."""
    ctrs = [synthetic_ctr(0, n, 0) for n in range(400)]
    ctrs[150]["Attributes"] = {"note": 'customer typed "}{" twice }{'}
    path = tmp_path / "objects"
    path.write_bytes(firehose_object(ctrs))
    store = open_store(f"sqlite:///{db_path}")
    readers: list[int | None] = []  # of each read (a read again after a false cut is by one reader)

    def spy(*args: Any, **kwargs: Any) -> Any:
        readers.append(kwargs.get("readers"))
        return ingest_file(*args, **kwargs)

    try:
        inside = path.read_bytes().index(b'}{\\" twice')  # a block that ends there is cut inside the string
        with mock.patch.object(bot.ingest.batch, "ingest_file", spy):
            for block_bytes in (inside, 4096, 9000, 1 << 20):
                result = ingest_file(
                    store, str(path), UTC, parallel=True, block_bytes=block_bytes, events=CtrMapper(load_settings())
                )
                assert result.ok, result.errors
                assert result.records == 400
        assert readers.count(1) == 1  # (the first: its cut fell inside the string)
        rows = {row["id"]: orjson.loads(row["raw"]) for row in stored_contacts(store)}
        assert rows == {ctr["ContactId"]: ctr for ctr in ctrs}
    finally:
        store.close()


# --- the typed decoding (msgspec, only the fields the mapping reads) against decoding the whole CTR as dicts --

ATTRIBUTE_SETTINGS = {
    "connect_customer_attribute": "crmId",
    "connect_reason_attribute": "reason",
    "connect_resolved_attribute": "resolved",
    "connect_escalated_attribute": "escalated",
}
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
_word = st.sampled_from(["", " ", "VOICE", "chat", "TASK", "EMAIL", "INBOUND", "OUTBOUND", "CALLBACK", "TRANSFER"])
_attribute = st.sampled_from(["crmId", "reason", "resolved", "escalated", "other"])
_CTR_FIELDS = {
    "ContactId": st.one_of(_json, st.text(max_size=8), st.integers(0, 10**12)),
    "Agent": st.one_of(_json, st.fixed_dictionaries({"Username": _json}, optional={"Id": _json})),
    "Queue": st.one_of(_json, st.fixed_dictionaries({"Name": _json})),
    "Channel": st.one_of(_word, _json),
    "CustomerEndpoint": st.one_of(_json, st.fixed_dictionaries({"Address": st.one_of(_word, _json)})),
    "InitiationMethod": st.one_of(_word, _json),
    "PreviousContactId": st.one_of(_word, _json),
    "InitiationTimestamp": st.one_of(st.sampled_from(["2026-03-08T06:30:00Z", "x"]), _json),
    "DisconnectTimestamp": _json,
    "LastUpdateTimestamp": _json,
    "Attributes": st.one_of(
        _json, st.dictionaries(_attribute, st.one_of(st.sampled_from(["yes", "No", " CRM-1 ", "0"]), _json))
    ),
    "Recordings": _json,  # a field the mapping does not read
}
ctrs = st.fixed_dictionaries({}, optional=_CTR_FIELDS)


def reference_record(ctr: dict[str, Any]) -> dict[str, Any] | None:
    """CONTRACT section 3's mapping with ATTRIBUTE_SETTINGS, written plainly over the CTR decoded as dicts (the
    mapper before msgspec)."""
    names = ATTRIBUTE_SETTINGS

    def text(value: object) -> str | None:
        return value.strip() if isinstance(value, str) and value.strip() else None

    def flag(value: object) -> bool | None:
        word = value.strip().lower() if isinstance(value, str) else None
        return True if word in ("true", "yes", "1") else False if word in ("false", "no", "0") else None

    def part(name: str) -> dict[str, Any]:
        value = ctr.get(name)
        return value if isinstance(value, dict) else {}

    attributes = part("Attributes")
    customer = text(attributes.get(names["connect_customer_attribute"])) or text(
        part("CustomerEndpoint").get("Address")
    )
    if customer is None:
        return None
    record: dict[str, Any] = {"id": ctr.get("ContactId"), "source": SOURCE, "customer_id": customer}
    if (agent := text(part("Agent").get("Username"))) is not None:
        record["agent"] = agent
    if (queue := text(part("Queue").get("Name"))) is not None:
        record["queue"] = queue
    channel = ctr.get("Channel")
    channels = {"VOICE": "phone", "CHAT": "chat", "TASK": "other", "EMAIL": "email"}
    record["channel"] = channels.get(channel.upper(), "other") if isinstance(channel, str) else "other"
    method = ctr.get("InitiationMethod")
    if method in ("OUTBOUND", "CALLBACK"):
        record["direction"] = "outbound"
    elif method in ("TRANSFER", "QUEUE_TRANSFER") and (previous := text(ctr.get("PreviousContactId"))) is not None:
        record["parent_id"] = previous
    for field_name, key in (
        ("started_at", "InitiationTimestamp"),
        ("ended_at", "DisconnectTimestamp"),
        ("updated_at", "LastUpdateTimestamp"),
    ):
        if ctr.get(key) is not None:
            record[field_name] = ctr[key]
    if (reason := text(attributes.get(names["connect_reason_attribute"]))) is not None:
        record["reason"] = reason
    for field_name, name in (
        ("resolved", names["connect_resolved_attribute"]),
        ("escalated", names["connect_escalated_attribute"]),
    ):
        if (value := flag(attributes.get(name))) is not None:
            record[field_name] = value
    return record


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(ctr=ctrs)
def test_typed_decoding_maps_every_ctr_as_the_plain_mapping_of_its_dicts(ctr: dict[str, Any]) -> None:
    config = load_settings(**ATTRIBUTE_SETTINGS)
    mapper = CtrMapper(config)
    decoded = mapper.loads(orjson.dumps(ctr))
    assert isinstance(decoded, Ctr)
    assert mapper.record(decoded) == mapper.record(ctr) == reference_record(ctr)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(records=st.lists(st.lists(ctrs, min_size=1, max_size=3), max_size=4))
def test_typed_delivery_decoding_gives_the_events_of_the_checked_one(records: list[list[dict[str, Any]]]) -> None:
    """Each record's data holds one CTR or several back to back; both decoders read them the same."""
    platform = AmazonConnect(load_settings(connect_firehose_access_key=KEY))
    data = [b"\n".join(orjson.dumps(ctr) for ctr in ctrs) for ctrs in records]
    body = orjson.dumps({"requestId": "r-1", "records": [{"data": base64.b64encode(d).decode()} for d in data]})
    typed = platform.decode(Incoming({}, PATH, body))
    checked = platform._decode_checked(Incoming({}, PATH, body))
    assert typed == checked
    assert [orjson.loads(event.raw) for event in typed] == [ctr for ctrs in records for ctr in ctrs]


def test_odd_records_are_refused_as_before_by_the_checked_decoding(connect: App) -> None:
    """What the typed envelope does not take (no data string, bad base64, a CTR that is not an object) is said
    by the step-by-step decoding; a CTR whose parts have other types than usual is stored as mapped."""
    odd = {**INBOUND, "ContactId": "odd-1", "Agent": "not-an-object", "Queue": None, "Attributes": []}
    assert deliver(connect, envelope([odd])).status_code == 200
    assert connect.stored(SOURCE)["odd-1"]["agent"] is None
    for body, message in (
        (b'{"requestId": "r", "records": [{"data": 5}]}', "records[0] has no data string"),
        (b'{"requestId": "r", "records": [{"data": "YQ"}]}', "records[0].data is not base64"),
        (
            orjson.dumps({"requestId": "r", "records": [{"data": base64.b64encode(b"[1]").decode()}]}),
            "not a JSON object",
        ),
        (orjson.dumps({"requestId": "r", "records": [{"data": base64.b64encode(b"\xff{}").decode()}]}), "UTF-8"),
    ):
        response = connect.client.post(PATH, content=body, headers={"X-Amz-Firehose-Access-Key": KEY})
        assert response.status_code == 400, body
        assert message in response.json()["errorMessage"]
    assert "odd-1" in connect.stored(SOURCE) and len(connect.stored(SOURCE)) == 1


# --- the fast path (a CTR straight to its Contact row) against mapping to a record and validating it ----------


def _mostly(usual: st.SearchStrategy[Any], *others: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` seven times in ten, else one of ``others``."""
    return st.integers(0, 9).flatmap(lambda n: usual if n < 7 else others[n % len(others)])


def _part(name: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A nested part of a CTR ({name: value}), now and then not an object at all."""
    return _mostly(st.fixed_dictionaries({name: values}), _json)


def _field(name: str, usual: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A record field's values: mostly ``usual``, else (tests/test_records_fast_path.py) valid ones in every
    accepted form, or invalid ones."""
    valid, invalid = FIELD_VALUES[name]
    return _mostly(usual, valid, valid, invalid)


_flags = st.sampled_from(["true", "FALSE", " yes", "No", "1", "0", "maybe", ""])
_usual_ctr = st.fixed_dictionaries(
    {
        "ContactId": _field("id", st.uuids().map(str)),
        "CustomerEndpoint": _part("Address", _field("customer_id", st.just("+15550100"))),
        "InitiationTimestamp": _field("started_at", iso_texts(common=True)),
        "Agent": _part("Username", _field("agent", st.sampled_from(["maria", " maria ", "bob"]))),
    },
    optional={
        "Queue": _part("Name", _field("queue", st.just("billing"))),
        "Channel": _word,
        "InitiationMethod": _word,
        "PreviousContactId": _field("parent_id", st.uuids().map(str)),
        "DisconnectTimestamp": _field("ended_at", iso_texts(common=True)),
        "LastUpdateTimestamp": _field("updated_at", iso_texts(common=True)),
        "Attributes": st.fixed_dictionaries(
            {},
            optional={
                "crmId": _field("customer_id", st.just("CRM-7")),
                "reason": _field("reason", st.just("billing dispute")),
                "resolved": _flags,
                "escalated": _flags,
            },
        ),
    },
)
_rosters = _mostly(
    st.lists(
        st.builds(
            RosterEntry,
            agent=_field("agent", st.just("Maria Lopez")),
            team=_field("team", st.just("billing") | st.none()),
            tier=st.one_of(st.none(), st.integers(1, 4), st.sampled_from([0, 2**63])),
            ids=st.sampled_from([((SOURCE, "maria"),), ((SOURCE, "bob"), ("zendesk", "maria"))]),
        ),
        min_size=1,
        max_size=2,
    ),
    st.just([]),
)


def general_outcome(mapper: CtrMapper, ctr: Ctr, raw: str, zone: Any, known: roster.Lookup) -> Any:
    """What the general path makes of a CTR: its record through the roster, validated (None: not a contact)."""
    record = mapper.record(ctr)
    return None if record is None else outcome(lambda: contact_row(roster.apply(record, SOURCE, known), zone, raw=raw))


def row_outcome(row: Any) -> Any:
    """A fast path's row as ``outcome`` gives a validation's (None stays None)."""
    return None if row is None else ("row", [(type(value), value) for value in row])


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(ctr=_usual_ctr, entries=_rosters, zone=st.sampled_from(ZONES), attributes=st.booleans())
def test_the_fast_path_makes_the_row_of_the_general_one_or_steps_aside(
    ctr: dict[str, Any], entries: list[RosterEntry], zone: Any, attributes: bool
) -> None:
    """Whatever the fast path returns is exactly what the general path gives; an invalid CTR never gets a row
    from it (the general path names the problem)."""
    mapper = CtrMapper(load_settings(**(ATTRIBUTE_SETTINGS if attributes else {})))
    try:
        data = orjson.dumps(ctr)
    except TypeError:  # an integer beyond 64 bits (the odd values' lists): not JSON a platform sends
        assume(False)
    decoded, raw = mapper.loads(data), data.decode()
    known = roster.lookup(entries)
    expected = general_outcome(mapper, decoded, raw, zone, known)
    for _ in range(3):  # the first sight of an hour, the second (which fills the cache), then cached
        try:
            fast = mapper.row(decoded, raw, instant_cache(zone), known)
        except Unusual:
            continue
        assert row_outcome(fast) == expected


@pytest.mark.parametrize("zone", ZONES, ids=str)
def test_usual_ctrs_take_the_fast_path(zone: Any) -> None:
    """The payloads' CTRs, with a roster entry for their agent, need neither the record nor validation."""
    mapper = CtrMapper(load_settings(**ATTRIBUTE_SETTINGS))
    known = roster.lookup([RosterEntry("Maria Lopez", "billing", 2, ids=((SOURCE, INBOUND["Agent"]["Username"]),))])
    for ctr in [INBOUND, *VERSIONS]:
        data = orjson.dumps(ctr)
        decoded, raw = mapper.loads(data), data.decode()
        expected = general_outcome(mapper, decoded, raw, zone, known)
        for _ in range(2):  # an hour is cached when it is met the second time
            with contextlib.suppress(Unusual):
                mapper.row(decoded, raw, instant_cache(zone), known)
        fast = mapper.row(decoded, raw, instant_cache(zone), known)
        assert fast is not None and row_outcome(fast) == expected


_BASE64_TEXTS = st.one_of(
    st.binary(max_size=40).map(lambda data: base64.b64encode(data).decode()),
    st.text(alphabet="ABCab019+/=-_ \n\t.é", max_size=16),
)


@settings(max_examples=500, deadline=None)
@given(text=_BASE64_TEXTS)
def test_the_fast_base64_decoder_never_takes_what_the_standard_one_refuses(text: str) -> None:
    """Deliveries are decoded with pybase64; a record it refuses sends the whole delivery to the step-by-step
    decoding (the standard library's base64), which says what is wrong. So pybase64 may be stricter (it refuses
    excess padding such as '0000=', which the standard library ignores), but whatever it takes must be taken by
    the standard library too, as the same bytes; and canonical base64, what Firehose sends, takes the fast path."""

    def decoded(decode: Callable[..., bytes]) -> bytes | None:
        try:
            return decode(text, validate=True)
        except ValueError:  # (binascii.Error is one)
            return None

    fast, standard = decoded(pybase64.b64decode), decoded(base64.b64decode)
    if fast is not None:
        assert fast == standard
    if standard is not None and base64.b64encode(standard).decode() == text:
        assert fast == standard
