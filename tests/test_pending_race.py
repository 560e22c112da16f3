"""A late "pending" from the receiver never becomes a commit's last status.

The receiver queues the sync, then (outside the repo lock) the pending
status.  If its thread stalls in between while a worker runs the whole sync,
the pending is enqueued after the sync's "running" and "success".  Here the
stall is made deterministic: the receiver's pending step is held back until
a real RQ worker has run the real sync (stack git host and API server),
then the status worker posts everything to a GitHub-like host on a socket.
"""

from __future__ import annotations


import pytest
from rq import Queue, SimpleWorker, get_current_job
from rq.job import Job, JobStatus

from pullbridge import keys
from tests.notify_support import (fake_hosts, github_status_site,  # noqa: F401
                                  run_status_worker, signed_push)
from tests.rq_support import enqueue_when_due
from tests.worker.sync_manifests import app_files
from webhook.intake import Intake
from worker import jobs
from worker.lock import RepoLock
from worker.status import TAKING_COMMITS, enqueue_status, sync_waiting

pytestmark = pytest.mark.stack

CONTEXT = "pullbridge/app"


@pytest.fixture
def site(fake_hosts, redis_conn, namespace, git_repo, tmp_path, monkeypatch):  # noqa: F811
    yield from github_status_site(fake_hosts, redis_conn, namespace, git_repo("race"), tmp_path, monkeypatch)


def run_sync_worker(conn) -> None:
    SimpleWorker([Queue(keys.SYNC_QUEUE, connection=conn)], connection=conn).work(burst=True)


def test_a_pending_enqueued_after_the_sync_finished_is_not_posted_last(site, fake_hosts, redis_conn,  # noqa: F811
                                                                        monkeypatch):
    git, config, client = site
    held = []
    original = Intake._pending_status
    monkeypatch.setattr(Intake, "_pending_status", lambda self, *args: held.append((self, args)) or "held")
    sha = git.commit_and_push("v1", app_files("1.0"))
    signed_push(client, sha)
    run_sync_worker(redis_conn)  # the worker runs the whole sync while the web thread stalls
    [(intake, args)] = held
    assert original(intake, *args) == "pending queued"  # the stalled thread goes on: pending comes last
    run_status_worker(redis_conn)

    posted = descriptions(fake_hosts)
    assert posted[0] == "sync running" and posted[-1].startswith("applied: ")
    assert "sync queued" not in posted
    assert fake_hosts.final[("github", "acme/deploy", sha, CONTEXT)] == "success"


def test_a_pending_is_posted_while_its_sync_waits_even_after_a_requeue(site, fake_hosts, redis_conn):  # noqa: F811
    git, config, client = site
    repo = config.repo("app")
    sha = git.commit_and_push("v1", app_files("1.0"))
    job_id = signed_push(client, sha)
    assert sync_waiting(redis_conn, job_id)
    run_status_worker(redis_conn)
    assert descriptions(fake_hosts) == ["sync queued"]

    # a job that found the repo locked hands over to another job: still waiting
    from worker.lock import RepoLock

    other = RepoLock(redis_conn, "app", owner="another-worker")
    assert other.acquire(1)
    SimpleWorker([Queue(keys.SYNC_QUEUE, connection=redis_conn)], connection=redis_conn).work(burst=True, max_jobs=1)
    assert sync_waiting(redis_conn, job_id)
    enqueue_status(redis_conn, config, repo, sha, "pending", "sync queued again", sync_id=job_id, sync_job=job_id)
    run_status_worker(redis_conn)
    assert fake_hosts.answered("github")[-1]["payload"]["description"] == "sync queued again"
    other.release()
    run_sync_worker(redis_conn)
    assert not sync_waiting(redis_conn, job_id)
    assert not sync_waiting(redis_conn, "sync-app-000000000000")  # unknown (or expired): not waiting


def descriptions(fake_hosts) -> list[str]:
    return [r["payload"]["description"] for r in fake_hosts.answered("github")]


def test_a_pending_is_posted_while_its_started_sync_only_waits_for_the_repo_lock(site, fake_hosts,  # noqa: F811
                                                                                  redis_conn, monkeypatch):
    """A worker took the sync job (RQ: started), but another sync holds the repo: the
    job has taken nothing and hands over, so its commit is still pending."""
    git, config, client = site
    other = RepoLock(redis_conn, "app", owner="another-worker")
    assert other.acquire(1)
    seen = {}
    acquire, request_sync = RepoLock.acquire, jobs.request_sync

    def acquire_while_a_status_worker_runs(lock, wait, poll=0.2):
        job = get_current_job()
        if job is not None and job.id == job_id and "waiting" not in seen:
            seen["waiting"] = job.get_status(refresh=True)
            run_status_worker(redis_conn)  # another worker posts the receiver's pending meanwhile
        return acquire(lock, wait, poll)

    def handing_over(*args, **kwargs):  # the job forgot its queued marker and queues its successor
        answer = request_sync(*args, **kwargs)
        seen["handing over"] = (Job.fetch(job_id, connection=redis_conn).get_status(), sync_waiting(redis_conn, job_id))
        return answer

    monkeypatch.setattr(RepoLock, "acquire", acquire_while_a_status_worker_runs)
    monkeypatch.setattr(jobs, "request_sync", handing_over)
    sha = git.commit_and_push("v1", app_files("1.0"))
    job_id = signed_push(client, sha)
    SimpleWorker([Queue(keys.SYNC_QUEUE, connection=redis_conn)], connection=redis_conn).work(burst=True, max_jobs=1)

    assert seen["waiting"] == JobStatus.STARTED
    assert descriptions(fake_hosts) == ["sync queued"]
    assert seen["handing over"] == (JobStatus.STARTED, True)
    assert Job.fetch(job_id, connection=redis_conn).return_value()["result"] == "requeued"
    assert sync_waiting(redis_conn, job_id)  # its successor waits in the queue
    other.release()
    run_sync_worker(redis_conn)
    run_status_worker(redis_conn)
    posted = descriptions(fake_hosts)
    assert posted[:2] == ["sync queued", "sync running"] and posted[-1].startswith("applied: ") and len(posted) == 3
    assert fake_hosts.final[("github", "acme/deploy", sha, CONTEXT)] == "success"


def test_a_pending_is_dropped_once_its_started_sync_took_the_commits(site, fake_hosts, redis_conn,  # noqa: F811
                                                                     monkeypatch):
    git, config, client = site
    repo = config.repo("app")
    seen = {}
    take_wanted = jobs.take_wanted

    def take_then_post_statuses(conn, repo_name, job_id):
        taken = take_wanted(conn, repo_name, job_id)
        seen["status"], seen["waiting"] = Job.fetch(job_id, connection=conn).get_status(), sync_waiting(conn, job_id)
        run_status_worker(redis_conn)  # the receiver's pending, only now posted by a slow status worker
        seen["late"] = enqueue_status(redis_conn, config, repo, sha, "pending", "sync queued late",
                                      sync_id=job_id, sync_job=job_id)
        run_status_worker(redis_conn)
        return taken

    monkeypatch.setattr(jobs, "take_wanted", take_then_post_statuses)
    sha = git.commit_and_push("v1", app_files("1.0"))
    job_id = signed_push(client, sha)
    run_sync_worker(redis_conn)
    run_status_worker(redis_conn)

    assert (seen["status"], seen["waiting"]) == (JobStatus.STARTED, False)
    assert Job.fetch(seen["late"], connection=redis_conn).return_value() == "stale"
    posted = descriptions(fake_hosts)
    assert posted[0] == "sync running" and posted[-1].startswith("applied: ") and len(posted) == 2
    assert not sync_waiting(redis_conn, job_id)


def test_a_retry_waits_again_until_it_took_the_commits(site, fake_hosts, redis_conn, monkeypatch):  # noqa: F811
    """The first attempt took the commits and failed before posting anything; the retry,
    started but blocked on the repo lock, is waiting again (the mark is per attempt)."""
    from worker.errors import TemporaryError

    git, config, client = site
    repo = config.repo("app")
    fetch = jobs.Mirror.fetch

    def git_host_down(mirror):
        raise TemporaryError("git host down")

    monkeypatch.setattr(jobs.Mirror, "fetch", git_host_down)
    sha = git.commit_and_push("v1", app_files("1.0"))
    job_id = signed_push(client, sha)
    run_sync_worker(redis_conn)
    job = Job.fetch(job_id, connection=redis_conn)
    assert job.get_status() == JobStatus.SCHEDULED and job.meta[TAKING_COMMITS]  # its retry, after 5 s
    assert sync_waiting(redis_conn, job_id)
    monkeypatch.setattr(jobs.Mirror, "fetch", fetch)

    other = RepoLock(redis_conn, "app", owner="another-worker")
    assert other.acquire(1)
    seen = {}
    acquire = RepoLock.acquire

    def acquire_while_a_status_worker_runs(lock, wait, poll=0.2):
        seen["status"], seen["waiting"] = get_current_job().get_status(refresh=True), sync_waiting(redis_conn, job_id)
        seen["late"] = enqueue_status(redis_conn, config, repo, sha, "pending", "sync queued again",
                                      sync_id=job_id, sync_job=job_id)
        run_status_worker(redis_conn)
        return acquire(lock, wait, poll)

    monkeypatch.setattr(RepoLock, "acquire", acquire_while_a_status_worker_runs)
    enqueue_when_due(redis_conn, keys.SYNC_QUEUE, job_id)
    SimpleWorker([Queue(keys.SYNC_QUEUE, connection=redis_conn)], connection=redis_conn).work(burst=True, max_jobs=1)
    assert (seen["status"], seen["waiting"]) == (JobStatus.STARTED, True)
    assert Job.fetch(seen["late"], connection=redis_conn).return_value() == "posted"
    assert descriptions(fake_hosts)[-1] == "sync queued again"
    other.release()


def test_a_push_to_a_suspended_repo_says_so_on_its_commit_once_until_resumed(site, fake_hosts,  # noqa: F811
                                                                             redis_conn):
    """Not a "sync queued" that stands until resume: the skipped sync says why the commit
    waits, once per commit however many pushes follow, and the resumed sync applies it."""
    from pullbridge import repostate
    from pullbridge.queueing import request_sync

    git, config, client = site
    repostate.suspend(redis_conn, "app", by="test")
    first = git.commit_and_push("v1", app_files("1.0"))
    signed_push(client, first)
    run_sync_worker(redis_conn)
    second = git.commit_and_push("v2", app_files("2.0"))
    signed_push(client, second)
    run_sync_worker(redis_conn)
    run_status_worker(redis_conn)
    told = "suspended: not applied until `pullbridge resume app`"
    posted = [(r["path"].rsplit("/", 1)[-1], r["payload"]["description"]) for r in fake_hosts.answered("github")]
    assert sorted(sha for sha, text in posted if text == told) == sorted([first, second])
    assert [text for sha, text in posted if text != told] == []  # no stale "sync queued" after them
    assert fake_hosts.final[("github", "acme/deploy", second, CONTEXT)] == "pending"

    repostate.resume(redis_conn, "app")
    request_sync(redis_conn, config, config.repo("app"), None, reason="resume")
    run_sync_worker(redis_conn)
    run_status_worker(redis_conn)
    assert fake_hosts.final[("github", "acme/deploy", second, CONTEXT)] == "success"
    assert fake_hosts.final[("github", "acme/deploy", first, CONTEXT)] == "success"
