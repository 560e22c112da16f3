"""The git host unreachable: a temporary error, retried with backoff, no prune
on a failed fetch, and the sync succeeds by itself once the host is back.

The git host is a private ``python -m pullbridge.stack.githttp`` this test
starts and stops (serving the stack's git root), never the shared one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid

import pytest
from kubernetes import client

from pullbridge import keys
from pullbridge.demo.harness import ROOT, free_port, wait_for
from tests.faults.conftest import configmap, history

pytestmark = pytest.mark.stack


class GitHost:
    def __init__(self, root, port: int):
        self.root, self.port, self.proc = root, port, None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "pullbridge.stack.githttp", str(self.root),
                                      str(self.port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False
        assert wait_for(up, 20), "githttp did not start"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_git_host_down_is_retried_without_prune_and_recovers(deployment, stack, namespace, kube, redis_conn,
                                                              figure):
    name = f"gitdown{uuid.uuid4().hex[:6]}"
    host = GitHost(stack.git_root, free_port())
    host.start()
    run = deployment(name=name, full_name=f"pullbridge/{name}",
                     repo_settings={"retries": 10, "backoff": ["1s", "2s"]})
    run.repo_settings["url"] = f"http://127.0.0.1:{host.port}/{run.bare.name}"
    run.write_config({"worker": {"inventory_namespace": namespace}})
    core = client.CoreV1Api(kube)
    try:
        run.start("web", "worker")
        applied = lambda sha: (redis_conn.hget(keys.state(name), "applied_sha") or b"").decode() == sha  # noqa
        v1, status, _ = run.push({"deploy/a.yaml": configmap("git-a", namespace, "v1"),
                                  "deploy/b.yaml": configmap("git-b", namespace, "v1")}, "v1")
        assert status == 202 and wait_for(lambda: applied(v1), 60, 0.2) is not None, run.log_tail("worker")

        host.stop()
        v2, status, _ = run.push({"deploy/a.yaml": configmap("git-a", namespace, "v2"), "deploy/b.yaml": None})
        assert status == 202
        retrying = lambda: [r for r in history(redis_conn, name) if r.get("result") == "retrying"]  # noqa
        assert wait_for(lambda: len(retrying()) >= 2, 60, 0.2) is not None, run.log_tail("worker")
        assert all("unreachable" in r["error"] or "git" in r["error"].lower() for r in retrying())
        # Nothing pruned, nothing changed, the commit still wanted.
        assert core.read_namespaced_config_map("git-b", namespace).data["value"] == "v1"
        assert core.read_namespaced_config_map("git-a", namespace).data["value"] == "v1"
        assert applied(v1) and redis_conn.zscore(keys.wanted(name), v2) is not None
        attempts_down = len(retrying())

        host.start()
        back = time.monotonic()
        took = wait_for(lambda: applied(v2), 60, 0.2)
        assert took is not None, run.log_tail("worker", 40)
        assert core.read_namespaced_config_map("git-a", namespace).data["value"] == "v2"
        assert "git-b" not in {cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items}
        figure(f"git host down: {attempts_down} failed attempts recorded as retrying (temporary), "
               f"first error: {retrying()[-1]['error'][:90]!r}; nothing pruned while down; "
               f"commit applied {time.monotonic() - back:.1f}s after the host came back, without anyone acting")
    finally:
        host.stop()
