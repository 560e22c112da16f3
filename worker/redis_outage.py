"""The worker's and scheduler's long-running loops, kept alive through a Redis outage.

Why it exists: Redis restarts (an upgrade, an AOF rewrite gone wrong, a
Sentinel failover) must not end Pullbridge's processes, yet RQ's loops end
at the first refused connection:

- the reconcile scheduler (``worker.scheduler``, RQ's ``CronScheduler``): the
  periodic reconcile stopped until the process was restarted;
- the worker's RQ scheduler process, which queues each retry once its backoff
  is over: RQ starts it again only at the worker's maintenance pass (every
  10 minutes), so no sync, status or alert was retried until then;
- the worker itself, when RQ's bookkeeping outside the pop of the next job
  failed (a job ending while Redis is away, a heartbeat, a maintenance pass,
  marking the worker idle): the process exited.

``rerun_while_redis_is_down`` begins such a loop again every
``RETRY_SECONDS`` until Redis answers; ``SyncWorker`` is RQ's SimpleWorker
with its scheduler process run that way, and which waits for Redis when its
bookkeeping fails.  Nothing of a sync whose end could not be recorded is
lost: its commits stay wanted until a sync records them applied, its repo
lock expires, and the periodic reconcile queues them again.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
from rq import SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler

from pullbridge import liveness

log = logging.getLogger("pullbridge.redis")

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)
RETRY_SECONDS = 2.0
WAIT_VOUCH_SECONDS = 60.0  # beyond a wait's own length: a ping may take the client's socket timeout


def rerun_while_redis_is_down(run: Callable[[], None], stopping: Callable[[], bool], what: str,
                              vouches: bool = False) -> None:
    """Call ``run`` (a loop that returns when stopped) again each time it raises because Redis
    is unreachable, every ``RETRY_SECONDS``, until it returns or ``stopping()``.  ``vouches``:
    the process's liveness (``pullbridge.liveness``) rests on this loop, waiting included."""
    while True:
        try:
            run()
            return
        except REDIS_DOWN as exc:
            if stopping():  # stopped while Redis was down: the loop's clean-up could not reach it
                return
            log.warning("%s: Redis unreachable (%s); trying again every %ss", what, exc, RETRY_SECONDS)
        if vouches:
            liveness.vouch(RETRY_SECONDS + WAIT_VOUCH_SECONDS)
        try:
            time.sleep(RETRY_SECONDS)
        except StopRequested:  # a signal handler that raises (RQ's CronScheduler's)
            return
        if stopping():
            return


class RetryScheduler(RQScheduler):
    """RQ's scheduler process (it queues the jobs whose retry backoff is over), waiting for Redis."""

    def work(self) -> None:
        rerun_while_redis_is_down(super().work, lambda: self._stop_requested, f"RQ scheduler {self.name}")


class SyncWorker(SimpleWorker):
    """RQ's SimpleWorker that outlives Redis going away: its bookkeeping around a job (the start,
    the end, heartbeats, maintenance) failing no longer ends the worker, which waits for Redis
    and goes on; its scheduler process waits too."""

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO",
                         date_format: str = DEFAULT_LOGGING_DATE_FORMAT, log_format: str = DEFAULT_LOGGING_FORMAT):
        """RQ's, with a ``RetryScheduler``."""
        if burst:  # RQ's: queue what is due once, in this process
            super()._start_scheduler(burst, logging_level, date_format, log_format)
            return
        self.scheduler = RetryScheduler(self.queues, connection=self.connection, serializer=self.serializer,
                                        logging_level=logging_level if logging_level is not None else self.log.level,
                                        date_format=date_format, log_format=log_format)
        if self.scheduler.acquire_locks():
            self.scheduler.start()

    def execute_job(self, job, queue) -> None:
        try:
            super().execute_job(job, queue)
        except REDIS_DOWN as exc:  # from RQ's own bookkeeping: the job's errors are its own
            self._wait_for_redis(f"RQ could not record the start or end of job {job.id}", exc)

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        liveness.vouch(timeout or self.worker_ttl + 60)  # RQ's own TTL: past it, RQ counts the worker dead
        try:
            super().heartbeat(timeout, pipeline)
        except REDIS_DOWN as exc:
            self._wait_for_redis("no heartbeat sent", exc)

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
        except REDIS_DOWN as exc:  # not recorded as done: the next pass does it
            self._wait_for_redis("maintenance skipped", exc)

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except REDIS_DOWN as exc:
            self._wait_for_redis("could not check whether workers are suspended", exc)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        while True:  # RQ waits for Redis around the pop itself, not around its first step (marking the worker idle)
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except REDIS_DOWN as exc:
                self._wait_for_redis("could not mark the worker idle", exc)
                if self._stop_requested:
                    return None  # RQ's loop then stops

    def _wait_for_redis(self, what: str, exc: Exception) -> None:
        """Wait until Redis answers again (or a stop is requested): RQ's work loop ends at a
        connection error anywhere but in the pop of the next job."""
        log.error("worker %s: Redis unreachable, %s (%s); waiting for Redis", self.name, what, exc)
        while not self._stop_requested:
            liveness.vouch(RETRY_SECONDS + WAIT_VOUCH_SECONDS)
            try:
                self.connection.ping()
                return
            except REDIS_DOWN:
                time.sleep(RETRY_SECONDS)
