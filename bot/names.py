"""Names as users type them: ``team:Billing`` read as the stored ``billing`` when exactly one stored name matches
in another letter case (CONTRACT section 2). Shared by Slack, ``acr-bot ask`` and ``acr-bot report``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from metrics.query import Filter

# The filters whose values are names people type (channel is lower-cased on the way in; tier is a number).
CASE_FOLDED: tuple[str, ...] = ("agent", "team", "queue", "reason")


def resolve_names(
    filters: Sequence[tuple[Filter, str]], known: Callable[[str], Sequence[str]]
) -> tuple[tuple[tuple[Filter, str], ...], list[tuple[str, str, str]]]:
    """The filters with every name that is not stored, but matches exactly one stored name ignoring letter
    case, replaced by that stored name; and what was replaced, as (filter, typed, stored).

    ``known(dimension)`` lists the stored names. A name matching none or several (``Maria`` when both ``maria``
    and ``MARIA`` are stored) is kept as typed: an exact filter then finds nothing and the caller says so.
    """
    resolved: list[tuple[Filter, str]] = []
    changed: list[tuple[str, str, str]] = []
    for name, value in filters:
        if name in CASE_FOLDED:
            stored = known(name)
            if value not in stored:
                folded = value.casefold()
                matches = [candidate for candidate in stored if candidate.casefold() == folded]
                if len(matches) == 1:
                    changed.append((name, value, matches[0]))
                    value = matches[0]
        resolved.append((name, value))
    return tuple(resolved), changed
