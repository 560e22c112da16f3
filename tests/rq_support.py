"""Helpers for tests that follow a job through RQ's retry scheduling on a real Redis."""

from __future__ import annotations

import time

from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler


def enqueue_when_due(conn, queue_name: str, job_id: str) -> None:
    """Wait until ``job_id``'s scheduled time has passed, then queue it as RQ's scheduler does."""
    when = ScheduledJobRegistry(queue_name, connection=conn).get_scheduled_time(job_id).timestamp()
    while time.time() < when + 0.05:
        time.sleep(0.1)
    scheduler = RQScheduler([queue_name], connection=conn)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    scheduler.release_locks()
