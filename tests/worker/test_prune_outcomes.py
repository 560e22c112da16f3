"""What prune deleted is said, and what it tracks is deleted, on the real stack: a prune that fails part
way still lists what it deleted before."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.worker.sync_manifests import cm_value, configmap, inventory_ids

pytestmark = pytest.mark.stack


def secret(name: str) -> str:
    return f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  key: v\n"


def test_a_prune_that_fails_part_way_lists_what_it_deleted(harness, git_repo, kube, namespace, restricted_kube,
                                                            monkeypatch):
    """The worker may delete Secrets but not ConfigMaps: prune deletes the stale Secret (Secrets go
    before ConfigMaps), then is refused the ConfigMap.  The failed sync's change set says the Secret
    was deleted: no later sync would (it finds it gone)."""
    from worker import history
    from worker import kube as kube_module
    from worker.apply import object_id

    restricted = restricted_kube([
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create", "patch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}], "delete", "secrets", namespace)
    monkeypatch.setattr(kube_module, "_process_kube", restricted)
    repo = git_repo("partprune")
    harness.configure(repo)
    assert harness.sync(repo.commit_and_push("v1", {
        "s.yaml": secret("s"), "a.yaml": configmap("a", "1"), "stays.yaml": configmap("stays", "1")}))["result"] \
        == "success"
    repo.remove("s.yaml")
    repo.remove("a.yaml")
    failed = harness.sync(repo.commit_and_push("drop s and a"))
    assert failed["result"] == "failure" and f"pruning ConfigMap/{namespace}/a: HTTP 403" in failed["error"]
    changes = {c["object"]: c["action"] for c in history.get_record(harness.conn, failed["id"])["changes"]}
    assert changes == {f"ConfigMap/{namespace}/stays": "unchanged", f"Secret/{namespace}/s": "deleted"}
    assert cm_value(kube, namespace, "a") == "1"
    assert object_id("", "ConfigMap", namespace, "a") in inventory_ids(kube, namespace)
    with pytest.raises(client.ApiException) as gone:
        client.CoreV1Api(kube).read_namespaced_secret("s", namespace)
    assert gone.value.status == 404
