"""The receiver's "pending" commit status links to a page that exists, before and after the sync.

The link is ``/syncs/<sync job id>``: when the receiver posts it, no sync
record exists yet.  A signed push goes through the real receiver, the link
is read from the queued status job, and the page is opened while the job
waits, after a real RQ worker ran it against the stack (git host, API
server), when the job found the repository locked and ran again as
another job, and after RQ dropped the jobs and newer syncs filled the history.
"""

from __future__ import annotations


import pytest
from rq import Queue, SimpleWorker

from pullbridge import keys
from tests.notify_support import receiver_with_statuses, signed_push
from tests.worker.sync_manifests import app_files
from worker.lock import RepoLock
from worker.status import target_url

pytestmark = pytest.mark.stack

PUBLIC = "https://pb.example"


@pytest.fixture
def site(redis_conn, namespace, git_repo, tmp_path, monkeypatch):
    """A GitHub-provider repo on the stack's git host, statuses on, and the receiver's app."""
    git = git_repo("pending")
    for config, client in receiver_with_statuses(monkeypatch, tmp_path, redis_conn, namespace, git,
                                                 api_url="https://github.example/api/v3", token="ghp_unused"):
        yield git, config, client


def status_links(conn, config, state: str) -> list[str]:
    jobs = Queue(keys.STATUS_QUEUE, connection=conn).jobs
    return [target_url(config, job.args[4]) for job in jobs if job.args[2] == state]


def run_one_sync(conn) -> None:
    SimpleWorker([Queue(keys.SYNC_QUEUE, connection=conn)], connection=conn).work(burst=True, max_jobs=1)


def test_the_pending_link_shows_the_queued_sync_then_the_sync_it_became(site, redis_conn):
    git, config, client = site
    sha = git.commit_and_push("v1", app_files("1.0"))
    job_id = signed_push(client, sha)
    [link] = status_links(redis_conn, config, "pending")
    assert link == f"{PUBLIC}/syncs/{job_id}"
    path = link.removeprefix(PUBLIC)

    waiting = client.get(path)
    assert waiting.status_code == 200
    page = waiting.data.decode()
    assert "Queued, not started" in page and job_id in page and 'href="/repos/app"' in page

    run_one_sync(redis_conn)
    [success_link] = status_links(redis_conn, config, "success")
    ran = client.get(path)
    assert ran.status_code == 302
    assert PUBLIC + ran.headers["Location"] == success_link  # the same sync the final status links to
    record = client.get(ran.headers["Location"])
    assert record.status_code == 200 and f"Applied {sha[:12]}" in record.data.decode()


def pushed_while_locked(site, redis_conn):
    """A push whose sync found the repo locked by another worker and was requeued as a fresh job:
    (commit, first job id, its pending link's path, the other worker's lock)."""
    git, config, client = site
    sha = git.commit_and_push("v1", app_files("1.0"))
    job_id = signed_push(client, sha)
    path = status_links(redis_conn, config, "pending")[0].removeprefix(PUBLIC)
    other = RepoLock(redis_conn, "app", owner="another-worker")
    assert other.acquire(0)
    run_one_sync(redis_conn)  # requeued as a fresh job: the lock is held
    return sha, job_id, path, other


def test_a_job_that_found_the_repo_locked_links_on_to_the_job_that_ran(site, redis_conn):
    _, _, client = site
    sha, job_id, path, other = pushed_while_locked(site, redis_conn)
    moved = client.get(path)
    assert moved.status_code == 302 and moved.headers["Location"].startswith("/syncs/sync-app-")
    assert moved.headers["Location"] != path
    assert "Queued, not started" in client.get(moved.headers["Location"]).data.decode()

    other.release()
    run_one_sync(redis_conn)
    hop = client.get(path, follow_redirects=True)
    assert hop.status_code == 200 and f"Applied {sha[:12]}" in hop.data.decode()
    assert len(hop.history) == 2 and job_id not in hop.request.path


def expire(conn, config, job_id: str) -> None:
    """What a week of a busy repository does to a job id's trail: RQ dropped the job with its result
    (kept a day) and a full history of newer syncs pushed its record out of the repository's list.
    The record itself is kept (seven days)."""
    from rq.job import Job

    from worker import history

    Job.fetch(job_id, connection=conn).delete()
    for _ in range(config.worker.history_limit):
        history.save(conn, history.SyncRecord("app", "push", result="skipped"), limit=config.worker.history_limit)


def test_the_pending_link_leads_to_its_sync_after_the_job_expired(site, redis_conn):
    git, config, client = site
    sha = git.commit_and_push("v1", app_files("1.0"))
    job_id = signed_push(client, sha)
    path = status_links(redis_conn, config, "pending")[0].removeprefix(PUBLIC)
    run_one_sync(redis_conn)
    [success_link] = status_links(redis_conn, config, "success")
    expire(redis_conn, config, job_id)
    ran = client.get(path)
    assert ran.status_code == 302 and PUBLIC + ran.headers["Location"] == success_link


def test_a_handed_over_pending_link_leads_on_after_both_jobs_expired(site, redis_conn):
    _, config, client = site
    sha, job_id, path, other = pushed_while_locked(site, redis_conn)
    next_job = client.get(path).headers["Location"].removeprefix("/syncs/")
    other.release()
    run_one_sync(redis_conn)
    expire(redis_conn, config, job_id)
    expire(redis_conn, config, next_job)
    hop = client.get(path, follow_redirects=True)
    assert hop.status_code == 200 and f"Applied {sha[:12]}" in hop.data.decode()


def test_an_unknown_job_id_is_still_a_404(site):
    _, _, client = site
    for path in ("/syncs/sync-app-0123456789ab", "/syncs/sync-nope-0123456789ab"):
        answer = client.get(path)
        assert answer.status_code == 404 and "No sync with id" in answer.data.decode()
