"""Prune never deletes a Namespace or CRD that still holds an object that stays (deleting it would
delete that object too): one annotated ``pullbridge.io/prune: disabled``, one this commit still
declares, or one another repo declares.  On the real stack."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from tests.worker.sync_manifests import (cm_value, configmap, in_namespace, inventory_ids, namespace_doc,
                                         namespace_live, read_namespace, sync_repo, widget, widget_crd)

pytestmark = pytest.mark.stack

KEEP = "\n  annotations:\n    pullbridge.io/prune: disabled"


def change(harness, summary: dict, ref: str) -> dict:
    from worker import history
    record = history.get_record(harness.conn, summary["id"])
    [found] = [c for c in record["changes"] if c["object"] == ref]
    return found


def assert_kept_for_its_annotated_db(harness, kube, namespace: str, held: str, done: dict) -> None:
    """The sync ``done`` succeeded and kept Namespace ``held``, which holds the ConfigMap db annotated
    ``pullbridge.io/prune: disabled``, and Pullbridge let go of both: it would not see the annotated
    object on a later sync."""
    from worker.apply import object_id

    assert done["result"] == "success", done
    assert namespace_live(kube, held) and cm_value(kube, held, "db") == "d"
    assert change(harness, done, f"Namespace/{held}") == {
        "object": f"Namespace/{held}", "action": "skipped",
        "detail": f"holds objects that stay: ConfigMap/{held}/db (pullbridge.io/prune: disabled)"}
    assert object_id("", "Namespace", None, held) not in inventory_ids(kube, namespace)


@pytest.fixture
def new_namespace(kube):
    name = f"pb-held-{uuid.uuid4().hex[:8]}"
    yield name
    if read_namespace(kube, name) is not None:
        client.CoreV1Api(kube).delete_namespace(name)


def test_a_namespace_holding_an_object_kept_by_annotation_is_not_deleted(
        harness, git_repo, kube, namespace, new_namespace):
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
    assert_kept_for_its_annotated_db(harness, kube, namespace, new_namespace, done)
    assert cm_value(kube, new_namespace, "app") is None


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


def test_a_crd_whose_kind_is_still_declared_is_not_deleted(harness, git_repo, kube, namespace, widget_groups):
    group = widget_groups()
    repo = git_repo("heldcrd")
    harness.configure(repo)
    extensions, custom = client.ApiextensionsV1Api(kube), client.CustomObjectsApi(kube)
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


def test_a_namespace_holding_an_annotated_object_let_go_of_earlier_is_not_deleted(
        harness, git_repo, kube, namespace, new_namespace):
    from worker.apply import object_id

    repo = git_repo("letgons")
    harness.configure(repo)
    assert harness.sync(repo.commit_and_push("v1", {
        "deploy/ns.yaml": namespace_doc(new_namespace),
        "deploy/db.yaml": in_namespace(configmap("db", "d", KEEP), new_namespace),
        "deploy/stays.yaml": configmap("stays", "s")}))["result"] == "success"
    repo.remove("deploy/db.yaml")
    let_go = harness.sync(repo.commit_and_push("Git no longer declares db"))
    assert change(harness, let_go, f"ConfigMap/{new_namespace}/db")["detail"] == "pullbridge.io/prune: disabled"
    assert object_id("", "ConfigMap", new_namespace, "db") not in inventory_ids(kube, namespace)

    repo.remove("deploy/ns.yaml")
    done = harness.sync(repo.commit_and_push("drop the namespace"))
    assert_kept_for_its_annotated_db(harness, kube, namespace, new_namespace, done)


def test_a_crd_whose_annotated_object_was_let_go_of_earlier_is_not_deleted(
        harness, git_repo, kube, namespace, widget_groups):
    group = widget_groups()
    repo = git_repo("letgocrd")
    harness.configure(repo)
    extensions, custom = client.ApiextensionsV1Api(kube), client.CustomObjectsApi(kube)
    assert harness.sync(repo.commit_and_push("v1", {
        "crd.yaml": widget_crd(group), "widget.yaml": widget(group, 3).replace("name: w1", "name: w1" + KEEP),
        "stays.yaml": configmap("stays", "s")}))["result"] == "success"
    repo.remove("widget.yaml")
    assert harness.sync(repo.commit_and_push("Git no longer declares w1"))["result"] == "success"
    repo.remove("crd.yaml")
    done = harness.sync(repo.commit_and_push("drop the CRD"))
    assert done["result"] == "success", done
    assert extensions.read_custom_resource_definition(f"widgets.{group}").metadata.deletion_timestamp is None
    assert custom.get_namespaced_custom_object(group, "v1", namespace, "widgets", "w1")["spec"]["size"] == 3
    assert change(harness, done, f"CustomResourceDefinition/widgets.{group}")["detail"] == \
        f"holds objects that stay: Widget/{namespace}/w1 (pullbridge.io/prune: disabled)"


def test_what_a_namespace_holds_is_read_page_by_page(stack, kube, namespace, monkeypatch):
    from worker import kube as kube_module
    from worker.kube import process_kube

    for name in ("a", "b", "c"):
        client.CoreV1Api(kube).create_namespaced_config_map(namespace, {"metadata": {"name": f"page-{name}"}})
    monkeypatch.setattr(kube_module, "LIST_PAGE", 1)
    kinds, _ = process_kube().namespaced_kinds()
    [configmaps] = [m for m in kinds if (m.group, m.kind) == ("", "ConfigMap")]
    names = {meta["name"] for meta in process_kube().list_metadata(configmaps.collection(namespace))}
    assert {"page-a", "page-b", "page-c"} <= names


def test_a_namespace_holding_a_kind_prune_may_not_list_is_not_deleted(kube, namespace, new_namespace,
                                                                       restricted_kube):
    from worker.apply import object_id
    from worker.prune import prune

    client.CoreV1Api(kube).create_namespace({"metadata": {"name": new_namespace}})
    restricted = restricted_kube([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "delete"]}],
                                 "delete", "namespaces")
    # It cannot tell whether the Namespace holds an annotated object: it keeps it, naming what it may not
    # list, and keeps tracking it (a later sync, allowed to list, decides); the sync goes on.
    oid = object_id("", "Namespace", None, new_namespace)
    pruned = prune(restricted, {oid: {"v": "v1"}}, {})
    assert [c.as_dict() for c in pruned.changes] == [{
        "object": f"Namespace/{new_namespace}", "action": "skipped",
        "detail": f"could not look through kind ConfigMap in v1: HTTP 403: forbidden: User "
                  f"\"system:serviceaccount:{namespace}:pullbridge\" cannot list resource \"configmaps\" "
                  f"in API group \"\" in the namespace \"{new_namespace}\""}]
    assert pruned.kept == {oid: {"v": "v1"}}
    assert namespace_live(kube, new_namespace)


UNAVAILABLE = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
               "message": "the server is currently unable to handle the request", "reason": "ServiceUnavailable"}


def test_a_namespace_is_kept_while_an_aggregated_apis_discovery_is_down_and_pruned_once_it_is_back(
        harness, git_repo, kube, namespace, new_namespace, monkeypatch):
    """An aggregated API whose server is down (metrics-server, say) answers its discovery 503: what it
    serves in the Namespace cannot be looked through.  The sync succeeds and keeps the Namespace, saying
    why, and keeps tracking it; once the API is back, the next sync prunes it.  The worker's Kube sees
    that API through a wrapper of its requests (a real APIService to a dead Service would stall every
    Namespace's deletion on the cluster, other tests' included)."""
    import json

    from worker import kube as kube_module
    from worker.apply import object_id
    from worker.kube import ApiError, Kube

    worker = Kube(kube)
    real_request, metrics_down = worker.request, [True]

    def request(method, path, *args, **kwargs):
        if metrics_down[0] and path == "/apis":
            served = real_request(method, path, *args, **kwargs)
            version = {"groupVersion": "metrics.example.com/v1beta1", "version": "v1beta1"}
            served["groups"].append({"name": "metrics.example.com", "versions": [version],
                                     "preferredVersion": version})
            return served
        if metrics_down[0] and path.startswith("/apis/metrics.example.com/"):
            raise ApiError(503, json.dumps(UNAVAILABLE).encode(), method, path)
        return real_request(method, path, *args, **kwargs)

    monkeypatch.setattr(worker, "request", request)
    monkeypatch.setattr(kube_module, "_process_kube", worker)
    repo = git_repo("metricsdown")
    harness.configure(repo)
    assert harness.sync(repo.commit_and_push("v1", {
        "deploy/ns.yaml": namespace_doc(new_namespace),
        "deploy/app.yaml": in_namespace(configmap("app", "a"), new_namespace),
        "deploy/stays.yaml": configmap("stays", "s")}))["result"] == "success"
    repo.remove("deploy/ns.yaml")
    repo.remove("deploy/app.yaml")
    kept = harness.sync(repo.commit_and_push("drop the namespace"))
    assert kept["result"] == "success", kept
    assert change(harness, kept, f"Namespace/{new_namespace}") == {
        "object": f"Namespace/{new_namespace}", "action": "skipped",
        "detail": "could not look through metrics.example.com/v1beta1: HTTP 503: "
                  "the server is currently unable to handle the request"}
    assert namespace_live(kube, new_namespace) and cm_value(kube, new_namespace, "app") is None
    assert object_id("", "Namespace", None, new_namespace) in inventory_ids(kube, namespace)

    metrics_down[0] = False
    pruned = harness.sync(repo.commit_and_push("metrics are back", {"deploy/stays.yaml": configmap("stays", "t")}))
    assert pruned["result"] == "success", pruned
    assert change(harness, pruned, f"Namespace/{new_namespace}")["action"] == "deleted"
    assert not namespace_live(kube, new_namespace)
    assert object_id("", "Namespace", None, new_namespace) not in inventory_ids(kube, namespace)



def test_the_inventory_namespace_is_not_deleted_and_is_let_go_of(harness, git_repo, kube, namespace, new_namespace):
    """Git declared the Namespace that holds the inventories (Pullbridge's own, managed from Git), then
    dropped it: deleting it would delete every repo's inventory, and with them what each must prune."""
    import json

    from worker.apply import object_id
    from worker.inventory import configmap_name

    first, second = git_repo("ownsinv"), git_repo("otherinv")
    harness.configure_repos([harness.repo_entry("app", first), harness.repo_entry("other", second)])
    config = json.loads(harness.config_path.read_text())
    config["worker"]["inventory_namespace"] = new_namespace
    harness.config_path.write_text(json.dumps(config))
    harness.configure_from_file()
    sync_repo(harness, 1, second.commit_and_push("v1", {"deploy/theirs.yaml": configmap("theirs", "t")}))
    sync_repo(harness, 0, first.commit_and_push("v1", {"deploy/ns.yaml": namespace_doc(new_namespace),
                                                       "deploy/stays.yaml": configmap("stays", "s")}))
    first.remove("deploy/ns.yaml")
    done = sync_repo(harness, 0, first.commit_and_push("Pullbridge's namespace is no longer in Git"))
    assert namespace_live(kube, new_namespace)
    assert change(harness, done, f"Namespace/{new_namespace}") == {
        "object": f"Namespace/{new_namespace}", "action": "skipped",
        "detail": f"holds objects that stay: ConfigMap/{new_namespace}/{configmap_name('app')} "
                  "(Pullbridge's inventory)"}
    assert object_id("", "Namespace", None, new_namespace) not in inventory_ids(kube, new_namespace)
    theirs = client.CoreV1Api(kube).read_namespaced_config_map(configmap_name("other"), new_namespace)
    assert object_id("", "ConfigMap", namespace, "theirs") in json.loads(theirs.data["inventory.json"])
