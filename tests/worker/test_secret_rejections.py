"""The API server quotes a Secret's values when it rejects it; no value reaches Pullbridge's errors.

On the real stack: server-side apply's type check quotes a non-string value it was sent (HTTP 500), and
an admission policy (here a ValidatingAdmissionPolicy whose message quotes ``oldObject`` and ``object``)
quotes the live and the declared values.  Each test looks for the values, base64 and decoded, in every
key of the test's Redis DB (records, history, state, RQ jobs and results, queued statuses and alerts)
and in the log.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import time
import uuid
import zlib

import pytest
from kubernetes import client
from rq import Queue

from pullbridge import keys
from worker import history

from tests.kube_support import unless_gone
from tests.worker.drift_support import kubectl, run_reconcile, with_alerts
from tests.worker.sync_manifests import app_files

pytestmark = pytest.mark.stack

HIDDEN = "(hidden: Secret data)"
DECLARED, HAND_SET = "git-declared-PW", "hand-set-PROD-PW"
SECRET = f"""apiVersion: v1
kind: Secret
metadata:
  name: db
data:
  password: {base64.b64encode(DECLARED.encode()).decode()}
"""


def forms(*values: str) -> list[str]:
    return [form for value in values for form in (value, base64.b64encode(value.encode()).decode())]


def everything_in_redis(conn) -> str:
    """Every key and value of the test's Redis DB as text (RQ's zlib-compressed pickles decompressed)."""
    blobs = []
    for key in conn.scan_iter():
        kind = conn.type(key).decode()
        if kind == "string":
            blobs.append(conn.get(key))
        elif kind == "hash":
            blobs.extend(b for pair in conn.hgetall(key).items() for b in pair)
        elif kind == "list":
            blobs.extend(conn.lrange(key, 0, -1))
        elif kind in ("set", "zset"):
            blobs.extend(conn.smembers(key) if kind == "set" else conn.zrange(key, 0, -1))
        elif kind == "stream":
            blobs.extend(b for _, fields in conn.xrange(key) for pair in fields.items() for b in pair)
        blobs.append(key)
    texts = []
    for blob in blobs:
        try:
            blob = zlib.decompress(blob)
        except zlib.error:
            pass
        texts.append(blob.decode("utf-8", "replace"))
    return "\n".join(texts)


def assert_hidden(harness, caplog, *values: str) -> None:
    stored = everything_in_redis(harness.conn)
    for form in forms(*values):
        assert form not in stored, f"{form} is in Redis"
        assert form not in caplog.text, f"{form} is in the log"


@pytest.fixture
def secret_policy(kube, stack, namespace):
    """Factory: a ValidatingAdmissionPolicy on the test namespace's Secrets that denies ``operations``
    with ``message`` (a CEL expression), bound for the test; returns once the API server enforces it."""
    api = client.AdmissionregistrationV1Api(kube)
    name = f"pb-test-{uuid.uuid4().hex[:8]}"

    def make(operations: list[str], message: str, probe: list[str]) -> None:
        api.create_validating_admission_policy({"metadata": {"name": name}, "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": operations,
                                   "resources": ["secrets"]}],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
            "validations": [{"expression": "false", "messageExpression": message}]}})
        api.create_validating_admission_policy_binding({"metadata": {"name": name}, "spec": {
            "policyName": name, "validationActions": ["Deny"]}})
        # Readiness, not a timing assertion: the policy applies once the API server has read it.
        while "denied request" not in subprocess.run(
                [stack.kubectl, *probe, "-n", namespace, "--dry-run=server"], capture_output=True, text=True,
                env={**stack.env, "KUBECONFIG": stack.kubeconfig}).stderr:
            time.sleep(0.1)

    yield make
    with unless_gone():
        api.delete_validating_admission_policy_binding(name)
    with unless_gone():
        api.delete_validating_admission_policy(name)


QUOTING = "'password may not change from ' + string(oldObject.data.password) + ' to ' + string(object.data.password)"
PROBE_UPDATE = ["patch", "secret", "db", "--type=merge", "-p", json.dumps({"data": {"probe": "cHJvYmU="}})]


def test_a_policy_quoting_both_values_of_a_drifted_secret_reaches_no_note_log_alert_or_record(
        harness, git_repo, stack, namespace, secret_policy, monkeypatch, caplog):
    repo = git_repo("secret-drift")
    repo.commit_and_push("v1", {**app_files("1.0"), "deploy/secret.yaml": SECRET})
    harness.configure(repo, interval="10s")
    assert harness.sync(None)["result"] == "success"
    with_alerts(harness, monkeypatch, ["drift_corrected", "drift_failed"])
    kubectl(stack, "patch", "secret", "db", "-n", namespace, "--type=merge",
            "-p", json.dumps({"stringData": {"password": HAND_SET}}))
    secret_policy(["UPDATE"], QUOTING, PROBE_UPDATE)
    with caplog.at_level(logging.INFO):
        result = run_reconcile(harness)
    assert (result["result"], result["corrected"]) == ("drift not corrected", 0), result
    [entry] = history.get_record(harness.conn, result["id"])["drift_entries"]
    assert entry["field"] == "data.password" and entry["note"].startswith("dry-run rejected: ")
    assert f"password may not change from {HIDDEN} to {HIDDEN}" in entry["note"]
    [alert] = [job.args[1] for job in Queue(keys.STATUS_QUEUE, connection=harness.conn).jobs]
    assert f"password may not change from {HIDDEN} to {HIDDEN}" in alert["summary"]
    assert_hidden(harness, caplog, DECLARED, HAND_SET)


def test_a_policy_quoting_both_values_of_a_changed_secret_reaches_no_sync_error_or_status(
        harness, git_repo, stack, namespace, secret_policy, caplog):
    repo = git_repo("secret-sync")
    harness.configure(repo, provider="gitea", repository="o/r",  # the stack's git URL names no owner
                      status={"token_env": "PB_TEST_SECRET", "project": "o/r", "api_url": "http://127.0.0.1:9/api/v1"})
    assert harness.sync(repo.commit_and_push("v1", {**app_files("1.0"), "deploy/secret.yaml": SECRET}))[
        "result"] == "success"
    secret_policy(["UPDATE"], QUOTING, PROBE_UPDATE)
    changed = SECRET.replace(base64.b64encode(DECLARED.encode()).decode(), base64.b64encode(HAND_SET.encode()).decode())
    with caplog.at_level(logging.INFO):
        record = harness.sync(repo.commit_and_push("v2", {"deploy/secret.yaml": changed}))
    assert record["result"] == "failure"
    assert record["error"].startswith(f"validation failed, nothing applied: Secret/{namespace}/db "
                                      "(deploy/secret.yaml, doc 1): ")
    assert f"password may not change from {HIDDEN} to {HIDDEN}" in record["error"]
    posted = [j.args for j in Queue(keys.STATUS_QUEUE, connection=harness.conn).get_jobs()]
    assert posted[-1][2] == "failure" and HIDDEN in posted[-1][3]
    assert_hidden(harness, caplog, DECLARED, HAND_SET)


def test_a_policy_quoting_a_pruned_secret_reaches_no_sync_error(harness, git_repo, stack, namespace,
                                                                secret_policy, caplog):
    repo = git_repo("secret-prune")
    harness.configure(repo)
    assert harness.sync(repo.commit_and_push("v1", {**app_files("1.0"), "deploy/secret.yaml": SECRET}))[
        "result"] == "success"
    secret_policy(["DELETE"], "'keep ' + string(oldObject.data.password)", ["delete", "secret", "db"])
    repo.remove("deploy/secret.yaml")
    with caplog.at_level(logging.INFO):
        record = harness.sync(repo.commit_and_push("v2"))
    assert record["result"] == "failure" and record["error"].startswith(f"pruning Secret/{namespace}/db: HTTP 422: ")
    assert f"keep {HIDDEN}" in record["error"]
    assert_hidden(harness, caplog, DECLARED)


def test_a_secret_value_the_type_check_quotes_reaches_no_sync_error(harness, git_repo, namespace, caplog):
    """``stringData: {pin: 84736251}`` (a YAML number): server-side apply quotes it in an HTTP 500."""
    repo = git_repo("secret-type")
    harness.configure(repo)
    secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  pin: 84736251\n  note: 7\n"
    with caplog.at_level(logging.INFO):
        record = harness.sync(repo.commit_and_push("v1", {**app_files("1.0"), "deploy/secret.yaml": secret}))
    assert record["result"] == "failure"  # the same body fails the same way every time
    # the API server lists the fields in no fixed order
    assert f"Secret/{namespace}/db (deploy/secret.yaml, doc 1): .stringData." in record["error"]
    assert f".stringData.pin: expected string, got {HIDDEN}" in record["error"]
    assert f".stringData.note: expected string, got {HIDDEN}" in record["error"]  # too short to look for
    assert_hidden(harness, caplog, "84736251")
    assert "Value:7}" not in everything_in_redis(harness.conn) + caplog.text
