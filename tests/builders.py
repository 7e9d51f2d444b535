"""Building contacts in tests: ``valid(record)`` and ``contact(id, customer, started, ...)``.

Plain functions rather than fixtures, because Hypothesis strategies and module-level helpers build contacts too,
where a fixture cannot reach. Both go through the real validator (``parse_contact``), so a test never holds a
contact that an import would refuse; an invalid one fails the test at once, naming the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, tzinfo
from typing import Any

from metrics.records import Contact, parse_contact


def valid(record: Mapping[str, Any], zone: tzinfo = UTC) -> Contact:
    """``record`` (in the ingest schema; naive times are wall time in ``zone``) as a validated Contact."""
    parsed = parse_contact(dict(record), zone)
    assert isinstance(parsed, Contact), parsed
    return parsed


def contact(
    cid: str,
    customer: str,
    started: float | str,
    ended: float | str | None = None,
    *,
    zone: tzinfo = UTC,
    agent: str | None = "maria",
    **fields: Any,
) -> Contact:
    """A handled inbound contact (agent ``maria`` unless told otherwise) with the given fields.

    ``started`` and ``ended`` are what a record carries: epoch seconds or ISO 8601 text; ``None`` fields are
    left out of the record (so ``agent=None`` is a contact nobody handled).
    """
    record = {"id": cid, "customer_id": customer, "agent": agent, "started_at": started, "ended_at": ended, **fields}
    return valid({key: value for key, value in record.items() if value is not None}, zone)
