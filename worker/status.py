"""Commit statuses back to the git host, each posted by its own retried job.

Why a job of its own: posting a status must never fail or delay a sync.  The
sync only enqueues ``post`` on the status queue; a git host that is slow or
down delays nothing but its own status.
"""

from __future__ import annotations

from redis import Redis
from rq import Queue, Retry

from pullbridge import keys
from pullbridge.config import Config, RepoConfig

STATES = ("pending", "running", "success", "failure", "error")


def enqueue_status(conn: Redis, config: Config, repo: RepoConfig, sha: str, state: str,
                   description: str, sync_id: str | None = None) -> str | None:
    """Queue a status post for ``sha``; returns the job id, or None when the repo posts none."""
    if state not in STATES:
        raise ValueError(f"unknown commit state {state!r}, expected one of {', '.join(STATES)}")
    if not repo.status:
        return None
    job = Queue(keys.STATUS_QUEUE, connection=conn).enqueue_call(
        "worker.status.post",
        args=(repo.name, sha, state, description, sync_id),
        retry=Retry(max=5, interval=[2, 5, 15, 30, 60]),
        timeout=60,
        result_ttl=3600,
        failure_ttl=7 * 86400,
        description=f"status {state} {repo.name}@{sha[:12]}",
    )
    return job.id
