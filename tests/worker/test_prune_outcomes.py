"""What prune deleted is said, and what it tracks is deleted, on the real stack: a prune that fails part
way still lists what it deleted before; an object whose apiVersion is no longer served is deleted through
another version of its group; one left waiting for finalizers says so."""

from __future__ import annotations

import time

import pytest
import yaml
from kubernetes import client

from tests.kube_support import SAFETY_TIMEOUT
from tests.worker.sync_manifests import cm_value, configmap, inventory_ids, widget, widget_crd, widget_specs

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


def _until_served(kube, path: str, served: bool) -> None:
    """Until the API server's discovery serves (or stops serving) ``path``; a CRD's change takes a moment."""
    from worker.kube import Kube

    deadline = time.monotonic() + SAFETY_TIMEOUT
    while (Kube(kube).get(path) is not None) != served:
        assert time.monotonic() < deadline, f"{path} is still {'not ' if served else ''}served"
        time.sleep(0.1)


def test_an_object_of_a_version_no_longer_served_is_pruned_through_one_that_is(
        harness, git_repo, kube, namespace, widget_groups):
    """Git declared a Widget in v1alpha1 of a CRD installed by another tool, which then stopped serving
    v1alpha1 (an upgrade; v1 stores the Widgets).  Git dropping the Widget deletes it through v1: the
    object is still there, only the version it was applied in is gone."""
    from worker import history
    from worker.apply import object_id

    group = widget_groups()
    extensions = client.ApiextensionsV1Api(kube)
    extensions.create_custom_resource_definition(yaml.safe_load(widget_crd(group, versions=("v1alpha1", "v1"))))
    _until_served(kube, f"/apis/{group}/v1alpha1/widgets", True)
    repo = git_repo("oldversion")
    harness.configure(repo)
    assert harness.sync(repo.commit_and_push("v1", {"widget.yaml": widget(group, 3, version="v1alpha1"),
                                                    "stays.yaml": configmap("stays", "s")}))["result"] == "success"
    extensions.patch_custom_resource_definition(f"widgets.{group}", yaml.safe_load(widget_crd(group)))
    _until_served(kube, f"/apis/{group}/v1alpha1/widgets", False)

    repo.remove("widget.yaml")
    done = harness.sync(repo.commit_and_push("drop the widget"))
    assert done["result"] == "success", done
    changes = {c["object"]: c["action"] for c in history.get_record(harness.conn, done["id"])["changes"]}
    assert changes[f"Widget/{namespace}/w1"] == "deleted"
    assert widget_specs(kube, group, namespace) == {}
    assert object_id(group, "Widget", namespace, "w1") not in inventory_ids(kube, namespace)



def test_a_deleted_object_waiting_for_finalizers_says_so(harness, git_repo, kube, namespace):
    """An object whose finalizer no controller finishes stays, terminating: its change says what it waits
    for (a bare "deleted" for an object still there would mislead), whether prune deleted it or found it
    being deleted already (by hand)."""
    from worker import history

    core = client.CoreV1Api(kube)
    hold = "\n  finalizers: [pullbridge.io/test-hold]"
    repo = git_repo("finalizer")
    harness.configure(repo)
    try:
        assert harness.sync(repo.commit_and_push("v1", {
            "held.yaml": configmap("held", "1", hold), "by-hand.yaml": configmap("by-hand", "1", hold),
            "stays.yaml": configmap("stays", "s")}))["result"] == "success"
        core.delete_namespaced_config_map("by-hand", namespace)
        repo.remove("held.yaml")
        repo.remove("by-hand.yaml")
        done = harness.sync(repo.commit_and_push("drop both"))
        assert done["result"] == "success", done
        details = {c["object"]: (c["action"], c.get("detail"))
                   for c in history.get_record(harness.conn, done["id"])["changes"]}
        assert details[f"ConfigMap/{namespace}/held"] == ("deleted", "waiting for finalizers: pullbridge.io/test-hold")
        assert details[f"ConfigMap/{namespace}/by-hand"] == (
            "deleted", "already terminating; waiting for finalizers: pullbridge.io/test-hold")
        assert core.read_namespaced_config_map("held", namespace).metadata.deletion_timestamp is not None
    finally:
        for name in ("held", "by-hand"):
            core.patch_namespaced_config_map(name, namespace, {"metadata": {"finalizers": None}})


def test_nothing_is_pruned_while_another_repos_inventory_cannot_be_read(harness, git_repo, kube, namespace):
    """Both repos declare "shared"; the other's inventory, edited by hand, is no longer JSON.  What it
    declares is unknown, so the repo dropping "shared" deletes none of what it drops, says why, and
    keeps tracking it: once the other inventory is readable again, prune decides."""
    from worker import history, inventory
    from worker.apply import object_id
    from tests.worker.sync_manifests import sync_repo

    first, second = git_repo("first"), git_repo("second")
    harness.configure_repos([harness.repo_entry("app", first), harness.repo_entry("other", second)])
    sync_repo(harness, 0, first.commit_and_push("v1", {"shared.yaml": configmap("shared", "s"),
                                                       "own.yaml": configmap("own", "o")}))
    sync_repo(harness, 1, second.commit_and_push("v1", {"shared.yaml": configmap("shared", "s")}))
    broken = inventory.configmap_name("other")
    client.CoreV1Api(kube).patch_namespaced_config_map(broken, namespace, {"data": {inventory.DATA_KEY: "{oops"}})

    first.remove("shared.yaml")
    done = sync_repo(harness, 0, first.commit_and_push("drop shared"))
    [change] = [c for c in history.get_record(harness.conn, done["id"])["changes"]
                if c["object"] == f"ConfigMap/{namespace}/shared"]
    assert change["action"] == "skipped"
    assert change["detail"].startswith(f"another repo's inventory cannot be read: inventory ConfigMap "
                                       f"{namespace}/{broken} is corrupt (inventory.json is not JSON)")
    assert cm_value(kube, namespace, "shared") == "s"
    assert object_id("", "ConfigMap", namespace, "shared") in inventory_ids(kube, namespace)
