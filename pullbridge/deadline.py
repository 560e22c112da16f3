"""A push's time for Redis: every wait on Redis that a webhook's answer depends on ends by one deadline.

Why it exists: a git host waits about 10 s for an answer (GitHub, GitLab) and
then counts the delivery as failed.  With a slow Redis (a stalled disk under
``appendfsync always``, a long script, a network in trouble), a push used to
wait one socket timeout per round trip, a timed-out command retried once, and
behind a stuck group commit for up to 30 s: longer than the host waits.  The
receiver now gives each push a deadline, ``server.queue_timeout`` after its
body was read (a ``time.monotonic()`` value), and answers 503 with
``Retry-After`` once it has passed.

A wait is bounded in one of two ways:

- code that holds a connection of its own (the group commit's leader,
  ``pullbridge.groupcommit``) sets that connection's timeouts to the time left;
- work that redis-py runs on pooled connections it picks itself (the
  WATCH/MULTI transaction that queues a new sync job, the pending commit
  status) runs on a helper thread (``within``), and the caller stops waiting
  at the deadline.  That work is not cut off: it ends when Redis answers or
  its own socket timeout passes.  It checks the deadline before it starts and
  before it writes, so what can still happen after the answer was given is at
  most a write that was already on its way.

At-least-once holds either way: a 2xx is given only for a write Redis
confirmed; a 503 after a write that may have reached Redis is safe, as the
host's redelivery of the same delivery is then answered ``duplicate``.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from redis.exceptions import TimeoutError as RedisTimeoutError

HELPER_THREADS = 16  # per process; work waiting for a free one gives up at its deadline


class DeadlineExceeded(RedisTimeoutError):
    """The caller's time for Redis is up (a RedisError: the receiver answers 503)."""


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline``; DeadlineExceeded when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("no time left to wait for Redis")
    return left


_helpers: ThreadPoolExecutor | None = None
_helpers_pid: int | None = None
_helpers_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _helpers, _helpers_pid
    with _helpers_lock:
        if _helpers is None or _helpers_pid != os.getpid():  # a forked worker has none of its parent's threads
            _helpers = ThreadPoolExecutor(HELPER_THREADS, thread_name_prefix="pullbridge-redis")
            _helpers_pid = os.getpid()
        return _helpers


def within(deadline: float, work, /, *args, **kwargs):
    """``work(*args, **kwargs)``'s result, waited for no longer than until ``deadline``.

    ``work`` runs on a helper thread (a greenlet under gunicorn's gevent
    worker).  It is not started at all once the deadline has passed (it
    waited for a free thread), so DeadlineExceeded then means nothing was
    done; raised while it runs, the work may still finish, unseen.
    """
    left = remaining(deadline)

    def start():
        remaining(deadline)
        return work(*args, **kwargs)

    future = _pool().submit(start)
    try:
        return future.result(timeout=left)
    except FutureTimeout:
        future.cancel()  # not started yet: it never will be
        raise DeadlineExceeded(f"no answer from Redis within the {left:.1f} s left") from None
