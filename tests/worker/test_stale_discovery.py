"""The worker's discovery cache never outlives a kind.

A worker process keeps one Kube (``worker.kube.process_kube``) and with it what
discovery said about each API group.  A CRD that prune deleted, or that
someone deleted by hand, must not leave its kind "served" in that cache: the
next commit that declares the CRD creates it again, a drift check reports it
deleted, and a kind that is really gone fails by name.  Every sync and check
here runs in this test process, so they all share one Kube, as the jobs of one
long-lived worker process do.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from pullbridge import keys
from tests.kube_support import SAFETY_TIMEOUT, unless_gone
from tests.rq_support import enqueue_when_due
from tests.worker.drift_support import drift_record, run_reconcile
from tests.worker.sync_manifests import configmap, in_namespace, namespace_doc, widget, widget_crd, widget_specs

pytestmark = pytest.mark.stack


def delete_crd(extensions, group: str) -> None:
    """Delete widgets.<group> and wait until the API server no longer has it (its Widgets went with it)."""
    name = f"widgets.{group}"
    with unless_gone():
        extensions.delete_custom_resource_definition(name)
    deadline = time.monotonic() + SAFETY_TIMEOUT
    while any(c.metadata.name == name for c in extensions.list_custom_resource_definition().items):
        assert time.monotonic() < deadline, f"CustomResourceDefinition/{name} was never gone"
        time.sleep(0.1)


@pytest.fixture
def widgets(harness, git_repo, kube, namespace, widget_groups):
    """A repo whose first commit, synced, declares the Widget CRD of a group of the test's own
    (``repo.group``), one Widget (size 1) and a ConfigMap; the CRD is deleted afterwards."""
    group = widget_groups()
    repo = git_repo("widgets")
    harness.configure(repo)
    repo.group = group
    files = {"crd.yaml": widget_crd(group), "widget.yaml": widget(group, 1), "cm.yaml": configmap("kept", "k")}
    assert harness.sync(repo.commit_and_push("v1", files))["result"] == "success"
    assert widget_specs(kube, group, namespace) == {"w1": {"size": 1}}
    return repo


def test_a_crd_pruned_then_declared_again_is_created_again(harness, widgets, kube, namespace):
    from worker.kube import process_kube

    group, extensions = widgets.group, client.ApiextensionsV1Api(kube)
    widgets.remove("crd.yaml")
    widgets.remove("widget.yaml")
    dropped = harness.sync(widgets.commit_and_push("drop the widgets"))
    assert dropped["result"] == "success", dropped
    worker = process_kube()
    asked = worker.requests
    worker.mapping(f"{group}/v1", "Widget")
    assert worker.requests == asked + 1, "prune deleted the CRD but the worker still serves its kind from its cache"
    delete_crd(extensions, group)  # pruned: wait until it is gone

    back = harness.sync(widgets.commit_and_push("widgets again", {"crd.yaml": widget_crd(group),
                                                                  "widget.yaml": widget(group, 2)}))
    assert back["result"] == "success", back
    assert widget_specs(kube, group, namespace) == {"w1": {"size": 2}}


def test_a_crd_deleted_by_hand_is_created_again_by_the_next_commit(harness, widgets, kube, namespace):
    group = widgets.group
    delete_crd(client.ApiextensionsV1Api(kube), group)
    done = harness.sync(widgets.commit_and_push("bigger", {"widget.yaml": widget(group, 2)}))
    assert done["result"] == "success", done
    assert widget_specs(kube, group, namespace) == {"w1": {"size": 2}}
    from worker import history
    changes = history.get_record(harness.conn, done["id"])["changes"]
    assert {(c["object"], c["action"]) for c in changes} >= {
        (f"CustomResourceDefinition/widgets.{group}", "created"), (f"Widget/{namespace}/w1", "created")}


def test_a_kind_gone_for_good_fails_naming_the_object(harness, widgets, kube, namespace):
    group = widgets.group
    widgets.remove("crd.yaml")  # the CRD is someone else's now, and they delete it
    delete_crd(client.ApiextensionsV1Api(kube), group)
    failed = harness.sync(widgets.commit_and_push("the CRD moves elsewhere"))
    assert failed["result"] == "failure", failed
    assert failed["error"] == ("validation failed, nothing applied: "
                               f"Widget/w1 (widget.yaml, doc 1): the API server has no kind Widget in {group}/v1"), \
        failed


def test_a_kind_discovered_cluster_scoped_goes_where_declared_once_its_crd_is_back_namespaced(
        harness, git_repo, kube, namespace, widget_groups):
    """The worker discovered Widget cluster-scoped; its CRD was deleted by hand, and the commit declares it
    again, namespaced, with a Widget in a namespace of its own.  Listing finds the cached kind gone and the
    objects are planned again: the Widget goes to the namespace it declares, not to the repo's default one
    (the first planning, with the stale cluster scope, must not have taken its namespace away)."""
    group, declared = widget_groups(), f"{namespace}-declared"
    extensions, core = client.ApiextensionsV1Api(kube), client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": declared}})
    repo = git_repo("rescoped")
    harness.configure(repo)
    try:
        cluster_scoped = widget_crd(group).replace("scope: Namespaced", "scope: Cluster")
        first = harness.sync(repo.commit_and_push("cluster-scoped widgets", {
            "crd.yaml": cluster_scoped, "widget.yaml": widget(group, 1)}))
        assert first["result"] == "success", first
        delete_crd(extensions, group)
        done = harness.sync(repo.commit_and_push("namespaced widgets", {
            "crd.yaml": widget_crd(group), "widget.yaml": in_namespace(widget(group, 2), declared)}))
        assert done["result"] == "success", done
        assert widget_specs(kube, group, declared) == {"w1": {"size": 2}}
        assert widget_specs(kube, group, namespace) == {}
    finally:
        core.delete_namespace(declared)


def test_a_crd_deleted_by_hand_in_a_new_namespace_is_created_again_on_retry(harness, widgets, kube, namespace):
    """Objects in a Namespace the commit creates are not listed before it exists: their dry-run is what
    finds the kind gone.  Nothing stays applied, the error is temporary and names the object, and the
    retry, with the kind looked up afresh, creates the CRD first."""
    group, fresh = widgets.group, f"{namespace}-new"
    delete_crd(client.ApiextensionsV1Api(kube), group)
    try:
        sha = widgets.commit_and_push("a namespace of widgets", {
            "ns.yaml": namespace_doc(fresh), "widget.yaml": in_namespace(widget(group, 3), fresh)})
        queued = harness.request(sha)
        harness.work()
        first = harness.history()[0]
        assert first["result"] == "retrying", first
        assert first["error"].startswith(f"TemporaryError: dry-run of Widget/{fresh}/w1: HTTP 404: "), first
        assert first["error"].endswith(f"; nothing applied (created Namespace/{fresh} removed again)"), first
        enqueue_when_due(harness.conn, keys.SYNC_QUEUE, queued.job_id)
        harness.work()
        again = harness.history()[0]
        assert again["result"] == "success", again
        assert widget_specs(kube, group, fresh) == {"w1": {"size": 3}}
    finally:
        with unless_gone():
            client.CoreV1Api(kube).delete_namespace(fresh)


def test_a_drift_check_reports_a_crd_deleted_by_hand_and_creates_it_again(harness, widgets, kube, namespace):
    group = widgets.group
    harness.configure(widgets, interval="10s")
    delete_crd(client.ApiextensionsV1Api(kube), group)
    checked = run_reconcile(harness)
    assert checked["result"] == "drift corrected", checked
    assert client.ApiextensionsV1Api(kube).read_custom_resource_definition(f"widgets.{group}")
    record = drift_record(harness)
    assert f"Widget/w1: kind Widget in {group}/v1 is not served; not checked" in record["notes"]
    # Its Widget, gone with it, is drift the next check finds and corrects.
    assert run_reconcile(harness)["result"] == "drift corrected"
    assert widget_specs(kube, group, namespace) == {"w1": {"size": 1}}
