"""Fixtures for sync tests on the real stack: a config file per test and an RQ worker to run jobs;
API groups for Widget CRDs, ClusterRoles and restricted ServiceAccounts, deleted again after the test."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from rq import Queue, SimpleWorker

from pullbridge import keys
from pullbridge.config import load_config
from pullbridge.queueing import request_sync
from tests.kube_support import cluster_role_kubeconfig, unless_gone, wait_allowed
from tests.worker.sync_manifests import widget_group


class SyncHarness:
    """One test's Pullbridge: its config file, Redis DB, namespace and job runner."""

    def __init__(self, stack, redis_conn, namespace: str, tmp_path: Path, monkeypatch):
        self.stack = stack
        self.conn = redis_conn
        self.namespace = namespace
        self.tmp = tmp_path
        self.config_path = tmp_path / "pullbridge.yaml"
        monkeypatch.setenv("PULLBRIDGE_CONFIG", str(self.config_path))
        monkeypatch.setenv("PULLBRIDGE_CACHE_DIR", str(tmp_path / "mirrors"))
        monkeypatch.setenv("PB_TEST_SECRET", "unused")
        self.config = None

    def configure(self, repo, transport: str = "http", **repo_fields) -> None:
        self.configure_repos([self.repo_entry("app", repo, transport, **repo_fields)])

    def repo_entry(self, name: str, repo, transport: str = "http", **repo_fields) -> dict:
        url = repo.http_url if transport == "http" else repo.file_url
        return {"name": name, "url": url, "provider": "generic", "secret_env": "PB_TEST_SECRET",
                "namespace": self.namespace, "backoff": ["1s"], "retries": 2, **repo_fields}

    def configure_repos(self, entries: list[dict]) -> None:
        data = {"worker": {"inventory_namespace": self.namespace, "lock_wait": "1s"}, "repos": entries}
        self.config_path.write_text(json.dumps(data))
        self.config = load_config(self.config_path)

    def configure_from_file(self) -> None:
        """Reload after a test edited the config file by hand."""
        self.config = load_config(self.config_path)

    @property
    def repo(self):
        return self.config.repos[0]

    def request(self, sha: str | None, reason: str = "push"):
        return request_sync(self.conn, self.config, self.repo, sha, reason=reason)

    def work(self) -> None:
        """Run queued sync jobs in this process until the queue is empty."""
        queue = Queue(keys.SYNC_QUEUE, connection=self.conn)
        SimpleWorker([queue], connection=self.conn).work(burst=True)

    def sync(self, sha: str | None, reason: str = "push") -> dict:
        """Request, run, and return the newest history summary."""
        self.request(sha, reason)
        self.work()
        return self.history()[0]

    def history(self) -> list[dict]:
        from worker import history
        return history.history(self.conn, self.repo.name)

    def state(self) -> dict:
        from worker import history
        return history.repo_state(self.conn, self.repo.name)


@pytest.fixture
def harness(stack, redis_conn, namespace, tmp_path, monkeypatch):
    return SyncHarness(stack, redis_conn, namespace, tmp_path, monkeypatch)


@pytest.fixture
def widget_groups(kube):
    """Factory: ``widget_groups()`` -> an API group of the test's own (``widget_group()``); the CRD
    widgets.<group> of each is deleted after the test, should it have been created."""
    groups = []

    def make() -> str:
        groups.append(widget_group())
        return groups[-1]

    yield make
    extensions = client.ApiextensionsV1Api(kube)
    for group in groups:
        with unless_gone():
            extensions.delete_custom_resource_definition(f"widgets.{group}")


@pytest.fixture
def cluster_role_names(kube):
    """Factory: ``cluster_role_names(prefix)`` -> a new ClusterRole name, ``prefix`` and a random suffix; the
    ClusterRole of that name and a ClusterRoleBinding of the same name are deleted after the test, should
    they have been created."""
    names = []

    def make(prefix: str) -> str:
        names.append(f"{prefix}{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield make
    rbac = client.RbacAuthorizationV1Api(kube)
    for name in names:
        with unless_gone():
            rbac.delete_cluster_role_binding(name)
        with unless_gone():
            rbac.delete_cluster_role(name)


@pytest.fixture
def restricted_kube(kube, stack, namespace, tmp_path, cluster_role_names):
    """Factory: ``restricted_kube(rules, verb, resource, in_namespace=None)`` -> a worker Kube acting as a
    new ServiceAccount "pullbridge" of the test's namespace, bound to a new ClusterRole granting ``rules``,
    once the API server lets it ``verb`` ``resource``.  The ClusterRole and its binding are deleted after
    the test (``cluster_role_names``)."""
    from worker.kube import Kube, load_api_client

    def make(rules: list[dict], verb: str, resource: str, in_namespace: str | None = None) -> Kube:
        role = cluster_role_names("pullbridge-test-")
        kubeconfig = tmp_path / f"{role}.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(cluster_role_kubeconfig(kube, stack, namespace, role, rules)))
        restricted = Kube(load_api_client(str(kubeconfig)))
        wait_allowed(restricted, verb, resource, in_namespace)
        return restricted

    return make
