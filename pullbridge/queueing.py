"""Coalesced sync requests: the contract between whoever asks for a sync
(webhook, periodic job, CLI) and the worker that runs it.

Why it exists: a burst of pushes must leave at most one sync queued and one
running per repository, and the newest commit must win.  The receiver cannot
order commits (it has no git), so it only records every wanted sha in a ZSET
and makes sure exactly one sync job is queued.  The worker, holding the repo
lock, takes the wanted set, orders the shas with git and applies the newest.

Both steps are single Redis transactions: a request either recorded its sha
*and* has a queued job to pick it up, or it raised and nothing was
acknowledged.  A webhook's deduplication key (``dedup_key``) is claimed in
that same transaction, so a delivery is marked as seen exactly when its sha
is durably wanted: a Redis failure part-way leaves no mark behind, and the
host's retry of the same delivery is taken as new.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

from redis import Redis, WatchError
from redis.exceptions import NoScriptError
from rq import Queue, Retry

from pullbridge import keys
from pullbridge.config import Config, RepoConfig
from pullbridge.deadline import remaining, within
from pullbridge.groupcommit import GroupCommit, Script



@dataclass(frozen=True)
class SyncRequest:
    job_id: str
    new_job: bool  # False: an already queued job will pick the sha up
    duplicate: bool = False  # True: dedup_key was already claimed; nothing was recorded


def sync_queue(conn: Redis) -> Queue:
    return Queue(keys.SYNC_QUEUE, connection=conn)


def _retry(config: Config, repo: RepoConfig) -> Retry | None:
    jobs = config.repo_jobs(repo)
    if jobs.retries < 1:
        return None
    return Retry(max=jobs.retries, interval=retry_intervals(jobs.backoff))


def retry_intervals(backoff: list[float]) -> list[int]:
    """The configured backoff (seconds) as RQ's whole-second retry intervals.

    Rounded up, never down: RQ re-queues at once for an interval of 0, so a
    backoff of 0.4 s rounded to 0 would be no backoff at all, and 2.5 s
    must not become 2 s.  Only an explicit 0 (statuses and alerts document
    it as "retry at once") stays 0."""
    return [math.ceil(seconds) if seconds > 0 else 0 for seconds in backoff]


# The common case in one round trip: a sync is already queued, so recording the
# sha (and claiming the delivery) is all there is to do.  Returns
# {1, job} for a duplicate, {2, job} when coalesced into the queued job, {0}
# when no job is queued (the caller then takes the WATCH/MULTI path that
# enqueues one).  KEYS: wanted, queued[, dedup]; ARGV: sha or '', score, ttl ms.
_COALESCE = """
if KEYS[3] then
  local seen = redis.call('GET', KEYS[3])
  if seen then return {1, seen} end
end
local job = redis.call('GET', KEYS[2])
if not job then return {0} end
if ARGV[1] ~= '' then redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1]) end
if KEYS[3] then redis.call('SET', KEYS[3], job, 'PX', ARGV[3]) end
return {2, job}
"""
_coalesce_script = Script(_COALESCE)


def _coalesce(conn: Redis, committer: GroupCommit | None, wanted_key: str, queued_key: str,
              dedup_key: str | None, sha: str | None, dedup_ms: int,
              deadline: float | None = None) -> SyncRequest | None:
    keys_ = [wanted_key, queued_key] + ([dedup_key] if dedup_key else [])
    args = [sha or "", int(time.time() * 1000), dedup_ms]
    if committer is None:
        try:
            answer = conn.evalsha(_coalesce_script.sha, len(keys_), *keys_, *args)
        except NoScriptError:  # first use since Redis started: send the text
            answer = conn.eval(_COALESCE, len(keys_), *keys_, *args)
    else:
        answer = committer.run(_coalesce_script, keys_, args, deadline=deadline)
    if answer[0] == 1:
        return SyncRequest(answer[1].decode(), False, duplicate=True)
    if answer[0] == 2:
        return SyncRequest(answer[1].decode(), False)
    return None


def request_sync(conn: Redis, config: Config, repo: RepoConfig, sha: str | None, *,
                 reason: str, delivery: str | None = None, dedup_key: str | None = None,
                 dedup_ttl: float = 86400.0, committer: GroupCommit | None = None,
                 deadline: float | None = None) -> SyncRequest:
    """Record ``sha`` as wanted (None: the branch head) and make sure a sync job is queued.

    With ``dedup_key``: if that key exists, nothing is recorded and the
    answer has ``duplicate=True`` and the job id stored under the key;
    otherwise the key is set (value: the job id, TTL ``dedup_ttl`` seconds)
    in the same transaction that records the sha.

    ``committer`` (the web receiver's): the common case -- a sync already
    queued -- shares its round trip with other threads' (``pullbridge.groupcommit``).
    ``deadline`` (the web receiver's, with its committer; ``time.monotonic()``):
    the answer by then or DeadlineExceeded (``pullbridge.deadline``); the
    transaction that queues a new job then runs on a helper thread, starts
    nothing after the deadline and sends no write after it.

    Raises redis.exceptions.ConnectionError (and friends) when Redis cannot
    take the request durably; callers must then not acknowledge anything.
    A TimeoutError (DeadlineExceeded among them) leaves it unknown whether
    the request was recorded: a retry with the same ``dedup_key`` finds out.
    """
    dedup_ms = max(1, int(dedup_ttl * 1000))
    coalesced = _coalesce(conn, committer, keys.wanted(repo.name), keys.queued(repo.name), dedup_key, sha,
                          dedup_ms, deadline)
    if coalesced is not None:
        return coalesced
    if deadline is None:
        return _enqueue(conn, config, repo, sha, reason, delivery, dedup_key, dedup_ms, None)
    return within(deadline, _enqueue, conn, config, repo, sha, reason, delivery, dedup_key, dedup_ms, deadline)


def _enqueue(conn: Redis, config: Config, repo: RepoConfig, sha: str | None, reason: str,
             delivery: str | None, dedup_key: str | None, dedup_ms: int, deadline: float | None) -> SyncRequest:
    """``request_sync`` when no sync was queued: WATCH the marker, queue a job in one MULTI."""
    wanted_key, queued_key = keys.wanted(repo.name), keys.queued(repo.name)
    watched = (queued_key, dedup_key) if dedup_key else (queued_key,)
    queue, jobs = sync_queue(conn), config.repo_jobs(repo)
    with conn.pipeline() as pipe:
        while True:
            try:
                if deadline is not None:
                    remaining(deadline)  # the caller has answered: try no more
                pipe.watch(*watched)
                current, seen = (pipe.mget(watched) + [None])[:2]
                if seen:
                    pipe.reset()
                    return SyncRequest(seen.decode(), False, duplicate=True)
                pipe.multi()
                if sha:
                    pipe.zadd(wanted_key, {sha: int(time.time() * 1000)}, nx=True)
                if current:
                    job_id, new_job = current.decode(), False
                else:
                    job_id, new_job = f"sync-{repo.name}-{uuid.uuid4().hex[:12]}", True
                    queue.enqueue_call(
                        keys.SYNC_JOB,
                        args=(repo.name,),
                        kwargs={"reason": reason, "delivery": delivery},
                        job_id=job_id,
                        timeout=int(jobs.job_timeout),
                        retry=_retry(config, repo),
                        description=f"sync {repo.name} ({reason})",
                        meta={"repo": repo.name, "reason": reason, "sha": sha, "delivery": delivery},
                        failure_ttl=7 * 86400,
                        result_ttl=86400,
                        pipeline=pipe,
                    )
                    # No expiry: however long the job waits (workers down for hours), later
                    # pushes coalesce into it.  The job clears the marker (take_wanted), or the
                    # periodic job does once its job finished, failed, vanished or died
                    # (release_dead_marker); an expiry would queue a second sync each time.
                    pipe.set(queued_key, job_id)
                if dedup_key:
                    pipe.set(dedup_key, job_id, px=dedup_ms)
                if deadline is not None:
                    remaining(deadline)  # the caller answered 503 already: record nothing it was not told of
                pipe.execute()
                return SyncRequest(job_id, new_job)
            except WatchError:
                continue


# Atomically: forget the queued marker if it is ours, and read the wanted set.
_TAKE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
"""


def requeued(job_id: str) -> dict:
    """What a sync job returns when it found the repo locked and handed its wanted commits
    to the fresh job ``job_id`` (``worker.jobs``)."""
    return {"result": "requeued", "job_id": job_id}


def handed_to(result) -> str | None:
    """The job a finished sync job handed its commits to, from its return value
    (``requeued``); None for any other result."""
    if isinstance(result, dict) and result.get("result") == "requeued" and result.get("job_id"):
        return str(result["job_id"])
    return None


def take_wanted(conn: Redis, repo_name: str, job_id: str) -> list[tuple[str, int]]:
    """Called by the worker once it holds the repo lock.

    Clears the queued marker (so a push from now on queues a fresh job) and
    returns the wanted shas with their first-seen times.  The shas stay in the
    set until ``done_wanted``: a worker that dies loses nothing.
    """
    flat = conn.eval(_TAKE, 2, keys.queued(repo_name), keys.wanted(repo_name), job_id)
    return [(flat[i].decode(), int(float(flat[i + 1]))) for i in range(0, len(flat), 2)]


def done_wanted(conn: Redis, repo_name: str, shas: list[str]) -> None:
    """Forget shas that were applied or found older than what is applied."""
    if shas:
        conn.zrem(keys.wanted(repo_name), *shas)


# Compare-and-delete: forget the queued marker only if it still names that job.
_FORGET_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def release_dead_marker(conn: Redis, repo_name: str, started_for: float) -> str | None:
    """Forget a queued marker whose job can no longer pick the wanted shas up; -> that job id.

    The marker is cleared by the job itself once it holds the repo lock
    (``take_wanted``), so a marker naming a job that a worker took more than
    ``started_for`` seconds ago (longer than any lock wait) means the worker
    died before that point -- SIGKILL, OOM, a lost node.  RQ would notice
    only after the job's heartbeat (job timeout + 60 s) and its next
    maintenance pass, and until then every push coalesces into the dead job.
    A marker naming a job that finished, failed or vanished is as dead.
    The wanted shas are untouched: the caller queues a fresh sync for them.
    """
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    raw = conn.get(keys.queued(repo_name))
    if not raw:
        return None
    job_id = raw.decode()
    try:
        job = Job.fetch(job_id, connection=conn)
        status = job.get_status()
    except NoSuchJobError:
        status, job = None, None
    if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.STARTED):
        taken = _taken_at(conn, repo_name, job, status)
        if taken is None or time.time() - taken < started_for:
            return None
    return job_id if conn.eval(_FORGET_IF, 1, keys.queued(repo_name), job_id) else None


def _taken_at(conn: Redis, repo_name: str, job, status) -> float | None:
    """When a worker took ``job`` (epoch seconds); None while it waits in its queue.

    RQ takes a job in three steps: it pops the id from the queue, records an
    *execution* (which also puts the job in the started registry), then marks
    the job ``started``.  A worker killed after the pop leaves a job whose
    status still says ``queued`` but which is in no queue any more.  With an
    execution, that tells when it was taken.  Without one (killed right after
    the pop: a worker on several queues pops with a plain LPOP, so the job is
    in no list or registry at all and RQ never recovers it), the time a check
    first saw it in that state stands in, kept in Redis for the next check.
    """
    from rq.job import JobStatus

    if status == JobStatus.STARTED:
        return job.started_at.timestamp() if job.started_at else time.time()
    if status != JobStatus.QUEUED:
        return None  # scheduled or deferred: alive
    queue = Queue(job.origin, connection=conn)
    with conn.pipeline() as pipe:  # one snapshot: the pop moves the id between these
        pipe.lpos(queue.key, job.id)
        pipe.lpos(queue.intermediate_queue_key, job.id)
        pipe.zscore(queue.scheduled_job_registry.key, job.id)
        waiting, being_taken, scheduled = pipe.execute()
    if waiting is not None:
        return None  # still waiting in its queue: alive, however long
    executions = job.get_executions()
    if executions:
        return max(e.created_at.timestamp() for e in executions)
    if being_taken is not None or scheduled is not None:
        return None  # RQ's own clean-up (intermediate list) or scheduler takes it from there
    return _adrift_since(conn, repo_name, job)


def job_attempt(job) -> str:
    """Which run of ``job`` this is: RQ sets ``enqueued_at`` anew when it queues it again for a retry."""
    return job.enqueued_at.isoformat() if job.enqueued_at else "-"


def _adrift_since(conn: Redis, repo_name: str, job) -> float:
    """When this enqueueing of ``job`` was first seen popped but not taken (epoch seconds).

    Keyed by the job's ``enqueued_at`` as well as its id: a job re-queued for
    a retry is popped again later, and must not inherit the earlier time.
    """
    key = keys.queued_adrift(repo_name)
    enqueueing = f"{job.id} {job_attempt(job)}"
    seen = conn.get(key)
    if seen:
        seen_enqueueing, _, since = seen.decode().rpartition(" ")
        if seen_enqueueing == enqueueing:
            return float(since)
    now = time.time()
    conn.set(key, f"{enqueueing} {now}", ex=86400)
    return now
