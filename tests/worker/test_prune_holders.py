"""Prune never deletes a Namespace or CRD that still holds an object that stays (deleting it would
delete that object too): one annotated ``pullbridge.io/prune: disabled``, one this commit still
declares, or one another repo declares.  On the real stack."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from tests.worker.sync_manifests import cm_value, configmap
from tests.worker.test_apply_undo import CRD, in_namespace, inventory_ids, namespace_doc, read_namespace

pytestmark = pytest.mark.stack

KEEP = "\n  annotations:\n    pullbridge.io/prune: disabled"


def change(harness, summary: dict, ref: str) -> dict:
    from worker import history
    record = history.get_record(harness.conn, summary["id"])
    [found] = [c for c in record["changes"] if c["object"] == ref]
    return found


def live(kube, name: str) -> bool:
    ns = read_namespace(kube, name)
    return ns is not None and ns.metadata.deletion_timestamp is None


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
    assert live(kube, new_namespace) and cm_value(kube, new_namespace, "db") == "d"
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
    assert live(kube, new_namespace) and cm_value(kube, new_namespace, "app") == "a"
    assert change(harness, done, f"Namespace/{new_namespace}")["detail"] == \
        f"holds objects that stay: ConfigMap/{new_namespace}/app (still declared)"
    assert object_id("", "Namespace", None, new_namespace) in inventory_ids(kube, namespace)

    repo.remove("deploy/app.yaml")
    gone = harness.sync(repo.commit_and_push("and now it goes", {"deploy/stays.yaml": configmap("stays", "s")}))
    assert gone["result"] == "success", gone
    assert change(harness, gone, f"Namespace/{new_namespace}")["action"] == "deleted"
    assert not live(kube, new_namespace)


def test_a_namespace_holding_what_another_repo_declares_is_not_deleted(
        harness, git_repo, kube, namespace, new_namespace):
    from pullbridge.queueing import request_sync
    from worker import history

    first, second = git_repo("ownsns"), git_repo("usesns")
    harness.configure_repos([harness.repo_entry("app", first), harness.repo_entry("other", second)])
    config = harness.config

    def sync(index: int, sha: str) -> dict:
        request_sync(harness.conn, config, config.repos[index], sha, reason="push")
        harness.work()
        summary = history.history(harness.conn, config.repos[index].name)[0]
        assert summary["result"] == "success", summary
        return summary

    sync(0, first.commit_and_push("v1", {"deploy/ns.yaml": namespace_doc(new_namespace),
                                         "deploy/stays.yaml": configmap("stays", "s")}))
    sync(1, second.commit_and_push("v1", {"deploy/theirs.yaml": in_namespace(configmap("theirs", "t"),
                                                                              new_namespace)}))
    first.remove("deploy/ns.yaml")
    done = sync(0, first.commit_and_push("drop the namespace"))
    assert live(kube, new_namespace) and cm_value(kube, new_namespace, "theirs") == "t"
    assert change(harness, done, f"Namespace/{new_namespace}")["detail"] == \
        f"holds objects that stay: ConfigMap/{new_namespace}/theirs (still declared by other)"


def test_a_crd_whose_kind_is_still_declared_is_not_deleted(harness, git_repo, kube, namespace):
    group = f"t{uuid.uuid4().hex[:8]}.pullbridge.test"
    widget = f"apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n"
    repo = git_repo("heldcrd")
    harness.configure(repo)
    extensions, custom = client.ApiextensionsV1Api(kube), client.CustomObjectsApi(kube)
    try:
        assert harness.sync(repo.commit_and_push("v1", {"crd.yaml": CRD.format(group=group),
                                                        "widget.yaml": widget}))["result"] == "success"
        repo.remove("crd.yaml")
        done = harness.sync(repo.commit_and_push("the CRD moves to another repo"))
        assert done["result"] == "success", done
        crd = extensions.read_custom_resource_definition(f"widgets.{group}")
        assert crd.metadata.deletion_timestamp is None
        assert custom.get_namespaced_custom_object(group, "v1", namespace, "widgets", "w1")["spec"]["size"] == 3
        assert change(harness, done, f"CustomResourceDefinition/widgets.{group}")["detail"] == \
            f"holds objects that stay: Widget/{namespace}/w1 (still declared)"
    finally:
        try:
            extensions.delete_custom_resource_definition(f"widgets.{group}")
        except client.ApiException as exc:
            if exc.status != 404:
                raise

