"""CONTRACT section 2 as small pure functions: each rule of the two metrics, stated once.

What runs them: the engine clips every period with ``clip_until``; the rollups decide which buckets are
matured, pending and inside the period with ``is_matured`` and ``in_period``, and the rollup build counts
repeats per window with ``returns_within`` (over numpy arrays: the same expressions, elementwise);
``Contact.end_us`` is ``contact_end``; and the tests' reference implementation (``tests/test_metrics_engine.py``)
is built from these functions alone.

The store's fast paths restate some rules in SQL and numpy, over indexed columns and derived data (the start
of each candidate's next repeatable contact). Every such place is named in one list, in docs/metrics.md
("Where the rules are restated"), with the property test that holds it to the functions here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, overload

import numpy as np
import numpy.typing as npt

from metrics.query import Filter, Metric

if TYPE_CHECKING:
    from metrics.records import Contact

Instants = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]


def contact_end(started_us: int, ended_us: int | None) -> int:
    """The contract's ``e``: ``ended_at``, or ``started_at`` when the contact has no end."""
    return started_us if ended_us is None else ended_us


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


def next_repeat_us(contact: Contact, contacts: Iterable[Contact]) -> int | None:
    """The start of the customer's first repeatable contact strictly after ``contact`` started (None: none).

    The store keeps this per candidate, so that "has a repeat within W" is one comparison for any W
    (``has_repeat``): the first such contact is the only one that can be the earliest repeat.
    """
    later = [
        other.started_us
        for other in contacts
        if other.customer_id == contact.customer_id and is_repeatable(other) and other.started_us > contact.started_us
    ]
    return min(later, default=None)


@overload
def returns_within(next_repeat_us: int, end_us: int, window_us: int) -> bool: ...
@overload
def returns_within(next_repeat_us: Instants, end_us: Instants, window_us: int) -> Flags: ...
def returns_within(next_repeat_us: int | Instants, end_us: int | Instants, window_us: int) -> bool | Flags:
    """Whether the next repeatable contact, starting at ``next_repeat_us``, comes no later than e + W."""
    return next_repeat_us <= end_us + window_us


def has_repeat(next_repeat_us: int | None, end_us: int, window_us: int) -> bool:
    """``is_repeat_of`` over the derived ``next_repeat_us``: some repeat within W iff the first one is."""
    return next_repeat_us is not None and returns_within(next_repeat_us, end_us, window_us)


@overload
def is_matured(end_us: int, window_us: int, as_of_us: int) -> bool: ...
@overload
def is_matured(end_us: Instants, window_us: int, as_of_us: int) -> Flags: ...
def is_matured(end_us: int | Instants, window_us: int, as_of_us: int) -> bool | Flags:
    """A contact is matured once its whole window has passed: e + W <= as_of. Before that it is pending."""
    return end_us + window_us <= as_of_us


def clip_until(until_us: int, as_of_us: int) -> int:
    """The period never extends past "now": ``until`` is clipped to ``as_of``."""
    return min(until_us, as_of_us)


@overload
def in_period(started_us: int, since_us: int, until_us: int) -> bool: ...
@overload
def in_period(started_us: Instants, since_us: int, until_us: int) -> Flags: ...
def in_period(started_us: int | Instants, since_us: int, until_us: int) -> bool | Flags:
    """A contact belongs to the period ``[since, until)`` by its start: since inclusive, until exclusive."""
    return (since_us <= started_us) & (started_us < until_us)


def is_handled_inbound(contact: Contact) -> bool:
    """Whether the metrics count ``contact`` at all: inbound and handled by an agent (an abandoned call, an
    IVR or bot contact, an outbound call is never scored). The rows of the store's ``metric_contacts``."""
    return contact.direction == "inbound" and contact.agent is not None


def is_candidate(contact: Contact, filters: Iterable[tuple[Filter, str]], since_us: int, until_us: int) -> bool:
    """Handled inbound, matching every filter exactly, and started in ``[since, until)``.

    A ``tier`` filter's value is the tier as decimal text.

    ``until`` must already be clipped to as_of (see ``clip_until``).
    """
    return (
        is_handled_inbound(contact)
        and in_period(contact.started_us, since_us, until_us)
        and all((str(contact.tier) if name == "tier" else getattr(contact, name)) == value for name, value in filters)
    )


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
