"""`pullbridge queue`: depths, failed jobs with their error, retry and purge on the real Redis and RQ."""

from __future__ import annotations

import json

import pytest
from rq import Queue

from pullbridge import keys
from pullbridge.queueing import request_sync
from tests.worker.sync_manifests import app_files, configmap

pytestmark = pytest.mark.stack


def _failing_sync(ops, git_repo) -> str:
    repo = git_repo("queue")
    ops.configure(repo)
    files = app_files("1.0")
    files["deploy/bad.yaml"] = configmap("Not_A_Valid_Name", "x")
    repo.commit_and_push("invalid", files)
    job_id = request_sync(ops.conn, ops.config, ops.repo, None, reason="push").job_id
    ops.work()
    return job_id


def test_queue_shows_depths_and_failed_jobs_and_retry_requeues(ops, git_repo):
    sync_queue = Queue(keys.SYNC_QUEUE, connection=ops.conn)
    code, out, _ = ops.run("queue")
    assert code == 0
    assert out.splitlines()[0].split() == ["QUEUE", "QUEUED", "SCHEDULED", "STARTED", "FAILED", "DEFERRED"]
    assert out.splitlines()[1].split() == [keys.SYNC_QUEUE, "0", "0", "0", "0", "0"]

    job_id = _failing_sync(ops, git_repo)
    assert job_id in sync_queue.failed_job_registry
    code, out, _ = ops.run("queue")
    assert code == 0
    assert out.splitlines()[1].split() == [keys.SYNC_QUEUE, "0", "0", "0", "1", "0"]
    assert f"  {job_id}  " in out and "sync app (push)" in out
    assert "PermanentError: validation failed, nothing applied" in out
    code, out, _ = ops.run("queue", "--json")
    data = json.loads(out)
    assert data[keys.SYNC_QUEUE]["depths"]["failed"] == 1
    [failed] = data[keys.SYNC_QUEUE]["failed_jobs"]
    assert failed["id"] == job_id and failed["repo"] == "app" and len(failed["error"]) <= 100

    code, out, _ = ops.run("queue", "retry", job_id)
    assert code == 0 and f"re-enqueued {job_id} on {keys.SYNC_QUEUE}" in out
    assert sync_queue.job_ids == [job_id] and sync_queue.failed_job_registry.count == 0
    code, _, err = ops.run("queue", "retry", job_id)
    assert code == 2 and f"no failed job '{job_id}'" in err
    ops.work()  # still broken: fails again
    assert job_id in sync_queue.failed_job_registry

    code, out, _ = ops.run("queue", "retry", "--all-failed", "--queue", "sync")
    assert code == 0 and sync_queue.job_ids == [job_id]
    ops.work()
    code, _, err = ops.run("queue", "retry")
    assert code == 2 and "usage:" in err

    code, out, err = ops.run("queue", "purge", "--failed")  # stdin is not a terminal: needs --yes
    assert code == 2 and "--yes" in err and sync_queue.failed_job_registry.count == 1
    code, out, _ = ops.run("queue", "purge", "--failed", "--yes")
    assert code == 0 and f"purged 1 failed job (1 on {keys.SYNC_QUEUE})" in out
    assert sync_queue.failed_job_registry.count == 0
    code, out, _ = ops.run("queue", "retry", "--all-failed")
    assert code == 1 and "no failed jobs to retry" in out


def test_purge_forgets_queued_syncs_so_the_next_request_queues_afresh(ops, git_repo):
    repo = git_repo("purge")
    ops.configure(repo)
    sha = repo.commit_and_push("v1", app_files("1.0"))
    first = request_sync(ops.conn, ops.config, ops.repo, sha, reason="push")
    sync_queue = Queue(keys.SYNC_QUEUE, connection=ops.conn)
    assert sync_queue.job_ids == [first.job_id]
    code, out, _ = ops.run("queue", "purge", "--yes")
    assert code == 0 and f"purged 1 queued job (1 on {keys.SYNC_QUEUE})" in out
    assert sync_queue.count == 0 and ops.conn.get(keys.queued("app")) is None
    assert ops.conn.zscore(keys.wanted("app"), sha) is not None  # the wanted commit is not lost
    again = request_sync(ops.conn, ops.config, ops.repo, None, reason="cli")
    assert again.new_job and sync_queue.job_ids == [again.job_id]
    ops.work()
    code, out, _ = ops.run("history", "app")
    assert sha[:12] in out and "success" in out
    code, out, _ = ops.run("queue", "purge")
    assert code == 0 and "no queued jobs to purge" in out


def test_a_sync_waiting_for_its_retry_counts_as_scheduled(ops, git_repo):
    repo = git_repo("retrying")
    ops.configure(repo, url="http://127.0.0.1:9/unreachable.git", retries=2, backoff=["1h"])
    job_id = request_sync(ops.conn, ops.config, ops.repo, None, reason="push").job_id
    ops.work()  # git host unreachable: a temporary error, retried in an hour
    code, out, _ = ops.run("queue", "--json")
    assert code == 0
    depths = json.loads(out)[keys.SYNC_QUEUE]["depths"]
    assert depths == {"queued": 0, "scheduled": 1, "started": 0, "failed": 0, "deferred": 0}
    code, out, _ = ops.run("history", "app")
    assert "retrying" in out and "git host unreachable" in out
    assert job_id in Queue(keys.SYNC_QUEUE, connection=ops.conn).scheduled_job_registry


def test_the_images_queue_is_listed_retried_and_purged_on_the_cli_the_page_and_the_metrics(ops, git_repo):
    """A failed image scan (kept 7 days) must be as visible and retryable as a failed sync."""
    from rq import SimpleWorker

    from webhook.pages import queues as page
    from worker.metrics import exposition

    ops.configure(git_repo("images"))
    images = Queue(keys.IMAGES_QUEUE, connection=ops.conn)
    job_id = "imagescan-nosuchrepo-1"
    images.enqueue_call(keys.IMAGE_SCAN_JOB, args=("nosuchrepo",), kwargs={"reason": "cli"}, job_id=job_id,
                        description="image scan nosuchrepo (cli)", meta={"repo": "nosuchrepo"})
    SimpleWorker([images], connection=ops.conn).work(burst=True)  # no such repo: fails for good
    assert job_id in images.failed_job_registry

    code, out, _ = ops.run("queue")
    assert code == 0
    assert [keys.IMAGES_QUEUE, "0", "0", "0", "1", "0"] in [line.split() for line in out.splitlines()]
    assert f"  {job_id}  " in out and "no repository named 'nosuchrepo'" in out
    assert [d.failed for d in page.depths(ops.conn) if d.queue == keys.IMAGES_QUEUE] == [1]
    assert [row.id for row in page.failed(ops.conn)] == [job_id]
    metrics = exposition(ops.conn, ops.config)[0].decode()
    assert f'pullbridge_queue_jobs{{queue="{keys.IMAGES_QUEUE}",state="failed"}} 1.0' in metrics

    code, out, _ = ops.run("queue", "retry", job_id)
    assert code == 0 and f"re-enqueued {job_id} on {keys.IMAGES_QUEUE}" in out
    assert images.job_ids == [job_id]
    code, out, _ = ops.run("queue", "purge", "--yes", "--queue", "images")
    assert code == 0 and f"purged 1 queued job (1 on {keys.IMAGES_QUEUE})" in out
    assert images.count == 0


def test_a_redis_url_given_before_the_verb_is_the_redis_the_verb_acts_on(ops, git_repo, monkeypatch):
    """`queue --redis-url URL purge` (as `pullbridge queue --help` lays it out) must purge at URL,
    never fall back to $REDIS_URL: that would delete another Redis's jobs."""
    job_id = _failing_sync(ops, git_repo)
    sync_queue = Queue(keys.SYNC_QUEUE, connection=ops.conn)
    unreachable = "redis://127.0.0.1:1/0"

    code, out, err = ops.run("queue", "--redis-url", unreachable, "purge", "--failed", "--yes")
    assert (code, out) == (2, "") and f"cannot reach Redis at {unreachable}" in err
    code, out, err = ops.run("queue", "--redis-url", unreachable, "retry", "--all-failed")
    assert (code, out) == (2, "") and f"cannot reach Redis at {unreachable}" in err
    assert job_id in sync_queue.failed_job_registry

    monkeypatch.setenv("REDIS_URL", unreachable)  # the option, not the environment, names the Redis
    code, out, _ = ops.run("queue", "--redis-url", ops.stack.redis_test_url, "retry", "--all-failed")
    assert code == 0 and f"re-enqueued {job_id}" in out
    code, out, _ = ops.run("queue", "retry", "--redis-url", ops.stack.redis_test_url, "--all-failed")
    assert code == 1 and out == "no failed jobs to retry\n"  # after the verb works as before
    assert sync_queue.job_ids == [job_id]
