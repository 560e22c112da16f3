"""Helpers for the periodic reconcile tests: queue the registered cron job, run it with an RQ worker;
kubectl as someone else; the ignore-fields annotation; an alert destination."""

from __future__ import annotations

import json
import os
import subprocess

from rq.job import Job

from pullbridge import keys
from pullbridge.config import load_config
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


def apply_as(stack, namespace: str, manager: str, manifest: str, tmp_path) -> None:
    """Server-side apply ``manifest`` in ``namespace`` as the field manager ``manager`` (not Pullbridge)."""
    (tmp_path / "app.yaml").write_text(manifest)
    kubectl(stack, "apply", "--server-side", f"--field-manager={manager}", "-n", namespace,
            "-f", str(tmp_path / "app.yaml"))


def ignoring(paths: str, manifest: str, name: str = "fluxdemo") -> str:
    """``manifest`` with the object ``name`` annotated ``pullbridge.io/ignore-fields: "<paths>"``."""
    return manifest.replace(f"  name: {name}\n", f"  name: {name}\n  annotations:\n"
                            f"    pullbridge.io/ignore-fields: \"{paths}\"\n", 1)


def with_alerts(harness, monkeypatch, events: list[str]) -> None:
    """A JSON-webhook alert destination for ``events`` (alerts are queued, not sent here)."""
    monkeypatch.setenv("PB_TEST_ALERT_URL", "http://127.0.0.1:9/alerts")
    data = json.loads(harness.config_path.read_text())
    data["alerts"] = [{"kind": "webhook", "url_env": "PB_TEST_ALERT_URL", "events": events}]
    harness.config_path.write_text(json.dumps(data))
    harness.config = load_config(harness.config_path)


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
