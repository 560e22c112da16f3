"""The two kinds of sync failure, in the kopf style.

Why it exists: whether a failed sync is retried depends only on the kind of
failure.  A ``PermanentError`` (bad YAML, an invalid object, forbidden) will
fail the same way on every retry, so the job fails at once and stays in RQ's
failed registry.  A ``TemporaryError`` (API server or git host unreachable,
429/5xx, conflicts) is retried with the repository's backoff.
"""

from __future__ import annotations

MAX_DETAIL = 300


class SyncError(Exception):
    """Base of every error a sync reports to its history and commit status."""


class PermanentError(SyncError):
    """Retrying cannot help: fail now, record why."""


class TemporaryError(SyncError):
    """Retrying later may help; ``delay`` is a hint in seconds (None: the repo's backoff)."""

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.delay = delay


def cut(text, limit: int = MAX_DETAIL) -> str:
    """Shorten an API or git error body for a message: one line, at most ``limit`` chars."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
