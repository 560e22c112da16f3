"""The two kinds of sync failure, in the kopf style.

Why it exists: whether a failed sync is retried depends only on the kind of
failure.  A ``PermanentError`` (bad YAML, an invalid object, forbidden) will
fail the same way on every retry, so the job fails at once (``cancel_retries``)
and stays in RQ's failed registry.  A ``TemporaryError`` (API server or git
host unreachable, 429/5xx, conflicts) is retried with the repository's
backoff, and no sooner than its ``delay`` when the server said how long to
wait (``Retry-After``): ``stretch_next_retry``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MAX_DETAIL = 300


class SyncError(Exception):
    """Base of every error a sync reports to its history and commit status."""


class PermanentError(SyncError):
    """Retrying cannot help: fail now, record why."""


class TemporaryError(SyncError):
    """Retrying later may help; not before ``delay`` seconds when given (None: the repo's backoff)."""

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.delay = delay


def cut(text, limit: int = MAX_DETAIL) -> str:
    """Shorten an API or git error body for a message: one line, at most ``limit`` chars."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Shown escaped in a file name: control characters, and the marks that reorder text.
_UNSHOWN_IN_NAMES = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown_path(root: Path, file: Path) -> str:
    """``file`` as sources and errors name it: relative to ``root``, with any byte that is not
    UTF-8 (Git allows any name) shown as ``\\xNN``.  Python reads such a byte as a lone surrogate,
    which no text can be encoded with: not stored in Redis, not logged, not put on a page.
    Control characters (a newline, a terminal escape) and the marks that reorder text (U+202E
    makes ``x\u202egnp.yaml`` read as ``xyaml.png``) are shown escaped too."""
    rel = file.relative_to(root).as_posix() if file.is_relative_to(root) else file.name
    text = os.fsencode(rel).decode("utf-8", "backslashreplace")
    return _UNSHOWN_IN_NAMES.sub(lambda m: m[0].encode("unicode_escape").decode(), text)


INVALID_VALUE = "Invalid value: "
MAX_QUOTED_VALUE = 80


def short_invalid_value(message: str, limit: int = MAX_QUOTED_VALUE) -> str:
    """A field cause ``Invalid value: <value>: <why>`` with a long JSON object or list ``<value>``
    shortened, so that ``cut`` keeps why (``field is immutable``) rather than the value: a Job's
    ``spec.template`` is quoted whole.  Any other message is returned as it is."""
    if not message.startswith(INVALID_VALUE) or message[len(INVALID_VALUE):][:1] not in ("{", "["):
        return message
    start = len(INVALID_VALUE)
    depth, quoted, escaped = 0, False, False
    for end in range(start, len(message)):
        char = message[end]
        if escaped:
            escaped = False
        elif quoted:
            escaped, quoted = char == "\\", char != '"'
        elif char == '"':
            quoted = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                value = message[start:end + 1]
                if len(value) <= limit:
                    return message
                return f"{INVALID_VALUE}{value[:limit - 5]}...{value[-1]}{message[end + 1:]}"
    return message


def cancel_retries(job) -> None:
    """Cancel RQ's remaining retries of ``job`` (None outside RQ): it fails for good."""
    if job is not None:
        job.retries_left = 0


def stretch_next_retry(job, delay: float) -> None:
    """Make RQ's next retry of ``job`` wait at least ``delay`` seconds (whole seconds, rounded up)."""
    if not job.retries_left:
        return
    intervals = list(job.retry_intervals or [0])
    index = max(len(intervals) - job.retries_left, 0)
    if index >= len(intervals):
        index = len(intervals) - 1
    intervals[index] = max(int(intervals[index]), int(delay + 0.999))
    job.retry_intervals = intervals
