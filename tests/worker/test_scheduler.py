"""The scheduler follows the config file: one RQ CronJob per repo, reloaded when the file changes; repos with
the same interval are checked at moments of their own, once per interval."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

from pullbridge import keys
from worker.scheduler import JOB_FUNC, ReconcileScheduler, job_name


def write(path, repos, mtime):
    entries = [{"name": n, "url": "https://git.example/x.git", "provider": "generic",
                "secret_env": "PB_TEST_SECRET", "interval": i} for n, i in repos]
    path.write_text(json.dumps({"repos": entries}))
    os.utime(path, (mtime, mtime))


class Clock:
    """The clock RQ's CronScheduler and the scheduler's jobs read, moved by the test."""

    def __init__(self, monkeypatch):
        self.time = datetime(2026, 1, 1, tzinfo=timezone.utc)
        monkeypatch.setattr("rq.cron.now", self)
        monkeypatch.setattr("worker.scheduler.now", self, raising=False)

    def __call__(self) -> datetime:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += timedelta(seconds=seconds)


def test_jobs_follow_the_config_file(redis_conn, tmp_path, monkeypatch):
    clock = Clock(monkeypatch)
    cfg = tmp_path / "pullbridge.yaml"
    write(cfg, [("a", "10s"), ("b", "5m")], 1000)
    scheduler = ReconcileScheduler(redis_conn, str(cfg))
    jobs = {j.name: j for j in scheduler.get_jobs()}
    assert {n: (j.interval, j.func_name, j.args, j.queue_name) for n, j in jobs.items()} == {
        job_name("a"): (10, JOB_FUNC, ("a",), keys.SYNC_QUEUE),
        job_name("b"): (300, JOB_FUNC, ("b",), keys.SYNC_QUEUE)}
    assert scheduler.enqueue_jobs() == []  # not at once on start: each at its own moment
    clock.advance(300)
    enqueued = scheduler.enqueue_jobs()  # the moments missed meanwhile are not caught up
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


def test_repos_with_the_same_interval_are_checked_at_moments_of_their_own_once_per_interval(
        redis_conn, tmp_path, monkeypatch):
    """The moments come from the repo's name: a second scheduler (or this one restarted) started
    later queues each repo at the same moments."""
    clock = Clock(monkeypatch)
    cfg = tmp_path / "pullbridge.yaml"
    write(cfg, [("alpha", "10s"), ("beta", "10s")], 1000)
    start, step = clock.time, 0.1
    schedulers = {"first": ReconcileScheduler(redis_conn, str(cfg))}
    checked = {(s, job_name(r)): [] for s in ("first", "second") for r in ("alpha", "beta")}
    for tick in range(400):  # 40 s, that is four intervals
        if tick == 37:
            schedulers["second"] = ReconcileScheduler(redis_conn, str(cfg))
        for which, scheduler in schedulers.items():
            for job in scheduler.enqueue_jobs():
                checked[which, job.name].append((clock.time - start).total_seconds())
        clock.advance(step)
    alpha, beta = checked["first", job_name("alpha")], checked["first", job_name("beta")]
    for times in (alpha, beta):
        assert len(times) == 4, checked  # once per interval
        assert all(abs(later - earlier - 10) < step / 2 for earlier, later in zip(times, times[1:])), checked
    assert abs(alpha[0] - beta[0]) > 1, checked  # not at the same moment
    for repo in ("alpha", "beta"):
        first = checked["first", job_name(repo)]
        assert checked["second", job_name(repo)] == [t for t in first if t > 3.7], checked
