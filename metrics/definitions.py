"""CONTRACT section 2 as small pure functions: the single statement of each rule.

The engine's plan, the tests' reference implementation and the docs all follow these. The SQL in
``bot/storage/sqlite_metrics.py`` states the same rules over indexed columns; the Hypothesis test in
``tests/test_metrics_definitions.py`` checks that both agree on random data.
"""

from __future__ import annotations

from collections.abc import Iterable

from metrics.query import Dimension, Metric
from metrics.records import Contact


def is_repeatable(contact: Contact) -> bool:
    """Whether ``contact`` can be another contact's repeat: inbound, and not a continuation leg (parent_id)."""
    return contact.direction == "inbound" and contact.parent_id is None


def is_repeat_of(later: Contact, contact: Contact, window_us: int) -> bool:
    """Whether ``later`` is a repeat contact of ``contact`` for window W.

    Same customer, repeatable, and starting strictly after ``contact`` started (so two contacts at the
    same instant are not each other's repeat) and no later than e + W (exactly e + W still counts).
    """
    return (
        later.customer_id == contact.customer_id
        and is_repeatable(later)
        and contact.started_us < later.started_us <= contact.end_us + window_us
    )


def has_repeat(next_repeat_us: int | None, end_us: int, window_us: int) -> bool:
    """The same rule over the stored derived column ``next_repeat_us``.

    ``next_repeat_us`` is the start of the customer's first repeatable contact strictly after this
    contact's start, so "some repeat within W" is just "the first one is within W".
    """
    return next_repeat_us is not None and next_repeat_us <= end_us + window_us


def is_matured(end_us: int, window_us: int, as_of_us: int) -> bool:
    """A contact is matured once its whole window has passed: e + W <= as_of. Before that it is pending."""
    return end_us + window_us <= as_of_us


def clip_until(until_us: int, as_of_us: int) -> int:
    """The period never extends past "now": ``until`` is clipped to ``as_of``."""
    return min(until_us, as_of_us)


def is_candidate(contact: Contact, filters: Iterable[tuple[Dimension, str]], since_us: int, until_us: int) -> bool:
    """Inbound, handled by an agent, matching every filter exactly, and started in ``[since, until)``.

    ``until`` must already be clipped to as_of (see ``clip_until``).
    """
    if contact.direction != "inbound" or contact.agent is None:
        return False
    if not since_us <= contact.started_us < until_us:
        return False
    return all(getattr(contact, dimension) == value for dimension, value in filters)


def in_population(metric: Metric, tier: int) -> bool:
    """ACR scores every candidate; the tier-1 rate only candidates handled at tier 1."""
    return metric == "acr" or tier == 1


def is_success(metric: Metric, *, repeated: bool, escalated: bool, resolved: bool | None) -> bool:
    """Whether a matured candidate of the metric's population counts as resolved.

    ACR: no repeat contact. Tier-1: additionally not escalated, and ``resolved`` is not false
    (a missing disposition is not held against the agent).
    """
    if repeated:
        return False
    if metric == "acr":
        return True
    return not escalated and resolved is not False
