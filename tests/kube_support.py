"""Helpers for tests on the stack's API server: a ServiceAccount's kubeconfig, cleanup that tolerates 404."""

from __future__ import annotations

import contextlib

import yaml
from kubernetes import client


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
