"""Drift reports on the real stack: Secret values hidden, rejected dry-runs reported, honest results."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from rq import Queue

from pullbridge import keys
from worker import history

from tests.worker.drift_support import drift_record, kubectl, run_reconcile, with_alerts
from tests.worker.sync_manifests import app_files

pytestmark = pytest.mark.stack

SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: db
  labels: {tier: db}
data:
  password: Z2l0LWRlY2xhcmVkLVBX
"""

JOB = """apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: busybox:1.36
"""


def queued_alerts(harness) -> list[dict]:
    return [job.args[1] for job in Queue(keys.STATUS_QUEUE, connection=harness.conn).jobs]


@pytest.fixture
def synced_with(harness, git_repo):
    """Sync the demo app plus ``extra`` files once; returns the harness."""
    def sync(extra: dict[str, str], **repo_fields):
        repo = git_repo("drift")
        repo.commit_and_push("v1", {**app_files("1.0"), **extra})
        harness.configure(repo, interval="10s", **repo_fields)
        assert harness.sync(None)["result"] == "success"
        harness.git = repo
        return harness
    return sync


def test_secret_values_of_drift_reach_no_log_alert_or_record(synced_with, stack, namespace, monkeypatch,
                                                             caplog):
    harness = synced_with({"deploy/secret.yaml": SECRET})
    with_alerts(harness, monkeypatch, ["drift_corrected"])
    kubectl(stack, "patch", "secret", "db", "-n", namespace, "--type=merge",
            "-p", json.dumps({"stringData": {"password": "hand-set-PROD-PW"}, "metadata": {"labels": {"tier": "x"}}}))
    with caplog.at_level(logging.INFO):
        result = run_reconcile(harness)
    assert result["result"] == "drift corrected"
    entries = {e["field"]: e for e in drift_record(harness)["drift_entries"]}
    assert (entries["data.password"]["live"], entries["data.password"]["declared"]) == \
        ("(hidden: Secret data)", "(hidden: Secret data)")
    assert (entries["metadata.labels.tier"]["live"], entries["metadata.labels.tier"]["declared"]) == ("x", "db")
    [alert] = queued_alerts(harness)
    assert "Secret/" in alert["summary"] and "data.password" in alert["summary"]
    stored = json.dumps(drift_record(harness)) + json.dumps(harness.history()) + json.dumps(harness.state())
    for encoded in ("hand-set-PROD-PW", "aGFuZC1zZXQtUFJPRC1QVw==", "git-declared-PW", "Z2l0LWRlY2xhcmVkLVBX"):
        assert encoded not in caplog.text and encoded not in alert["summary"] and encoded not in stored


def test_drift_whose_dry_run_is_rejected_is_reported_not_in_sync(synced_with, stack, namespace, tmp_path):
    """A Job re-created by hand with another image: its template is immutable, so the dry-run is rejected."""
    harness = synced_with({"deploy/job.yaml": JOB})
    kubectl(stack, "delete", "job", "migrate", "-n", namespace)
    (tmp_path / "job.yaml").write_text(JOB.replace("busybox:1.36", "evil:latest"))
    kubectl(stack, "create", "-n", namespace, "-f", str(tmp_path / "job.yaml"))
    result = run_reconcile(harness)
    assert result["result"] != "in sync" and result["objects"] == 1 and result["corrected"] == 0
    record = drift_record(harness)
    [entry] = record["drift_entries"]
    assert (entry["object"], entry["field"], entry["live"], entry["declared"], entry["corrected"]) == \
        (f"Job/{namespace}/migrate", "spec.template.spec.containers[name=migrate].image", "evil:latest",
         "busybox:1.36", False)
    assert entry["note"].startswith("dry-run rejected:") and "is invalid" in entry["note"]
    assert any("not corrected" in n for n in record["notes"])
    assert not harness.state()["last_check_result"].startswith("in sync")
    live = json.loads(kubectl(stack, "get", "job", "migrate", "-n", namespace, "-o", "json"))
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "evil:latest"


def test_uncorrected_drift_says_so_and_alerts(synced_with, stack, namespace, monkeypatch, tmp_path):
    """The rejected Job is drift_failed (a correction that fails: test_failed_correction_says_so_and_alerts)."""
    harness = synced_with({"deploy/job.yaml": JOB})
    with_alerts(harness, monkeypatch, ["drift_corrected", "drift_failed"])
    kubectl(stack, "delete", "job", "migrate", "-n", namespace)
    (tmp_path / "job.yaml").write_text(JOB.replace("busybox:1.36", "evil:latest"))
    kubectl(stack, "create", "-n", namespace, "-f", str(tmp_path / "job.yaml"))
    result = run_reconcile(harness)
    assert (result["result"], result["corrected"]) == ("drift not corrected", 0)
    assert harness.state()["last_check_result"].startswith("drift not corrected: 1 object(s), 0 corrected: ")
    assert "dry-run rejected" in harness.state()["last_check_result"]
    assert harness.history()[0]["result"] == "failure"
    [alert] = queued_alerts(harness)
    assert (alert["event"], alert["sync_id"]) == ("drift_failed", result["id"])
    assert "evil:latest" in alert["summary"]



def test_failed_correction_says_so_and_alerts(synced_with, stack, namespace, monkeypatch):
    """The scan is real; the re-apply is refused as an admission webhook would refuse it."""
    from worker import periodic
    from worker.errors import PermanentError

    class RefusingApplier(periodic.Applier):
        def run(self, manifests):
            raise PermanentError(f"Deployment/{namespace}/fluxdemo (deploy/app.yaml, doc 2): denied by policy")
    harness = synced_with({})
    with_alerts(harness, monkeypatch, ["drift_corrected", "drift_failed"])
    monkeypatch.setattr(periodic, "Applier", RefusingApplier)
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=3", "-n", namespace)
    result = run_reconcile(harness)
    assert (result["result"], result["corrected"]) == ("drift not corrected", 0)
    assert harness.state()["last_check_result"] == (
        "drift not corrected: 1 object(s), 0 corrected: correcting drift: "
        f"Deployment/{namespace}/fluxdemo (deploy/app.yaml, doc 2): denied by policy")
    [alert] = queued_alerts(harness)
    assert alert["event"] == "drift_failed" and "denied by policy" in alert["summary"]

def test_report_mode_drift_alerts(synced_with, stack, namespace, monkeypatch):
    harness = synced_with({})
    harness.configure(harness.git, interval="10s", mode="report")
    with_alerts(harness, monkeypatch, ["drift_found"])
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=3", "-n", namespace)
    result = run_reconcile(harness)
    assert result["result"] == "drift reported"
    [alert] = queued_alerts(harness)
    assert (alert["event"], alert["state"], alert["sync_id"]) == ("drift_found", "drift_found", result["id"])
    assert "spec.replicas: live 3 declared 1" in alert["summary"]


def test_a_clean_check_after_drift_leaves_no_drift_in_the_state(synced_with, stack, namespace):
    from webhook.pages.view_model import classify

    harness = synced_with({})
    harness.configure(harness.git, interval="10s", mode="report")
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=3", "-n", namespace)
    assert run_reconcile(harness)["result"] == "drift reported"
    assert harness.state()["last_drift_objects"] == "1"
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=1", "-n", namespace)  # undone by hand
    assert run_reconcile(harness)["result"] == "in sync"
    state = harness.state()
    assert (state["last_drift_objects"], state["last_drift_corrected"]) == ("0", "0")
    assert classify(state, harness.history()[0])[0] == "synced"


def test_drift_that_persists_is_recorded_once(synced_with, stack, namespace, monkeypatch):
    harness = synced_with({})
    harness.configure(harness.git, interval="10s", mode="report")
    with_alerts(harness, monkeypatch, ["drift_found"])
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=3", "-n", namespace)
    first = run_reconcile(harness)
    assert first["result"] == "drift reported"
    for _ in range(3):
        again = run_reconcile(harness)
        assert (again["result"], again["id"], again["unchanged"]) == ("drift reported", first["id"], True)
        assert harness.state()["last_check_result"] == \
            f"drift reported: 1 object(s), unchanged since {first['id']}"
        assert harness.state()["last_check_sync_id"] == first["id"]
    assert [r["reason"] for r in harness.history()] == ["drift", "push"]
    assert len(queued_alerts(harness)) == 1
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=4", "-n", namespace)  # other drift: a new record
    changed = run_reconcile(harness)
    assert changed["id"] != first["id"] and "unchanged" not in changed
    assert [r["reason"] for r in harness.history()] == ["drift", "drift", "push"]
    assert len(queued_alerts(harness)) == 2


def test_drift_corrected_again_is_recorded_again(synced_with, stack, namespace):
    harness = synced_with({})
    ids = []
    for _ in range(2):
        kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=3", "-n", namespace)
        result = run_reconcile(harness)
        assert (result["result"], result["corrected"]) == ("drift corrected", 1)
        ids.append(result["id"])
    assert ids[0] != ids[1] and [r["reason"] for r in harness.history()] == ["drift", "drift", "push"]


def test_a_secret_edited_to_another_value_is_new_drift(synced_with, stack, namespace, monkeypatch, caplog):
    """Its values are hidden, so they cannot tell persisting drift from new drift: the live Secret's
    version does, and still no value reaches the log, the alerts, the records or the state."""
    harness = synced_with({"deploy/secret.yaml": SECRET})
    harness.configure(harness.git, interval="10s", mode="report")
    with_alerts(harness, monkeypatch, ["drift_found"])
    ids = []
    with caplog.at_level(logging.INFO):
        for value in ("hand-set-PW-one", "hand-set-PW-two"):  # the same manager (kubectl patch) both times
            kubectl(stack, "patch", "secret", "db", "-n", namespace, "--type=merge",
                    "-p", json.dumps({"stringData": {"password": value}}))
            result = run_reconcile(harness)
            assert result["result"] == "drift reported" and "unchanged" not in result, result
            ids.append(result["id"])
        again = run_reconcile(harness)  # not edited since: recorded once, as any persisting drift
    assert (again["id"], again["unchanged"]) == (ids[1], True)
    assert ids[0] != ids[1] and [r["reason"] for r in harness.history()] == ["drift", "drift", "push"]
    alerts = queued_alerts(harness)
    assert [(a["event"], a["sync_id"]) for a in alerts] == [("drift_found", ids[0]), ("drift_found", ids[1])]
    records = [history.get_record(harness.conn, i) for i in ids]
    for record in records:
        [entry] = record["drift_entries"]
        assert (entry["field"], entry["live"], entry["declared"]) == \
            ("data.password", "(hidden: Secret data)", "(hidden: Secret data)")
        assert "revision" not in entry
    stored = json.dumps(records) + json.dumps(harness.history()) + json.dumps(harness.state()) + json.dumps(alerts)
    for value in ("hand-set-PW-one", "hand-set-PW-two", "git-declared-PW"):
        for encoded in (value, base64.b64encode(value.encode()).decode()):
            assert encoded not in caplog.text and encoded not in stored


def test_drift_whose_correction_keeps_failing_says_why_and_a_new_error_is_recorded(synced_with, stack, namespace,
                                                                                  monkeypatch):
    """The same refusal again is "unchanged", with its reason; another refusal is a new record and alert."""
    from worker import periodic
    from worker.errors import PermanentError

    refusal = {"why": "denied by policy"}

    class RefusingApplier(periodic.Applier):
        def run(self, manifests):
            raise PermanentError(f"Deployment/{namespace}/fluxdemo (deploy/app.yaml, doc 2): {refusal['why']}")
    harness = synced_with({})
    with_alerts(harness, monkeypatch, ["drift_failed"])
    monkeypatch.setattr(periodic, "Applier", RefusingApplier)
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=3", "-n", namespace)
    why = f"correcting drift: Deployment/{namespace}/fluxdemo (deploy/app.yaml, doc 2): "
    first = run_reconcile(harness)
    assert (first["result"], first["corrected"]) == ("drift not corrected", 0)
    again = run_reconcile(harness)
    assert (again["id"], again["unchanged"]) == (first["id"], True)
    assert harness.state()["last_check_result"] == \
        f"drift not corrected: 1 object(s), unchanged since {first['id']}: {why}denied by policy"
    refusal["why"] = "forbidden: exceeded quota"
    changed = run_reconcile(harness)
    assert changed["id"] != first["id"] and "unchanged" not in changed, changed
    assert harness.state()["last_check_result"] == \
        f"drift not corrected: 1 object(s), 0 corrected: {why}forbidden: exceeded quota"
    assert history.get_record(harness.conn, changed["id"])["error"] == f"{why}forbidden: exceeded quota"
    alerts = queued_alerts(harness)
    assert [(a["event"], a["sync_id"]) for a in alerts] == [("drift_failed", first["id"]),
                                                            ("drift_failed", changed["id"])]
    assert "exceeded quota" in alerts[1]["summary"]


def test_a_secret_declared_with_string_data_drifts_like_any_other(synced_with, stack, namespace):
    """The API server stores stringData as data and never shows it: compared as declared, a hand
    edit of such a value went unseen.  It is drift now, corrected, and an untouched one is in sync."""
    harness = synced_with({"deploy/secret.yaml": SECRET.replace(
        "data:\n  password: Z2l0LWRlY2xhcmVkLVBX", "stringData:\n  password: git-declared-PW\n  port: '5432'")})
    assert run_reconcile(harness)["result"] == "in sync"
    kubectl(stack, "patch", "secret", "db", "-n", namespace, "--type=merge",
            "-p", json.dumps({"data": {"password": base64.b64encode(b"hand-set-PW").decode()}}))
    result = run_reconcile(harness)
    assert result["result"] == "drift corrected" and (result["objects"], result["corrected"]) == (1, 1), result
    [entry] = history.get_record(harness.conn, result["id"])["drift_entries"]
    assert (entry["field"], entry["live"]) == ("data.password", "(hidden: Secret data)")
    live = json.loads(kubectl(stack, "get", "secret", "db", "-n", namespace, "-o", "json"))["data"]
    assert base64.b64decode(live["password"]) == b"git-declared-PW" and base64.b64decode(live["port"]) == b"5432"
    assert run_reconcile(harness)["result"] == "in sync"


def test_a_drift_check_that_cannot_list_is_a_warning_and_no_check(synced_with, stack, namespace, restricted_kube,
                                                                 monkeypatch, caplog):
    """The workers lost the right to LIST a declared kind: the check says which kind and where,
    as a warning, and the last check time (the overview's, and pullbridge_last_check_age_seconds)
    stays at the last check that looked at the cluster."""
    from worker import kube as kube_module
    harness = synced_with({})
    with_alerts(harness, monkeypatch, ["drift_check_failed", "drift_check_recovered"])
    assert run_reconcile(harness)["result"] == "in sync"
    assert queued_alerts(harness) == []  # checks that always looked: nothing to tell
    looked_at = harness.state()["last_check_at"]
    restricted = restricted_kube([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "patch"]}],
                                 "list", "configmaps", namespace)
    allowed = kube_module._process_kube
    monkeypatch.setattr(kube_module, "_process_kube", restricted)
    caplog.set_level(logging.INFO, logger="pullbridge.drift")
    assert run_reconcile(harness)["result"] == "failure"
    state = harness.state()
    assert state["last_check_result"].startswith("drift check failed: listing deployments: HTTP 403")
    assert namespace in state["last_check_result"]
    assert state["last_check_at"] == looked_at
    [line] = [r for r in caplog.records if "drift check failed" in r.getMessage()]
    assert line.levelno == logging.WARNING
    [alert] = queued_alerts(harness)  # once, however many checks fail
    assert (alert["event"], alert["state"], alert["url"]) == ("drift_check_failed", "failing",
                                                              "http://127.0.0.1:8080/repos/app")
    assert alert["summary"].startswith("drift check failed: listing deployments: HTTP 403")
    assert run_reconcile(harness)["result"] == "failure"
    assert len(queued_alerts(harness)) == 1
    monkeypatch.setattr(kube_module, "_process_kube", allowed)
    assert run_reconcile(harness)["result"] == "in sync"
    assert [(a["event"], a["state"]) for a in queued_alerts(harness)] == [
        ("drift_check_failed", "failing"), ("drift_check_recovered", "ok")]
