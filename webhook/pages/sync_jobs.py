"""What a sync job's id stands for on ``/syncs/<id>``: the link of the receiver's "pending".

Why it exists: the receiver's "pending" commit status is posted before its
sync has a record, so it links to the sync job's id (``sync-<repo>-<hex>``,
pullbridge.queueing).  That address must lead somewhere true: the sync the
job recorded once it ran, the job it handed its commits to when it found the
repository locked, or where the job is until then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from pullbridge import keys
from pullbridge.config import Config

_SYNC_JOB_RE = re.compile(r"^sync-(?P<repo>.+)-[0-9a-f]{12}$")  # pullbridge.queueing's job ids


@dataclass
class JobSync:
    """What a sync job's id stands for on ``/syncs/<id>``.

    The receiver's "pending" status links to the job id (``sync-<repo>-<hex>``,
    pullbridge.queueing): no sync record exists yet when it is posted.  Once
    the job ran, ``sync_id`` is its newest record (retries share the job id);
    a job that found the repo locked ran again as ``next_job_id``; until then
    ``state`` says where it is (queued, waiting for a retry, running, failed).
    """

    repo: str
    job_id: str
    state: str = ""
    sync_id: str | None = None
    next_job_id: str | None = None
    enqueued_at: float | None = None


def job_sync(conn: Redis, config: Config, job_id: str) -> JobSync | None:
    """The sync job ``job_id`` of a configured repository, or None when unknown (or gone).

    What the job became is kept as long as sync records (``keys.sync_job_trail``), so the link
    outlives the RQ job (its result is kept a day) and the repository's capped history."""
    m = _SYNC_JOB_RE.match(job_id)
    repo = config.repo(m["repo"]) if m else None
    if repo is None:
        return None
    trail = {k.decode(): v.decode() for k, v in conn.hgetall(keys.sync_job_trail(job_id)).items()}
    if trail.get("sync_id"):
        return JobSync(repo.name, job_id, "ran", sync_id=trail["sync_id"])
    if trail.get("next_job_id"):
        return JobSync(repo.name, job_id, "requeued", next_job_id=trail["next_job_id"])
    try:
        job = Job.fetch(job_id, connection=conn)
    except NoSuchJobError:
        return None
    status = job.get_status(refresh=False)
    if status == JobStatus.FINISHED:
        return None  # ran, but what it became is no longer kept
    state = {JobStatus.QUEUED: "queued", JobStatus.DEFERRED: "queued", JobStatus.SCHEDULED: "scheduled",
             JobStatus.STARTED: "running"}.get(status, "failed")
    return JobSync(repo.name, job_id, state, enqueued_at=job.enqueued_at.timestamp() if job.enqueued_at else None)
