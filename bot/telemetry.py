"""What an operator watches: Prometheus metrics and structured logs with the request id.

Neutral on purpose (the HTTP edge and the scheduler both count here, and never import each other). The counters
are process-wide, as Prometheus client libraries expect; what is read from the store (contacts, the outbox) is
collected when ``GET /metrics`` is scraped (``StoreCollector``), so it is never stale.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot.process_memory import sqlite_memory_used
from metrics.timeutil import US_PER_SECOND

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "acr_http_requests", "HTTP requests answered, by route, method and status", ["route", "method", "status"],
    registry=REGISTRY,
)  # fmt: skip
RECORDS_STORED = Counter(
    "acr_records_stored", "Contact records stored by the webhooks, by result", ["result"], registry=REGISTRY
)
RECORDS_REFUSED = Counter(
    "acr_records_refused", "Contact records refused by the webhooks as invalid (their whole batch got 422)",
    registry=REGISTRY,
)  # fmt: skip
BATCHES_DEFERRED = Counter(
    "acr_batches_deferred", "Webhook batches answered 503 because the store was busy or full", registry=REGISTRY
)


class StoredCounts(Protocol):
    """What a write reports (``bot.storage.UpsertCounts``), as far as the stored-records counter reads it."""

    inserted: int
    updated: int
    unchanged: int


def count_stored(counts: StoredCounts) -> None:
    """Add one write's results to ``acr_records_stored_total`` (the webhook and every platform endpoint)."""
    for result in ("inserted", "updated", "unchanged"):
        RECORDS_STORED.labels(result).inc(getattr(counts, result))


WRITE_SECONDS = Histogram(
    "acr_store_write_seconds", "Seconds to validate and store one webhook batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY,
)  # fmt: skip
SCHEDULER_RUNS = Counter(
    "acr_scheduler_runs", "Scheduled job runs, by job and outcome (ok, failed)", ["job", "outcome"], registry=REGISTRY
)
SQLITE_MEMORY = Gauge(
    "acr_sqlite_memory_bytes",
    "SQLite's memory in this process: the page caches of all connections and their statements (held to about "
    "SQLITE_CACHE_MIB by acr-bot serve)",
    registry=REGISTRY,
)
SQLITE_MEMORY.set_function(sqlite_memory_used)
CONTACTS_PURGED = Counter("acr_contacts_purged", "Contacts deleted by RETENTION_DAYS", registry=REGISTRY)
ROLLUP_DAYS_REBUILT = Counter("acr_rollup_days_rebuilt", "Metric rollup days rebuilt", registry=REGISTRY)
ROLLUP_LAST_REFRESH = Gauge(
    "acr_rollup_last_refresh_timestamp_seconds",
    "When the scheduler last brought the metric rollups up to date (unix time; 0: not yet). Now minus this is how "
    "stale they may be.",
    registry=REGISTRY,
)


class StoreCollector(Collector):
    """Gauges read from the store at scrape time: stored contacts, outbox depth and its oldest message's age."""

    def __init__(self, store: Any):
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        contacts = GaugeMetricFamily("acr_contacts", "Contacts stored")
        contacts.add_metric([], self.store.count_contacts())
        yield contacts
        outbox = self.store.outbox()
        waiting = [*outbox.due_messages(2**62, limit=10_000), *outbox.in_doubt_messages()]
        depth = GaugeMetricFamily("acr_outbox_depth", "Slack messages waiting in the outbox (pending or being sent)")
        depth.add_metric([], len(waiting))
        yield depth
        oldest = min((entry.created_us for entry in waiting), default=None)
        age = GaugeMetricFamily(
            "acr_outbox_oldest_pending_age_seconds", "Age of the oldest message waiting in the outbox (0: none)"
        )
        age.add_metric([], 0.0 if oldest is None else max(0.0, time.time() - oldest / US_PER_SECOND))
        yield age


# --- logs ----------------------------------------------------------------------------------------------

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("acr_bot_request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Puts the current request's id (``-`` outside a request) on every log record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601 UTC), level, logger, message, request_id, and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str, log_format: str) -> None:
    """The root logger for ``level`` in ``log_format`` (``text`` or ``json``), with request ids on every record."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
