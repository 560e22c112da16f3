"""The sync job: ``worker.jobs.sync(repo_name, reason, delivery)``, queued by pullbridge.queueing.

Why it exists: it strings the verbs together under the repo lock, in an
order that keeps the cluster whole: take the wanted commits, fetch, choose
the newest (forward-only), render, validate + apply, prune, save the
inventory, record, mark the commit applied, post commit statuses.

Failure policy: a ``PermanentError`` is recorded, its commit gets a failure
status and the job fails without retry (its retries are cancelled, it stays
in RQ's failed registry).  A ``TemporaryError`` is recorded and re-raised so
RQ retries with the repo's backoff (stretched to the API server's
``Retry-After`` when it gave one); its wanted commits stay wanted, so
nothing is lost even when the retries run out.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from pathlib import Path

from redis import Redis
from rq import get_current_job

from pullbridge import keys, repostate
from pullbridge.config import CONFIG_ENV, Config, RepoConfig, load_config
from pullbridge.redis_url import connect
from pullbridge.queueing import done_wanted, request_sync, requeued, take_wanted
from worker import alerts, history, inventory, metrics, rendercache
from worker.apply import Applier
from worker.errors import PermanentError, TemporaryError, cancel_retries, stretch_next_retry
from worker.fetch import SHA_RE, Mirror
from worker.kube import process_kube
from worker.lock import LockLost, RepoLock
from worker.ownership import stripped_manifests
from worker.prune import PruneResult, check_allowed, prune
from worker.render import render, uses_kustomize
from worker.status import enqueue_status, mark_taking_commits

log = logging.getLogger("pullbridge.sync")
# On a failed sync's record: the periodic job waits for a new push instead of queueing it again.
PERMANENT_NOTE = "permanent failure: not retried until a new push"
SUSPENDED_TOLD_TTL = 30 * 86400  # a suspension longer than this tells its waiting commits again
# Pauses (seconds) between fetches while a wanted commit is not in what the git host gave: a host
# may announce a push before every copy of the repository has it (see _fetch_for).
UNFETCHED_PAUSES = (0.5, 1.5, 3.0)
pause_before_refetch = time.sleep  # (a test replaces it to push the commit meanwhile)

_config_cache: dict[str, tuple[float, Config]] = {}
_config_lock = threading.Lock()

_FORGET_MARKER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def process_config() -> Config:
    """The configuration from $PULLBRIDGE_CONFIG, read once per process (again if the file changes)."""
    path = os.environ.get(CONFIG_ENV) or ""
    mtime = Path(path).stat().st_mtime if path and Path(path).exists() else 0.0
    with _config_lock:
        cached = _config_cache.get(path)
        if cached is None or cached[0] != mtime:
            cached = (mtime, load_config(path or None))
            _config_cache[path] = cached
        return cached[1]


def _redis() -> Redis:
    job = get_current_job()
    if job is not None:
        return job.connection
    return connect(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


def _status(conn, config, repo, sha, state, description, sync_id, keep_result: bool = False) -> None:
    """Queue a commit status; ``keep_result`` for one about a commit this sync does not apply
    (worker.status: it does not replace the commit's result)."""
    if not sha:
        return
    try:
        enqueue_status(conn, config, repo, sha, state, description[:1000], sync_id,  # each host's limit: githosts
                       keep_result=keep_result)
    except Exception:  # noqa: BLE001 - a status must never fail the sync
        log.exception("could not queue the %s status for %s@%s", state, repo.name, sha[:12])


def _tell_suspended(conn, config, repo, wanted: list[str], sync_id: str) -> None:
    """A pending status on each waiting commit not told yet, saying why it waits: the
    receiver's "sync queued" would otherwise stand until the repo is resumed (once per
    commit, however many pushes come while it is suspended)."""
    told_key = keys.suspended_told(repo.name)
    with conn.pipeline() as pipe:
        for sha in wanted:
            pipe.sadd(told_key, sha)
        pipe.expire(told_key, SUSPENDED_TOLD_TTL)
        new = [sha for sha, added in zip(wanted, pipe.execute()) if added]
    for sha in new:
        _status(conn, config, repo, sha, "pending", f"suspended: not applied until `pullbridge resume {repo.name}`",
                sync_id, keep_result=True)


def _render(mirror: Mirror, repo: RepoConfig, sha: str) -> list:
    """Render ``sha``.  Plain YAML of a commit rendered before comes from the render cache (a
    commit never changes); a kustomization is rendered afresh by ``kubectl kustomize``."""
    checkout = mirror.checkout(sha)
    if uses_kustomize(checkout, repo.path):
        return render(checkout, repo.path)
    return rendercache.rendered(mirror, sha)


def _track_written(kube, inv_ns: str, repo: RepoConfig, previous: dict, written: dict) -> None:
    """A failed apply that still wrote objects: add them to the inventory, so prune knows them."""
    if not written or repo.mode != "apply":
        return
    try:
        inventory.save(kube, inv_ns, repo.name, {**previous, **written}, previous)
    except Exception:  # noqa: BLE001 - the apply's own error is the one to report
        log.exception("could not record in the inventory of %s what a failed apply wrote: %s",
                      repo.name, ", ".join(sorted(written)))


def _fetch_for(mirror: Mirror, wanted: list[str], record: history.SyncRecord) -> str:
    """Fetch the branch; while it lacks a wanted commit, fetch it again after each of
    ``UNFETCHED_PAUSES``.  Returns the branch head.

    A git host may send the webhook before the copy of the repository a fetch reaches has the
    commit (replicas, a mirror behind a load balancer).  Without the wait such a commit was
    answered "not on branch", its status red, until the periodic check applied it.  A commit
    still missing after the pauses (a force push removed it before it was fetched) is handled
    as before: the branch head is applied and the commit is named not on the branch."""
    head = mirror.fetch()
    missing = first = [sha for sha in wanted if SHA_RE.match(sha) and not mirror.has_commit(sha)]
    waited = 0.0
    for seconds in UNFETCHED_PAUSES:
        if not missing:
            break
        pause_before_refetch(seconds)
        waited += seconds
        head = mirror.fetch()
        missing = [sha for sha in missing if not mirror.has_commit(sha)]
    if waited:
        short = lambda shas: ", ".join(sha[:12] for sha in shas)  # noqa: E731
        record.notes.append(f"the git host still lacked {short(missing)} after {waited:g}s of fetching again"
                            if missing else f"fetched again for {waited:g}s until the git host had {short(first)}")
    return head


def _report(conn: Redis, config: Config, repo: RepoConfig, record: history.SyncRecord, summary: str) -> None:
    """Metrics and alerts for one finished attempt; never raises into the sync.

    Every attempt is counted; alerts go out on a change of state only (a
    retrying sync counts as failing, so three failed retries alert once).
    """
    duration = (record.finished_at or time.time()) - record.started_at
    try:
        metrics.record_sync(conn, repo.name, record.result, duration, record.finished_at)
    except Exception:  # noqa: BLE001
        log.exception("could not record metrics for sync %s", record.id)
    state = "success" if record.result == "success" else "failure"
    alerts.sync_finished(conn, config, repo, state, record.id, f"{repo.name}@{(record.sha or '')[:12]}: {summary}")


def sync(repo_name: str, reason: str = "push", delivery: str | None = None) -> dict:
    """Sync ``repo_name`` to its newest wanted commit (or its branch head)."""
    job = get_current_job()
    conn = _redis()
    config = process_config()
    repo = config.repo(repo_name)
    if repo is None:
        cancel_retries(job)
        raise PermanentError(f"unknown repository {repo_name!r} (not in the configuration)")
    job_id = job.id if job is not None else None
    lock = RepoLock(conn, repo_name, ttl=config.worker.lock_ttl, owner=job_id or "direct")
    if not lock.acquire(config.worker.lock_wait):
        return _requeue(conn, config, repo, job_id, reason, delivery, lock.holder())
    try:
        return _sync_locked(conn, config, repo, lock, job, reason, delivery)
    finally:
        lock.release()


def _requeue(conn, config, repo, job_id, reason, delivery, holder) -> dict:
    """Another worker holds the repo: hand the wanted commits to a fresh queued job."""
    if job_id:
        conn.eval(_FORGET_MARKER, 1, keys.queued(repo.name), job_id)
    queued = request_sync(conn, config, repo, None, reason=reason, delivery=delivery)
    if job_id:
        history.save_handover(conn, job_id, queued.job_id)
    log.info("sync %s: repo locked by %s, re-queued as %s", repo.name, holder, queued.job_id)
    return requeued(queued.job_id)


def _sync_locked(conn: Redis, config: Config, repo: RepoConfig, lock: RepoLock, job,
                 reason: str, delivery: str | None) -> dict:
    kube = process_kube()
    record = history.SyncRecord(repo.name, reason, delivery, job.id if job else None,
                                dry_run=repo.mode == "report")
    mark_taking_commits(job)  # a receiver's pending naming this job is stale from now on
    wanted = [sha for sha, _ in take_wanted(conn, repo.name, record.job_id or record.id)]
    if repostate.suspended_now(conn, repo.name):
        # Suspended (pullbridge suspend): touch nothing, keep the wanted commits for resume.
        record.result = "skipped"
        record.notes.append("skipped: suspended")
        history.save(conn, record, limit=config.worker.history_limit)
        _tell_suspended(conn, config, repo, wanted, record.id)
        return record.summary()
    state = history.repo_state(conn, repo.name)
    settings = config.repo_jobs(repo)
    inv_ns = config.worker.inventory_namespace
    limit = config.worker.history_limit
    mirror = Mirror(repo, config=config)
    try:
        head = _fetch_for(mirror, wanted, record)
        target = mirror.choose(head, wanted, state.get("applied_sha") or None,
                               held=state.get("held_sha") or None, rollback=reason == "rollback")
        record.phase("fetch")
        for sha in target.unreachable:
            record.notes.append(f"{sha[:12]} is not on branch {repo.branch}")
            _status(conn, config, repo, sha, "error", f"not on branch {repo.branch}", record.id, keep_result=True)
        for sha in target.older_than_applied:
            record.notes.append(f"{sha[:12]} is older than the applied commit")
            _status(conn, config, repo, sha, "success", "already applied a newer commit", record.id, keep_result=True)
        if target.sha is None:
            record.result = "skipped"
            history.save(conn, record, limit=limit)
            done_wanted(conn, repo.name, wanted)
            return record.summary()
        record.sha = target.sha
        if target.reason == "held":  # say it in the history: pushes do not move a held repo
            record.notes.append(f"held at {target.sha[:12]} by a rollback until `pullbridge resume {repo.name}`")
        if target.off_branch:  # say why this sync goes back to an older commit
            record.notes.append(f"applied commit {target.off_branch[:12]} is no longer on branch {repo.branch} "
                                f"(force push): the branch head is applied")
        for sha in target.superseded:
            _status(conn, config, repo, sha, "success", f"not applied: held at {target.sha[:12]} by a rollback"
                    if target.reason == "held" else f"superseded by {target.sha[:12]}", record.id, keep_result=True)
        _status(conn, config, repo, target.sha, "running", "sync running", record.id)

        declared = _render(mirror, repo, target.sha)
        manifests = stripped_manifests(declared)  # a copy: the render cache keeps the declared bodies
        record.phase("render")
        check_allowed(len(manifests), repo.allow_empty)
        previous = inventory.load(kube, inv_ns, repo.name)
        lock.check()
        applier = Applier(kube, concurrency=settings.concurrency, previous=previous,
                          default_namespace=repo.namespace or config.worker.default_namespace,
                          dry_run_only=repo.mode == "report", lock=lock)
        try:
            applied = applier.run(manifests)
        except Exception as exc:
            record.add(applier.written_changes())  # not "nothing applied" when some was
            if not isinstance(exc, LockLost):  # the inventory is the new lock holder's to write now
                _track_written(kube, inv_ns, repo, previous, applier.written)
            raise
        record.add(applied.changes)
        record.phase("apply")
        elsewhere = functools.cache(lambda: inventory.declared_elsewhere(kube, inv_ns, repo.name))
        if shared := inventory.shared_note(previous, applied.entries, elsewhere):
            record.notes.append(shared)
            log.warning("%s@%s: %s", repo.name, target.sha[:12], shared)
        lock.check()
        pruned = PruneResult()
        try:
            prune(kube, previous, applied.entries, dry_run_only=repo.mode == "report",
                  declared_elsewhere=elsewhere,
                  inventory_id=inventory.own_id(inv_ns, repo.name), result=pruned, lock=lock)
        except LockLost:
            record.add(pruned.changes)  # what it deleted; the inventory is the new lock holder's to write
            raise
        except (PermanentError, TemporaryError):
            record.add(pruned.changes)  # what it deleted before it failed: no later sync sees it
            if repo.mode == "apply":  # keep tracking what could not be pruned yet
                stale = {k: v for k, v in previous.items() if k not in applied.entries}
                inventory.save(kube, inv_ns, repo.name, {**applied.entries, **stale}, previous)
            raise
        record.add(pruned.changes)
        if repo.mode == "apply":
            inventory.save(kube, inv_ns, repo.name, {**applied.entries, **pruned.kept}, previous)
        record.phase("prune")
        record.result = "success"
        history.save(conn, record, limit=limit,
                     applied_sha=target.sha if repo.mode == "apply" else None)
        if repo.mode == "apply":  # the periodic drift scan compares with these, without re-rendering
            rendercache.remember(mirror, target.sha, declared)
        done_wanted(conn, repo.name, wanted)
        counts = record.counts
        verb = "would change" if record.dry_run else "applied"
        outcome = (f"{verb}: {counts['created']} created, {counts['configured']} configured, "
                   f"{counts['deleted']} deleted, {counts['unchanged']} unchanged")
        _status(conn, config, repo, target.sha, "success", outcome, record.id)
        _report(conn, config, repo, record, outcome)
        return record.summary()
    except PermanentError as exc:
        record.result, record.error = "failure", str(exc)
        record.error_in_full = getattr(exc, "full_text", None)  # every invalid object, for the page
        record.notes.append(PERMANENT_NOTE)
        history.save(conn, record, limit=limit)
        done_wanted(conn, repo.name, wanted)
        for sha in [record.sha] if record.sha else wanted:
            _status(conn, config, repo, sha, "failure", str(exc), record.id, keep_result=not record.sha)
        _report(conn, config, repo, record, str(exc))
        cancel_retries(job)
        raise
    except (TemporaryError, LockLost, Exception) as exc:
        if job is not None and isinstance(exc, TemporaryError) and exc.delay:
            stretch_next_retry(job, exc.delay)  # the server said how long to wait
        retrying = job is not None and job.should_retry
        record.result, record.error = ("retrying" if retrying else "failure"), f"{type(exc).__name__}: {exc}"
        history.save(conn, record, limit=limit)
        if not retrying:  # a lost lock's new holder applies the commit: its result stands
            for sha in [record.sha] if record.sha else wanted:
                _status(conn, config, repo, sha, "error", str(exc), record.id,
                        keep_result=not record.sha or isinstance(exc, LockLost))
        _report(conn, config, repo, record, record.error)
        raise
    finally:
        mirror.close()
