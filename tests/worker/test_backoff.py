"""The configured backoff reaches RQ whole seconds rounded up, never down to no backoff.

RQ's retry intervals are whole seconds, and an interval of 0 re-queues the
failed job at once; the config takes any positive number of seconds.
Checked on the job ``request_sync`` really enqueues, and with RQ's own
retry of it, against the real Redis.
"""

from __future__ import annotations

import pytest
from rq import Queue
from rq.job import Job, JobStatus

from pullbridge import keys
from pullbridge.config import parse_config
from pullbridge.queueing import request_sync, retry_intervals

pytestmark = pytest.mark.stack


def _config(jobs: dict, **repo_settings):
    return parse_config({"jobs": jobs, "repos": [{
        "name": "bo", "url": "file:///nowhere.git", "provider": "github", "repository": "o/bo",
        "secret_env": "PB_SECRET", **repo_settings}]})


@pytest.mark.parametrize("jobs, repo_settings, intervals", [
    ({"retries": 4, "backoff": [0.4, 1.5, 2.5, "2m"]}, {}, [1, 2, 3, 120]),
    ({"retries": 2, "backoff": [5, 30]}, {"backoff": [0.2, 1]}, [1, 1]),  # the repo's own
    ({"retries": 3}, {}, [5, 30, 120]),  # the default
])
def test_the_enqueued_sync_retries_after_the_backoff_rounded_up(redis_conn, jobs, repo_settings, intervals):
    config = _config(jobs, **repo_settings)
    queued = request_sync(redis_conn, config, config.repo("bo"), "a" * 40, reason="push")
    job = Job.fetch(queued.job_id, connection=redis_conn)
    assert job.retry_intervals == intervals and job.retries_left == jobs["retries"]


def test_a_sub_second_backoff_still_waits_before_the_retry(redis_conn):
    config = _config({"retries": 1, "backoff": [0.4]})
    queued = request_sync(redis_conn, config, config.repo("bo"), "a" * 40, reason="push")
    queue = Queue(keys.SYNC_QUEUE, connection=redis_conn)
    job, _ = Queue.dequeue_any([queue], None, connection=redis_conn)
    with redis_conn.pipeline() as pipe:  # what the worker does when the job fails with retries left
        job.retry(queue, pipe)
        pipe.execute()
    assert job.get_status() == JobStatus.SCHEDULED, "re-queued at once: no backoff"
    assert queued.job_id in queue.scheduled_job_registry.get_job_ids()
    assert queued.job_id not in queue.get_job_ids()


def test_retry_intervals_round_up():
    assert retry_intervals([0.001, 0.4, 1.0, 1.5, 2.5, 120.0]) == [1, 1, 1, 2, 3, 120]
    assert retry_intervals([0, 0.4]) == [0, 1]  # statuses' and alerts' documented "0: at once"


def test_status_and_alert_jobs_round_their_backoff_up_too(redis_conn, monkeypatch):
    from worker.alerts import drift_alert
    from worker.status import enqueue_status

    monkeypatch.setenv("PB_TOKEN", "t")
    monkeypatch.setenv("PB_ALERT_URL", "http://127.0.0.1:9/hook")
    config = parse_config({
        "alerts": [{"kind": "webhook", "url_env": "PB_ALERT_URL", "retries": 2, "backoff": [0.4, 2.5]}],
        "repos": [{"name": "bo", "url": "https://git.example/o/bo.git", "provider": "github",
                   "repository": "o/bo", "secret_env": "PB_SECRET",
                   "status": {"token_env": "PB_TOKEN", "retries": 2, "backoff": [0.3, 1.5]}}]})
    status_job = enqueue_status(redis_conn, config, config.repo("bo"), "a" * 40, "pending", "queued")
    [alert_job] = drift_alert(redis_conn, config, config.repo("bo"), "drift_found", "sync-1", "drift")
    assert Job.fetch(status_job, connection=redis_conn).retry_intervals == [1, 2]
    assert Job.fetch(alert_job, connection=redis_conn).retry_intervals == [1, 3]
