"""The fast validation path (``contact_row``, ``fast_instant``) and the fast readers give exactly what the full
validator and the straightforward readers give: same values and types, same errors, same line numbers."""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import metrics.records as records
from bot.ingest import chunks, csv_format, formats
from metrics.records import KNOWN_FIELDS, contact_row, parse_contact, parse_contact_full
from metrics.timeutil import fast_instant, instant_cache, parse_instant

ZONES = [
    ZoneInfo("America/New_York"),
    ZoneInfo("UTC"),
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("Australia/Lord_Howe"),  # a 30-minute DST shift: the offset changes in the middle of an hour
]
# DST days (New York, Berlin, Lord Howe), an ordinary day, the edges of the supported years, an invalid date.
DAYS = [
    "2026-03-08",
    "2026-11-01",
    "2026-03-29",
    "2026-10-25",
    "2026-10-04",
    "2026-04-05",
    "2026-05-04",
    "1990-01-01",
    "1989-12-31",
    "2199-12-31",
    "2026-02-30",
]
SUFFIXES = ["", "Z", "+00:00", "-04:00", "+05:30", "-05:00", "+14:00", "z", "+0200", "+01:00:30", " ", "Zx", "+24:00"]


@st.composite
def iso_texts(draw: st.DrawFn, common: bool = False) -> str:
    """ISO-like timestamps: mostly valid, around DST changes, with every separator, fraction and suffix."""
    day = draw(st.sampled_from(DAYS[:7] if common else DAYS))
    if common:
        hour, minute, second = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
        separator, fraction = draw(st.sampled_from(["T", " "])), ""
        suffix = draw(st.sampled_from(["", "Z", "+00:00", "-04:00", "+05:30"]))
        return f"{day}{separator}{hour:02d}:{minute:02d}:{second:02d}{suffix}"
    hour, minute, second = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
    separator = draw(st.sampled_from(["T", " ", "t", "_"]))
    fraction = draw(st.sampled_from(["", "", ".5", ".250", ".123456", ".1234567", ","]))
    suffix = draw(st.sampled_from(SUFFIXES))
    pad = draw(st.sampled_from(["", "", " ", "\t"]))
    return (
        f"{pad}{day}{separator}{hour:02d}:{minute:02d}:{second:02d}{fraction}{suffix}{draw(st.sampled_from(['', ' ']))}"
    )


def timestamps() -> st.SearchStrategy[Any]:
    """Valid timestamps in every accepted form (mostly: some of the ISO-like texts are invalid)."""
    return st.one_of(
        iso_texts(),
        iso_texts(common=True),
        iso_texts(common=True),
        iso_texts(common=True),
        st.integers(631_152_000, 7_258_118_399),
        st.integers(631_152_000, 7_258_118_399).map(str),  # epoch seconds as text
        st.floats(631_152_000, 7_258_118_399),
        st.sampled_from(["1777888800.5", " 1777888800 ", "1e9", "0001777888800"]),
    )


ODD_TIMESTAMPS = st.one_of(
    st.integers(0, 10**13),
    st.floats(allow_infinity=True, allow_nan=True),
    st.sampled_from(["nan", "", "  ", "2026-05-04", "yesterday", "²", "١٧٧٧٨٨٨٨٠٠", "9999-12-31T23:00:00", True]),
    st.lists(st.integers(), max_size=1),
)
ODD_VALUES: st.SearchStrategy[object] = st.one_of(
    st.integers(-2, 3), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2), st.just({})
)


def texts(limit: int) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """(valid texts, often untrimmed; invalid values) for a text field of at most ``limit`` characters."""
    words = st.text(min_size=1, max_size=8)  # any code point, lone surrogates included
    padding = st.sampled_from(["", " ", "\t", "\u3000", "\n", "\xa0"])
    valid = st.one_of(
        st.none(),
        st.sampled_from(["maria", "tech support", "Ünïcode ✓", "x", "z" * limit, " " + "z" * limit + " "]),
        words,
        st.tuples(padding, words, padding).map("".join),
    )
    return valid, st.one_of(st.sampled_from(["", "   ", "y" * (limit + 1)]), ODD_VALUES)


def choices(words: list[str]) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    variants = [w.upper() for w in words] + [f" {w.capitalize()} " for w in words] + ["", " "]
    return st.one_of(st.none(), st.sampled_from(words), st.sampled_from(variants)), st.one_of(
        st.sampled_from(["fax", "phone!"]), ODD_VALUES
    )


FLAGS = (
    st.one_of(
        st.none(), st.booleans(), st.sampled_from(["true", "FALSE", "Yes", "no", "1", "0", " yes", "", "True", "tRuE"])
    ),
    st.one_of(st.sampled_from(["maybe", "2"]), st.integers(0, 1), st.lists(st.booleans(), max_size=1)),
)
TIERS = (
    st.one_of(st.none(), st.integers(1, 4), st.sampled_from(["1", " 2 ", "9", "10", "+3", "03"])),
    st.one_of(st.integers(-1, 0), st.booleans(), st.sampled_from(["0", "x", "1.0", "²"]), st.floats()),
)

# For each field: (valid values, in every accepted form; invalid values).
FIELD_VALUES: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "id": texts(200),
    "source": texts(200),
    "customer_id": texts(200),
    "agent": texts(200),
    "team": texts(200),
    "queue": texts(200),
    "reason": texts(1000),
    "channel": choices(["phone", "chat", "email", "sms", "social", "video", "other"]),
    "direction": choices(["inbound", "outbound"]),
    "tier": TIERS,
    "escalated": FLAGS,
    "resolved": FLAGS,
    "parent_id": texts(200),
    "started_at": (timestamps(), ODD_TIMESTAMPS),
    "ended_at": (timestamps(), ODD_TIMESTAMPS),
    "updated_at": (timestamps(), ODD_TIMESTAMPS),
}


@st.composite
def odd_records(draw: st.DrawFn) -> dict[Any, Any]:
    """A record of valid values in unusual forms, with up to two invalid values; each field may be missing."""
    invalid = draw(st.sets(st.sampled_from(KNOWN_FIELDS), max_size=2)) if draw(st.integers(0, 2)) == 0 else set()
    record: dict[Any, Any] = {}
    for field in draw(st.permutations(KNOWN_FIELDS)):
        if draw(st.booleans()) or field in ("id", "customer_id", "started_at"):
            valid, odd = FIELD_VALUES[field]
            record[field] = draw(odd if field in invalid else valid)
    record.update(draw(st.dictionaries(st.sampled_from(["wrapup", "notes", None]), ODD_VALUES | st.text(), max_size=2)))
    return record


@st.composite
def common_records(draw: st.DrawFn) -> dict[str, Any]:
    """A record of the common shapes only (what bulk files are made of)."""
    record: dict[str, Any] = {
        "id": draw(st.from_regex(r"[A-Z][0-9]{1,8}", fullmatch=True)),
        "customer_id": draw(st.from_regex(r"C[0-9]{1,7}", fullmatch=True)),
        "started_at": draw(st.one_of(iso_texts(common=True), st.integers(631_152_000, 7_258_118_399))),
    }
    optional = {
        "source": st.sampled_from(["demo", "crm"]),
        "agent": st.sampled_from(["mia", "adam", "Zoë"]),
        "team": st.just("billing"),
        "reason": st.sampled_from(["refund request", "x" * 1000]),
        "channel": st.sampled_from(["phone", "chat"]),
        "direction": st.sampled_from(["inbound", "outbound"]),
        "tier": st.integers(1, 3),
        "escalated": st.booleans(),
        "resolved": st.booleans(),
        "parent_id": st.just("D1"),
        "ended_at": iso_texts(common=True),
        "updated_at": st.one_of(iso_texts(common=True), st.integers(631_152_000, 7_258_118_399)),
    }
    for field, values in optional.items():
        if draw(st.booleans()):
            record[field] = draw(values)
    return record


def as_text(record: dict[Any, Any]) -> dict[Any, Any]:
    """The record as CSV cells: every value a string (None an empty cell)."""
    cells = {}
    for key, value in record.items():
        if value is None or isinstance(value, str):
            cells[key] = value if value is not None else ""
        elif isinstance(value, bool):
            cells[key] = "true" if value else "0"
        else:
            cells[key] = str(value)
    return cells


def outcome(call: Any) -> Any:
    """A call's result in a form compared exactly (types included), or the exception it raised."""
    try:
        result = call()
    except Exception as problem:
        return ("raised", type(problem), str(problem))
    if isinstance(result, list):
        return ("errors", result)
    return ("row", [(type(value), value) for value in result])


def assert_same_as_full(obj: object, zone: tzinfo, from_text: bool) -> None:
    expected = outcome(lambda: parse_contact_full(obj, zone, from_text=from_text))
    for _ in range(3):  # the first sight of an hour, the second (which fills the cache), then cached
        assert outcome(lambda: contact_row(obj, zone, from_text=from_text)) == expected
        assert outcome(lambda: parse_contact(obj, zone, from_text=from_text)) == expected


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(odd_records(), st.sampled_from(ZONES), st.booleans())
def test_fast_path_agrees_with_the_full_validator(record: dict[Any, Any], zone: tzinfo, from_text: bool) -> None:
    assert_same_as_full(record, zone, from_text)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(odd_records(), st.sampled_from(ZONES))
def test_fast_path_agrees_on_csv_cells(record: dict[Any, Any], zone: tzinfo) -> None:
    cells = as_text(record)
    assert_same_as_full(cells, zone, from_text=True)
    # The CSV reader drops empty cells itself and says so with ``filtered``.
    given_cells = {k: v for k, v in cells.items() if v != "" and k is not None}
    expected = outcome(lambda: parse_contact_full(cells, zone, from_text=True))
    assert outcome(lambda: contact_row(given_cells, zone, from_text=True, filtered=True)) == expected


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(common_records(), st.sampled_from(ZONES), st.booleans())
@example(  # found by CI: a time that exists in an hour whose clock changes (Lord Howe jumps 02:00 -> 02:30)
    {"id": "A0", "customer_id": "C0", "started_at": "2026-03-08T00:00:00", "updated_at": "2026-10-04T02:30:00"},
    ZoneInfo("Australia/Lord_Howe"),
    False,
)
def test_common_records_take_the_fast_path(record: dict[str, Any], zone: tzinfo, from_text: bool) -> None:
    obj = as_text(record) if from_text else record
    expected = outcome(lambda: parse_contact_full(obj, zone, from_text=from_text))
    for _ in range(3):  # warm the hour cache
        contact_row(obj, zone, from_text=from_text)
    times = [parse_or_none(record.get(field), zone) for field in ("started_at", "ended_at")]
    started, ended = times
    valid = started is not None and (ended is None or ended >= started) and expected[0] == "row"
    # The fast path reads local times by whole hours and leaves an hour whose clock changes to the full validator,
    # even for a time in it that exists (Lord Howe's 02:30 after its half-hour jump at 02:00).
    valid = valid and not any(in_a_changing_hour(record.get(field), zone) for field in TIME_FIELDS)
    with mock.patch.object(records, "_full_row", side_effect=AssertionError("took the full path")):
        if valid:  # a valid record in the common shapes never needs the full validator ...
            assert outcome(lambda: contact_row(obj, zone, from_text=from_text)) == expected
    if not valid:  # ... an invalid one (a time in a DST gap, ended before started) does
        assert outcome(lambda: contact_row(obj, zone, from_text=from_text)) == expected


TIME_FIELDS = ("started_at", "ended_at", "updated_at")


def in_a_changing_hour(value: object, zone: tzinfo) -> bool:
    """Whether ``value`` is a local time (no offset) in an hour of ``zone`` whose UTC offset changes within it."""
    try:
        local = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return False
    if local is None or local.tzinfo is not None:
        return False
    hour = local.replace(minute=0, second=0, microsecond=0)
    ends = (hour, hour + timedelta(minutes=59, seconds=59))
    return len({end.replace(tzinfo=zone, fold=fold).utcoffset() for end in ends for fold in (0, 1)}) > 1


def parse_or_none(value: object, zone: tzinfo) -> int | None:
    try:
        return None if value is None else parse_instant(value, zone)
    except ValueError:
        return None


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(timestamps(), st.sampled_from(ZONES))
def test_fast_instant_is_parse_instant_or_declines(value: object, zone: tzinfo) -> None:
    cache = instant_cache(zone)
    try:
        expected: object = parse_instant(value, zone)
    except ValueError as problem:
        expected = problem
    for _ in range(3):
        fast = fast_instant(value, cache)
        assert fast is None or (type(fast) is int and fast == expected)


BASE_RECORD = {
    "id": "c1",
    "source": "crm",
    "customer_id": "k1",
    "agent": "mia",
    "team": "billing",
    "queue": "disputes",
    "reason": "refund",
    "channel": "chat",
    "direction": "inbound",
    "tier": 2,
    "escalated": False,
    "resolved": True,
    "parent_id": "p1",
    "started_at": "2026-05-04T10:00:00Z",
    "ended_at": "2026-05-04T10:05:00Z",
}
TEXT_DEVIATIONS: list[object] = [
    None,
    "",
    "  ",
    " x ",
    "\tx",
    "x\u3000",
    "x" * 200,
    "x" * 201,
    " " + "x" * 200,
    5,
    1.5,
    True,
    [],
    {},
]
TIME_DEVIATIONS: list[object] = [
    *(None, "", "2026-05-04T10:00:00", "2026-05-04 10:00:00+02:00", "2026-05-04T10:00:00.250Z"),
    *("2026-05-04T10:00:00.1234567Z", "2026-05-04t10:00:00z", " 2026-05-04T10:00:00Z ", "2026-03-08T02:30:00"),
    *("2026-11-01T01:30:00", "2026-05-04T24:00:00", "2026-02-30T10:00:00", "2026-05-04", "20260504T100000Z"),
    *(1777888800, 1777888800.5, "1777888800", " 1777888800 ", "0001777888800", "²", "١٧٧٧٨٨٨٨٠٠", "1e9", "nan"),
    *(float("inf"), 10**13, 1e303, True, [], "9999-12-31T23:00:00", "1989-12-31T23:59:59Z", "2199-12-31T23:59:59Z"),
    *("2200-01-01T00:00:00Z", "2026-05-04T09:00:00Z", "2026-05-04T10:00:00+05:30"),
]
DEVIATIONS: dict[str, list[Any]] = {
    **{field: TEXT_DEVIATIONS for field in ("id", "source", "customer_id", "agent", "team", "queue", "parent_id")},
    "reason": [*TEXT_DEVIATIONS, "r" * 1000, "r" * 1001],
    "channel": [None, "", "PHONE", " chat", "Video ", "fax", 1, ["chat"]],
    "direction": [None, "", "OUTBOUND", " inbound ", "sideways", 0],
    "tier": [None, 1, 3, 0, -1, True, 1.0, "1", " 2 ", "0", "03", "+3", "x", "²", "1_0", 2**70],
    "escalated": [None, True, False, 0, 1, "true", "TRUE", "tRuE", " yes ", "no", "1", "0", "maybe", ""],
    "resolved": [None, True, False, 0, 1, "true", "False", " YES", "no", "1", "0", "maybe", "", []],
    "started_at": TIME_DEVIATIONS,
    "ended_at": TIME_DEVIATIONS,
    "updated_at": TIME_DEVIATIONS,
}


@pytest.mark.parametrize("field", KNOWN_FIELDS)
def test_one_unusual_value_at_a_time(field: str) -> None:
    """A valid record with one field changed to each unusual or invalid value, in both modes and two zones."""
    for value in DEVIATIONS[field]:
        record = {**BASE_RECORD, field: value}
        for zone in ZONES[:2]:
            assert_same_as_full(record, zone, from_text=False)
            assert_same_as_full(record, zone, from_text=True)
            without = {k: v for k, v in record.items() if k != field}
            assert_same_as_full(without, zone, from_text=False)


class HalfHourBack(tzinfo):
    """A zone that turns its clocks back 30 minutes at 02:30 on 2026-06-01 (+01:00 to +00:30): the offset
    changes in the middle of an hour whose first and last seconds both exist, so only its linearity shows it."""

    SWITCH_UTC = datetime(2026, 6, 1, 1, 30)
    BEFORE, AFTER = timedelta(hours=1), timedelta(minutes=30)

    def utcoffset(self, moment: datetime | None) -> timedelta:
        assert moment is not None
        wall = moment.replace(tzinfo=None, fold=0)
        switch_wall = self.SWITCH_UTC + self.BEFORE  # 02:30; wall times from 02:00 to 02:30 come twice
        if wall < switch_wall - (self.BEFORE - self.AFTER):
            return self.BEFORE
        if wall < switch_wall:
            return self.AFTER if moment.fold else self.BEFORE
        return self.AFTER

    def dst(self, moment: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, moment: datetime | None) -> str:
        return "HalfHourBack"

    def fromutc(self, moment: datetime) -> datetime:
        utc = moment.replace(tzinfo=None)
        if utc < self.SWITCH_UTC:
            return (utc + self.BEFORE).replace(tzinfo=self)
        wall = utc + self.AFTER
        repeated = self.SWITCH_UTC + self.AFTER <= wall < self.SWITCH_UTC + self.BEFORE
        return wall.replace(tzinfo=self, fold=int(repeated))


def test_an_offset_change_inside_an_hour_is_not_cached() -> None:
    zone = HalfHourBack()
    assert parse_instant("2026-06-01T02:45:00", zone) == parse_instant("2026-06-01T02:15:00Z", UTC)
    cache = instant_cache(zone)
    for minute in range(0, 4 * 60):
        text = f"2026-06-01T{minute // 60:02d}:{minute % 60:02d}:07"
        for _ in range(3):
            assert fast_instant(text, cache) in (None, parse_instant(text, zone)), text
    assert fast_instant("2026-06-01T03:10:07", cache) is not None  # the hours around it are cached


def test_every_hour_of_dst_days_is_exact() -> None:
    """Every minute of the DST days, naive and with offsets: cached hours give parse_instant's answer."""
    for zone in ZONES:
        cache = instant_cache(zone)
        for day in ("2026-03-08", "2026-11-01", "2026-03-29", "2026-10-25", "2026-10-04", "2026-04-05"):
            for minute in range(0, 24 * 60, 7):
                for suffix in ("", "Z", "-04:00"):
                    text = f"{day}T{minute // 60:02d}:{minute % 60:02d}:{minute % 60:02d}{suffix}"
                    expected = parse_or_none(text, zone)
                    results = {fast_instant(text, cache) for _ in range(3)}
                    assert results <= {None, expected}, (zone, text)
                    first, last = (parse_or_none(f"{text[:14]}{mmss}{suffix}", zone) for mmss in ("00:00", "59:59"))
                    if first is not None and last is not None and last - first == 3599 * 10**6:
                        assert expected in results, (zone, text)  # an hour without an offset change is cached


# --- the readers ----------------------------------------------------------------------------------------


def reference_jsonl(data: bytes, zone: tzinfo) -> tuple[list[Any], list[str], int]:
    """What the reader must give: a line at a time, each validated by the full validator."""
    rows, errors, records_seen = [], [], 0
    for number, line in enumerate(data.removeprefix(codecs.BOM_UTF8).split(b"\n"), 1):
        if not line.strip():
            continue
        records_seen += 1
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as problem:
            errors.append(f"f:{number}: record: malformed JSON: {problem.msg} (column {problem.colno})")
            continue
        parsed = parse_contact_full(obj, zone)
        if isinstance(parsed, list):
            errors.extend(f"f:{number}: {error}" for error in parsed)
        elif not errors:
            rows.append(tuple(parsed))
    return rows, errors, records_seen


def reference_csv(data: bytes, zone: tzinfo) -> tuple[list[Any], list[str], int]:
    """The CSV reader as it was written first: csv.reader rows into dicts, each validated in full."""
    rows: list[Any] = []
    errors: list[str] = []
    records_seen = 0
    for line, obj, problem in _reference_csv_items(data):
        records_seen += 1
        if problem is not None:
            errors.append(f"f:{line}: {problem}")
            continue
        parsed = parse_contact_full(obj, zone, from_text=True)
        if isinstance(parsed, list):
            errors.extend(f"f:{line}: {error}" for error in parsed)
        elif not errors:
            rows.append(tuple(parsed))
    return rows, errors, records_seen


def _reference_csv_items(data: bytes) -> Iterator[tuple[int, Any, str | None]]:
    raw = io.BytesIO(data)
    text = io.TextIOWrapper(io.BufferedReader(raw, chunks.READ_BYTES), encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as problem:
        yield 1, None, f"header: {csv_format.csv_problem(problem)}"
        return
    problem_text = csv_format.csv_header_problem(header)
    if problem_text is not None or header is None:
        yield 1, None, problem_text
        return
    columns = [cell.strip() for cell in header]
    line = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as problem:
            yield line, None, f"record: {csv_format.csv_problem(problem)}"
            return
        start, line = line, reader.line_num + 1
        if not row:
            continue
        if len(row) > len(columns):
            yield start, None, f"record: has {len(row)} cells but the header names {len(columns)} columns"
            continue
        yield start, dict(zip(columns, row, strict=False)), None


def read_all(data: bytes, kind: str, zone: tzinfo) -> tuple[list[Any], list[str], int]:
    """The fast reader's chunks (with tiny blocks and chunks, to cross every boundary), put together."""
    rows: list[Any] = []
    errors: list[str] = []
    records_seen = 0
    with mock.patch.object(chunks, "READ_BYTES", 64), mock.patch.object(chunks, "CHUNK_RECORDS", 3):
        read = list(formats.read_chunks(io.BytesIO(data), kind, "f", zone))
    for chunk in read[:-1]:
        assert chunk.records == 3
    for chunk in read:
        rows.extend(chunk.rows)
        errors.extend(chunk.errors)
        records_seen += chunk.records
    assert read[-1].bytes_read == len(data)
    return rows, errors, records_seen


JSONL_LINES = st.one_of(
    common_records().map(lambda r: orjson.dumps(r).decode()),
    common_records().map(lambda r: orjson.dumps(r).decode() + "\r"),
    odd_records().map(lambda r: json.dumps(r, default=str)),  # (stdlib: big integers, NaN and lone surrogates too)
    st.sampled_from(["", "   ", "\r", "\x0b", "{", "[1, 2]", "nope", '{"id": 1} x', "\x0c{}"]),
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(st.lists(JSONL_LINES, max_size=12), st.booleans(), st.booleans(), st.sampled_from(ZONES))
def test_jsonl_reader_agrees_with_a_line_by_line_reading(
    lines: list[str], bom: bool, final_newline: bool, zone: tzinfo
) -> None:
    data = (codecs.BOM_UTF8 if bom else b"") + "\n".join(lines).encode("utf-8", "surrogatepass")
    data += b"\n" if final_newline and lines else b""
    assert read_all(data, "jsonl", zone) == reference_jsonl(data, zone)


CSV_CELLS = st.one_of(
    st.sampled_from(
        ["", " ", "x", "a,b", 'say "hi"', "two\nlines", "cr\r", "1", "yes", "Phone", "2026-05-04 10:00:00"]
    ),
    iso_texts(),
    st.text(max_size=5).map(lambda s: s.encode("utf-8", "replace").decode("utf-8")),
)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    columns = draw(st.lists(st.sampled_from([*KNOWN_FIELDS, "wrapup"]), min_size=1, max_size=8, unique=True))
    if draw(st.integers(0, 9)) == 0:
        columns = draw(st.sampled_from([[], ["id", "id"], ["id", " "], ["  "]]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(columns)
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            out.write("\n")  # a blank line
        elif kind == 1:
            writer.writerow([draw(CSV_CELLS) for _ in range(len(columns) + 1)])  # a cell too many
        elif kind == 2:
            cells = as_text(draw(common_records()))
            writer.writerow([cells.get(column, "") for column in columns])
        else:
            writer.writerow([draw(CSV_CELLS) for _ in range(draw(st.integers(1, max(1, len(columns)))))])
    data = out.getvalue().encode()
    ending = draw(st.sampled_from([b"", b"", b'"open quote\n', b'a"b,c\n', b"\xff\xfe bad utf-8\n"]))
    return (codecs.BOM_UTF8 if draw(st.booleans()) else b"") + data + ending


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(csv_files(), st.sampled_from(ZONES))
def test_csv_reader_agrees_with_the_row_by_row_reading(data: bytes, zone: tzinfo) -> None:
    with mock.patch.object(chunks, "READ_BYTES", 64):
        expected = reference_csv(data, zone)
    assert read_all(data, "csv", zone) == expected


def test_a_bulk_file_is_read_on_the_fast_path(monkeypatch: Any) -> None:
    """The common case really is fast: a file of ordinary records never calls the full validator
    (after the first two records of each hour, which fill the hour cache)."""
    zone = ZONES[0]
    lines = [
        orjson.dumps(
            {"id": f"c{n}", "customer_id": f"k{n % 7}", "agent": "mia", "channel": "chat", "tier": 1}
            | {"started_at": f"2026-11-01T01:{n % 60:02d}:00", "ended_at": f"2026-11-01T01:{n % 60:02d}:30"}
        )
        for n in range(200)
    ]
    data = b"\n".join(lines)
    full_calls: list[tuple[Any, ...]] = []
    real_full = records._full_row

    def counted_full_row(*args: Any) -> Any:
        full_calls.append(args)
        return real_full(*args)

    monkeypatch.setattr(records, "_full_row", counted_full_row)
    rows, errors, seen = read_all(data, "jsonl", zone)
    assert (len(rows), errors, seen) == (200, [], 200)
    assert len(full_calls) <= 2
    assert rows == reference_jsonl(data, zone)[0]
