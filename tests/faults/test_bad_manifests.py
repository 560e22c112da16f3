"""Bad manifests pushed through the real processes: each sync fails naming the
problem and the cluster stays as it was (nothing half-applied).

tests/worker already covers these at the render level (invalid YAML, symlinks
out of the checkout) and one API-rejected object end to end; this runs them
all through gunicorn + ``python -m worker``, each commit also changing a good
object that must stay unchanged, and adds the namespace the worker may not
write to: the worker runs with a real ServiceAccount token (TokenRequest)
whose Role allows only the test's namespace.
"""

from __future__ import annotations

import uuid

import pytest
import yaml
from kubernetes import client

from pullbridge import keys
from pullbridge.demo.harness import wait_for
from tests.faults.conftest import configmap, history
from tests.kube_support import service_account_kubeconfig

pytestmark = pytest.mark.stack


def namespaced_kubeconfig(kube, stack, namespace: str) -> dict:
    """A kubeconfig for a ServiceAccount that may only write in ``namespace``."""
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "pullbridge"}})
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "pullbridge"},
        "rules": [{"apiGroups": ["", "apps"], "resources": ["*"], "verbs": ["*"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "pullbridge"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pullbridge"},
        "subjects": [{"kind": "ServiceAccount", "name": "pullbridge", "namespace": namespace}]})
    return service_account_kubeconfig(kube, stack, namespace)


def test_bad_manifests_fail_by_name_and_leave_the_cluster_as_it_was(deployment, stack, namespace, kube,
                                                                   redis_conn, figure):
    name = f"badman{uuid.uuid4().hex[:6]}"
    run = deployment(name=name, full_name=f"pullbridge/{name}", repo_settings={"retries": 0})
    kubeconfig = run.tmp / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(namespaced_kubeconfig(kube, stack, namespace)))
    run.env["KUBECONFIG"] = str(kubeconfig)
    run.write_config({"worker": {"inventory_namespace": namespace, "default_namespace": namespace}})
    core = client.CoreV1Api(kube)
    run.start("web", "worker")
    applied = lambda sha: (redis_conn.hget(keys.state(name), "applied_sha") or b"").decode() == sha  # noqa
    v1, status, _ = run.push({"deploy/good.yaml": configmap("good", namespace, "v1")}, "v1")
    assert status == 202 and wait_for(lambda: applied(v1), 60, 0.2) is not None, run.log_tail("worker")

    other_ns = f"{namespace[:50]}-x"
    core.create_namespace({"metadata": {"name": other_ns, "labels": {"pullbridge.io/test": "true"}}})
    bad_commits = [
        ("invalid YAML", {"deploy/bad.yaml": "a: [unclosed\n  b: {\n"}, ["bad.yaml"]),
        ("unknown kind", {"deploy/bad.yaml": "apiVersion: gizmos.example.invalid/v1\nkind: Gizmo\n"
                          f"metadata:\n  name: g\n  namespace: {namespace}\n"}, ["Gizmo"]),
        ("object the API server rejects", {"deploy/bad.yaml": configmap("Bad_Name", namespace, "x")},
         ["Bad_Name"]),
        ("namespace it may not write to", {"deploy/bad.yaml": configmap("elsewhere", other_ns, "x")},
         [other_ns]),
        ("symlink out of the repo", {"deploy/bad.yaml": None}, ["symlink"]),
    ]
    seen = []
    try:
        for i, (what, files, expected) in enumerate(bad_commits):
            files = {**files, "deploy/good.yaml": configmap("good", namespace, f"bad-{i}")}
            if what.startswith("symlink"):
                (run.work / "deploy" / "escape.yaml").symlink_to("../../../../../../../etc/hostname")
            before = len(history(redis_conn, name))
            sha, status, _ = run.push(files, what)
            assert status == 202
            assert wait_for(lambda: len(history(redis_conn, name)) > before, 60, 0.2) is not None, \
                run.log_tail("worker", 30)
            record = history(redis_conn, name)[0]
            assert record["result"] == "failure", (what, record)
            assert all(e in record["error"] for e in expected), (what, record["error"])
            assert core.read_namespaced_config_map("good", namespace).data["value"] == "v1", what
            assert applied(v1)
            seen.append(f"{what}: {record['error'][:100]!r}")
        assert not [cm for cm in core.list_namespaced_config_map(other_ns).items if cm.metadata.name == "elsewhere"]
        (run.work / "deploy" / "escape.yaml").unlink()
        v2, status, _ = run.push({"deploy/bad.yaml": None, "deploy/good.yaml": configmap("good", namespace, "v2")})
        assert wait_for(lambda: applied(v2), 60, 0.2) is not None, run.log_tail("worker", 30)
        assert core.read_namespaced_config_map("good", namespace).data["value"] == "v2"
    finally:
        core.delete_namespace(other_ns)
    figure("bad manifests (each also changed a good object, which stayed v1): " + "; ".join(seen))
