"""``acr-bot db copy``: SQLite -> PostgreSQL -> SQLite gives back the same store (contacts with their versions, the
agent roster), answers and scheduler state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.demo import generate, load_into
from bot.roster import RosterEntry
from bot.storage import COPIED_TABLES, ContactStore, UpsertCounts, open_store
from bot.storage.schedules import AlertState, OutboxMessage
from metrics.records import Contact, parse_contact
from metrics.timeutil import load_zone
from tests.store_support import assert_candidates_mirror_contacts
from tests.test_postgres_store import answers, dump

UTC_ZONE = load_zone("UTC")
AS_OF_US = 1_780_000_000 * 1_000_000


def versioned(updated_at: str, resolved: bool) -> Contact:
    """One Zendesk ticket in the version of ``updated_at``."""
    record = {
        "source": "zendesk", "id": "35436", "customer_id": "user-7", "agent": "8447388090494",
        "started_at": "2026-05-20T09:00:00Z", "updated_at": updated_at, "resolved": resolved,
    }  # fmt: skip
    contact = parse_contact(record, UTC_ZONE)
    assert isinstance(contact, Contact)
    return contact


ROSTER = [
    RosterEntry("maria", "billing", 2, "U0MARIA", (("twilio", "WK0123"), ("zendesk", "8447388090494"))),
    RosterEntry("tomas", None, None, None, (("intercom", "991267"),)),
]


def fill(store: ContactStore) -> None:
    """Demo contacts, a versioned contact, the agent roster and one of everything the scheduler and Slack keep."""
    load_into(store, generate(3000, seed=7, as_of_us=AS_OF_US, days=20, zone=UTC_ZONE), UTC_ZONE)
    store.upsert([versioned("2026-05-21T10:00:00Z", True)])
    store.replace_roster(ROSTER)
    store.link_agent("U0MARIA", "maria", "U0BOSS")
    schedules = store.schedules()
    schedules.save_subscription("C1", "team:billing", "09:00", "Europe/Berlin", True, "U0BOSS", AS_OF_US)
    schedules.save_subscription("C2", "", "17:30", None, False, None, AS_OF_US)
    rule = schedules.add_alert_rule("acr", 0.7, 7 * 86_400_000_000, 30, "", 50, "C1", True, "U0BOSS", AS_OF_US)
    schedules.snooze_alert_rule(rule.id, AS_OF_US + 3600_000_000)
    firing = AlertState(True, 2, AS_OF_US, AS_OF_US, None, 0.61, 120, AS_OF_US)
    sent = OutboxMessage(f"alert:{rule.id}:2:fire", "C1", "ACR below 70%", blocks=[{"type": "section"}])
    schedules.save_alert_evaluation(rule.id, firing, [sent], AS_OF_US)
    outbox = store.outbox()
    outbox.begin_attempt(sent.key, AS_OF_US)
    outbox.mark_sent(sent.key, "1700000000.000100", AS_OF_US + 1)
    outbox.enqueue([OutboxMessage("digest:C2::2026-05-28", "C2", "digest", file=b"\x89PNG", filename="c.png")], 5)


def tables(store: ContactStore) -> dict[str, list[tuple[Any, ...]]]:
    """The small tables, booleans as 0/1 (SQLite's) so both backends compare."""
    return {
        table: [tuple(int(v) if isinstance(v, bool) else v for v in row) for row in store.export_table(table)[1]]
        for table in COPIED_TABLES
    }


@pytest.mark.slow
def test_sqlite_to_postgresql_and_back_keeps_everything(tmp_path: Path, postgres_url: str) -> None:
    first, back = f"sqlite:///{tmp_path / 'first.db'}", f"sqlite:///{tmp_path / 'back.db'}"
    source = open_store(first)
    try:
        fill(source)
        expected = (dump(source), answers(source), tables(source), source.count_contacts())
    finally:
        source.close()
    shown_url = postgres_url.replace("postgresql://postgres@", "postgresql://postgres:pw-s3cret@", 1)
    runner = CliRunner()
    there = runner.invoke(main, ["db", "copy", "--from", first, "--to", shown_url])
    assert there.exit_code == 0, there.output
    assert "pw-s3cret" not in there.output
    assert there.output.startswith(
        "Copied 3001 contacts and 1 slack links, 2 subscriptions, 1 alert rules, 2 outbox, 2 agent roster, "
        "3 agent platform ids from "
    )
    again = runner.invoke(main, ["db", "copy", "--from", postgres_url, "--to", back])
    assert again.exit_code == 0, again.output
    for url in (postgres_url, back):
        store = open_store(url)
        try:
            assert (dump(store), answers(store), tables(store), store.count_contacts()) == expected
            assert_candidates_mirror_contacts(store)  # (PostgreSQL's copy of the quick returns too)
            assert store.roster() == ROSTER
            ticket = store.get_contact("zendesk", "35436")
            assert ticket is not None and ticket["agent"] == "maria" and ticket["team"] == "billing"
            # the version came along: an older one re-sent after the copy changes nothing
            assert store.upsert([versioned("2026-05-21T09:00:00Z", False)]) == UpsertCounts(stale=1)
            assert store.get_contact("zendesk", "35436") == ticket
        finally:
            store.close()
    pending = open_store(back)
    try:
        entry = pending.outbox().outbox_entry("digest:C2::2026-05-28")
        assert entry is not None and entry.message.file == b"\x89PNG" and entry.status == "pending"
        # new rules are numbered after the copied ones
        rule = pending.schedules().add_alert_rule("tier1", 0.5, 86_400_000_000, 7, "", 1, "C9", False, None, 1)
        assert rule.id == 2
    finally:
        pending.close()


def test_a_target_with_contacts_is_refused_and_left_alone(tmp_path: Path, postgres_url: str) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    source = open_store(source_url)
    target = open_store(postgres_url)
    try:
        fill(source)
        load_into(target, generate(10, seed=1, as_of_us=AS_OF_US, zone=UTC_ZONE), UTC_ZONE)
    finally:
        source.close()
        target.close()
    result = CliRunner().invoke(main, ["db", "copy", "--from", source_url, "--to", postgres_url])
    assert result.exit_code == 1
    assert result.output == (
        "Error: the target already holds 10 contacts; db copy fills an empty store (nothing changed)\n"
    )
    target = open_store(postgres_url)
    try:
        assert target.count_contacts() == 10 and target.schedules().list_subscriptions() == []
    finally:
        target.close()


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_a_copy_that_fails_midway_leaves_no_contact_and_runs_again(
    tmp_path: Path, target: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.storage as storage
    import bot.storage.copy as copy_module

    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    target_url = request.getfixturevalue("postgres_url") if target == "postgresql" else f"sqlite:///{tmp_path / 't.db'}"
    source = open_store(source_url)
    try:
        fill(source)
    finally:
        source.close()
    real = copy_module.write_chunks

    def failing(contacts: Any) -> Any:
        for number, chunk in enumerate(real(contacts)):
            if number == 1:
                raise OSError("the network went away")
            yield chunk

    monkeypatch.setattr(copy_module, "write_chunks", failing)
    monkeypatch.setattr(storage, "WRITE_CHUNK", 1000)  # the second of three chunks fails
    failed = CliRunner().invoke(main, ["db", "copy", "--from", source_url, "--to", target_url])
    assert failed.exit_code == 1 and "the network went away" in failed.output
    store = open_store(target_url)
    try:
        assert store.count_contacts() == 0 and list(store.export_contacts()) == []
    finally:
        store.close()
    monkeypatch.setattr(copy_module, "write_chunks", real)
    rerun = CliRunner().invoke(main, ["db", "copy", "--from", source_url, "--to", target_url])
    assert rerun.exit_code == 0, rerun.output
    assert rerun.output.startswith("Copied 3001 contacts")
