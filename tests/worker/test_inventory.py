"""The in-cluster inventory: ids that round-trip whatever a name holds, and an inventory
namespace that disappears under a running worker."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kubernetes import client

from worker.apply import object_id
from worker.errors import PermanentError, TemporaryError
from worker.inventory import parse_id
from tests.kube_support import unless_gone
from tests.worker.sync_manifests import configmap

GONE_GUARD = 600  # seconds: only so that a broken stack fails the test instead of hanging it


@pytest.mark.parametrize("namespace, name, group, kind", [
    ("shop", "web", "apps", "Deployment"),
    (None, "shop", "", "Namespace"),
    (None, "ci_reader", "rbac.authorization.k8s.io", "ClusterRole"),
    ("shop", "_a__b_", "rbac.authorization.k8s.io", "RoleBinding"),
    ("shop", "x_", "", "ConfigMap"),
])
def test_ids_round_trip_even_when_the_name_holds_underscores(namespace, name, group, kind):
    assert parse_id(object_id(group, kind, namespace, name)) == (namespace, name, group, kind)


@pytest.mark.parametrize("bad", ["", "a_b", "ns_name_Kind", "ns__group_Kind", "ns_name_group_"])
def test_malformed_ids_are_refused(bad):
    with pytest.raises(PermanentError, match="malformed"):
        parse_id(bad)


def _wait_until_gone(read) -> None:
    """Poll ``read`` until it answers 404 (the namespace controller finishing its work)."""
    start = time.monotonic()
    while time.monotonic() - start < GONE_GUARD:
        try:
            read()
        except client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.2)
    pytest.fail("the object was not deleted within the guard")


@pytest.mark.stack
def test_rbac_object_with_underscore_in_its_name_is_pruned(harness, git_repo, kube, namespace, cluster_role_names):
    rbac = client.RbacAuthorizationV1Api(kube)
    name = cluster_role_names("pb-test_ci_reader_")
    role = (f"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {name}\n"
            "rules:\n  - apiGroups: [\"\"]\n    resources: [configmaps]\n    verbs: [get]\n")
    repo = git_repo("rbac")
    harness.configure(repo)
    first = harness.sync(repo.commit_and_push("v1", {"deploy/role.yaml": role,
                                                      "deploy/cm.yaml": configmap("cm", "1")}))
    assert first["result"] == "success", first
    assert rbac.read_cluster_role(name).metadata.name == name
    repo.remove("deploy/role.yaml")
    second = harness.sync(repo.commit_and_push("drop the role", {"deploy/cm.yaml": configmap("cm", "2")}))
    assert second["result"] == "success", second
    assert second["counts"]["deleted"] == 1 and second["counts"]["configured"] == 1
    _wait_until_gone(lambda: rbac.read_cluster_role(name))
    third = harness.sync(repo.commit_and_push("again", {"deploy/cm.yaml": configmap("cm", "3")}))
    assert third["result"] == "success", third  # nothing left behind that wedges the repo


@pytest.fixture
def inventory_namespace(kube):
    """A namespace name for the inventory alone, deleted (finalizers dropped) after the test."""
    core = client.CoreV1Api(kube)
    name = f"t-inv-{uuid.uuid4().hex[:8]}"
    yield name
    with unless_gone():
        core.patch_namespace(name, {"metadata": {"finalizers": None}})
        core.delete_namespace(name)


@pytest.mark.stack
def test_inventory_namespace_deleted_between_two_syncs_is_made_again(
        harness, git_repo, kube, namespace, inventory_namespace):
    from worker import inventory

    core = client.CoreV1Api(kube)
    repo = git_repo("invns")
    harness.configure(repo)
    config = json.loads(harness.config_path.read_text())
    config["worker"]["inventory_namespace"] = inventory_namespace
    harness.config_path.write_text(json.dumps(config))
    harness.configure_from_file()

    first = harness.sync(repo.commit_and_push("v1", {"deploy/a.yaml": configmap("a", "1")}))
    assert first["result"] == "success", first
    assert inventory_namespace in inventory._known_namespaces  # this process remembers it exists
    core.delete_namespace(inventory_namespace)
    _wait_until_gone(lambda: core.read_namespace(inventory_namespace))

    second = harness.sync(repo.commit_and_push("v2", {"deploy/b.yaml": configmap("b", "2")}))
    assert second["result"] == "success", second
    saved = core.read_namespaced_config_map(inventory.configmap_name("app"), inventory_namespace)
    assert sorted(json.loads(saved.data[inventory.DATA_KEY])) == [
        f"{namespace}_a__ConfigMap", f"{namespace}_b__ConfigMap"]


@pytest.mark.stack
def test_inventory_namespace_being_deleted_is_a_temporary_error(stack, kube, inventory_namespace):
    from worker import inventory
    from worker.kube import process_kube

    core = client.CoreV1Api(kube)
    kube_ = process_kube()
    # A finalizer of the test's own keeps the namespace Terminating until the test lets go.
    core.create_namespace({"metadata": {"name": inventory_namespace, "finalizers": ["pullbridge.io/test-hold"]}})
    assert inventory.save(kube_, inventory_namespace, "held", {"_a__ConfigMap": {"v": "v1"}})
    core.delete_namespace(inventory_namespace)
    _wait_until_gone(lambda: core.read_namespaced_config_map(inventory.configmap_name("held"), inventory_namespace))
    assert core.read_namespace(inventory_namespace).status.phase == "Terminating"

    entries = {"_b__ConfigMap": {"v": "v1"}}
    with pytest.raises(TemporaryError, match=f"namespace {inventory_namespace} is being deleted"):
        inventory.save(kube_, inventory_namespace, "held", entries)
    core.patch_namespace(inventory_namespace, {"metadata": {"finalizers": None}})
    _wait_until_gone(lambda: core.read_namespace(inventory_namespace))
    assert inventory.save(kube_, inventory_namespace, "held", entries)  # the retry makes it again
    assert inventory.load(kube_, inventory_namespace, "held") == entries


@pytest.mark.stack
@pytest.mark.parametrize("data, what", [
    ("{not json", "inventory.json is not JSON"),
    ("[1, 2]", "inventory.json is not a JSON object"),
    ('{"a_b": {"v": "v1"}}', "inventory entry 'a_b' is malformed"),
    ('{"NS_a__ConfigMap": "v1"}', "inventory entry 'NS_a__ConfigMap' is not a JSON object"),
])
def test_a_corrupt_inventory_fails_the_sync_before_anything_is_applied(harness, git_repo, kube, namespace,
                                                                       data, what):
    """Edited by hand or by another tool: it is not trusted for prune, nor silently replaced (what it
    tracked would be left behind without a word); the error says which ConfigMap and how to start afresh."""
    from worker import inventory
    from tests.worker.sync_manifests import cm_value

    repo = git_repo("corrupt")
    harness.configure(repo)
    first = harness.sync(repo.commit_and_push("v1", {"a.yaml": configmap("a", "1"), "b.yaml": configmap("b", "1")}))
    assert first["result"] == "success", first
    name = inventory.configmap_name("app")
    client.CoreV1Api(kube).patch_namespaced_config_map(
        name, namespace, {"data": {inventory.DATA_KEY: data.replace("NS", namespace)}})
    repo.remove("a.yaml")
    failed = harness.sync(repo.commit_and_push("drop a, change b", {"b.yaml": configmap("b", "2")}))
    assert failed["result"] == "failure"
    assert failed["error"] == (
        f"inventory ConfigMap {namespace}/{name} is corrupt ({what.replace('NS', namespace)}): fix it, or delete "
        "it to start a new inventory (objects Git dropped since the last sync are then left in the cluster, "
        "not pruned)")
    assert cm_value(kube, namespace, "a") == "1" and cm_value(kube, namespace, "b") == "1"
