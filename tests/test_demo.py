"""``acr-bot demo``: deterministic, realistic generated contacts (bands checked with a plain-Python ACR)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from bot.demo import generate, iter_records
from bot.storage import open_store
from metrics.records import parse_contact
from metrics.timeutil import US_PER_DAY, from_us, load_zone, parse_instant
from tests.store_support import sqlite_path, stored_contacts

ZONE = load_zone("America/New_York")
AS_OF = "2026-11-20T17:00:00Z"
AS_OF_US = parse_instant(AS_OF, ZONE)
WEEK_US = 7 * US_PER_DAY


def records(contacts: int = 20_000, seed: int = 7, days: int = 60) -> list[dict[str, Any]]:
    return list(iter_records(generate(contacts, seed=seed, as_of_us=AS_OF_US, days=days, zone=ZONE)))


@pytest.fixture(scope="module")
def demo() -> list[dict[str, Any]]:
    return records()


def run(database_url: str, *args: str) -> Result:
    env = {"DATABASE_URL": database_url, "BOT_TIMEZONE": "America/New_York"}
    return CliRunner().invoke(main, ["demo", *args], env=env, catch_exceptions=False)


def instant(text: str) -> int:
    return parse_instant(text, ZONE)


def seven_day_acr(data: list[dict[str, Any]]) -> tuple[float, dict[str, float]]:
    """The contract's ACR, computed naively: matured inbound handled contacts without a repeat in 7 days."""
    repeat_starts: dict[str, list[int]] = defaultdict(list)
    for r in data:
        if r["direction"] == "inbound" and "parent_id" not in r:
            repeat_starts[r["customer_id"]].append(instant(r["started_at"]))
    matured: Counter[str] = Counter()
    resolved: Counter[str] = Counter()
    for r in data:
        if r["direction"] != "inbound" or "agent" not in r:
            continue
        start = instant(r["started_at"])
        end = instant(r["ended_at"]) if "ended_at" in r else start
        if end + WEEK_US > AS_OF_US:
            continue
        repeated = any(start < s <= end + WEEK_US for s in repeat_starts[r["customer_id"]])
        for key in ("*", r["agent"]):
            matured[key] += 1
            resolved[key] += not repeated
    by_agent = {k: resolved[k] / matured[k] for k in matured if k != "*" and matured[k] >= 100}
    return resolved["*"] / matured["*"], by_agent


def test_same_seed_same_data_other_seed_other_data() -> None:
    first = records(3000, seed=11)
    assert first == records(3000, seed=11)
    assert first != records(3000, seed=12)
    assert len(first) == 3000 and len(records(0)) == 0 and len(records(1)) == 1


def test_every_record_is_valid_and_inside_the_period(demo: list[dict[str, Any]]) -> None:
    for r in demo:
        contact = parse_contact(r, ZONE)
        assert not isinstance(contact, list), (r, contact)
        assert AS_OF_US - 60 * US_PER_DAY <= contact.started_us < AS_OF_US
        assert contact.ended_us is None or contact.ended_us >= contact.started_us
    assert len({r["id"] for r in demo}) == len(demo)


def test_seven_day_acr_is_believable_and_varies_by_agent(demo: list[dict[str, Any]]) -> None:
    overall, by_agent = seven_day_acr(demo)
    assert 0.60 <= overall <= 0.90, overall
    assert len(by_agent) >= 30
    assert all(0.5 <= rate <= 0.97 for rate in by_agent.values()), by_agent
    assert max(by_agent.values()) - min(by_agent.values()) >= 0.10  # agents differ


def test_the_contact_center_has_its_shapes(demo: list[dict[str, Any]]) -> None:
    by_id = {r["id"]: r for r in demo}
    agents = {r["agent"] for r in demo if "agent" in r}
    assert 40 <= len(agents) <= 60
    assert len({r["team"] for r in demo}) >= 4 and len({r["queue"] for r in demo}) >= 6
    channels = Counter(r["channel"] for r in demo)
    assert len(channels) >= 5 and channels.most_common(1)[0][0] == "phone"
    assert Counter(r["tier"] for r in demo).keys() == {1, 2, 3}
    assert Counter(r["tier"] for r in demo)[1] > 0.8 * len(demo)  # mostly tier 1
    # Escalations: a tier-2/3 continuation leg whose parent is an escalated tier-1 contact.
    legs = [r for r in demo if "parent_id" in r]
    escalations = [r for r in legs if r["tier"] > 1]
    assert escalations and all(by_id[r["parent_id"]]["escalated"] for r in escalations if r["parent_id"] in by_id)
    assert any(r["tier"] == 1 for r in legs)  # sideways transfers too
    assert all(by_id[r["parent_id"]]["customer_id"] == r["customer_id"] for r in legs if r["parent_id"] in by_id)
    outbound = [r for r in demo if r["direction"] == "outbound"]
    assert 0.02 * len(demo) < len(outbound) < 0.15 * len(demo)
    abandoned = [r for r in demo if "agent" not in r]
    assert 0.01 * len(demo) < len(abandoned) < 0.15 * len(demo)
    assert Counter(r.get("resolved") for r in demo).keys() == {True, False, None}
    assert 0 < sum("ended_at" not in r for r in demo) < 0.05 * len(demo)
    customers = Counter(r["customer_id"] for r in demo)
    assert sum(1 for n in customers.values() if n > 1) > 0.2 * len(customers)  # customers come back


def test_business_hours_and_weekends_in_the_bot_time_zone(demo: list[dict[str, Any]]) -> None:
    local = [from_us(instant(r["started_at"]), ZONE) for r in demo if r["direction"] == "inbound"]
    daytime = sum(7 <= moment.hour < 21 for moment in local)
    assert daytime > 0.95 * len(local)
    weekdays = Counter(moment.weekday() for moment in local)
    assert min(weekdays[d] for d in range(5)) > 1.5 * max(weekdays[5], weekdays[6])


def test_demo_loads_into_the_database_and_if_empty_leaves_it_alone(database_url: str) -> None:
    loaded = run(database_url, "--contacts", "2000", "--seed", "3", "--as-of", AS_OF)
    assert loaded.exit_code == 0, loaded.output
    assert "Loaded 2000 demo contacts (48 agents in 5 teams and 3 tiers; 60 days up to 2026-11-20T17:00:00Z)" in (
        loaded.stdout
    )
    store = open_store(database_url)
    try:
        rows = list(stored_contacts(store))
        assert len(rows) == 2000
        assert any(r["next_repeat_us"] is not None for r in rows)  # derived data maintained by the store
    finally:
        store.close()
    again = run(database_url, "--if-empty", "--contacts", "500", "--seed", "4")
    assert again.exit_code == 0
    assert "already has 2000 contacts; demo data not loaded" in again.stdout
    store = open_store(database_url)
    try:
        assert store.count_contacts() == 2000
    finally:
        store.close()


def test_if_empty_loads_an_empty_database(database_url: str) -> None:
    result = run(database_url, "--if-empty", "--contacts", "300", "--days", "10")
    assert result.exit_code == 0 and "Loaded 300 demo contacts" in result.stdout


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".json"])
def test_output_file_imports_back_whole(tmp_path: Path, database_url: str, suffix: str) -> None:
    path = tmp_path / f"demo{suffix}"
    written = run(database_url, "-n", "1500", "--seed", "9", "--as-of", AS_OF, "--output", str(path))
    assert written.exit_code == 0 and "Wrote 1500 demo contacts" in written.stdout
    assert not sqlite_path(database_url).exists()  # a file was written instead of loading
    env = {"DATABASE_URL": database_url, "BOT_TIMEZONE": "America/New_York"}
    imported = CliRunner().invoke(main, ["ingest", str(path)], env=env)
    assert imported.exit_code == 0, imported.output
    assert "1500 records: 1500 inserted, 0 updated, 0 unchanged, 0 stale" in imported.stdout
    if suffix == ".jsonl":
        first = orjson.loads(path.read_text().splitlines()[0])
        assert first == records(1500, seed=9)[0]


def test_bad_options_are_one_clear_line(tmp_path: Path, database_url: str) -> None:
    bad_file = run(database_url, "-n", "10", "--output", str(tmp_path / "demo.txt"))
    assert bad_file.exit_code == 1 and "unknown extension '.txt'" in bad_file.stderr
    bad_time = run(database_url, "-n", "10", "--as-of", "soon")
    assert bad_time.exit_code == 1 and bad_time.stderr.startswith("Error: --as-of:")
