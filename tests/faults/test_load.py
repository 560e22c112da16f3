"""Webhook load against gunicorn with the worker running: all acknowledged,
none lost, the final commit applied, the acknowledgement latency printed.

CI runs 200 webhooks at 200/s here; ``bench/webhook-load`` runs the full
1,000 at 200/s (same driver: tests/faults/load.py).
"""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from pullbridge import keys
from pullbridge.demo.harness import wait_for
from tests.faults.conftest import history
from tests.faults.load import applied_sha, make_commits, send_load

pytestmark = pytest.mark.stack

WEBHOOKS = 200
RATE = 200.0


def test_paced_webhook_load_is_all_acknowledged_and_the_last_commit_applied(deployment, namespace, kube,
                                                                            redis_conn, figure):
    name = f"load{uuid.uuid4().hex[:6]}"
    run = deployment(name=name, full_name=f"pullbridge/{name}")
    run.write_config({"worker": {"inventory_namespace": namespace}})
    shas = make_commits(run, namespace, WEBHOOKS)
    run.start("web", "worker")
    figures = send_load(run, shas, RATE)
    assert figures["statuses"] == [202] and figures["acked"] == WEBHOOKS
    took = wait_for(lambda: applied_sha(redis_conn, name) == shas[-1], 120, 0.2)
    assert took is not None, run.log_tail("worker")
    assert wait_for(lambda: redis_conn.zcard(keys.wanted(name)) == 0, 30, 0.2) is not None  # none left behind
    value = client.CoreV1Api(kube).read_namespaced_config_map("load", namespace).data["value"]
    assert value == f"v{WEBHOOKS}"
    syncs = [r for r in history(redis_conn, name) if r.get("result") == "success"]
    figure(f"load: {WEBHOOKS} webhooks at {figures['rate']:.0f}/s (target {RATE:.0f}/s) against gunicorn with the "
           f"worker running: {figures['acked']} acknowledged (202), 0 lost, {figures['jobs']} jobs, "
           f"{len(syncs)} syncs applied; ack latency p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
           f"max {figures['max_ms']:.1f} ms; last commit applied {took:.1f}s after the last ack")
