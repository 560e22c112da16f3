"""Prune never deletes a Namespace or CRD that still holds an object that stays (deleting it would
delete that object too): one annotated ``pullbridge.io/prune: disabled``, one this commit still
declares, or one another repo declares.  On the real stack."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from tests.kube_support import unless_gone
from tests.worker.sync_manifests import (cm_value, configmap, in_namespace, inventory_ids, namespace_doc,
                                         namespace_live, read_namespace, sync_repo, widget, widget_crd, widget_group)

pytestmark = pytest.mark.stack

KEEP = "\n  annotations:\n    pullbridge.io/prune: disabled"


def change(harness, summary: dict, ref: str) -> dict:
    from worker import history
    record = history.get_record(harness.conn, summary["id"])
    [found] = [c for c in record["changes"] if c["object"] == ref]
    return found


@pytest.fixture
def new_namespace(kube):
    name = f"pb-held-{uuid.uuid4().hex[:8]}"
    yield name
    if read_namespace(kube, name) is not None:
        client.CoreV1Api(kube).delete_namespace(name)


def test_a_namespace_holding_an_object_kept_by_annotation_is_not_deleted(
        harness, git_repo, kube, namespace, new_namespace):
    from worker.apply import object_id

    repo = git_repo("heldns")
    harness.configure(repo)
    files = {"deploy/ns.yaml": namespace_doc(new_namespace),
             "deploy/db.yaml": in_namespace(configmap("db", "d", KEEP), new_namespace),
             "deploy/app.yaml": in_namespace(configmap("app", "a"), new_namespace),
             "deploy/stays.yaml": configmap("stays", "s")}
    assert harness.sync(repo.commit_and_push("v1", files))["result"] == "success"
    for path in ("deploy/ns.yaml", "deploy/db.yaml", "deploy/app.yaml"):
        repo.remove(path)
    done = harness.sync(repo.commit_and_push("drop the namespace"))
    assert done["result"] == "success", done
    assert namespace_live(kube, new_namespace) and cm_value(kube, new_namespace, "db") == "d"
    assert cm_value(kube, new_namespace, "app") is None
    assert change(harness, done, f"Namespace/{new_namespace}") == {
        "object": f"Namespace/{new_namespace}", "action": "skipped",
        "detail": f"holds objects that stay: ConfigMap/{new_namespace}/db (pullbridge.io/prune: disabled)"}
    # Pullbridge lets go of both: it would not see the annotated object on a later sync.
    assert object_id("", "Namespace", None, new_namespace) not in inventory_ids(kube, namespace)


def test_a_namespace_whose_objects_the_commit_still_declares_waits_until_they_go(
        harness, git_repo, kube, namespace, new_namespace):
    from worker.apply import object_id

    repo = git_repo("declaredns")
    harness.configure(repo)
    assert harness.sync(repo.commit_and_push("v1", {
        "deploy/ns.yaml": namespace_doc(new_namespace),
        "deploy/app.yaml": in_namespace(configmap("app", "a"), new_namespace)}))["result"] == "success"
    repo.remove("deploy/ns.yaml")
    done = harness.sync(repo.commit_and_push("the namespace is declared elsewhere now"))
    assert done["result"] == "success", done
    assert namespace_live(kube, new_namespace) and cm_value(kube, new_namespace, "app") == "a"
    assert change(harness, done, f"Namespace/{new_namespace}")["detail"] == \
        f"holds objects that stay: ConfigMap/{new_namespace}/app (still declared)"
    assert object_id("", "Namespace", None, new_namespace) in inventory_ids(kube, namespace)

    repo.remove("deploy/app.yaml")
    gone = harness.sync(repo.commit_and_push("and now it goes", {"deploy/stays.yaml": configmap("stays", "s")}))
    assert gone["result"] == "success", gone
    assert change(harness, gone, f"Namespace/{new_namespace}")["action"] == "deleted"
    assert not namespace_live(kube, new_namespace)


def test_a_namespace_holding_what_another_repo_declares_is_not_deleted(
        harness, git_repo, kube, namespace, new_namespace):
    first, second = git_repo("ownsns"), git_repo("usesns")
    harness.configure_repos([harness.repo_entry("app", first), harness.repo_entry("other", second)])
    sync_repo(harness, 0, first.commit_and_push("v1", {"deploy/ns.yaml": namespace_doc(new_namespace),
                                                       "deploy/stays.yaml": configmap("stays", "s")}))
    theirs = in_namespace(configmap("theirs", "t"), new_namespace)
    sync_repo(harness, 1, second.commit_and_push("v1", {"deploy/theirs.yaml": theirs}))
    first.remove("deploy/ns.yaml")
    done = sync_repo(harness, 0, first.commit_and_push("drop the namespace"))
    assert namespace_live(kube, new_namespace) and cm_value(kube, new_namespace, "theirs") == "t"
    assert change(harness, done, f"Namespace/{new_namespace}")["detail"] == \
        f"holds objects that stay: ConfigMap/{new_namespace}/theirs (still declared by other)"


def test_a_crd_whose_kind_is_still_declared_is_not_deleted(harness, git_repo, kube, namespace):
    group = widget_group()
    repo = git_repo("heldcrd")
    harness.configure(repo)
    extensions, custom = client.ApiextensionsV1Api(kube), client.CustomObjectsApi(kube)
    try:
        assert harness.sync(repo.commit_and_push("v1", {"crd.yaml": widget_crd(group, minimum=0),
                                                        "widget.yaml": widget(group, 3)}))["result"] == "success"
        repo.remove("crd.yaml")
        done = harness.sync(repo.commit_and_push("the CRD moves to another repo"))
        assert done["result"] == "success", done
        crd = extensions.read_custom_resource_definition(f"widgets.{group}")
        assert crd.metadata.deletion_timestamp is None
        assert custom.get_namespaced_custom_object(group, "v1", namespace, "widgets", "w1")["spec"]["size"] == 3
        assert change(harness, done, f"CustomResourceDefinition/widgets.{group}")["detail"] == \
            f"holds objects that stay: Widget/{namespace}/w1 (still declared)"
    finally:
        with unless_gone():
            extensions.delete_custom_resource_definition(f"widgets.{group}")

