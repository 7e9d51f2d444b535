"""Build the benchmark database: ~10 million contacts, a year of a 500-seat contact center.

Written through the real write path (``store.bulk()``), one transaction per day of data, so the candidates
(``metric_contacts``) with their derived next repeats and the rollup dirty marks are exactly what production
would have;
then the rollups are built (``store.refresh_rollups``). Columns are generated with numpy.

Model: ~500 agents in 30 teams (each team serves two of 20 queues), six channels; customers whose contact
counts follow a capped Zipf distribution (most call once or twice, a few up to 60 times); ~22% of first contacts are followed up (a repeat)
after an exponentially distributed gap (mean 36 h); business hours in America/New_York with fewer contacts
at weekends; 7% outbound, 5% without an agent (abandoned/IVR), 3% continuation legs, tiers 1-3,
escalations, dispositions, and e-mails often without an end.

    flock /tmp/acr-bench.lock .venv/bin/python bench/build_db.py --contacts 10000000 --out bench/out/bench.db

``--database-url`` writes into another store instead of the SQLite file ``--out`` (the same data, e.g. in
another backend).
"""

from __future__ import annotations

import argparse
import time
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import orjson

from bot.storage import open_store
from metrics.records import Contact
from metrics.timeutil import US_PER_DAY, US_PER_HOUR, US_PER_SECOND, parse_instant

ZONE = ZoneInfo("America/New_York")
END = "2026-11-23T00:00:00-05:00"  # end of the data (local midnight): the benchmarks' as_of
CHANNELS = np.array(["phone", "chat", "email", "sms", "social", "video"])
CHANNEL_P = np.array([0.52, 0.26, 0.13, 0.04, 0.03, 0.02])
N_AGENTS, N_TEAMS, N_QUEUES = 500, 30, 20


def generate(n: int, days: int, seed: int) -> dict[str, np.ndarray]:
    """Columns of ``n`` contacts over ``days`` days ending at END, sorted by start."""
    rng = np.random.default_rng(seed)
    end_us = parse_instant(END, ZONE)
    start_us = end_us - days * US_PER_DAY
    n_follow = int(n * 0.18)
    n_base = n - n_follow

    # Start times: a day (fewer at weekends), then a local hour from a business-hours profile.
    day_weights = np.ones(days)
    first_weekday = (start_us // US_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    weekday = (np.arange(days) + first_weekday) % 7
    day_weights[weekday >= 5] = 0.45
    day = rng.choice(days, size=n_base, p=day_weights / day_weights.sum())
    hour_profile = np.array([1, 1, 1, 1, 1, 2, 4, 8, 14, 16, 16, 15, 14, 15, 15, 14, 12, 10, 8, 6, 4, 3, 2, 1.0])
    hour = rng.choice(24, size=n_base, p=hour_profile / hour_profile.sum())
    # Local hours as an offset from UTC: New York is UTC-5 or UTC-4; close enough for a load profile.
    t_base = start_us + day * US_PER_DAY + (hour + 5) * US_PER_HOUR + rng.integers(0, US_PER_HOUR, size=n_base)

    # Customers: heavy-tailed (many one-off, some very frequent callers).
    per_customer = np.minimum(rng.zipf(2.4, size=n_base), 60)  # contacts per customer, capped
    n_customers = int(np.searchsorted(np.cumsum(per_customer), n_base)) + 1
    customer_base = rng.permutation(np.repeat(np.arange(n_customers), per_customer[:n_customers])[:n_base])

    # Follow-ups: the same customer again after an exponential gap from the end of an earlier contact.
    parent = rng.integers(0, n_base, size=n_follow)
    gap = (rng.exponential(36.0, size=n_follow) * US_PER_HOUR).astype(np.int64)
    t_follow = t_base[parent] + 600 * US_PER_SECOND + gap
    started = np.concatenate([t_base, t_follow])
    customer = np.concatenate([customer_base, customer_base[parent]])
    keep = started < end_us
    started, customer = started[keep], customer[keep]
    order = np.argsort(started, kind="stable")
    started, customer = started[order], customer[order]
    m = len(started)

    channel = rng.choice(len(CHANNELS), size=m, p=CHANNEL_P)
    mean_minutes = np.array([7, 14, 25, 5, 8, 12.0])[channel]
    duration = (rng.exponential(mean_minutes) * 60 * US_PER_SECOND).astype(np.int64)
    no_end = (CHANNELS[channel] == "email") & (rng.random(m) < 0.5) | (rng.random(m) < 0.01)

    agent = rng.integers(0, N_AGENTS, size=m)
    team = agent * N_TEAMS // N_AGENTS  # agents are grouped in teams of ~17
    queue = (team * 2 + rng.integers(0, 2, size=m)) % N_QUEUES
    inbound = rng.random(m) >= 0.07
    has_agent = rng.random(m) >= 0.05
    tier = np.where(rng.random(m) < 0.85, 1, np.where(rng.random(m) < 0.8, 2, 3))
    escalated = rng.random(m) < 0.08
    resolved_draw = rng.random(m)
    resolved = np.where(resolved_draw < 0.7, 1, np.where(resolved_draw < 0.8, 0, -1))  # -1: not given
    continuation = rng.random(m) < 0.03
    return {
        "started": started,
        "duration": duration,
        "no_end": no_end,
        "customer": customer,
        "channel": channel,
        "agent": agent,
        "team": team,
        "queue": queue,
        "inbound": inbound,
        "has_agent": has_agent,
        "tier": tier,
        "escalated": escalated,
        "resolved": resolved,
        "continuation": continuation,
    }


def contacts_of(cols: dict[str, np.ndarray], lo: int, hi: int) -> list[Contact]:
    """Contacts lo..hi-1 as the store's Contact tuples, each with its raw JSON record."""
    out: list[Contact] = []
    lists = {name: cols[name][lo:hi].tolist() for name in cols}
    channels = CHANNELS.tolist()
    for i in range(hi - lo):
        index = lo + i
        started = lists["started"][i]
        ended = None if lists["no_end"][i] else started + lists["duration"][i]
        agent = f"agent{lists['agent'][i]:03d}" if lists["has_agent"][i] else None
        team = f"team{lists['team'][i]:02d}" if agent else None
        queue = f"queue{lists['queue'][i]:02d}"
        resolved_code = lists["resolved"][i]
        resolved = None if resolved_code < 0 else bool(resolved_code)
        record: dict[str, object] = {
            "id": f"c{index:08d}",
            "source": "bench",
            "customer_id": f"cust{lists['customer'][i]:07d}",
            "agent": agent,
            "team": team,
            "queue": queue,
            "channel": channels[lists["channel"][i]],
            "direction": "inbound" if lists["inbound"][i] else "outbound",
            "tier": lists["tier"][i],
            "escalated": lists["escalated"][i],
            "resolved": resolved,
            "parent_id": f"c{index - 1:08d}" if lists["continuation"][i] and index else None,
            "started_at": started / US_PER_SECOND,
            "ended_at": None if ended is None else ended / US_PER_SECOND,
        }
        out.append(
            Contact(
                "bench",
                record["id"],  # type: ignore[arg-type]
                record["customer_id"],  # type: ignore[arg-type]
                agent,
                team,
                queue,
                None,
                record["channel"],  # type: ignore[arg-type]
                record["direction"],  # type: ignore[arg-type]
                lists["tier"][i],
                lists["escalated"][i],
                resolved,
                record["parent_id"],  # type: ignore[arg-type]
                started,
                ended,
                None,
                orjson.dumps(record).decode(),
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/out/bench.db"))
    parser.add_argument("--database-url", help="the store to fill instead of the SQLite file --out (must be empty)")
    args = parser.parse_args()
    if args.database_url is None and args.out.exists():
        raise SystemExit(f"{args.out} exists; delete it first to rebuild")
    began = time.perf_counter()
    cols = generate(args.contacts, args.days, args.seed)
    total = len(cols["started"])
    print(f"generated {total:,} contacts in {time.perf_counter() - began:.1f} s", flush=True)
    store = open_store(args.database_url or f"sqlite:///{args.out}")
    if store.count_contacts():
        raise SystemExit("the store is not empty; use an empty one to rebuild")
    day_index = cols["started"] // US_PER_DAY
    bounds = np.flatnonzero(np.diff(day_index)) + 1
    edges = [0, *bounds.tolist(), total]
    written = 0
    write_began = time.perf_counter()
    for lo, hi in pairwise(edges):
        batch = contacts_of(cols, lo, hi)
        with store.bulk() as writer:
            for start in range(0, len(batch), 5000):
                writer.add(batch[start : start + 5000])
        written += len(batch)
        if written // 500_000 != (written - len(batch)) // 500_000:
            rate = written / (time.perf_counter() - write_began)
            print(f"  {written:,} written, {rate:,.0f} contacts/s", flush=True)
    write_s = time.perf_counter() - write_began
    print(f"wrote {written:,} contacts in {write_s:.0f} s ({written / write_s:,.0f}/s incl. building tuples)")
    refresh_began = time.perf_counter()
    days = store.refresh_rollups(ZONE)
    print(f"built rollups for {days} UTC days in {time.perf_counter() - refresh_began:.1f} s")
    store.close()


if __name__ == "__main__":
    main()
