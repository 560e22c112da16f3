"""An object declared twice is refused once namespaces are resolved, naming both files, on the real stack."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from tests.kube_support import unless_gone
from tests.worker.sync_manifests import cm_value, configmap
from worker.apply import Applier
from worker.errors import PermanentError
from worker.kube import process_kube
from worker.render import render

pytestmark = pytest.mark.stack


def test_object_without_namespace_and_in_the_default_one_is_declared_twice(harness, git_repo, kube, namespace):
    repo = git_repo("dup")
    harness.configure(repo)  # the repo's namespace is the test's
    in_default = configmap("cfg", "b").replace("name: cfg", f"name: cfg\n  namespace: {namespace}")
    failed = harness.sync(repo.commit_and_push("dup", {"deploy/a.yaml": configmap("cfg", "a"),
                                                       "deploy/b.yaml": in_default}))
    assert failed["result"] == "failure", failed
    assert failed["error"] == (f"ConfigMap/{namespace}/cfg is declared twice: "
                               "deploy/a.yaml, doc 1 and deploy/b.yaml, doc 1")
    assert cm_value(kube, namespace, "cfg") is None  # nothing applied


def test_cluster_scoped_object_with_and_without_a_namespace_is_declared_twice(stack, tmp_path, kube, namespace):
    name = f"pb-test-dup-{uuid.uuid4().hex[:6]}"
    role = ("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n"
            f"  name: {name}\n{{ns}}rules: []\n")
    (tmp_path / "a.yaml").write_text(role.format(ns=""))
    (tmp_path / "b.yaml").write_text(role.format(ns=f"  namespace: {namespace}\n"))
    manifests = render(tmp_path)  # as written these differ: the API server's scope makes them one
    applier = Applier(process_kube(), concurrency=2, default_namespace=namespace)
    rbac = client.RbacAuthorizationV1Api(kube)
    try:
        with pytest.raises(PermanentError,
                           match=f"^ClusterRole/{name} is declared twice: a.yaml, doc 1 and b.yaml, doc 1$"):
            applier.run(manifests)
        with pytest.raises(client.ApiException) as info:
            rbac.read_cluster_role(name)
        assert info.value.status == 404  # nothing applied
    finally:
        with unless_gone():
            rbac.delete_cluster_role(name)
