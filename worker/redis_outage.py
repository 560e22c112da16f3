"""Long-running loops kept alive through a Redis outage.

Why it exists: Redis restarts (an upgrade, a crash, a Sentinel failover)
must not end Pullbridge's processes, yet RQ's loops end at the first refused
connection: the reconcile scheduler (``worker.scheduler``, RQ's
``CronScheduler``) exited, and the periodic reconcile stopped until the
process was restarted.  ``rerun_while_redis_is_down`` begins such a loop
again every ``RETRY_SECONDS`` until Redis answers.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
from rq.exceptions import StopRequested

log = logging.getLogger("pullbridge.redis")

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)
RETRY_SECONDS = 2.0


def rerun_while_redis_is_down(run: Callable[[], None], stopping: Callable[[], bool], what: str) -> None:
    """Call ``run`` (a loop that returns when stopped) again each time it raises because Redis
    is unreachable, every ``RETRY_SECONDS``, until it returns or ``stopping()``."""
    while True:
        try:
            run()
            return
        except REDIS_DOWN as exc:
            if stopping():  # stopped while Redis was down: the loop's clean-up could not reach it
                return
            log.warning("%s: Redis unreachable (%s); trying again every %ss", what, exc, RETRY_SECONDS)
        try:
            time.sleep(RETRY_SECONDS)
        except StopRequested:  # a signal handler that raises (RQ's CronScheduler's)
            return
        if stopping():
            return

