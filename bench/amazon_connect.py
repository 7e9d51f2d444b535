"""Amazon Connect: Firehose deliveries over loopback, and ``acr-bot ingest --format amazon-connect`` of S3 objects,
each side by side with the generic path (the same contacts as ACR Bot records) in the same run.

1. Webhooks: starts ``acr-bot serve`` on a fresh SQLite file and sends Firehose HTTP-endpoint deliveries of 500
   CTRs each (base64 records, the access key, a request id; ``--gzip`` compresses them as a stream set to GZIP
   would) from client threads over keep-alive connections; every answer must be 200 in Firehose's format.
   Target (issue 13): >= 15,000 contacts/s. Then the same contacts, mapped to records as the adapter maps them,
   in signed batches of 500 to the generic ``POST /webhooks/interactions`` of another fresh server.
2. Files: writes ``--contacts`` CTRs as one Firehose S3 object (JSON objects back to back, no separator) and the
   same contacts as a JSONL file of records (both kept in bench/out/amazon-connect/ for re-runs), imports each
   with ``acr-bot ingest`` (``--format amazon-connect`` for the CTRs) into a new database, and reports
   contacts/s and peak memory (as bench/ingest.py: the largest process's RSS and the process tree's PSS,
   sampled every 50 ms). Target (issue 13): >= 40,000 contacts/s in < 300 MB for 1,000,000 CTRs.

Each figure comes with the load average and the CPU time (user + system) the server or the import (with its
reader processes) spent per contact: on a shared machine the rate depends on the others' load, the CPU per
contact much less, and contacts per CPU-second bound what one free core could do.

The CTRs are the real one of tests/payloads/amazon-connect-ctr-inbound.json (about 2.4 KB, stored whole as each
contact's raw record) with fresh ids, customers (20,000), agents, queues, channels, initiation methods and times
over 90 days; their records are about 350 bytes.

    flock /tmp/acr-bench.lock .venv/bin/python bench/amazon_connect.py [--contacts 1000000] [--skip-files]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import http.client
import os
import random
import resource
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psutil
from ingest import run_ingest  # the sibling benches (this script's folder is on sys.path)
from webhook import Phase, healthz_count, report, run_phase, start_server

from bot.platforms.amazon_connect import CtrMapper
from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = orjson.loads((ROOT / "tests" / "payloads" / "amazon-connect-ctr-inbound.json").read_bytes())
KEY = "bench-firehose-access-key"
PATH = "/webhooks/amazon-connect"
START = 1_780_000_000
CHANNELS = ("VOICE", "VOICE", "VOICE", "CHAT", "EMAIL")
METHODS = ("INBOUND",) * 8 + ("OUTBOUND", "TRANSFER")


def make_ctr(n: int, rng: random.Random, customers: int) -> dict[str, Any]:
    started = START + rng.randrange(90 * 86_400)
    ended = started + rng.randrange(60, 1800)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    method = METHODS[n % len(METHODS)]
    return {
        **TEMPLATE,
        "ContactId": str(uuid.UUID(int=rng.getrandbits(128))),
        "Agent": {**TEMPLATE["Agent"], "Username": f"agent-{rng.randrange(60)}"},
        "Channel": CHANNELS[n % len(CHANNELS)],
        "CustomerEndpoint": {"Address": f"+1555{rng.randrange(customers):07d}", "Type": "TELEPHONE_NUMBER"},
        "InitiationMethod": method,
        "PreviousContactId": str(uuid.UUID(int=n)) if method == "TRANSFER" else None,
        "Queue": {**TEMPLATE["Queue"], "Name": ("billing", "tech", "sales")[n % 3]},
        "InitiationTimestamp": stamp,
        "ConnectedToSystemTimestamp": stamp,
        "DisconnectTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ended)),
        "LastUpdateTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ended + 90)),
    }


def delivery(ctrs: list[dict[str, Any]], gzipped: bool) -> tuple[str, bytes]:
    request_id = str(uuid.uuid4())
    body = orjson.dumps(
        {
            "requestId": request_id,
            "timestamp": int(time.time() * 1000),
            "records": [{"data": base64.b64encode(orjson.dumps(ctr)).decode()} for ctr in ctrs],
        }
    )
    return request_id, gzip.compress(body, 5) if gzipped else body


def send(phase: Phase, port: int, bodies: list[tuple[str, bytes]], threads: int, gzipped: bool) -> None:
    """Send the pre-built deliveries from ``threads`` keep-alive connections, as Firehose would."""
    lock = threading.Lock()
    cursor = iter(range(len(bodies)))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=180)
        mine: list[float] = []
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            request_id, body = bodies[index]
            headers = {
                "Content-Type": "application/json",
                "X-Amz-Firehose-Protocol-Version": "1.0",
                "X-Amz-Firehose-Request-Id": request_id,
                "X-Amz-Firehose-Access-Key": KEY,
            }
            if gzipped:
                headers["Content-Encoding"] = "gzip"
            began = time.perf_counter()
            conn.request("POST", PATH, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            mine.append(time.perf_counter() - began)
            if response.status != 200 or orjson.loads(answer).get("requestId") != request_id:
                phase.errors.append(f"{response.status} {answer[:200]!r}")
        conn.close()
        with lock:
            phase.latencies.extend(mine)

    began = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    phase.elapsed = time.perf_counter() - began


MAPPER = CtrMapper(Settings())  # as the server maps them (the same environment)


def webhooks(args: argparse.Namespace) -> bool:
    """Firehose deliveries, then the same contacts as records through the generic webhook."""
    rng = random.Random(13)
    batches = [
        [make_ctr(d * args.batch_size + i, rng, args.customers) for i in range(args.batch_size)]
        for d in range(args.deliveries)
    ]
    bodies = [delivery(ctrs, args.gzip) for ctrs in batches]
    phase = Phase(f"Firehose deliveries of {args.batch_size} CTRs{' (gzip)' if args.gzip else ''}", args.batch_size)
    ok = served(phase, 15_000, lambda port: send(phase, port, bodies, args.threads, args.gzip))
    records = [orjson.dumps([MAPPER.record(ctr) for ctr in ctrs]) for ctrs in batches]
    generic = Phase(f"the same contacts as records, generic webhook, batches of {args.batch_size}", args.batch_size)
    served(generic, 20_000, lambda port: run_phase(generic, [port], records, args.threads, 3600.0))  # issue 2's
    return ok


def served(phase: Phase, target: float, drive: Any) -> bool:
    """Run ``drive(port)`` against a new server on a new SQLite file; report ``phase`` and what was stored."""
    workdir = Path(tempfile.mkdtemp(prefix="acr-bench-connect-"))
    os.environ["CONNECT_FIREHOSE_ACCESS_KEY"] = KEY  # start_server passes the environment on
    zone = os.environ.get("BOT_TIMEZONE", "UTC")  # as before start_server took one: the environment's, or UTC
    proc, port = start_server(f"sqlite:///{workdir / 'acr.db'}", workdir / "serve.log", "WARNING", zone)
    server = psutil.Process(proc.pid)
    try:
        (own_before, children_before), load_before = _process_cpu(server), os.getloadavg()[0]
        drive(port)
        stored = healthz_count(port)
        own, children = _process_cpu(server)
        own, children = own - own_before, children - children_before
        cpu = own + children
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    ok = report(phase, target, "contacts/s")
    sent = phase.requests * phase.records_per_request
    print(f"    stored contacts (healthz): {stored}, sent: {sent}; server exit status after SIGTERM: {code}")
    print(
        f"    {_cpu_line(cpu, sent, 'the server')}; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    if children:
        print(
            f"    of which its own process {own / sent * 1e6:.1f} us, its decoding processes {children / sent * 1e6:.1f} us"
        )
    return ok and stored == sent and code == 0


def files(args: argparse.Namespace) -> bool:
    folder = args.folder
    folder.mkdir(parents=True, exist_ok=True)
    ctr_path = folder / f"connect-ctrs-{args.contacts}.objects"
    record_path = folder / f"connect-records-{args.contacts}.jsonl"
    if ctr_path.exists() and record_path.exists():
        print(f"{ctr_path.name}, {record_path.name}: exist, reused")
    else:
        rng = random.Random(7)
        began = time.perf_counter()
        # Each written as .part and renamed when whole: an interrupted run leaves no half file to reuse.
        ctr_part, record_part = ctr_path.with_suffix(".part"), record_path.with_suffix(".jsonl-part")
        with ctr_part.open("wb") as ctr_out, record_part.open("wb") as record_out:
            for start in range(0, args.contacts, 10_000):
                ctrs = [make_ctr(n, rng, args.customers) for n in range(start, min(args.contacts, start + 10_000))]
                ctr_out.write(b"".join(orjson.dumps(ctr) for ctr in ctrs))
                record_out.write(b"".join(orjson.dumps(MAPPER.record(ctr)) + b"\n" for ctr in ctrs))
        ctr_part.rename(ctr_path)
        record_part.rename(record_path)
        sizes = f"{ctr_path.stat().st_size / 1e6:,.0f} MB and {record_path.stat().st_size / 1e6:,.0f} MB"
        print(f"{ctr_path.name}, {record_path.name}: {sizes} written in {time.perf_counter() - began:.0f} s")
    ok = import_file(args, "ingest --format amazon-connect", ctr_path, ["--format", "amazon-connect"], 40_000)
    import_file(args, "ingest of the same contacts as JSONL records", record_path, [], 50_000)  # issue 2's target
    return ok


def import_file(args: argparse.Namespace, what: str, path: Path, options: list[str], target: int) -> bool:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BOT_TIMEZONE")}
    os.sync()
    database = args.folder / "bench-connect.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    load_before = os.getloadavg()[0]
    cpu_before = _children_cpu()  # the import and its reader children
    seconds, single, tree, summary = run_ingest(path, f"sqlite:///{database}", env, options)
    cpu = _children_cpu() - cpu_before
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    rate = args.contacts / seconds
    ok = rate >= target and max(single, tree) < 300 * 2**20
    print(
        f"{what}: {args.contacts:,} contacts in {seconds:.1f} s = {rate:,.0f} contacts/s; "
        f"peak RSS {single / 2**20:,.0f} MB (largest process), PSS {tree / 2**20:,.0f} MB (whole process tree)"
        f" [{'meets' if ok else 'MISSES'} >= {target:,}/s and < 300 MB]"
    )
    print(f"    {summary}")
    print(
        f"    {_cpu_line(cpu, args.contacts, 'the import')}; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    return ok


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished children (an import and its reader processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(process: psutil.Process) -> tuple[float, float]:
    """User + system CPU seconds of the server's own process, and of its live children (its decoding processes)."""
    own = process.cpu_times()
    children = 0.0
    for child in process.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        children += times.user + times.system
    return own.user + own.system, children


def _cpu_line(cpu: float, contacts: int, who: str) -> str:
    """CPU time per contact: what the figure would be on idle cores, as the machine is shared (load average)."""
    per_contact = cpu / contacts * 1e6 if contacts else 0.0
    per_core = 1e6 / per_contact if per_contact else 0.0
    return f"CPU of {who} (user + system): {cpu:.1f} s = {per_contact:.1f} us a contact ({per_core:,.0f} contacts per CPU-second)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=200, help="Firehose deliveries to send")
    parser.add_argument("--batch-size", type=int, default=500, help="CTRs per delivery")
    parser.add_argument("--threads", type=int, default=4, help="client connections")
    parser.add_argument("--gzip", action="store_true", help="gzip the deliveries")
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--contacts", type=int, default=1_000_000, help="CTRs in the file import")
    parser.add_argument("--folder", type=Path, default=ROOT / "bench" / "out" / "amazon-connect")
    parser.add_argument("--skip-webhooks", action="store_true")
    parser.add_argument("--skip-files", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    ok = True
    if not args.skip_webhooks:
        ok = webhooks(args) and ok
    if not args.skip_files:
        ok = files(args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
