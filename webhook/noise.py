"""How often an unauthenticated answer is logged: at most once a second per key.

Why it exists: anyone can send requests, so a flood of forged deliveries
(``webhook.hooks``: keyed by the repository name in the URL) or of malformed
requests that gunicorn refuses itself (``webhook.gunicorn_errors``: keyed by
what was refused) must not flood the logs, or slow the receiver down by
writing them.  The line that is written says how many were left out since.
"""

from __future__ import annotations

import threading
import time

NOISE_LOG_INTERVAL = 1.0
MAX_KEYS = 10000  # keys may come from URLs: bound the memory they can take

_lock = threading.Lock()
_last: dict[str, list] = {}  # key -> [last logged at, lines left out since]


def noise_to_log(key: str) -> int | None:
    """None: leave this line out; else the number of lines left out before it."""
    now = time.monotonic()
    with _lock:
        entry = _last.get(key)
        if entry is not None and now - entry[0] < NOISE_LOG_INTERVAL:
            entry[1] += 1
            return None
        if entry is None and len(_last) > MAX_KEYS:
            _last.clear()
        _last[key] = [now, 0]
        return entry[1] if entry is not None else 0


def forget() -> None:
    """Log the next line of every key (tests; a fresh start)."""
    with _lock:
        _last.clear()


def seen_long_ago(key: str) -> None:
    """Make ``key``'s last line look older than the interval (tests), keeping its count."""
    with _lock:
        if key in _last:
            _last[key][0] -= 2 * NOISE_LOG_INTERVAL
