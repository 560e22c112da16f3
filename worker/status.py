"""Commit statuses back to the git host, each posted by its own retried job.

Why a job of its own: posting a status must never fail or delay a sync.  The
sync only enqueues ``post`` on the status queue (``enqueue_status`` swallows
and logs a Redis failure); a git host that is slow or down delays nothing but
its own status.  Retries follow worker.outbound: 5xx, 409, 429/rate limits
(honouring Retry-After) and network errors are retried by RQ's ``Retry``;
any other 4xx fails the job once, without retries.

Ordering: jobs may run out of order (retries, several status workers), and a
late "pending" must not overwrite a newer "success" of the same commit.  Each
enqueued status takes the next number of a per-commit sequence in Redis
(``keys.status_order``); posting happens under a per-commit lock and records
the highest number posted; a job whose number is lower than that is stale and
is dropped.  The statuses a sync posts are enqueued in the order its syncs
(serialised by the repo lock) produce them, so "newest enqueued" is "newest".

The receiver's "pending" is the exception: it is enqueued after the sync job
is queued, outside the repo lock, so a stalled web thread can enqueue it after
a fast worker's own "running" and "success" for the same commit, and it would
be posted last and stay.  "Pending" means "not taken up yet", so it names its
sync job (``sync_job``) and is posted only while that job still waits (or the
job it handed its commits to when it found the repo locked does); once the
sync took the wanted commits, the sync's own statuses say the rest.  Waiting
includes a job a worker already started that is still blocked on the repo
lock (another sync of the repo runs): RQ calls it "started", but it has taken
nothing and may yet hand over.  So the sync marks its job's attempt just
before it takes the commits (``mark_taking_commits``), and only that mark (or
the job ending) says the wait is over.  A job queued again for a retry waits
again, as the first attempt may have failed before it posted anything.

A commit's result, once posted (success, failure or error: ``RESULTS``), is
not replaced by a status about a sync that does not apply that commit: an
older commit pushed again after a newer one was applied (a redelivered
webhook) is "already applied a newer commit" or "superseded", and the
receiver's "pending" promises a sync that may not come; a failure must not
turn green.  Such statuses are enqueued with ``keep_result`` and dropped when
the commit has a result (``keys.status_order``'s ``result``); statuses of the
sync that applies the commit (running, its outcome) always go out.
"""

from __future__ import annotations

import logging

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from pullbridge import keys
from pullbridge.config import Config, ConfigError, RepoConfig
from pullbridge.deadline import remaining
from pullbridge.notify_config import status_api_url, status_context, status_project
from pullbridge.queueing import handed_to, job_attempt, retry_intervals
from worker.githosts import StatusTarget, build_request, interpret
from worker.outbound import PermanentError, TemporaryError, job_config, run_job, send_json

log = logging.getLogger(__name__)

STATES = ("pending", "running", "success", "failure", "error")
RESULTS = ("success", "failure", "error")
ORDER_TTL = 14 * 86400
LOCK_WAIT = 30
WAITING = (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED)
TAKING_COMMITS = "taking_commits"  # sync job meta: the attempt that took the commits (mark_taking_commits)
REQUEUE_HOPS = 5


def enqueue_status(conn: Redis, config: Config, repo: RepoConfig, sha: str, state: str,
                   description: str, sync_id: str | None = None, sync_job: str | None = None,
                   deadline: float | None = None, keep_result: bool = False) -> str | None:
    """Queue a status post for ``sha``; returns the job id, or None when the repo posts none.

    ``sync_job``: for a "pending", the sync job it announces; the post is
    dropped once that job no longer waits (see the module docstring).
    ``keep_result``: not about a sync that applies ``sha``; dropped when the
    commit already has a result (see the module docstring).
    ``deadline`` (the receiver's push, ``pullbridge.deadline``): once it has
    passed, the job is not queued (None, logged); a sequence number taken
    before is only a gap in the order.

    Never raises for Redis trouble (logged instead): a status is not worth a sync.
    """
    if state not in STATES:
        raise ValueError(f"unknown commit state {state!r}, expected one of {', '.join(STATES)}")
    settings = repo.status
    if not settings or not settings.enabled:
        return None
    order_key = keys.status_order(repo.name, sha)
    try:
        with conn.pipeline() as pipe:
            pipe.hincrby(order_key, "enqueued", 1)
            pipe.expire(order_key, ORDER_TTL)
            seq = int(pipe.execute()[0])
        if deadline is not None:
            remaining(deadline)  # the push's answer is due: send no second write after it
        job = Queue(keys.STATUS_QUEUE, connection=conn).enqueue_call(
            "worker.status.post",
            args=(repo.name, sha, state, description, sync_id),
            kwargs={"seq": seq, **({"sync_job": sync_job} if sync_job else {}),
                    **({"keep_result": True} if keep_result else {})},
            retry=_retry(settings.retries, settings.backoff),
            timeout=int(settings.timeout * 2 + LOCK_WAIT + 10),
            result_ttl=3600,
            failure_ttl=7 * 86400,
            description=f"status {state} {repo.name}@{sha[:12]}",
        )
    except RedisError as exc:
        log.error("status %s for %s@%s not queued: Redis: %s", state, repo.name, sha[:12], exc)
        return None
    return job.id


def _retry(retries: int, backoff: list[float]) -> Retry | None:
    if retries < 1:
        return None
    return Retry(max=retries, interval=retry_intervals(backoff))


def status_target(config: Config, repo: RepoConfig) -> StatusTarget:
    return StatusTarget(provider=repo.provider, api_url=status_api_url(repo),
                        project=status_project(repo), context=status_context(repo), ref=repo.branch,
                        repo_page=f"{config.server.public_url.rstrip('/')}/repos/{repo.name}")


def target_url(config: Config, sync_id: str | None) -> str | None:
    if not sync_id:
        return None
    return f"{config.server.public_url.rstrip('/')}/syncs/{sync_id}"


def post(repo_name: str, sha: str, state: str, description: str, sync_id: str | None = None,
         seq: int | None = None, sync_job: str | None = None, keep_result: bool = False) -> str:
    """The RQ job: post one status.  Returns 'posted', 'unchanged', 'stale' or 'disabled'."""
    what = f"status {state} {repo_name}@{sha[:12]}"

    def attempt():
        config = job_config()
        repo = config.repo(repo_name)
        if repo is None:
            raise PermanentError(f"repository {repo_name!r} is no longer configured")
        if not repo.status or not repo.status.enabled:
            log.info("%s: statuses are off for this repository; dropped", what)
            return "disabled"
        job = get_current_job()
        conn = job.connection if job is not None else None
        if conn is None:
            raise PermanentError("post() runs as an RQ job (no Redis connection)")
        return post_now(conn, config, repo, sha, state, description, sync_id, seq, sync_job, keep_result)

    return run_job(what, attempt)


def post_now(conn: Redis, config: Config, repo: RepoConfig, sha: str, state: str, description: str,
             sync_id: str | None = None, seq: int | None = None, sync_job: str | None = None,
             keep_result: bool = False) -> str:
    """Post under the per-commit lock unless a newer status was already posted.

    Raises TemporaryError / PermanentError (see worker.outbound).
    """
    if state not in STATES:
        raise PermanentError(f"unknown commit state {state!r}")
    settings = repo.status
    what = f"status {state} {repo.name}@{sha[:12]}"
    try:
        token = settings.usable_token()
    except ConfigError as exc:
        raise TemporaryError(f"{what}: token unusable: {exc}") from None  # may be fixed in time

    target = status_target(config, repo)
    order_key = keys.status_order(repo.name, sha)
    lock = conn.lock(keys.status_lock(repo.name, sha), timeout=settings.timeout * 2 + 10,
                     blocking_timeout=LOCK_WAIT)
    if not lock.acquire():
        raise TemporaryError(f"{what}: another status of this commit is being posted")
    try:
        posted, result = conn.hmget(order_key, "posted", "result")
        posted = int(posted or 0)
        if seq is not None and seq < posted:
            log.info("%s: dropped, a newer status (#%d > #%d) was already posted", what, posted, seq)
            return "stale"
        if state == "pending" and sync_job and not sync_waiting(conn, sync_job):
            log.info("%s: dropped, sync job %s no longer waits", what, sync_job)
            return "stale"
        if keep_result and result:
            log.info("%s: dropped, the commit's result (%s) stands", what, result.decode())
            return "stale"
        request = build_request(target, token, sha, state, description, target_url(config, sync_id))
        response = send_json(request.url, request.payload, request.headers, settings.timeout)
        outcome = interpret(target, response, what)
        with conn.pipeline() as pipe:
            if seq is not None:
                pipe.hset(order_key, "posted", max(seq, posted))
            if state in RESULTS:
                pipe.hset(order_key, "result", state)
            pipe.expire(order_key, ORDER_TTL)
            pipe.execute()
        log.info("%s: %s", what, outcome)
        return outcome
    finally:
        try:
            lock.release()
        except Exception:  # expired: nothing to release
            pass


def mark_taking_commits(job: Job | None) -> None:
    """Called by the sync, holding the repo lock, just before it takes the wanted commits:
    from now on this attempt of its job no longer waits, and a pending naming it is stale
    (``sync_waiting``)."""
    if job is not None:
        job.meta[TAKING_COMMITS] = job_attempt(job)
        job.save_meta()


def sync_waiting(conn: Redis, job_id: str) -> bool:
    """Is the sync job still waiting, i.e. has it not taken the wanted commits yet?

    Queued, deferred and scheduled jobs wait (a retry too), and so does a
    started one until ``mark_taking_commits`` marked this attempt: a worker
    took it, but it is blocked on the repo lock.  A job that found the repo locked handed its
    commits to another job (it returned ``{"result": "requeued", "job_id": ...}``):
    that one is asked instead."""
    for _ in range(REQUEUE_HOPS):
        try:
            job = Job.fetch(job_id, connection=conn)
        except NoSuchJobError:
            return False
        status = job.get_status(refresh=False)
        if status in WAITING:
            return True
        if status == JobStatus.STARTED:
            return job.meta.get(TAKING_COMMITS) != job_attempt(job)
        job_id = handed_to(job.return_value()) if status == JobStatus.FINISHED else None
        if job_id is None:
            return False
    return False
