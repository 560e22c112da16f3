"""The API server unreachable in the middle of a flow, through a proxy this test cuts.

The worker's kubeconfig points at a TCP proxy in front of the shared
kube-apiserver (which keeps running for everyone else).  With the proxy
closed the sync fails as a temporary error and is retried with the repo's
backoff, recorded as ``retrying``, the commit status posted to a (fake,
documented-API) GitHub stays ``pending``; once the
proxy is open again the sync succeeds without anyone acting.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client
from rq import Queue

from pullbridge import keys
from pullbridge.demo.harness import free_port, wait_for
from tests.faults.conftest import configmap, history
from tests.faults.tcpproxy import TcpProxy
from tests.notify_support import GITHUB_TOKEN, fake_hosts  # noqa: F401 (fixture)

pytestmark = pytest.mark.stack


def proxied_kubeconfig(source: str, port: int) -> dict:
    data = yaml.safe_load(open(source))
    for cluster in data["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    return data


def test_apiserver_unreachable_is_retried_and_recovers(deployment, stack, namespace, kube, redis_conn, figure,
                                                      fake_hosts):  # noqa: F811
    data = yaml.safe_load(open(stack.kubeconfig))
    server = urlsplit(data["clusters"][0]["cluster"]["server"])
    proxy = TcpProxy(server.hostname, server.port, free_port())
    proxy.open()
    name = f"apidown{uuid.uuid4().hex[:6]}"
    run = deployment(name=name, full_name="acme/deploy",
                     repo_settings={"retries": 20, "backoff": ["1s", "2s"],
                                    "status": {"api_url": fake_hosts.base + "/github", "token_env": "PB_FAULTS_GH",
                                               "backoff": [0], "retries": 1, "timeout": 5}},
                     extra_env={"PB_FAULTS_GH": GITHUB_TOKEN})
    kubeconfig = run.tmp / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(proxied_kubeconfig(stack.kubeconfig, proxy.port)))
    run.env["KUBECONFIG"] = str(kubeconfig)
    run.write_config({"worker": {"inventory_namespace": namespace}})
    core = client.CoreV1Api(kube)
    try:
        run.start("web", "worker")
        applied = lambda sha: (redis_conn.hget(keys.state(name), "applied_sha") or b"").decode() == sha  # noqa
        v1, status, _ = run.push({"deploy/a.yaml": configmap("api-a", namespace, "v1")}, "v1")
        assert status == 202 and wait_for(lambda: applied(v1), 60, 0.2) is not None, run.log_tail("worker")

        proxy.close()
        cut = time.monotonic()
        v2, status, answer = run.push({"deploy/a.yaml": configmap("api-a", namespace, "v2")}, "v2")
        assert status == 202
        retrying = lambda: [r for r in history(redis_conn, name) if r.get("result") == "retrying"]  # noqa
        assert wait_for(lambda: len(retrying()) >= 2, 90, 0.2) is not None, run.log_tail("worker", 40)
        assert not [r for r in history(redis_conn, name) if r.get("result") == "failure"]
        assert applied(v1) and redis_conn.zscore(keys.wanted(name), v2) is not None
        queue = Queue(keys.SYNC_QUEUE, connection=redis_conn)
        waiting = set(queue.scheduled_job_registry.get_job_ids()) | set(queue.get_job_ids()) \
            | set(queue.started_job_registry.get_job_ids())
        assert answer["job_id"] in waiting  # the same job, waiting for its next try
        attempts = len(retrying())
        states = lambda sha: [r["payload"]["state"] for r in fake_hosts.requests  # noqa: E731
                              if r["path"].endswith(sha) and isinstance(r["payload"], dict)]
        assert wait_for(lambda: len(states(v2)) >= 2, 30, 0.2) is not None  # pending (queued), pending (running)
        assert set(states(v2)) == {"pending"}, states(v2)  # never error/failure while the API is away

        proxy.open()
        back = time.monotonic()
        took = wait_for(lambda: applied(v2), 90, 0.2)
        assert took is not None, run.log_tail("worker", 40)
        assert core.read_namespaced_config_map("api-a", namespace).data["value"] == "v2"
        assert wait_for(lambda: states(v2)[-1:] == ["success"], 30, 0.2) is not None, states(v2)
        figure(f"API server cut for {back - cut:.1f}s: {attempts} attempts recorded retrying "
               f"(error: {retrying()[-1]['error'][:80]!r}), none failed; commit statuses posted {states(v2)}; applied {took:.1f}s after the "
               f"proxy reopened, no one acting")
    finally:
        proxy.close()
