"""The scheduler follows the config file: one RQ CronJob per repo, reloaded when the file changes."""

from __future__ import annotations

import json
import os

from pullbridge import keys
from worker.scheduler import JOB_FUNC, ReconcileScheduler, job_name


def write(path, repos, mtime):
    entries = [{"name": n, "url": "https://git.example/x.git", "provider": "generic",
                "secret_env": "PB_TEST_SECRET", "interval": i} for n, i in repos]
    path.write_text(json.dumps({"repos": entries}))
    os.utime(path, (mtime, mtime))


def test_jobs_follow_the_config_file(redis_conn, tmp_path):
    cfg = tmp_path / "pullbridge.yaml"
    write(cfg, [("a", "10s"), ("b", "5m")], 1000)
    scheduler = ReconcileScheduler(redis_conn, str(cfg))
    jobs = {j.name: j for j in scheduler.get_jobs()}
    assert {n: (j.interval, j.func_name, j.args, j.queue_name) for n, j in jobs.items()} == {
        job_name("a"): (10, JOB_FUNC, ("a",), keys.SYNC_QUEUE),
        job_name("b"): (300, JOB_FUNC, ("b",), keys.SYNC_QUEUE)}
    enqueued = scheduler.enqueue_jobs()  # interval jobs run at once on start
    assert len(enqueued) == 2 and redis_conn.llen(f"rq:queue:{keys.SYNC_QUEUE}") == 2
    timing = jobs[job_name("b")].next_enqueue_time

    assert scheduler.reload() is False  # file unchanged
    write(cfg, [("b", "5m"), ("c", "20s")], 2000)
    assert scheduler.reload() is True
    jobs = {j.name: j for j in scheduler.get_jobs()}
    assert set(jobs) == {job_name("b"), job_name("c")}
    assert jobs[job_name("b")].next_enqueue_time == timing  # unchanged repo keeps its timing

    cfg.write_text("repos: [")  # broken: the previous schedule stays
    os.utime(cfg, (3000, 3000))
    assert scheduler.reload() is False and len(scheduler.get_jobs()) == 2


def test_a_reload_to_an_unusable_interval_keeps_the_schedule(redis_conn, tmp_path, caplog):
    """YAML's .nan and .inf, and 1e300, used to load and then kill the scheduler loop."""
    cfg = tmp_path / "pullbridge.yaml"
    write(cfg, [("a", "10s")], 1000)
    scheduler = ReconcileScheduler(redis_conn, str(cfg))
    for mtime, bad in enumerate([float("nan"), float("inf"), 1e300, "9000h"], start=2000):
        write(cfg, [("a", bad)], mtime)
        assert scheduler.reload() is False
        assert [(j.name, j.interval) for j in scheduler.get_jobs()] == [(job_name("a"), 10)]
        assert "repos[0].interval: " in caplog.text and "keeping the previous schedule" in caplog.text
        assert len(scheduler.enqueue_jobs()) <= 1  # the loop goes on
        caplog.clear()
