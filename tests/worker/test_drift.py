"""Periodic reconcile on the real stack: drift reverted, recorded, reported, ignored; suspend."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from rq import Queue

from pullbridge import keys
from pullbridge.cli import main as cli_main

from tests.worker.drift_support import (apply_as, counters, drift_record, ignoring, kubectl, replicas, run_reconcile,
                                        with_alerts)
from tests.worker.sync_manifests import app_files, cm_value, deployment

pytestmark = pytest.mark.stack


@pytest.fixture
def synced(harness, git_repo):
    """The demo app synced once (Deployment fluxdemo at 1 replica)."""
    repo = git_repo("drift")
    repo.commit_and_push("v1", app_files("1.0"))
    harness.configure(repo, interval="10s")
    assert harness.sync(None)["result"] == "success"
    harness.git = repo
    return harness


def test_kubectl_scale_is_reverted_and_recorded(synced, stack, namespace, monkeypatch):
    with_alerts(synced, monkeypatch, ["drift_corrected"])
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=4", "-n", namespace)
    assert replicas(stack, namespace) == 4
    result = run_reconcile(synced)
    assert result["result"] == "drift corrected" and result["corrected"] == 1
    assert replicas(stack, namespace) == 1
    record = drift_record(synced)
    [entry] = record["drift_entries"]
    assert entry["object"] == f"Deployment/{namespace}/fluxdemo"
    assert (entry["field"], entry["live"], entry["declared"], entry["corrected"]) == ("spec.replicas", 4, 1, True)
    assert entry["manager"].startswith("kubectl") and entry["subresource"] == "scale"
    assert entry["operation"] == "Update"  # no time: the API server records none for /scale updates
    assert {"object": f"Deployment/{namespace}/fluxdemo", "action": "configured",
            "source": "deploy/app.yaml, doc 2"} in record["changes"]
    summary = synced.history()[0]
    assert summary["drift"] == {"objects": 1, "fields": 1, "corrected": 1}
    assert summary["sha"] == synced.state()["applied_sha"]
    assert counters(synced)["drift_found|app|"] == 1 and counters(synced)["drift_corrected|app|"] == 1
    [alert_job] = Queue(keys.STATUS_QUEUE, connection=synced.conn).jobs
    alert = alert_job.args[1]
    assert (alert["event"], alert["sync_id"]) == ("drift_corrected", record["id"])
    assert "spec.replicas: live 4 declared 1" in alert["summary"]
    # Nothing drifted any more: the next interval only records the check.
    assert run_reconcile(synced)["result"] == "in sync"
    assert synced.state()["last_check_result"].startswith("in sync")


def test_deleted_object_is_recreated(synced, stack, namespace, kube):
    cached = Path(os.environ["PULLBRIDGE_CACHE_DIR"]) / "app.rendered"
    from worker import rendercache
    from worker.fetch import Mirror
    expected = rendercache._cache_file(Mirror(synced.repo), synced.state()["applied_sha"], synced.repo.path).name
    assert [p.name for p in cached.glob("*.json")] == [expected], \
        "the sync leaves its rendered objects for the drift scan"
    kubectl(stack, "delete", "configmap", "settings", "-n", namespace)
    result = run_reconcile(synced)
    assert result["corrected"] == 1
    assert cm_value(kube, namespace, "settings") == "a"
    [entry] = drift_record(synced)["drift_entries"]
    assert (entry["object"], entry["field"], entry["live"], entry["corrected"]) == \
        (f"ConfigMap/{namespace}/settings", "(object)", None, True)


def test_edited_configmap_is_restored(synced, stack, namespace, kube):
    kubectl(stack, "patch", "configmap", "nginx-conf", "-n", namespace, "--type=merge",
            "-p", json.dumps({"data": {"value": "hacked", "extra": "kept"}}))
    run_reconcile(synced)
    assert cm_value(kube, namespace, "nginx-conf") == "1.0"
    [entry] = drift_record(synced)["drift_entries"]
    assert (entry["field"], entry["live"], entry["declared"]) == ("data.value", "hacked", "1.0")
    assert entry["manager"].startswith("kubectl")


def test_report_mode_leaves_drift_in_place_but_records_it(synced, stack, namespace):
    synced.configure(synced.git, interval="10s", mode="report")
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=3", "-n", namespace)
    result = run_reconcile(synced)
    assert result["result"] == "drift reported" and result["corrected"] == 0
    assert replicas(stack, namespace) == 3
    record = drift_record(synced)
    assert record["dry_run"] is True
    assert [(e["field"], e["live"], e["declared"], e["corrected"]) for e in record["drift_entries"]] == \
        [("spec.replicas", 3, 1, False)]
    assert counters(synced)["drift_corrected|app|"] == 0


def test_ignored_fields_are_neither_applied_nor_corrected(harness, git_repo, stack, namespace):
    repo = git_repo("ignore")
    annotated = ignoring("spec.replicas", deployment("fluxdemo", "1.0", replicas=2))
    repo.commit_and_push("v1", {"deploy/app.yaml": annotated})
    harness.configure(repo, interval="10s")
    assert harness.sync(None)["result"] == "success"
    live = json.loads(kubectl(stack, "get", "deployment", "fluxdemo", "-n", namespace, "-o", "json",
                              "--show-managed-fields"))
    ours = [m for m in live["metadata"]["managedFields"] if m["manager"] == "pullbridge"]
    assert ours and all("f:replicas" not in m["fieldsV1"].get("f:spec", {}) for m in ours)
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=5", "-n", namespace)
    assert run_reconcile(harness)["result"] == "in sync"
    assert replicas(stack, namespace) == 5
    # A new commit is applied without touching the replicas either.
    repo.commit_and_push("v2", {"deploy/app.yaml": annotated.replace('"1.0"', '"2.0"')})
    assert harness.sync(None)["result"] == "success"
    assert replicas(stack, namespace) == 5


def test_ignored_item_by_position_of_a_named_list_does_not_flap(harness, git_repo, stack, namespace, tmp_path):
    """``containers[0].image`` is removed from the apply by position, so the scan must skip it by name.

    Report mode scans the freshly rendered commit (annotation and all), as a scan does whenever
    the applied commit's rendered objects are no longer cached."""
    apply_as(stack, namespace, "someone-else", deployment("fluxdemo", "1.0"), tmp_path)
    repo = git_repo("ignore-index")
    annotated = ignoring("spec.template.spec.containers[0].image", deployment("fluxdemo", "1.0"))
    repo.commit_and_push("v1", {"deploy/app.yaml": annotated})
    harness.configure(repo, interval="10s", mode="report")
    kubectl(stack, "annotate", "deployment/fluxdemo", "-n", namespace,
            "pullbridge.io/ignore-fields=spec.template.spec.containers[0].image")
    kubectl(stack, "set", "image", "deployment/fluxdemo", "nginx=nginx:1.28-set-by-other", "-n", namespace)
    assert run_reconcile(harness)["result"] == "in sync"
    assert harness.history() == []
    kubectl(stack, "set", "image", "deployment/fluxdemo", "flask=python:3.12", "-n", namespace)
    assert run_reconcile(harness)["result"] == "drift reported"  # the other container is still compared
    assert [e["field"] for e in drift_record(harness)["drift_entries"]] == \
        ["spec.template.spec.containers[name=flask].image"]


def test_ignored_item_by_position_in_apply_mode_leaves_the_other_items_checked(harness, git_repo, stack, namespace,
                                                                             tmp_path):
    """``containers[0]`` (a sidecar another manager injects) is left out of the apply.  The scan of
    the applied commit reads the objects the sync cached: they must be the declared ones, so that
    ``[0]`` still names the sidecar, not the container after it, and a correction strips it once."""
    apply_as(stack, namespace, "injector", deployment("fluxdemo", "1.0"), tmp_path)
    repo = git_repo("ignore-index-apply")
    annotated = ignoring("spec.template.spec.containers[0]", deployment("fluxdemo", "1.0"))
    repo.commit_and_push("v1", {"deploy/app.yaml": annotated})
    harness.configure(repo, interval="10s")
    assert harness.sync(None)["result"] == "success"
    assert run_reconcile(harness)["result"] == "in sync"
    kubectl(stack, "set", "image", "deployment/fluxdemo", "nginx=nginx:1.28-injected", "-n", namespace)
    kubectl(stack, "set", "image", "deployment/fluxdemo", "flask=python:3.12", "-n", namespace)
    result = run_reconcile(harness)
    assert (result["result"], result.get("corrected")) == ("drift corrected", 1), result
    assert [(e["field"], e["live"], e["declared"]) for e in drift_record(harness)["drift_entries"]] == \
        [("spec.template.spec.containers[name=flask].image", "python:3.12", "python:3.11-slim")]
    live = json.loads(kubectl(stack, "get", "deployment", "fluxdemo", "-n", namespace, "-o", "json"))
    assert [(c["name"], c["image"]) for c in live["spec"]["template"]["spec"]["containers"]] == \
        [("nginx", "nginx:1.28-injected"), ("flask", "python:3.11-slim")]
    # The cache (this process's memory, and the file other workers read) holds the declared bodies.
    from worker import rendercache
    from worker.fetch import Mirror
    sha = harness.state()["applied_sha"]
    [cache_file] = (Path(os.environ["PULLBRIDGE_CACHE_DIR"]) / "app.rendered").glob("*.json")
    for bodies in ([m.obj for m in rendercache.rendered(Mirror(harness.repo), sha)],
                   [d["obj"] for d in json.loads(cache_file.read_text())]):
        [body] = bodies
        assert [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["nginx", "flask"]


def test_duplicate_runs_in_one_interval_do_nothing(synced, stack, namespace):
    assert run_reconcile(synced)["result"] == "in sync"
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=2", "-n", namespace)
    assert run_reconcile(synced, next_interval=False)["result"] == "duplicate"
    assert replicas(stack, namespace) == 2


def test_suspend_stops_syncs_and_corrections(synced, stack, namespace, kube, capsys):
    assert cli_main(["suspend", "nope"]) == 2
    assert "unknown repository 'nope' (configured: app)" in capsys.readouterr().err
    assert cli_main(["suspend", "app"]) == 0
    assert "suspended" in capsys.readouterr().out
    assert synced.state()["suspended"] == "1"
    sha2 = synced.git.commit_and_push("v2", app_files("2.0"))
    skipped = synced.sync(sha2)
    assert skipped["result"] == "skipped" and "skipped: suspended" in skipped["notes"]
    assert cm_value(kube, namespace, "nginx-conf") == "1.0"
    assert synced.conn.zscore(keys.wanted("app"), sha2) is not None, "the wanted commit is kept"
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=4", "-n", namespace)
    assert run_reconcile(synced)["result"] == "suspended"
    assert synced.state()["last_check_result"].startswith("suspended")
    assert replicas(stack, namespace) == 4
    assert cli_main(["resume", "app"]) == 0
    assert "sync" in capsys.readouterr().out
    synced.work()
    assert synced.state()["applied_sha"] == sha2 and synced.state()["suspended"] == "0"
    assert cm_value(kube, namespace, "nginx-conf") == "2.0"
    assert replicas(stack, namespace) == 1  # the sync re-applied the Deployment's declared fields


def test_server_normalisation_is_not_drift(harness, git_repo, stack, namespace, tmp_path):
    """Objects Pullbridge never applied (report mode): a dry-run shows 0.1 CPU is stored as 100m."""
    manifest = deployment("fluxdemo", "1.0").replace(
        "          image: nginx:1.27\n",
        "          image: nginx:1.27\n          resources:\n            requests: {cpu: \"0.1\", memory: 0.5Gi}\n", 1)
    apply_as(stack, namespace, "someone-else", manifest, tmp_path)
    repo = git_repo("normalised")
    repo.commit_and_push("v1", {"deploy/app.yaml": manifest})
    harness.configure(repo, interval="10s", mode="report")
    assert run_reconcile(harness)["result"] == "in sync"
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=2", "-n", namespace)
    assert run_reconcile(harness)["result"] == "drift reported"
    assert [e["field"] for e in drift_record(harness)["drift_entries"]] == ["spec.replicas"]


def test_an_edited_item_of_a_list_merged_by_another_key_is_drift(harness, git_repo, stack, namespace):
    """Container ports merge by port and protocol: re-applying keeps the hand-edited item beside
    the declared one, at another position, so the dry-run's item at the declared position is the
    live one.  The scan must still see that the apply changes the list."""
    manifest = deployment("fluxdemo", "1.0").replace(
        "          image: nginx:1.27\n", "          image: nginx:1.27\n          ports:\n            - containerPort: 80\n", 1)
    repo = git_repo("ports")
    repo.commit_and_push("v1", {"deploy/app.yaml": manifest})
    harness.configure(repo, interval="10s")
    assert harness.sync(None)["result"] == "success"
    kubectl(stack, "patch", "deployment", "fluxdemo", "-n", namespace, "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/template/spec/containers/0/ports/0/containerPort", "value": 81}]))
    assert run_reconcile(harness)["result"] == "drift corrected"
    [entry] = drift_record(harness)["drift_entries"]
    assert (entry["object"], entry["field"], entry["live"], entry["declared"]) == \
        (f"Deployment/{namespace}/fluxdemo", "spec.template.spec.containers[name=nginx].ports[0].containerPort", 81, 80)
    assert entry["manager"] == "kubectl-patch", "who changed the item, though managedFields key it by port"
    ports = json.loads(kubectl(stack, "get", "deployment", "fluxdemo", "-n", namespace, "-o",
                               "jsonpath={.spec.template.spec.containers[0].ports}"))
    assert {"containerPort": 80, "protocol": "TCP"} in ports
    # The hand-added port (kubectl owns it) is not declared: left alone, and no drift any more.
    assert run_reconcile(harness)["result"] == "in sync"


def test_an_edited_mount_path_of_a_named_volume_mount_is_drift(harness, git_repo, stack, namespace):
    """volumeMounts are walked by ``name`` but merged by ``mountPath``: the dry-run keeps the
    edited mount first, under the same name, and adds the declared one after it."""
    manifest = deployment("fluxdemo", "1.0").replace(
        "          image: nginx:1.27\n",
        "          image: nginx:1.27\n          volumeMounts:\n            - {name: data, mountPath: /data}\n", 1) + \
        "      volumes:\n        - {name: data, emptyDir: {}}\n"
    repo = git_repo("mounts")
    repo.commit_and_push("v1", {"deploy/app.yaml": manifest})
    harness.configure(repo, interval="10s")
    assert harness.sync(None)["result"] == "success"
    kubectl(stack, "patch", "deployment", "fluxdemo", "-n", namespace, "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/template/spec/containers/0/volumeMounts/0/mountPath", "value": "/other"}]))
    assert run_reconcile(harness)["result"] == "drift corrected"
    [entry] = drift_record(harness)["drift_entries"]
    assert (entry["field"], entry["live"], entry["declared"]) == \
        ("spec.template.spec.containers[name=nginx].volumeMounts[name=data].mountPath", "/other", "/data")
    mounts = json.loads(kubectl(stack, "get", "deployment", "fluxdemo", "-n", namespace, "-o",
                                "jsonpath={.spec.template.spec.containers[0].volumeMounts}"))
    assert {"name": "data", "mountPath": "/data"} in mounts
    assert run_reconcile(harness)["result"] == "in sync"  # the hand-made mount is kubectl's: not fought over


def test_malformed_ignore_annotation_fails_the_sync_clearly(harness, git_repo, kube, namespace):
    repo = git_repo("badignore")
    bad = ignoring("spec..replicas", deployment("fluxdemo", "1.0"))
    repo.commit_and_push("v1", {"deploy/app.yaml": bad, "deploy/cm.yaml": "apiVersion: v1\nkind: ConfigMap\n"
                                "metadata:\n  name: settings\ndata:\n  value: \"a\"\n"})
    harness.configure(repo, interval="10s")
    result = harness.sync(None)
    assert result["result"] == "failure"
    assert "Deployment/fluxdemo (deploy/app.yaml, doc 1)" in result["error"]
    assert "pullbridge.io/ignore-fields" in result["error"]
    assert cm_value(kube, namespace, "settings") is None, "nothing applied"
