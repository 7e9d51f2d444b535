"""The errors of the store port that callers act on (every backend raises these, not its driver's own)."""

from __future__ import annotations

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
