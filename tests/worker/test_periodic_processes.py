"""The Procfile's real processes: two ``python -m worker.scheduler`` and a ``python -m worker``.

A push whose webhook never arrives is applied within an interval, a hand
scale is reverted, and the duplicate ticks of the second scheduler do nothing.
"""

from __future__ import annotations

import os

import pytest
from rq.cron import get_cron_job_ids
from rq.job import Job

from tests.worker.drift_support import kubectl, replicas
from tests.worker.process_support import wait_for
from tests.worker.sync_manifests import app_files
from worker.scheduler import job_name

pytestmark = pytest.mark.stack


def test_missed_push_and_drift_handled_by_scheduler_and_worker(harness, git_repo, stack, namespace, tmp_path,
                                                               processes):
    repo = git_repo("periodic")
    sha1 = repo.commit_and_push("v1", app_files("1.0"))  # no webhook, ever
    harness.configure(repo, interval="10s")
    cache = {"PULLBRIDGE_CACHE_DIR": str(tmp_path / "mirrors-procs")}
    processes("scheduler-1", "worker.scheduler", env=cache)
    processes("scheduler-2", "worker.scheduler", env=cache)
    processes("worker", "worker", "--name", f"drift-test-{os.getpid()}", env=cache)
    wait_for("the first commit applied", lambda: harness.state().get("applied_sha") == sha1, tmp_path)
    sha2 = repo.commit_and_push("v2", app_files("2.0"))
    wait_for("the missed push applied", lambda: harness.state().get("applied_sha") == sha2, tmp_path)
    applied = next(r for r in harness.history() if r["sha"] == sha2 and r["result"] == "success")
    assert applied["reason"] == "periodic"

    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=4", "-n", namespace)
    wait_for("the scale reverted", lambda: replicas(stack, namespace) == 1, tmp_path)
    record = wait_for("the drift record", lambda: next(
        (r for r in harness.history() if r["reason"] == "drift"), None), tmp_path)
    assert record["drift"]["corrected"] == 1

    results = [Job.fetch(j, connection=harness.conn).return_value()
               for j in get_cron_job_ids(job_name("app"), harness.conn)]
    outcomes = {r["result"] for r in results if r}
    assert "duplicate" in outcomes, outcomes  # two schedulers, one run per interval
    assert "sync queued" in outcomes
