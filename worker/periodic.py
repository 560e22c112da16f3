"""The periodic reconcile job: ``worker.periodic.reconcile(repo_name)``, queued by worker.scheduler.

Why it exists: a lost webhook or a hand edit must not leave the cluster away
from Git for longer than one interval.  Each run:

1. claims its interval (``worker.periodic_claim``: duplicate jobs from several
   schedulers return at once, and a run that outlives its interval is not joined
   by the next ones, which say so);
2. does nothing more for a suspended repo but record the check;
3. asks the git host for the branch head (``git ls-remote``); a head other
   than the applied commit means a push was missed: it queues a normal sync
   (reason ``periodic``), which also re-applies anything drifted, unless a
   push asked for it and its sync is queued or running (``pending_sync``).  A head
   whose newest sync (drift records skipped) failed on a temporary error is
   queued again, so an outage longer than the retries heals by itself; one
   that failed for good (``worker.jobs.PERMANENT_NOTE``) waits for a push, and
   the run's check result says so.  For a repo with ``paths:`` the head is
   synced only when ``git diff`` between the applied commit and it (in the
   mirror, fetched under the lock) changes a file the filter matches
   (``pullbridge.pathfilter``, as the receiver decides): a push the filter
   ignored is not synced here either, and a force push that reverted a
   filtered file (GitLab and Gitea list only its new commits) is;
4. otherwise, under the repo lock, scans the applied commit's objects for
   drift (worker.drift), re-applies only the drifted objects unless the repo
   is in ``report`` mode (which compares with the branch head, as a report-mode
   sync applies nothing), and keeps a record in the repo's history, the log,
   the metrics and the alerts.

Every run leaves ``last_check_at`` / ``last_check_result`` in the state hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

import git
from redis import Redis
from rq import get_current_job

from pullbridge import keys, repostate
from pullbridge.config import Config, RepoConfig
from pullbridge.pathfilter import touches
from pullbridge.queueing import release_dead_marker, request_sync
from worker import alerts, drift, history, metrics, ssh
from worker.apply import Applier
from worker.errors import PermanentError, TemporaryError, cut
from worker.fetch import FETCH_TIMEOUT, Mirror, git_env, git_stderr, redact
from worker.jobs import PERMANENT_NOTE, _redis, process_config
from worker.kube import ApiError, process_kube
from worker.lock import LockLost, RepoLock, token_owner
from worker.ownership import stripped_manifests
from worker.periodic_claim import claim_interval, end_run, overrun
from worker.rendercache import rendered

log = logging.getLogger("pullbridge.drift")
# State hash field: the applied commit, branch head and paths: of the last head found to change no
# filtered file (outside_paths_marker); while they stay the same the head is not compared again.
OUTSIDE_PATHS = "outside_paths"

def record_check(conn: Redis, repo_name: str, result: str, *, looked: bool = True, **extra: str) -> None:
    """Keep this run's ``result``.  ``looked``: False when the run could not look at the cluster
    (its drift scan failed): ``last_check_at`` then stays at the last check that did, so the
    overview's last drift check and ``pullbridge_last_check_age_seconds`` show that checks fail,
    and the result is logged as a warning."""
    fields = {"last_check_result": result, **extra}
    if looked:
        fields["last_check_at"] = str(time.time())
    conn.hset(keys.state(repo_name), mapping=fields)
    (log.info if looked else log.warning)("periodic %s: %s", repo_name, result)


@dataclass
class DriftRecord(history.SyncRecord):
    """A sync record (same shape, same history list) that also carries drift entries."""

    drift: list[dict] = field(default_factory=list)
    fingerprint: str = ""  # drift_fingerprint of what was found (kept in the state hash, not in the record)

    def summary(self) -> dict:
        found = {d["object"] for d in self.drift}
        corrected = {d["object"] for d in self.drift if d["corrected"]}
        return {**super().summary(), "drift": {"objects": len(found), "fields": len(self.drift),
                                               "corrected": len(corrected)}}

    def full(self) -> dict:
        return {**super().full(), "drift_entries": self.drift}


def save_drift(conn: Redis, record: DriftRecord, limit: int) -> None:
    """Store like history.save, but leave the sync fields of the state hash (last_result...) alone."""
    record.finished_at = record.finished_at or time.time()
    summary = record.summary()
    with conn.pipeline() as pipe:
        pipe.set(keys.sync_record(record.id), json.dumps(record.full()), ex=history.RECORD_TTL)
        pipe.lpush(keys.history(record.repo), json.dumps(summary))
        pipe.ltrim(keys.history(record.repo), 0, limit - 1)
        pipe.hset(keys.state(record.repo), mapping={
            "last_drift_id": record.id, "last_drift_at": str(record.finished_at),
            "last_drift_objects": str(summary["drift"]["objects"]),
            "last_drift_corrected": str(summary["drift"]["corrected"]),
            "last_drift_fingerprint": record.fingerprint or drift_fingerprint(record.drift, record.error)})
        pipe.execute()
    history.log_record(record)


def drift_fingerprint(entries: list[dict], error: str | None = None) -> str:
    """What a drift record found (``DriftEntry.identity``: objects, fields, values, corrected, a
    hidden Secret value's revision) and why its correction failed, independent of order and time."""
    shown = sorted(json.dumps({k: e.get(k) for k in (*drift.IDENTITY_KEYS, "revision")}, sort_keys=True)
                   for e in entries)
    return hashlib.sha256(json.dumps({"entries": shown, "error": error}).encode()).hexdigest()


def remote_head(repo: RepoConfig) -> str | None:
    """The branch head at the git host (``git ls-remote``); None when the branch does not exist."""
    try:
        out = git.cmd.Git().ls_remote(repo.url, f"refs/heads/{repo.branch}", env=git_env(repo),
                                      kill_after_timeout=FETCH_TIMEOUT)
    except git.GitCommandError as exc:
        text = redact(git_stderr(exc))
        raise TemporaryError(f"git ls-remote failed: {ssh.refusal(repo, None, text) or cut(text, 200)}") from None
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.strip() == f"refs/heads/{repo.branch}":
            return sha.strip()
    return None


# -- the job -----------------------------------------------------------------------

def reconcile(repo_name: str) -> dict:
    """Once per interval: catch a missed push, else find (and correct) cluster drift."""
    conn = _redis()
    config = process_config()
    repo = config.repo(repo_name)
    if repo is None:
        log.warning("periodic: repository %r is no longer configured; nothing to do", repo_name)
        return {"result": "unknown repository"}
    token = claim_interval(conn, repo, int(config.repo_jobs(repo).job_timeout * 1000))
    if token is None:
        since = overrun(conn, repo)
        if since is None:
            return {"result": "duplicate"}
        record_check(conn, repo.name, f"the check started {int(since)}s ago is still running "
                                      f"(interval {repo.interval:g}s); this interval's check skipped")
        return {"result": "still running"}
    try:
        return _reconcile_claimed(conn, config, repo)
    finally:
        end_run(conn, repo, token)


def _reconcile_claimed(conn: Redis, config: Config, repo: RepoConfig) -> dict:
    """``reconcile`` once this run holds its interval."""
    if repostate.suspended_now(conn, repo.name):
        record_check(conn, repo.name, "suspended: not synced, not corrected")
        return {"result": "suspended"}
    dead = release_dead_marker(conn, repo.name, config.worker.lock_wait + config.worker.lock_ttl)
    if dead and conn.zcard(keys.wanted(repo.name)):
        queued = request_sync(conn, config, repo, None, reason="recover")
        record_check(conn, repo.name, f"sync {dead} died before it started; wanted commits re-queued "
                                      f"as {queued.job_id}")
        return {"result": "sync queued", "job_id": queued.job_id, "replaces": dead}
    state = history.repo_state(conn, repo.name)
    applied = state.get("applied_sha") or None
    about_head = ""  # what became of the branch head (unknown, or not applied): said in every result of this run
    try:
        head = remote_head(repo)
    except (PermanentError, TemporaryError) as exc:  # permanent: SSH not set up, the operator's to fix
        head = None
        about_head = f"branch head not checked: {exc}"
        log.warning("periodic %s: %s (checking drift only)", repo.name, exc)
    compare_paths = False  # decided under the lock, with a git diff in the mirror
    if repo.mode == "report":
        # A report-mode sync changes nothing, so a missed push needs no sync: drift is
        # reported against what Git declares now (the branch head), else the last applied commit.
        applied = head or applied
    elif head and head != applied and not state.get("held_sha"):
        pending = pending_sync(conn, repo.name, head)
        if pending:  # its push was not missed: no second job, and no drift check against the old commit
            job_id, how = pending
            record_check(conn, repo.name, f"head {head[:12]} not applied yet: {how}")
            return {"result": "sync pending", "sha": head, "job_id": job_id}
        failed = failed_sync(conn, repo.name, head)
        if failed is not None and PERMANENT_NOTE in (failed.get("notes") or []):
            about_head = f"head {head[:12]} failed to sync; waiting for a new push"
        elif repo.paths and applied and failed is None:
            compare_paths = True
        else:
            return queue_head(conn, config, repo, head, failed)
    elif head and head != applied:  # held by a rollback: say why the head is not applied
        about_head = (f"held at {state['held_sha'][:12]} by a rollback: head {head[:12]} not applied until "
                      f"`pullbridge resume {repo.name}`")
    if not applied:
        record_check(conn, repo.name, _also("nothing applied yet", about_head))
        return {"result": "nothing applied"}
    job = get_current_job()
    lock = RepoLock(conn, repo.name, ttl=config.worker.lock_ttl, owner=(job.id if job else "periodic"))
    if not lock.acquire(min(config.worker.lock_wait, 2.0)):
        unchecked = f"; head {head[:12]} not compared with paths yet" if compare_paths else ""
        record_check(conn, repo.name, _also(f"busy: {lock.holder()} holds the repo; drift not checked{unchecked}",
                                            about_head))
        return {"result": "busy"}
    try:
        # A sync may have finished between the first look and the lock: never scan (and
        # "correct" towards) a commit older than the one applied now.
        if repostate.suspended_now(conn, repo.name):
            record_check(conn, repo.name, "suspended: not synced, not corrected")
            return {"result": "suspended"}
        now = history.repo_state(conn, repo.name) if repo.mode == "apply" else {}
        applied = now.get("applied_sha") or applied
        if compare_paths:  # only in apply mode: ``now`` was read under the lock
            queued, about_head = sync_if_paths_changed(conn, config, repo, applied, head, now.get(OUTSIDE_PATHS))
            if queued:
                return queued
        return check_drift(conn, config, repo, applied, lock, job.id if job else None, also=about_head)
    finally:
        lock.release()


def queue_head(conn: Redis, config: Config, repo: RepoConfig, head: str, failed: dict | None,
               why: str = "") -> dict:
    """Queue a sync of the branch head (reason ``periodic``) and say why in the check result."""
    queued = request_sync(conn, config, repo, head, reason="periodic")
    if failed is not None:
        what = (f"head {head[:12]} failed ({cut(failed.get('error') or 'temporary error', 200)}); "
                f"sync {queued.job_id} queued again")
    else:
        what = f"missed push: {head[:12]} not applied{f' ({why})' if why else ''}, sync {queued.job_id} queued"
    record_check(conn, repo.name, what)
    return {"result": "sync queued", "sha": head, "job_id": queued.job_id}


def sync_if_paths_changed(conn: Redis, config: Config, repo: RepoConfig, applied: str,
                          head: str, compared: str | None) -> tuple[dict | None, str]:
    """Under the repo lock, for a repo with ``paths:``: queue a sync of the branch head when a
    file the filter matches differs between ``applied`` and it; (the queued result, "") then.
    Otherwise remember that (``OUTSIDE_PATHS``) and return (None, the note saying so).
    ``compared``: the repo state's ``OUTSIDE_PATHS``, as read under the lock.
    """
    if head == applied:  # applied by a sync that finished before the lock was taken
        return None, ""
    if compared == outside_paths_marker(repo, applied, head):
        return None, outside_paths_note(applied, head)  # an earlier run compared them
    head, changed = fetched_changes(config, repo, applied, head)
    if head == applied:  # the branch went back to the applied commit meanwhile
        return None, ""
    if touches(changed, repo.paths):
        why = f"a file matching paths changed since {applied[:12]}" if changed is not None \
            else "its files could not be compared with paths"
        return queue_head(conn, config, repo, head, None, why), ""
    conn.hset(keys.state(repo.name), OUTSIDE_PATHS, outside_paths_marker(repo, applied, head))
    return None, outside_paths_note(applied, head)


def fetched_changes(config: Config, repo: RepoConfig, applied: str, head: str) -> tuple[str, set[str] | None]:
    """Fetch the branch into the mirror: its head, and the files whose content differs between
    ``applied`` and it (a content diff, so the files a force push reverted count too).

    None for the files when they cannot be told (the fetch failed, the applied commit is
    not in the mirror): as for a webhook that cannot list them, the head is then synced.
    """
    mirror = Mirror(repo, config=config)
    try:
        head = mirror.fetch()
        return head, mirror.changed_paths(applied, head) if mirror.has_commit(applied) else None
    except (PermanentError, TemporaryError) as exc:
        log.warning("periodic %s: head %s not compared with paths: %s", repo.name, head[:12], exc)
        return head, None
    finally:
        mirror.close()


def outside_paths_marker(repo: RepoConfig, applied: str, head: str) -> str:
    """What the state keeps (``OUTSIDE_PATHS``) once ``head`` was found to change no file matching
    ``paths:`` since ``applied``: the next runs skip the fetch and the diff while all three stay."""
    return json.dumps([applied, head, repo.paths])


def outside_paths_note(applied: str, head: str) -> str:
    return f"head {head[:12]} changes no file matching paths since applied {applied[:12]}: not synced"


def pending_sync(conn: Redis, repo_name: str, sha: str) -> tuple[str, str] | None:
    """(the job, how it is under way) when a push asked for ``sha`` (it is wanted) and a sync job
    is queued or holds the repo (it took the wanted commits); None otherwise (a job that died
    with them is then replaced by ``queue_head``)."""
    if conn.zscore(keys.wanted(repo_name), sha) is None:
        return None
    queued = conn.get(keys.queued(repo_name))
    if queued:
        return queued.decode(), f"sync {queued.decode()} queued"
    holder = RepoLock(conn, repo_name).holder()
    return (token_owner(holder), f"{holder} holds the repo") if holder else None


def failed_sync(conn: Redis, repo_name: str, sha: str) -> dict | None:
    """The newest sync record (drift records share the history list) when it is a failure of ``sha``."""
    newest = next((r for r in history.history(conn, repo_name) if r.get("reason") != "drift"), None)
    if newest and newest.get("sha") == sha and newest.get("result") == "failure":
        return newest
    return None


def _also(result: str, note: str) -> str:
    return f"{result}; {note}" if note else result


def check_drift(conn: Redis, config: Config, repo: RepoConfig, sha: str, lock: RepoLock,
                job_id: str | None = None, also: str = "") -> dict:
    """Scan the applied commit's objects; correct (apply mode) and record what drifted.

    ``also``: a fact every check result of this run must keep (the head that failed).
    """
    kube = process_kube()
    settings = config.repo_jobs(repo)
    default_ns = repo.namespace or config.worker.default_namespace
    record = DriftRecord(repo.name, "drift", job_id=job_id, dry_run=repo.mode == "report", sha=sha)
    try:
        manifests = rendered(Mirror(repo), sha)
        record.phase("render")
        found = drift.scan(kube, manifests, default_namespace=default_ns, concurrency=settings.concurrency)
        record.phase("scan")
    except (PermanentError, TemporaryError, ApiError) as exc:
        record_check(conn, repo.name, _also(f"drift check failed: {cut(exc, 200)}", also), looked=False)
        alerts.drift_check_finished(conn, config, repo, False, f"drift check failed: {cut(exc, 300)}")
        return {"result": "failure", "error": str(exc)}
    alerts.drift_check_finished(conn, config, repo, True, f"drift checked again: {found.checked} objects looked at")
    record.notes.extend(found.notes)
    objects = len({e.object for e in found.entries})
    if not found.entries:
        metrics.record_drift(conn, repo.name, 0, 0)
        # The drift an earlier check found is gone: the state (and the overview page) must say so.
        conn.hset(keys.state(repo.name), mapping={"last_drift_at": str(time.time()), "last_drift_objects": "0",
                                                  "last_drift_corrected": "0", "last_drift_fingerprint": ""})
        record_check(conn, repo.name, _also(f"in sync: {found.checked} objects checked", also))
        return {"result": "in sync", "checked": found.checked}
    corrected: set[str] = set()
    if repo.mode == "apply":
        try:
            lock.check()
            corrected = correct(kube, found, record, default_ns, settings.concurrency, lock)
            record.result = "success"
        except (PermanentError, TemporaryError, ApiError, LockLost) as exc:
            record.result, record.error = "failure", f"correcting drift: {cut(exc, 300)}"
        record.phase("correct")
    else:
        record.result = "success"
        record.notes.append("report mode: drift left in place")
    for entry in found.entries:
        entry.corrected = entry.object in corrected
    if repo.mode == "report":
        verb, event, why = "reported", "drift_found", ""
    elif len(corrected) == objects:
        verb, event, why = "corrected", "drift_corrected", ""
    else:
        verb, event = "not corrected", "drift_failed"
        why = record.error or "; ".join(n for n in record.notes if "not corrected" in n) or \
            "re-applying changed nothing"
    if verb == "not corrected" and record.result == "success":
        record.result = "failure"  # what was found is still there
    record.drift = [e.as_dict() for e in found.entries]
    record.fingerprint = drift_fingerprint([e.identity() for e in found.entries], record.error)
    result = {"result": f"drift {verb}", "objects": objects, "corrected": len(corrected)}
    state = history.repo_state(conn, repo.name)
    if not corrected and state.get("last_drift_id") and state.get("last_drift_fingerprint") == record.fingerprint:
        # The same drift as the last record, and nothing changed by this check: a record per
        # interval would push every sync out of the capped history.
        previous = state["last_drift_id"]
        conn.hset(keys.state(repo.name), "last_drift_at", str(time.time()))
        record_check(conn, repo.name, _also(f"drift {verb}: {objects} object(s), unchanged since {previous}"
                                            + (f": {cut(why, 200)}" if why else ""), also),
                     last_check_sync_id=previous)
        return {**result, "id": previous, "unchanged": True}
    for entry in found.entries:
        log.warning("drift %s %s", repo.name, entry.describe())
    save_drift(conn, record, config.worker.history_limit)
    metrics.record_drift(conn, repo.name, objects, len(corrected))
    outcome = f"{objects} object(s) drifted, {len(corrected)} corrected" + (f" ({cut(why, 300)})" if why else "")
    summary = f"{outcome}: " + "; ".join(e.describe() for e in found.entries[:5]) + \
        (" ..." if len(found.entries) > 5 else "")
    alerts.drift_alert(conn, config, repo, event, record.id, summary)
    record_check(conn, repo.name, _also(f"drift {verb}: {objects} object(s), {len(corrected)} corrected"
                                        + (f": {cut(why, 200)}" if why else ""), also),
                 last_check_sync_id=record.id)
    return {**result, "id": record.id}


def correct(kube, found: drift.ScanResult, record: DriftRecord, default_namespace: str,
            concurrency: int, lock: RepoLock) -> set[str]:
    """Re-apply only the drifted objects (their declared bodies, ignored fields removed), under ``lock``."""
    manifests = stripped_manifests([t.manifest for t in found.drifted])
    applier = Applier(kube, concurrency=concurrency, default_namespace=default_namespace, lock=lock)
    result = applier.run(manifests)
    record.add(result.changes)
    return {c.ref for c in result.changes if c.action in ("created", "configured")}
