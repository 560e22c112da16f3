"""The RQ side of the ``/queue`` page: depths, running and failed jobs, retry and delete.

Why it exists: an operator needs to see at a glance whether syncs are
waiting, running or stuck, and to retry a failed job once the cause is
fixed.  Only a job's id, function, description (written by Pullbridge's own
code: repo, reason, commit) and the last lines of its error are shown: job
arguments may carry alert payloads and are never put on a page.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import JOB_ID_PATTERN, Job
from rq.registry import (DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry,
                         StartedJobRegistry)

from pullbridge import keys

QUEUE_NAMES = tuple(keys.QUEUES.values())
LIST_LIMIT = 100
ERROR_LINES = 3
JOB_ID_MAX = 200


@dataclass
class Depth:
    queue: str
    queued: int
    started: int
    scheduled: int
    deferred: int
    failed: int


@dataclass
class JobRow:
    id: str
    queue: str
    func: str
    description: str
    enqueued_at: float | None
    started_at: float | None
    ended_at: float | None
    error: str
    worker: str
    retries_left: int | None


def depths(conn: Redis) -> list[Depth]:
    out = []
    for name in QUEUE_NAMES:
        queue = Queue(name, connection=conn)
        out.append(Depth(
            queue=name, queued=queue.count,
            started=StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
            scheduled=ScheduledJobRegistry(queue=queue).get_job_count(cleanup=False),
            deferred=DeferredJobRegistry(queue=queue).get_job_count(cleanup=False),
            failed=FailedJobRegistry(queue=queue).get_job_count(cleanup=False),
        ))
    return out


def _ts(value) -> float | None:
    return value.timestamp() if value is not None else None


def error_excerpt(job: Job) -> str:
    """The exception line(s) at the end of the traceback, not the whole stack."""
    try:
        result = job.latest_result()
    except Exception:  # noqa: BLE001 - a page must render even for an odd job
        result = None
    text = (getattr(result, "exc_string", None) or "") if result is not None else ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    tail = []
    for line in reversed(lines):  # the exception message, possibly multi-line, after the last frame
        if line.startswith("  ") or line.startswith("Traceback"):
            break
        tail.insert(0, line)
    return "\n".join((tail or lines)[-ERROR_LINES:])


def _rows(conn: Redis, queue: Queue, ids: list[str], with_error: bool) -> list[JobRow]:
    rows = []
    for job in Job.fetch_many(ids, connection=conn):
        if job is None:
            continue
        rows.append(JobRow(
            id=job.id, queue=queue.name, func=job.func_name or "", description=job.description or "",
            enqueued_at=_ts(job.enqueued_at), started_at=_ts(job.started_at), ended_at=_ts(job.ended_at),
            error=error_excerpt(job) if with_error else "", worker=job.worker_name or "",
            retries_left=job.retries_left,
        ))
    return rows


def running(conn: Redis) -> list[JobRow]:
    out = []
    for name in QUEUE_NAMES:
        queue = Queue(name, connection=conn)
        ids = StartedJobRegistry(queue=queue).get_job_ids(0, LIST_LIMIT - 1, cleanup=False)
        out += _rows(conn, queue, ids, with_error=False)
    return out


def scheduled(conn: Redis) -> list[tuple[JobRow, float | None]]:
    out = []
    for name in QUEUE_NAMES:
        queue = Queue(name, connection=conn)
        registry = ScheduledJobRegistry(queue=queue)
        ids = registry.get_job_ids(0, LIST_LIMIT - 1, cleanup=False)
        for row in _rows(conn, queue, ids, with_error=False):
            try:
                at = registry.get_scheduled_time(row.id).timestamp()
            except Exception:  # noqa: BLE001
                at = None
            out.append((row, at))
    return out


def failed(conn: Redis) -> list[JobRow]:
    """Failed jobs, newest failure first, at most LIST_LIMIT per queue."""
    out = []
    for name in QUEUE_NAMES:
        queue = Queue(name, connection=conn)
        ids = FailedJobRegistry(queue=queue).get_job_ids(0, LIST_LIMIT - 1, desc=True, cleanup=False)
        out += _rows(conn, queue, ids, with_error=True)
    out.sort(key=lambda r: r.ended_at or 0, reverse=True)
    return out


# What the page says after an action; the redirect carries only the code and the job's id
# (shown only when it is one: ``is_job_id``), so a crafted link cannot put words on the page.
OUTCOMES = {
    "retried": "is queued again; it left the failed jobs.",
    "deleted": "was deleted.",
    "not-failed": "is not among the failed jobs (already retried or deleted?).",
    "gone": "no longer exists; it was taken off the failed list.",
    "bad-queue": "names an unknown queue.",
    "not-requeued": "could not be requeued.",
}


def is_job_id(text: str) -> bool:
    """Could ``text`` be an RQ job's id (RQ allows letters, digits, ``_`` and ``-``)?"""
    return len(text) <= JOB_ID_MAX and JOB_ID_PATTERN.fullmatch(text) is not None


class JobActionError(Exception):
    """A retry or delete could not be done; ``code`` is a key of OUTCOMES."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _failed_job(conn: Redis, queue_name: str, job_id: str) -> tuple[FailedJobRegistry, Job]:
    if queue_name not in QUEUE_NAMES:
        raise JobActionError("bad-queue", f"unknown queue {queue_name!r}")
    registry = FailedJobRegistry(queue=Queue(queue_name, connection=conn))
    if job_id not in registry.get_job_ids(cleanup=False):
        raise JobActionError("not-failed", f"job {job_id} is not in the failed jobs of {queue_name}")
    try:
        return registry, Job.fetch(job_id, connection=conn)
    except NoSuchJobError:
        registry.remove(job_id)
        raise JobActionError("gone", f"job {job_id} no longer exists; removed it from the failed list") from None


def retry(conn: Redis, queue_name: str, job_id: str) -> str:
    """Put a failed job back on its queue (RQ's own requeue: it leaves the failed registry)."""
    registry, job = _failed_job(conn, queue_name, job_id)
    try:
        registry.requeue(job)
    except InvalidJobOperation as exc:
        raise JobActionError("not-requeued", f"job {job_id} could not be requeued: {exc}") from None
    return f"Job {job_id} ({job.description or job.func_name}) is queued again on {queue_name}"


def delete(conn: Redis, queue_name: str, job_id: str) -> str:
    """Delete a failed job and its data."""
    _registry, job = _failed_job(conn, queue_name, job_id)
    job.delete()
    return f"Job {job_id} ({job.description or job.func_name}) was deleted"
