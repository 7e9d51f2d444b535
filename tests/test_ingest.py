"""``acr-bot ingest``: CSV, JSON arrays, JSONL and stdin through the real command, into a real SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from bot.demo import generate, write_file
from bot.ingest import ingest_file
from bot.storage import ContactStore, open_store
from metrics.timeutil import iso_utc, load_zone, parse_instant
from tests.store_support import stored_contacts

UTC_ZONE = load_zone("UTC")


def record(contact_id: object, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": contact_id,
        "customer_id": "cust-1",
        "agent": "maria",
        "channel": "phone",
        "started_at": "2026-05-04T10:00:00Z",
        "ended_at": "2026-05-04T10:05:00Z",
    }
    base.update(fields)
    return base


def jsonl(path: Path, records: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def run(database_url: str, *args: str, stdin: str | bytes | None = None, zone: str = "UTC") -> Result:
    env = {"DATABASE_URL": database_url, "BOT_TIMEZONE": zone}
    return CliRunner().invoke(main, ["ingest", *args], input=stdin, env=env, catch_exceptions=False)


def stored(database_url: str) -> dict[str, dict[str, Any]]:
    store = open_store(database_url)
    try:
        return {row["id"]: row for row in stored_contacts(store)}
    finally:
        store.close()


def test_jsonl_import_prints_summary_and_stores_records(tmp_path: Path, database_url: str) -> None:
    path = jsonl(tmp_path / "day.jsonl", [record("a"), record("b", agent=None), record("c", channel="CHAT")])
    result = run(database_url, str(path))
    assert result.exit_code == 0, result.output
    assert f"{path}: 3 records: 3 inserted, 0 updated, 0 unchanged, 0 stale" in result.stdout
    assert "Total: 1 file: 3 inserted, 0 updated, 0 unchanged, 0 stale" in result.stdout
    rows = stored(database_url)
    assert rows["a"]["started_us"] == parse_instant("2026-05-04T10:00:00Z", UTC_ZONE)
    assert rows["b"]["agent"] is None and rows["c"]["channel"] == "chat"
    assert rows["a"]["source"] == "api"


def test_reimport_is_unchanged_and_changes_are_updates(tmp_path: Path, database_url: str) -> None:
    path = jsonl(tmp_path / "c.jsonl", [record("a"), record("b"), record("c")])
    assert run(database_url, str(path)).exit_code == 0
    again = run(database_url, str(path))
    assert "3 records: 0 inserted, 0 updated, 3 unchanged, 0 stale" in again.stdout
    jsonl(path, [record("a"), record("b", resolved=False), record("c"), record("d")])
    changed = run(database_url, str(path))
    assert "4 records: 1 inserted, 1 updated, 2 unchanged, 0 stale" in changed.stdout
    assert stored(database_url)["b"]["resolved"] == 0


def test_a_key_repeated_in_one_file_counts_in_order(tmp_path: Path, database_url: str) -> None:
    first, second = record("a"), record("a", resolved=True)
    path = jsonl(tmp_path / "dup.jsonl", [first, second, second, record("b")])
    result = run(database_url, str(path))
    assert "4 records: 2 inserted, 1 updated, 1 unchanged, 0 stale" in result.stdout
    assert stored(database_url)["a"]["resolved"] == 1


def test_bad_lines_are_all_listed_and_nothing_of_the_file_is_stored(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [
        orjson.dumps(record("ok-1")),
        b'{"id": "broken", ',  # line 2: malformed JSON
        b"",  # blank lines are skipped but counted
        orjson.dumps(record("x", channel="pigeon")),  # line 4
        orjson.dumps({"id": "y", "started_at": "2026-05-04T10:00:00Z"}),  # line 5: no customer_id
        orjson.dumps(record("z", ended_at="2026-05-04T09:00:00Z")),  # line 6
        b"[1, 2]",  # line 7: not an object
        orjson.dumps(record("ok-2")),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = run(database_url, str(path))
    assert result.exit_code == 1
    errors = result.stderr
    assert f"{path}:2: record: malformed JSON:" in errors
    assert f'{path}:4: channel: "pigeon" is not one of phone, chat, email' in errors
    assert f"{path}:5: customer_id: is required" in errors
    assert f"{path}:6: ended_at: '2026-05-04T09:00:00Z' is before started_at" in errors
    assert f"{path}:7: record: expected an object, got an array" in errors
    assert "5 errors in 7 records; nothing stored from this file" in errors
    assert stored(database_url) == {}


def test_files_are_independent_a_good_file_is_stored_next_to_a_bad_one(tmp_path: Path, database_url: str) -> None:
    good = jsonl(tmp_path / "good.jsonl", [record("g1"), record("g2")])
    bad = jsonl(tmp_path / "bad.jsonl", [record("b1"), record("b2", tier=0)])
    result = run(database_url, str(bad), str(good))
    assert result.exit_code == 1
    assert f"{bad}:2: tier: must be >= 1, got 0" in result.stderr
    assert f"{good}: 2 records: 2 inserted" in result.stdout
    assert "Total: 2 files: 2 inserted, 0 updated, 0 unchanged, 0 stale; 1 with errors, not stored" in result.stdout
    assert set(stored(database_url)) == {"g1", "g2"}


def test_a_byte_order_mark_and_crlf_line_ends_are_fine(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "win.jsonl").write_bytes(
        b"\xef\xbb\xbf" + orjson.dumps(record("a")) + b"\r\n" + orjson.dumps(record("b"))
    )
    (tmp_path / "win.csv").write_bytes(b"\xef\xbb\xbfid,customer_id,started_at\r\nc,k,2026-05-04 10:00:00\r\n")
    result = run(database_url, str(tmp_path / "win.jsonl"), str(tmp_path / "win.csv"))
    assert result.exit_code == 0, result.output
    assert set(stored(database_url)) == {"a", "b", "c"}


def test_stdin_reads_jsonl(database_url: str) -> None:
    body = b"".join(orjson.dumps(record(f"s{i}")) + b"\n" for i in range(3)) + b'{"id": 5.5}\n'
    result = run(database_url, "-", stdin=body)
    assert result.exit_code == 1
    assert "<stdin>:4: id: must be a string, got a number 5.5" in result.stderr
    ok = run(database_url, "-", stdin=body.rsplit(b"\n", 2)[0] + b"\n")
    assert ok.exit_code == 0 and "<stdin>: 3 records: 3 inserted" in ok.stdout


def test_json_array_is_streamed_with_line_numbers(tmp_path: Path, database_url: str) -> None:
    nested = record("n", extra={"deep": {"x": "} not the end {"}}, note="a } in text")
    text = (
        "[\n"
        + ",\n".join(
            [
                orjson.dumps(record("a"), option=orjson.OPT_INDENT_2).decode(),  # lines 2-9
                orjson.dumps(nested).decode(),  # line 10
                "  42",  # line 11: not an object
                orjson.dumps(record("b", agent=7)).decode(),  # line 12
            ]
        )
        + "\n]\n"
    )
    path = tmp_path / "export.json"
    path.write_text(text)
    result = run(database_url, str(path))
    assert result.exit_code == 1
    assert f"{path}:11: record: expected an object, got a number" in result.stderr
    assert f"{path}:12: agent: must be a string, got a number 7" in result.stderr
    assert "2 errors in 4 records" in result.stderr

    path.write_text(text.replace(",\n  42", "").replace('"agent":7', '"agent":"leo"'))
    assert run(database_url, str(path)).exit_code == 0
    rows = stored(database_url)
    assert orjson.loads(rows["n"]["raw"])["extra"] == {"deep": {"x": "} not the end {"}}
    assert rows["b"]["agent"] == "leo"


def test_json_array_lone_surrogate_is_a_record_error(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "odd.json"
    path.write_text('[{"id": "a", "customer_id": "k", "started_at": 1770000000, "note": "\\ud800"},\n{"id": [1]}]')
    result = run(database_url, str(path))
    assert result.exit_code == 1
    assert f"{path}:1: record: has a \\u escape of a lone surrogate" in result.stderr
    assert f"{path}:2: id: must be a string" in result.stderr


def test_json_array_syntax_error_names_its_line(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n{"id": "a", "customer_id": "k", "started_at": 1770000000},\n{"id": "b",\n "x": }\n]')
    result = run(database_url, str(path))
    assert result.exit_code == 1
    assert f"{path}:4: record: malformed JSON: Expecting value" in result.stderr
    (tmp_path / "number.json").write_text("42")
    assert "record: expected a JSON array of records" in run(database_url, str(tmp_path / "number.json")).stderr
    (tmp_path / "two.json").write_text('{"id": "a"} {"id": "b"}')
    assert "unexpected '{' after the object" in run(database_url, str(tmp_path / "two.json")).stderr
    (tmp_path / "open.json").write_text('[{"id": "a", "customer_id": "k", "started_at": 1770000000}')
    assert "the array is not closed" in run(database_url, str(tmp_path / "open.json")).stderr
    assert stored(database_url) == {}


def test_json_array_and_jsonl_of_the_same_records_are_the_same_bodies(tmp_path: Path, database_url: str) -> None:
    records = [record("a"), record("b", reason="billing ✓")]
    jsonl(tmp_path / "x.jsonl", records)
    (tmp_path / "x.json").write_text(orjson.dumps(records, option=orjson.OPT_INDENT_2).decode())
    assert run(database_url, str(tmp_path / "x.jsonl")).exit_code == 0
    assert "0 inserted, 0 updated, 2 unchanged, 0 stale" in run(database_url, str(tmp_path / "x.json")).stdout


CSV_TEXT = (
    "id,customer_id,agent,channel,escalated,resolved,tier,started_at,ended_at,wrapup_code\n"
    "c1,k1,maria,phone,1,yes,1,2026-05-04 10:00:00,2026-05-04 10:05:00,W1\n"
    "c2,k1,,Chat,0,no,2,2026-05-04T11:00:00Z,,\n"
    "c3,k2,leo,email,TRUE,False,,1777000000,1777000060.5,W3\n"
    "c4,k2,leo,email,no,,1,2026-05-04 12:00:00+02:00,,\n"
    "c5,k3,leo,sms,false,true,1,2026-05-04 12:00:00,,\n"
)


def test_csv_booleans_empty_cells_and_unknown_columns(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "export.csv"
    path.write_text(CSV_TEXT)
    result = run(database_url, str(path))
    assert result.exit_code == 0, result.output
    rows = stored(database_url)
    assert [rows[k]["escalated"] for k in ("c1", "c2", "c3", "c4", "c5")] == [1, 0, 1, 0, 0]
    assert [rows[k]["resolved"] for k in ("c1", "c2", "c3", "c4", "c5")] == [1, 0, 0, None, 1]
    assert rows["c2"]["agent"] is None and rows["c2"]["ended_us"] is None and rows["c2"]["channel"] == "chat"
    assert rows["c3"]["tier"] == 1 and rows["c3"]["ended_us"] == 1777000060_500000
    assert iso_utc(rows["c4"]["started_us"]) == "2026-05-04T10:00:00Z"
    assert orjson.loads(rows["c1"]["raw"])["wrapup_code"] == "W1"
    assert "wrapup_code" not in orjson.loads(rows["c2"]["raw"])  # an empty cell is "not given"
    assert "4 unchanged" not in run(database_url, str(path)).stdout  # (re-import: all 5 unchanged)
    assert "5 records: 0 inserted, 0 updated, 5 unchanged, 0 stale" in run(database_url, str(path)).stdout


def test_csv_errors_name_the_line_where_the_record_starts(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "multi.csv"
    path.write_text(
        "id,customer_id,reason,escalated,started_at\n"
        'a,k1,"two\nlines",maybe,2026-05-04 10:00:00\n'  # lines 2-3
        "\n"  # line 4: blank
        "b,k1,x,1,2026-05-04 10:00:00,surplus\n"  # line 5: too many cells
        "c,,x,1,not a time\n"  # line 6
    )
    result = run(database_url, str(path))
    assert result.exit_code == 1
    errors = result.stderr
    assert f'{path}:2: escalated: "maybe" is not a boolean (use true/false, yes/no or 1/0)' in errors
    assert f"{path}:5: record: has 6 cells but the header names 5 columns" in errors
    assert f"{path}:6: customer_id: is required" in errors
    assert f"{path}:6: started_at: 'not a time' is not an ISO 8601 timestamp or epoch seconds" in errors
    (tmp_path / "dupe.csv").write_text("id,id,started_at\n")
    assert "header: duplicate column 'id'" in run(database_url, str(tmp_path / "dupe.csv")).stderr


def test_naive_and_offset_timestamps_in_new_york_across_dst(tmp_path: Path, database_url: str) -> None:
    """Naive = wall time in BOT_TIMEZONE: EST before the 2026-03-08 jump, EDT after, the first 01:30 on
    2026-11-01 (still EDT); an offset is taken as given; the skipped hour does not exist."""
    cases = {
        "before-jump": ("2026-03-08 01:30:00", "2026-03-08T06:30:00Z"),
        "after-jump": ("2026-03-08T03:30:00", "2026-03-08T07:30:00Z"),
        "offset": ("2026-03-08T02:30:00-05:00", "2026-03-08T07:30:00Z"),
        "utc": ("2026-03-08T02:30:00Z", "2026-03-08T02:30:00Z"),
        "ambiguous": ("2026-11-01 01:30:00", "2026-11-01T05:30:00Z"),
        "after-fall-back": ("2026-11-01 03:00:00", "2026-11-01T08:00:00Z"),
        "epoch": (1772951400, "2026-03-08T06:30:00Z"),
    }
    path = jsonl(tmp_path / "dst.jsonl", [record(k, started_at=v[0], ended_at=None) for k, v in cases.items()])
    result = run(database_url, str(path), zone="America/New_York")
    assert result.exit_code == 0, result.output
    rows = stored(database_url)
    assert {k: iso_utc(rows[k]["started_us"]) for k in cases} == {k: v[1] for k, v in cases.items()}

    gap = jsonl(tmp_path / "gap.jsonl", [record("gap", started_at="2026-03-08 02:30:00", ended_at=None)])
    failed = run(database_url, str(gap), zone="America/New_York")
    assert failed.exit_code == 1
    assert f"{gap}:1: started_at: 2026-03-08T02:30:00 does not exist in America/New_York" in failed.stderr


def test_unknown_extension_missing_file_and_directory(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder.csv").mkdir()
    files = ("notes.txt", "missing.csv", "folder.csv", "")
    result = run(database_url, *(str(tmp_path / name) for name in files))
    assert result.exit_code == 1
    assert "notes.txt: unknown file type (extension '.txt'); use .csv, .json, .jsonl or .ndjson" in result.stderr
    assert f"{tmp_path / 'missing.csv'}: cannot read: No such file or directory" in result.stderr
    assert f"{tmp_path / 'folder.csv'}: is a directory, not a file" in result.stderr
    assert f"{tmp_path}: unknown file type (no extension)" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_reading_in_a_child_process_stores_the_same(tmp_path: Path, new_store: Callable[[], ContactStore]) -> None:
    """The parallel reader (a forked child) and the in-process reader give identical stores and errors."""
    zone = load_zone("America/New_York")
    data = generate(3000, seed=5, as_of_us=parse_instant("2026-11-20T12:00:00Z", zone), days=20, zone=zone)
    path = tmp_path / "demo.csv"
    write_file(data, path)
    results = {}
    for parallel in (False, True):
        store = new_store()
        try:
            outcome = ingest_file(store, str(path), zone, parallel=parallel)
            assert outcome.ok and outcome.counts.inserted == 3000, outcome.errors[:3]
            results[parallel] = [{k: v for k, v in r.items() if k != "received_at"} for r in stored_contacts(store)]
        finally:
            store.close()
    assert results[False] == results[True]

    bad = tmp_path / "bad.jsonl"
    jsonl(bad, [record("a"), record("b", tier="x"), record("c")])
    errors = {}
    for parallel in (False, True):
        store = new_store()
        try:
            errors[parallel] = ingest_file(store, str(bad), zone, parallel=parallel).errors
            assert store.count_contacts() == 0
        finally:
            store.close()
    assert errors[False] == errors[True] == [f'{bad}:2: tier: must be a whole number >= 1, got "x"']


def test_no_progress_bar_when_not_a_terminal(tmp_path: Path, database_url: str) -> None:
    path = jsonl(tmp_path / "p.jsonl", [record("a")])
    open_store(database_url).close()  # (a new database is announced on stderr)
    quiet = run(database_url, str(path))
    assert quiet.stderr == "" and "%" not in quiet.stdout


@pytest.mark.slow
def test_progress_bar_on_a_terminal(tmp_path: Path, database_url: str) -> None:
    """Run under a pseudo-terminal, as a user would: the bar shows the file's bytes read."""
    path = jsonl(tmp_path / "t.jsonl", [record(f"r{i}") for i in range(2000)])
    primary, secondary = os.openpty()
    env = {**os.environ, "DATABASE_URL": database_url, "BOT_TIMEZONE": "UTC"}
    command = [str(Path(sys.executable).with_name("acr-bot")), "ingest", str(path)]
    with subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary) as child:
        os.close(secondary)
        seen = b""
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # the terminal closed
                break
            if not data:
                break
            seen += data
        assert child.wait(timeout=60) == 0
    os.close(primary)
    text = seen.decode()
    assert "100%" in text and str(path) in text
    assert "2000 records: 2000 inserted" in text
    quiet = subprocess.run([*command, "--no-progress"], env=env, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and "%" not in quiet.stdout + quiet.stderr


@pytest.mark.slow
def test_real_command_in_a_subprocess(tmp_path: Path, database_url: str) -> None:
    good = jsonl(tmp_path / "good.ndjson", [record("a"), record("b")])
    bad = tmp_path / "bad.csv"
    bad.write_text("id,customer_id,started_at\nx,k,yesterday\n")
    env = {**os.environ, "DATABASE_URL": database_url, "BOT_TIMEZONE": "UTC"}
    command = [str(Path(sys.executable).with_name("acr-bot")), "ingest", str(good), str(bad)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"{good}: 2 records: 2 inserted, 0 updated, 0 unchanged, 0 stale" in done.stdout
    assert f"{bad}:2: started_at: 'yesterday' is not an ISO 8601 timestamp or epoch seconds" in done.stderr
    assert "Traceback" not in done.stderr
    again = subprocess.run(command[:3], env=env, input="", capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "0 inserted, 0 updated, 2 unchanged, 0 stale" in again.stdout


@pytest.mark.parametrize("name", ["a.JSONL", "b.Csv"])
def test_extensions_are_case_insensitive(tmp_path: Path, database_url: str, name: str) -> None:
    path = tmp_path / name
    if name.lower().endswith(".csv"):
        path.write_text("id,customer_id,started_at\nx,k,2026-05-04 10:00:00\n")
    else:
        jsonl(path, [record("x")])
    assert run(database_url, str(path)).exit_code == 0


def test_a_tier_too_large_for_the_store_and_a_nul_character_are_record_errors(
    tmp_path: Path, database_url: str
) -> None:
    """Defect 4: a tier of 2^63 passed validation and failed the write ("unexpected OverflowError", no line)."""
    path = jsonl(tmp_path / "big.jsonl", [record("a"), record("b", tier=2**63), record("c", agent="ma\x00ria")])
    result = run(database_url, str(path))
    assert result.exit_code == 1, result.output
    assert f"{path}:2: tier: must be at most 9223372036854775807 (2^63 - 1), got 9223372036854775808" in result.output
    assert f"{path}:3: agent: contains a NUL character (\\u0000) at position 3" in result.output
    assert "unexpected" not in result.output and stored(database_url) == {}
    csv = tmp_path / "big.csv"
    csv.write_text(
        f"id,customer_id,started_at,tier,team\nx,k,2026-05-04T10:00:00Z,{2**63},a\ny,k,2026-05-04T10:00:00Z,1,b\x00\n"
    )
    result = run(database_url, str(csv))
    assert result.exit_code == 1, result.output
    assert f"{csv}:2: tier: must be at most 9223372036854775807" in result.output
    assert f"{csv}:3: team: contains a NUL character" in result.output
    largest = jsonl(tmp_path / "max.jsonl", [record("m", tier=2**63 - 1)])
    assert run(database_url, str(largest)).exit_code == 0
    assert stored(database_url)["m"]["tier"] == 2**63 - 1


def test_numeric_ids_are_taken_as_their_decimal_text(tmp_path: Path, database_url: str) -> None:
    """CRM exports write ids as numbers (contract section 1)."""
    path = jsonl(tmp_path / "crm.jsonl", [record(7, customer_id=120034), record(8, customer_id=120034, parent_id=7)])
    result = run(database_url, str(path))
    assert result.exit_code == 0, result.output
    rows = stored(database_url)
    assert rows["7"]["customer_id"] == "120034" and rows["8"]["parent_id"] == "7"
    bad = jsonl(tmp_path / "bool.jsonl", [record(True), record(1.5)])
    result = run(database_url, str(bad))
    assert result.exit_code == 1
    assert f"{bad}:1: id: must be a string, got a boolean true" in result.output
    assert f"{bad}:2: id: must be a string, got a number 1.5" in result.output


def test_a_json_file_with_one_object_is_one_record(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "one.json"
    path.write_bytes(orjson.dumps(record("solo")))
    result = run(database_url, str(path))
    assert result.exit_code == 0, result.output
    assert f"{path}: 1 record: 1 inserted" in result.stdout
    assert "solo" in stored(database_url)


def test_deeply_nested_json_is_a_clear_error(tmp_path: Path, database_url: str) -> None:
    """Defect 10: an unknown field nested 100,000 deep was "unexpected RecursionError"."""
    deep = b"[" * 100_000 + b"]" * 100_000
    for name, body in (("deep.json", b"[" + orjson.dumps(record("d"))[:-1] + b',"x":' + deep + b"}]"),
                       ("deep.jsonl", orjson.dumps(record("d"))[:-1] + b',"x":' + deep + b"}\n")):  # fmt: skip
        path = tmp_path / name
        path.write_bytes(body)
        result = run(database_url, str(path))
        assert result.exit_code == 1, result.output
        assert "unexpected" not in result.output and "Recursion" not in result.output, result.output
        assert f"{path}:1:" in result.output and "nested" in result.output, result.output
