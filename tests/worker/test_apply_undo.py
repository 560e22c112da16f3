"""A commit that creates a Namespace or CRD, or gives an existing CRD a version, and is invalid in
what that holds leaves the cluster as it was: the Namespace or CRD, written only so the rest could
be dry-run, is deleted again or put back, and when that fails the error says so and the sync keeps
it in its inventory for prune."""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client

from tests.worker.sync_manifests import (cm_value, configmap, deployment, in_namespace, inventory_entries, inventory_ids,
                                         namespace_doc, namespace_live, read_namespace, widget, widget_crd,
                                         widget_specs)

pytestmark = pytest.mark.stack


def app_in_new_namespace(new_ns: str, replicas: int) -> str:
    return namespace_doc(new_ns) + "---\n" + in_namespace(deployment("fluxdemo", "1.0", replicas), new_ns)


def test_invalid_object_in_a_new_namespace_leaves_no_namespace_behind(harness, git_repo, kube, namespace):
    from worker.apply import object_id

    new_ns = f"pb-new-{uuid.uuid4().hex[:8]}"
    repo = git_repo("freshns")
    harness.configure(repo)
    try:
        files = {"deploy/app.yaml": app_in_new_namespace(new_ns, replicas=-1),
                 # a valid change to the test's existing namespace: it must wait for validation too
                 "deploy/own.yaml": namespace_doc(namespace, {"pullbridge.io/checked": "yes"}),
                 "deploy/cm.yaml": configmap("good", "g")}
        failed = harness.sync(repo.commit_and_push("bad", files))
        assert failed["result"] == "failure", failed
        assert not namespace_live(kube, new_ns)
        assert "pullbridge.io/checked" not in (read_namespace(kube, namespace).metadata.labels or {})
        assert cm_value(kube, namespace, "good") is None
        assert inventory_ids(kube, namespace) == set()
        assert failed["error"].startswith(
            f"validation failed, nothing applied (created Namespace/{new_ns} removed again): "
            f"Deployment/{new_ns}/fluxdemo (deploy/app.yaml, doc 2): spec.replicas: Invalid value: -1"), failed

        files["deploy/app.yaml"] = app_in_new_namespace(new_ns, replicas=1)
        fixed = harness.sync(repo.commit_and_push("fixed", files))
        assert fixed["result"] == "success", fixed
        assert read_namespace(kube, namespace).metadata.labels["pullbridge.io/checked"] == "yes"
        client.AppsV1Api(kube).read_namespaced_deployment("fluxdemo", new_ns)
        assert object_id("", "Namespace", None, new_ns) in inventory_ids(kube, namespace)
    finally:
        if read_namespace(kube, new_ns) is not None:
            client.CoreV1Api(kube).delete_namespace(new_ns)


def test_invalid_object_of_a_new_crd_leaves_no_crd_behind(harness, git_repo, kube, namespace, widget_groups):
    group = widget_groups()
    repo = git_repo("freshcrd")
    harness.configure(repo)
    extensions = client.ApiextensionsV1Api(kube)
    failed = harness.sync(repo.commit_and_push("bad", {"crd.yaml": widget_crd(group, minimum=0),
                                                       "widget.yaml": widget(group, -1)}))
    assert failed["result"] == "failure", failed
    crds = [c for c in extensions.list_custom_resource_definition().items
            if c.metadata.name == f"widgets.{group}" and c.metadata.deletion_timestamp is None]
    assert crds == []
    assert inventory_ids(kube, namespace) == set()
    assert failed["error"].startswith(
        f"validation failed, nothing applied (created CustomResourceDefinition/widgets.{group} removed "
        f"again): Widget/{namespace}/w1 (widget.yaml, doc 1): spec.size: Invalid value"), failed

    # The worker's discovery no longer serves the deleted CRD's kind: the fixed commit creates it again.
    fixed = harness.sync(repo.commit_and_push("fixed", {"widget.yaml": widget(group, 1)}))
    assert fixed["result"] == "success", fixed
    assert widget_specs(kube, group, namespace) == {"w1": {"size": 1}}


def crd_as_it_is(extensions, name: str) -> dict:
    """What putting a CRD back must restore: its labels, annotations and spec, and which field manager
    owns which of its fields (the API server's own status entry aside)."""
    crd = json.loads(extensions.read_custom_resource_definition(name, _preload_content=False).data)
    owners = sorted((m["manager"], m["operation"], json.dumps(m.get("fieldsV1"), sort_keys=True))
                    for m in crd["metadata"]["managedFields"] if not m.get("subresource"))
    return {"labels": crd["metadata"].get("labels"), "annotations": crd["metadata"].get("annotations"),
            "spec": crd["spec"], "owners": owners}


def served_versions(extensions, name: str) -> list[str]:
    return [v.name for v in extensions.read_custom_resource_definition(name).spec.versions if v.served]


@pytest.fixture
def widgets_v1(harness, git_repo, widget_groups):
    """A repo whose first commit applied the CRD widgets.<group> (v1 only, labelled stage: v1) and a Widget;
    -> (repo, group).  The CRD is deleted afterwards."""
    group = widget_groups()
    repo = git_repo("changedcrd")
    harness.configure(repo)
    done = harness.sync(repo.commit_and_push("v1", {"crd.yaml": widget_crd(group, labels={"stage": "v1"}),
                                                    "widget.yaml": widget(group, 1)}))
    assert done["result"] == "success", done
    return repo, group


def test_invalid_object_of_a_version_an_existing_crd_gains_leaves_the_crd_as_it_was(
        harness, widgets_v1, kube, namespace):
    """The CRD, changed only so that the rest could be dry-run, is put back: its spec, the label the commit
    dropped, the label another field manager had set and the commit took over, and who owns each field."""
    repo, group = widgets_v1
    name = f"widgets.{group}"
    extensions = client.ApiextensionsV1Api(kube)
    extensions.patch_custom_resource_definition(name, {"metadata": {"labels": {"team": "a"}}},
                                                field_manager="kubectl-edit")
    before, inventory_before = crd_as_it_is(extensions, name), inventory_entries(kube, namespace)
    assert before["labels"] == {"stage": "v1", "team": "a"}
    assert {owner[:2] for owner in before["owners"]} == {("pullbridge", "Apply"), ("kubectl-edit", "Update")}

    failed = harness.sync(repo.commit_and_push("v2", {
        "crd.yaml": widget_crd(group, minimum=0, versions=("v1", "v2"), labels={"team": "b"}),
        "widget.yaml": widget(group, -1, version="v2")}))
    assert failed["result"] == "failure", failed
    assert failed["error"].startswith(
        f"validation failed, nothing applied (configured CustomResourceDefinition/{name} restored): "
        f"Widget/{namespace}/w1 (widget.yaml, doc 1): spec.size: Invalid value"), failed
    assert crd_as_it_is(extensions, name) == before
    assert served_versions(extensions, name) == ["v1"]
    assert inventory_entries(kube, namespace) == inventory_before

    fixed = harness.sync(repo.commit_and_push("v2 fixed", {"widget.yaml": widget(group, 2, version="v2")}))
    assert fixed["result"] == "success", fixed
    assert widget_specs(kube, group, namespace, "v2") == {"w1": {"size": 2}}
    assert crd_as_it_is(extensions, name)["labels"] == {"team": "b"}


def test_a_crd_whose_new_storage_version_cannot_go_again_is_named_and_kept_in_the_inventory(
        harness, widgets_v1, kube, namespace):
    """Once the API server recorded the new storage version in status.storedVersions, the spec cannot drop
    it (objects may be stored in it): the error names the CRD and why, the inventory holds it as written."""
    from worker.apply import object_id

    repo, group = widgets_v1
    name = f"widgets.{group}"
    crd_id = object_id("apiextensions.k8s.io", "CustomResourceDefinition", None, name)
    inventory_before = inventory_entries(kube, namespace)

    failed = harness.sync(repo.commit_and_push("v2", {
        "crd.yaml": widget_crd(group, minimum=0, versions=("v1", "v2"), storage="v2"),
        "widget.yaml": widget(group, -1, version="v2")}))
    assert failed["result"] == "failure", failed
    assert failed["error"].startswith(
        f"validation failed, nothing applied but CustomResourceDefinition/{name} (configured to validate what "
        "uses it; restoring it failed: HTTP 422: status.storedVersions[1]: Invalid value: \"v2\": "), failed
    assert f"): Widget/{namespace}/w1 (widget.yaml, doc 1): spec.size: Invalid value" in failed["error"], failed
    assert served_versions(client.ApiextensionsV1Api(kube), name) == ["v1", "v2"]
    inventory_after = inventory_entries(kube, namespace)
    assert inventory_after.keys() == inventory_before.keys()
    assert inventory_after[crd_id] != inventory_before[crd_id]

    fixed = harness.sync(repo.commit_and_push("v2 fixed", {"widget.yaml": widget(group, 2, version="v2")}))
    assert fixed["result"] == "success", fixed
    assert widget_specs(kube, group, namespace, "v2") == {"w1": {"size": 2}}


def test_a_crd_another_writer_changed_meanwhile_is_left_to_it_and_named(
        harness, widgets_v1, kube, namespace, monkeypatch):
    """Putting the CRD back would undo another writer's change made after the sync wrote it: the sync leaves
    it as it is and says so."""
    from worker.apply import Applier

    repo, group = widgets_v1
    name = f"widgets.{group}"
    extensions = client.ApiextensionsV1Api(kube)
    validate_rest = Applier._validate_rest

    def edited_meanwhile(applier, *args):
        extensions.patch_custom_resource_definition(name, {"metadata": {"annotations": {"edited": "meanwhile"}}},
                                                    field_manager="kubectl-edit")
        return validate_rest(applier, *args)

    monkeypatch.setattr(Applier, "_validate_rest", edited_meanwhile)
    failed = harness.sync(repo.commit_and_push("v2", {
        "crd.yaml": widget_crd(group, minimum=0, versions=("v1", "v2")),
        "widget.yaml": widget(group, -1, version="v2")}))
    assert failed["result"] == "failure", failed
    assert failed["error"].startswith(
        f"validation failed, nothing applied but CustomResourceDefinition/{name} (configured to validate what "
        "uses it; restoring it failed: changed by another writer meanwhile): "), failed
    assert crd_as_it_is(extensions, name)["annotations"] == {"edited": "meanwhile"}
    assert served_versions(extensions, name) == ["v1", "v2"]


# A ServiceAccount that may create and change Namespaces, Deployments and ConfigMaps, not delete Namespaces.
NO_NAMESPACE_DELETE = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "create", "patch"]},
    {"apiGroups": ["", "apps"], "resources": ["configmaps", "deployments"], "verbs": ["*"]}]


def test_a_namespace_that_cannot_be_removed_again_is_named_and_kept_for_prune(
        harness, git_repo, kube, namespace, monkeypatch, restricted_kube):
    from worker import jobs
    from worker.apply import object_id

    new_ns = f"pb-stuck-{uuid.uuid4().hex[:8]}"
    try:
        restricted = restricted_kube(NO_NAMESPACE_DELETE, "patch", "configmaps", namespace)
        admin = jobs.process_kube()
        monkeypatch.setattr(jobs, "process_kube", lambda: restricted)
        repo = git_repo("stuckns")
        harness.configure(repo)

        failed = harness.sync(repo.commit_and_push("bad", {
            "deploy/app.yaml": app_in_new_namespace(new_ns, replicas=-1), "deploy/cm.yaml": configmap("good", "g")}))
        assert failed["result"] == "failure", failed
        assert namespace_live(kube, new_ns)
        assert inventory_ids(kube, namespace) == {object_id("", "Namespace", None, new_ns)}
        assert failed["error"].startswith(
            f"validation failed, nothing applied but Namespace/{new_ns} (created to validate what it holds; "
            "removing it again failed: HTTP 403: "), failed
        assert f"Deployment/{new_ns}/fluxdemo (deploy/app.yaml, doc 2): spec.replicas: Invalid value: -1" \
            in failed["error"]

        # With the right to delete again, the next commit (which no longer declares it) prunes it.
        monkeypatch.setattr(jobs, "process_kube", lambda: admin)
        repo.remove("deploy/app.yaml")
        done = harness.sync(repo.commit_and_push("drop it"))
        assert done["result"] == "success", done
        assert done["counts"]["deleted"] == 1 and done["counts"]["created"] == 1
        assert not namespace_live(kube, new_ns)
    finally:
        if read_namespace(kube, new_ns) is not None:
            client.CoreV1Api(kube).delete_namespace(new_ns)
