"""Helpers for tests on the stack's API server: a ServiceAccount's kubeconfig (with a ClusterRole of the
test's rules, once in effect), cleanup that tolerates 404."""

from __future__ import annotations

import contextlib
import time

import yaml
from kubernetes import client

SAFETY_TIMEOUT = 120  # only so a broken cluster cannot hang the suite; not a performance limit


def service_account_kubeconfig(kube, stack, namespace: str, account: str = "pullbridge") -> dict:
    """A kubeconfig for the existing ServiceAccount ``account`` in ``namespace`` (a TokenRequest's token)
    on the stack's cluster; what it may do is up to the Roles the test binds to it."""
    token = client.CoreV1Api(kube).create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    admin = yaml.safe_load(open(stack.kubeconfig))
    cluster = admin["clusters"][0]
    return {"apiVersion": "v1", "kind": "Config", "clusters": [cluster],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa"}}],
            "current-context": "sa"}


@contextlib.contextmanager
def unless_gone():
    """Pass over a 404 from the API server: cleanup of what the test may already have deleted."""
    try:
        yield
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def cluster_role_kubeconfig(kube, stack, namespace: str, role: str, rules: list[dict]) -> dict:
    """A kubeconfig for a new ServiceAccount "pullbridge" in ``namespace``, bound to a new ClusterRole
    ``role`` granting ``rules`` (the ClusterRole and its binding, both named ``role``, are the test's to delete)."""
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "pullbridge"}})
    rbac.create_cluster_role({"metadata": {"name": role}, "rules": rules})
    rbac.create_cluster_role_binding({
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "pullbridge", "namespace": namespace}]})
    return service_account_kubeconfig(kube, stack, namespace)


def wait_allowed(restricted, verb: str, resource: str, namespace: str | None = None) -> None:
    """Until the API server's RBAC cache has a new binding that lets ``restricted`` (a worker Kube)
    ``verb`` ``resource`` (it follows its informers)."""
    attributes = {"verb": verb, "resource": resource, **({"namespace": namespace} if namespace else {})}
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": attributes}}
    deadline = time.monotonic() + SAFETY_TIMEOUT
    while not restricted.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                                 body=review)["status"].get("allowed"):
        assert time.monotonic() < deadline, f"the ServiceAccount's binding never let it {verb} {resource}"
        time.sleep(0.1)
