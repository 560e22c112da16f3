"""A write refused after its dry-run passed: the sync fails, and its record says what was written.

On the real stack: a ValidatingAdmissionPolicy that lets a ConfigMap named ``blocked`` through a
dry-run only, so validation passes and the real apply is denied while the rest of the batch is written.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest
from kubernetes import client

from tests.kube_support import unless_gone
from tests.worker.sync_manifests import app_files, cm_value, configmap
from worker import history

pytestmark = pytest.mark.stack


@pytest.fixture
def dry_run_only_configmaps(kube, stack, namespace):
    """ConfigMaps ``blocked`` and ``probe`` of the test namespace pass a dry-run and nothing else,
    once the API server enforces the policy (a real create of ``probe`` is denied)."""
    api = client.AdmissionregistrationV1Api(kube)
    name = f"pb-test-{uuid.uuid4().hex[:8]}"
    api.create_validating_admission_policy({"metadata": {"name": name}, "spec": {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                               "resources": ["configmaps"], "resourceNames": ["blocked", "probe"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        "validations": [{"expression": "request.dryRun == true", "message": "only in a dry-run"}]}})
    api.create_validating_admission_policy_binding({"metadata": {"name": name}, "spec": {
        "policyName": name, "validationActions": ["Deny"]}})
    core = client.CoreV1Api(kube)
    probe = ["create", "configmap", "probe", "-n", namespace]
    # Readiness, not a timing assertion: the policy applies once the API server has read it.
    while "denied request" not in subprocess.run([stack.kubectl, *probe], capture_output=True, text=True,
                                                 env={**stack.env, "KUBECONFIG": stack.kubeconfig}).stderr:
        with unless_gone():
            core.delete_namespaced_config_map("probe", namespace)
        time.sleep(0.1)
    yield
    with unless_gone():
        api.delete_validating_admission_policy_binding(name)
    with unless_gone():
        api.delete_validating_admission_policy(name)


def test_a_write_refused_after_its_dry_run_leaves_a_record_of_what_was_written(
        harness, git_repo, kube, namespace, dry_run_only_configmaps):
    repo = git_repo("partial")
    harness.configure(repo)
    files = app_files("1.0")
    assert harness.sync(repo.commit_and_push("v1", files))["result"] == "success"
    files["deploy/extra/settings.yaml"] = configmap("settings", "b")
    files["deploy/new.yaml"] = configmap("added", "1") + "---\n" + configmap("blocked", "1")
    failed = harness.sync(repo.commit_and_push("v2", files))
    assert failed["result"] == "failure", failed
    assert failed["error"].startswith(f"applying ConfigMap/{namespace}/blocked (deploy/new.yaml, doc 2): "), failed
    assert cm_value(kube, namespace, "settings") == "b" and cm_value(kube, namespace, "added") == "1"
    changes = {c["object"]: (c["action"], c["source"]) for c in history.get_record(harness.conn, failed["id"])["changes"]}
    assert changes == {f"ConfigMap/{namespace}/settings": ("configured", "deploy/extra/settings.yaml, doc 1"),
                       f"ConfigMap/{namespace}/added": ("created", "deploy/new.yaml, doc 1")}
