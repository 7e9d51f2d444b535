"""The errors of the store port that callers act on (every backend raises these, not its driver's own)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from metrics.errors import UserError


class StoreUnavailable(UserError):
    """The store cannot do this now, and nothing was written: busy with another writer past the busy timeout,
    a full disk, a read-only, unopenable or damaged database. The message names the database and what to do.

    A UserError, so the CLI shows it as one ``Error:`` line; the webhook answers 503 with ``Retry-After:
    retry_after_seconds`` (retrying is safe: a batch is stored whole or not at all, and re-sending is idempotent).
    """

    def __init__(self, message: str, *, retry_after_seconds: int = 5):
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


def newer_schema(database: str, applied: Sequence[str], known: Iterable[str]) -> StoreUnavailable | None:
    """The error for a database that a newer acr-bot has migrated (``applied`` holds migrations this one does not
    know), else None. Such a program must not write to it: a newer version may store or mark things in a way this
    one cannot read or keep up (compressed raws, versioned dirty marks), and would silently answer wrongly."""
    known_names = set(known)
    newer = [name for name in applied if name not in known_names]
    if not newer:
        return None
    return StoreUnavailable(
        f"the database {database} was upgraded by a newer acr-bot (migration {newer[-1]}); run that version or "
        "a later one here too (stop every acr-bot process before an upgrade: README, Upgrading)",
        retry_after_seconds=60,
    )
