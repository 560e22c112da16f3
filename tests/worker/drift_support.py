"""Helpers for the periodic reconcile tests: queue the registered cron job, run it with an RQ worker."""

from __future__ import annotations

import json
import os
import subprocess

from rq.job import Job

from pullbridge import keys
from worker.scheduler import cron_jobs, job_name


def run_reconcile(harness, *, next_interval: bool = True) -> dict:
    """Queue the scheduler's registered CronJob for the repo (as a tick would) and run it.

    ``next_interval``: forget the interval guard first, as if an interval had passed.
    """
    if next_interval:
        harness.conn.delete(keys.periodic_guard(harness.repo.name))
    job = next(j for j in cron_jobs(harness.config) if j.name == job_name(harness.repo.name))
    queued = job.enqueue(harness.conn)
    harness.work()
    done = Job.fetch(queued.id, connection=harness.conn)
    assert done.get_status() == "finished", done.latest_result().exc_string if done.latest_result() else done
    return done.return_value()


def kubectl(stack, *args: str) -> str:
    proc = subprocess.run([stack.kubectl, *args], capture_output=True, text=True,
                          env={**os.environ, **stack.env, "KUBECONFIG": stack.kubeconfig})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def replicas(stack, namespace: str, name: str = "fluxdemo") -> int:
    return json.loads(kubectl(stack, "get", "deployment", name, "-n", namespace, "-o", "json"))["spec"]["replicas"]


def drift_record(harness) -> dict:
    from worker import history
    newest = harness.history()[0]
    assert newest["reason"] == "drift", newest
    return history.get_record(harness.conn, newest["id"])


def counters(harness) -> dict[str, int]:
    raw = harness.conn.hgetall(keys.metrics_counters())
    return {k.decode(): int(v) for k, v in raw.items()}
