"""Real ``python -m worker`` processes: two workers on one repo never apply at the same time."""

from __future__ import annotations

import os
import time

import pytest
from rq import Queue
from rq.job import Job

from pullbridge import keys

from tests.worker.sync_manifests import app_files, app_version, configmap

pytestmark = pytest.mark.stack
SAFETY_TIMEOUT = 300  # only so a broken worker cannot hang the suite; not a performance limit


def wait_started(conn, job_ids: list[str]) -> None:
    deadline = time.monotonic() + SAFETY_TIMEOUT
    while time.monotonic() < deadline:
        if any(Job.fetch(j, connection=conn).get_status() != "queued" for j in job_ids):
            return
        time.sleep(0.05)


def wait_all_done(conn, job_ids: list[str]) -> None:
    deadline = time.monotonic() + SAFETY_TIMEOUT
    while time.monotonic() < deadline:
        statuses = [Job.fetch(j, connection=conn).get_status() for j in job_ids]
        queue_empty = Queue(keys.SYNC_QUEUE, connection=conn).count == 0
        if queue_empty and all(s in ("finished", "failed") for s in statuses) and not conn.get(keys.lock("app")):
            return
        time.sleep(0.2)
    pytest.fail(f"jobs did not finish: {statuses}")


def test_two_workers_on_one_repo_never_apply_concurrently(harness, git_repo, kube, namespace, tmp_path, processes):
    repo = git_repo("two")
    harness.configure(repo)
    for i in (1, 2):
        processes(f"worker-{i}", "worker", "--name", f"test-worker-{i}-{os.getpid()}",
                  env={"PULLBRIDGE_CACHE_DIR": str(tmp_path / f"mirrors-{i}")})
    queue = Queue(keys.SYNC_QUEUE, connection=harness.conn)
    job_ids = []
    for i in range(1, 7):
        files = app_files(f"{i}.0")
        for n in range(30):  # enough objects that an unlocked sync would overlap the other's
            files[f"deploy/bulk/cm-{n}.yaml"] = configmap(f"bulk-{n}", f"{i}-{n}")
        sha = repo.commit_and_push(f"v{i}", files)
        harness.conn.zadd(keys.wanted("app"), {sha: int(time.time() * 1000)})
        # Bypass coalescing on purpose: two jobs for the same repo at once.
        pair = [queue.enqueue_call(keys.SYNC_JOB, args=("app",), kwargs={"reason": "test"}, timeout=300).id
                for _ in range(2)]
        job_ids += pair
        wait_started(harness.conn, pair)
    wait_all_done(harness.conn, job_ids)
    runs = sorted(harness.history(), key=lambda r: r["started_at"])
    assert len(runs) >= 2
    for earlier, later in zip(runs, runs[1:]):
        assert earlier["finished_at"] <= later["started_at"], (earlier, later)
    assert all(r["result"] in ("success", "skipped") for r in runs), runs
    assert len({r["sha"] for r in runs if r["sha"]}) >= 2, "syncs should have seen several commits"
    assert app_version(kube, namespace) == "6.0"
    assert harness.state()["applied_sha"] == sha
    workers_used = {Job.fetch(j, connection=harness.conn).worker_name for j in job_ids}
    assert len(workers_used) == 2, "both workers should have taken jobs"
