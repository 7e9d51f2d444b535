"""Slack ack and answer latency against a large database, through the real server over HTTP.

Builds (once) a database of ``--contacts`` contacts with ``bench/build_db.py``'s generator through
``store.bulk()``, serves it exactly as ``acr-bot serve`` does (build_app + the Slack routes, under uvicorn),
and sends signed slash commands whose ``response_url`` points at the tests' fake Slack. For each command it
reports the ack time (HTTP round trip of the signed request: what Slack's 3-second limit applies to) and the
answer time (until the reply reaches response_url); then a burst of commands sent at once, whose slowest ack
must stay under ``--max-ack`` seconds (exit status 1 otherwise: Slack gives up after 3 s).

With ``--stale-rollups`` the database is built without rolling up its metrics (as right after a big import),
so every question is answered from the contact rows: the slowest path the engine has.

    flock /tmp/acr-bench.lock .venv/bin/python bench/slack_ack.py --contacts 1000000
    flock /tmp/acr-bench.lock .venv/bin/python bench/slack_ack.py --contacts 1000000 --stale-rollups --burst 16

``--database-url`` serves another store instead of the SQLite file ``--db`` (built there when it is empty).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.build_db import ZONE, contacts_of, generate  # noqa: E402
from bot.storage import open_store  # noqa: E402
from tests.fake_slack import FakeSlack  # noqa: E402
from tests.slack_support import SlackServer, slack_settings  # noqa: E402

COMMANDS = [
    ("/acr", "7d"),
    ("/acr", "by:agent"),
    ("/tier1", "by:team last:90d"),
    ("/acr", "agent:agent001 by:day"),
    ("/acr", "queue:queue03 channel:chat 3d last:60d"),
    ("/tier1", "by:queue since:2026-09-01 until:2026-10-31"),
]


def build(database_url: str, contacts: int, *, refresh: bool = True) -> None:
    began = time.perf_counter()
    cols = generate(contacts, 90, seed=11)
    total = len(cols["started"])
    store = open_store(database_url)
    try:
        for lo in range(0, total, 50_000):
            with store.bulk() as writer:
                writer.add(contacts_of(cols, lo, min(total, lo + 50_000)))
        if refresh:
            store.refresh_rollups(ZONE)
        count = store.count_contacts()
    finally:
        store.close()
    print(f"built {database_url} with {count:,} contacts in {time.perf_counter() - began:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=None, help="default: bench/out/slack-<contacts>.db")
    parser.add_argument("--database-url", help="the store to serve instead of the SQLite file --db")
    parser.add_argument("--burst", type=int, default=20, help="commands sent at the same time")
    parser.add_argument("--stale-rollups", action="store_true", help="build without rolling up the metrics")
    parser.add_argument("--max-ack", type=float, default=1.5, help="seconds the slowest ack of the burst may take")
    args = parser.parse_args()
    stale = "-stale" if args.stale_rollups else ""
    path = args.db or REPO / "bench" / "out" / f"slack-{args.contacts}{stale}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    database_url = args.database_url or f"sqlite:///{path}"
    store = open_store(database_url)
    if not store.count_contacts():
        build(database_url, args.contacts, refresh=not args.stale_rollups)
    with FakeSlack() as fake:
        settings = slack_settings(database_url, fake.api_url, bot_timezone=str(ZONE))
        with SlackServer(settings, store) as server:
            print(f"database: {store.count_contacts():,} contacts; zone {ZONE}")
            print(f"{'command':<55} {'ack ms':>8} {'answer ms':>10}")
            for n, (command, text) in enumerate(COMMANDS):
                name = f"c{n}"
                began = time.monotonic()
                response = server.command(text, command=command, response_url=fake.response_url(name))
                ack = time.monotonic() - began
                assert response.status_code == 200, response.text
                call = fake.wait_for(f"/respond/{name}", timeout=120)[-1]
                answer = call.at - began
                header = call.body["blocks"][0]["text"]["text"]
                print(f"{command + ' ' + text:<55} {ack * 1000:>8.1f} {answer * 1000:>10.0f}   {header}")
            began = time.monotonic()
            event = {"type": "app_home_opened", "user": "U0BENCH", "channel": "D0", "tab": "home", "event_ts": "1"}
            response = server.event(event)
            ack = time.monotonic() - began
            published = fake.wait_for("/api/views.publish", timeout=300)[-1].at - began
            print(f"{'App Home (teams, ACR and tier-1)':<55} {ack * 1000:>8.1f} {published * 1000:>10.0f}")
            acks: list[float] = []
            lock = threading.Lock()

            def one(i: int) -> None:
                began = time.perf_counter()
                response = server.command("by:agent last:90d", response_url=fake.response_url(f"burst{i}"))
                with lock:
                    acks.append(time.perf_counter() - began)
                assert response.status_code == 200

            burst_began = time.perf_counter()
            threads = [threading.Thread(target=one, args=(i,)) for i in range(args.burst)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for i in range(args.burst):
                fake.reply(f"burst{i}", timeout=600)
            burst_s = time.perf_counter() - burst_began
            print(
                f"burst of {args.burst} x '/acr by:agent last:90d': ack median {statistics.median(acks) * 1000:.1f} ms, "
                f"max {max(acks) * 1000:.1f} ms; all {args.burst} answers in {burst_s:.1f} s"
            )
    store.close()
    if max(acks) >= args.max_ack:
        sys.exit(f"FAIL: the slowest ack took {max(acks):.2f} s (limit {args.max_ack} s)")
    print(f"ok: every ack under {args.max_ack} s")


if __name__ == "__main__":
    main()
