"""The least-privilege RBAC deploy/ ships, exercised by the worker's own sync, drift and prune.

Why it exists: the Roles in overlays/namespaced (``pullbridge-apply`` per managed namespace and
``pullbridge-inventory``) must let the workers do everything they do in a namespace, and grant
nothing they never do.  The rendered ServiceAccount, Roles and RoleBindings are created for real
(moved into the test's namespace, which stands for both "apps" and "pullbridge"), and a sync, a
drift correction and a prune run as that ServiceAccount against the API server, which
authorizes them with RBAC.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.deploy.test_kustomize import dump, relocate, render
from tests.kube_support import service_account_kubeconfig, wait_allowed
from tests.worker.drift_support import kubectl, run_reconcile
from tests.worker.sync_manifests import app_files, cm_value

pytestmark = pytest.mark.stack

SHIPPED_ROLES = {("Role", "pullbridge-apply", "apps"), ("Role", "pullbridge-inventory", "pullbridge")}
# Server-side apply (patch, and create for a new object), reads (get, list) and the prune (delete).
APPLY_VERBS = {"get", "list", "create", "patch", "delete"}
INVENTORY_VERBS = {"get", "list", "create", "patch"}  # the workers never delete an inventory


def shipped_grant(stack) -> list[dict]:
    """The workers' ServiceAccount with its apply Role for "apps" and its inventory Role, bound."""
    def wanted(o):
        key = (o["metadata"]["name"], o["metadata"].get("namespace"))
        return (o["kind"] == "ServiceAccount" and key[0] == "pullbridge") or \
            (o["kind"] in ("Role", "RoleBinding") and ("Role",) + key in SHIPPED_ROLES)
    return [o for o in render(stack, "overlays/namespaced") if wanted(o)]


def test_the_shipped_roles_grant_no_verb_the_workers_never_use(stack):
    roles = {o["metadata"]["name"]: o for o in shipped_grant(stack) if o["kind"] == "Role"}
    for rule in roles["pullbridge-apply"]["rules"]:
        assert set(rule["verbs"]) == APPLY_VERBS, rule
    [configmaps, namespaces] = roles["pullbridge-inventory"]["rules"]
    assert set(configmaps["verbs"]) == INVENTORY_VERBS
    assert namespaces["verbs"] == ["get"]


def test_the_shipped_roles_let_the_workers_sync_correct_drift_and_prune(harness, git_repo, stack, kube, namespace,
                                                                         tmp_path, monkeypatch):
    from worker import kube as kube_module
    from worker.kube import Kube, load_api_client

    out = subprocess.run([stack.kubectl, "--kubeconfig", stack.kubeconfig, "apply", "--server-side",
                          "--field-manager=pullbridge-deploy-test", "-f", "-"],
                         input=dump(relocate(shipped_grant(stack), namespace)), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    kubeconfig = tmp_path / "worker.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(service_account_kubeconfig(kube, stack, namespace)))
    worker = Kube(load_api_client(str(kubeconfig)))
    wait_allowed(worker, "patch", "services", namespace)  # once the API server has the bindings
    monkeypatch.setattr(kube_module, "_process_kube", worker)

    repo = git_repo("shipped-rbac")
    repo.commit_and_push("v1", app_files("1.0"))
    harness.configure(repo, interval="10s")
    assert harness.sync(None)["result"] == "success"
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=4", "-n", namespace)
    kubectl(stack, "delete", "configmap", "settings", "-n", namespace)
    assert run_reconcile(harness)["result"] == "drift corrected"
    assert cm_value(kube, namespace, "settings") == "a"
    repo.remove("deploy/extra")
    repo.commit_and_push("v2")
    synced = harness.sync(None)
    assert (synced["result"], synced["counts"]["deleted"]) == ("success", 1), synced
    assert cm_value(kube, namespace, "settings") is None
