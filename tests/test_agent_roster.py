"""The agent roster: ``acr-bot agents import|export|unknown``, and the platforms' agent ids mapped through it, on a
real SQLite file, through the real command and the real HTTP path; the store's roster on every backend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from click.testing import CliRunner, Result

from bot.cli import main
from bot.roster import RosterEntry
from bot.storage import ContactStore, open_store
from bot.storage.sqlite import SQLiteContactStore
from tests.builders import contact
from tests.platform_support import App
from tests.store_support import assert_candidates_mirror_contacts
from tests.test_amazon_connect import INBOUND, firehose_object
from tests.test_zendesk import CREATED, SECRET, send, solved

ROSTER = """agent,team,tier,slack_user,ids
Maria Lopez,billing,1,U0MARIA,zendesk:8447388090494 amazon-connect:admin1
Kofi Mensah,tech,2,,zendesk:900001;twilio:WK0000000000000000000000000000001
"""


def run(db_path: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, env={"DATABASE_URL": f"sqlite:///{db_path}"})


def test_import_export_round_trip_and_slack_links(db_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER)
    result = run(db_path, "agents", "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Imported 2 agents with 4 platform ids; 1 Slack users linked; 0 stored contacts re-mapped to their agent.\n"
    )
    exported = run(db_path, "agents", "export").stdout
    assert exported == (
        "agent,team,tier,slack_user,ids\n"
        "Kofi Mensah,tech,2,,twilio:WK0000000000000000000000000000001 zendesk:900001\n"
        "Maria Lopez,billing,1,U0MARIA,amazon-connect:admin1 zendesk:8447388090494\n"
    )
    assert run(db_path, "agents", "import", "-", stdin=exported).exit_code == 0  # what export prints, import reads
    assert run(db_path, "agents", "export").stdout == exported
    assert "U0MARIA\tMaria Lopez\troster" in run(db_path, "agents", "list").stdout


def test_a_bad_roster_lists_every_problem_and_changes_nothing(db_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER)
    assert run(db_path, "agents", "import", str(path)).exit_code == 0
    path.write_text(
        "agent,team,tier,slack_user,ids\nAna,,0,bob,zendesk:1\n,x,,,\nBo,,,,zendesk:1 genesys:7 twilio:\nBo,,,,\n"
    )
    result = run(db_path, "agents", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}:2: tier: must be a whole number >= 1, got '0'",
        f"{path}:2: slack_user: 'bob' is not a Slack user id (like U0123ABCD)",
        f"{path}:3: agent: is required",
        f"{path}:4: ids: 'genesys:7' is not platform:id (platforms: amazon-connect, zendesk, intercom, chatwoot, twilio)",
        f"{path}:4: ids: 'twilio:' is not platform:id (platforms: amazon-connect, zendesk, intercom, chatwoot, twilio)",
        f"{path}:5: agent: 'Bo' is listed twice",
        f"Error: {path}: 6 errors; the roster was not changed",
    ]
    assert "Maria Lopez" in run(db_path, "agents", "export").stdout


def test_platform_ids_become_names_live_and_for_contacts_already_stored(
    start_app: Callable[..., App], db_path: Path, tmp_path: Path
) -> None:
    app = start_app(zendesk_webhook_secret=SECRET)
    other_ticket = {**CREATED, "detail": {**CREATED["detail"], "id": "5159", "assignee_id": "900001"}}
    assert send(app, CREATED).json()["inserted"] == 1
    assert send(app, other_ticket).json()["inserted"] == 1
    assert run(db_path, "agents", "unknown").stdout == (
        "zendesk\t8447388090494\t1 contact\nzendesk\t900001\t1 contact\n"
    )
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER)
    imported = run(db_path, "agents", "import", str(path))
    assert "2 stored contacts re-mapped to their agent" in imported.stdout
    stored = app.stored("zendesk")
    assert (stored["5158"]["agent"], stored["5158"]["team"], stored["5158"]["tier"]) == ("Maria Lopez", "billing", 1)
    assert (stored["5159"]["agent"], stored["5159"]["team"], stored["5159"]["tier"]) == ("Kofi Mensah", "tech", 2)
    assert_candidates_mirror_contacts(app.store)  # the derived data followed the re-mapping
    assert run(db_path, "agents", "unknown").stdout == "Every agent of the platforms' contacts is in the roster.\n"

    # A new event is mapped as it arrives; an unknown id is stored as it came.
    assert send(app, solved(assignee="900001")).json()["updated"] == 1
    assert app.stored("zendesk")["5158"]["agent"] == "Kofi Mensah"
    assert send(app, solved(at="2025-01-08T12:00:00Z", assignee="31337")).json()["updated"] == 1
    assert app.stored("zendesk")["5158"]["agent"] == "31337"
    assert run(db_path, "agents", "unknown").stdout == "zendesk\t31337\t1 contact\n"


def test_ctr_files_are_mapped_through_the_roster(db_path: Path, tmp_path: Path) -> None:
    roster_path = tmp_path / "roster.csv"
    roster_path.write_text(ROSTER)
    assert run(db_path, "agents", "import", str(roster_path)).exit_code == 0
    objects = tmp_path / "objects"
    objects.write_bytes(firehose_object([INBOUND]))
    assert run(db_path, "ingest", "--format", "amazon-connect", str(objects)).exit_code == 0
    store = open_store(f"sqlite:///{db_path}")
    try:
        row = store.get_contact("amazon-connect", INBOUND["ContactId"])
        assert row is not None and (row["agent"], row["team"], row["tier"]) == ("Maria Lopez", "billing", 1)
        assert orjson.loads(row["raw"]) == INBOUND
    finally:
        store.close()


def test_every_store_keeps_the_roster_and_re_maps_stored_contacts(store: ContactStore) -> None:
    t0 = 1_780_000_000
    store.upsert(
        [
            contact("5158", "k1", t0, t0 + 60, source="zendesk", agent="900001"),
            contact("5159", "k1", t0 + 600, t0 + 660, source="zendesk", agent="Ann", team="sales"),
            contact("a1", "k2", t0, t0 + 60, agent="900001"),  # another source: the id means nobody there
        ]
    )
    assert store.unknown_agents(["zendesk"]) == [("zendesk", "900001", 1), ("zendesk", "Ann", 1)]
    kofi = RosterEntry("Kofi Mensah", "tech", 2, "U0KOFI", (("zendesk", "900001"),))
    ann = RosterEntry("Ann")
    assert store.replace_roster([kofi, ann]) == 1
    assert store.roster() == [ann, kofi]
    assert store.agent_for_user("U0KOFI") == "Kofi Mensah"
    remapped = store.get_contact("zendesk", "5158")
    assert remapped is not None
    assert (remapped["agent"], remapped["team"], remapped["tier"]) == ("Kofi Mensah", "tech", 2)
    assert remapped["next_repeat_us"] == (t0 + 600) * 1_000_000  # the derived next repeat stays
    untouched = store.get_contact("api", "a1")
    assert untouched is not None and untouched["agent"] == "900001"
    assert store.unknown_agents(["zendesk"]) == []
    assert_candidates_mirror_contacts(store)
    assert store.replace_roster([]) == 0 and store.roster() == []


def test_the_sqlite_store_reads_the_roster_again_only_when_it_changed(db_path: Path) -> None:
    """Every webhook request asks for the roster: the store answers with the list it read last while the roster's
    version is the same, and reads a change made by another process (another connection) at once."""
    store, other = SQLiteContactStore(db_path), SQLiteContactStore(db_path)
    try:
        first = store.roster()
        assert first == [] and store.roster() is first
        ann = RosterEntry("Ann", "billing", 1, ids=(("zendesk", "7"),))
        other.replace_roster([ann])
        assert store.roster() == [ann]
        read = store.roster()
        assert store.roster() is read
        tables = [(table, *other.export_table(table)) for table in ("agent_roster", "agent_platform_ids")]
        other.replace_tables(tables)  # (how ``db copy`` writes it)
        assert store.roster() == [ann] and store.roster() is not read
    finally:
        store.close()
        other.close()
