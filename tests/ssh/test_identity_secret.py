"""Deploy keys kept in a Kubernetes Secret, against the real API server."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading

import pytest
from kubernetes import client

from pullbridge.identity import (FINGERPRINT_ANNOTATION, SECRET_KEY, SECRET_TYPE, IdentityError,
                                 ensure_secret_identity, public_key_line)

pytestmark = pytest.mark.stack


def test_created_once_then_reused_and_rotated(kube, namespace):
    first = ensure_secret_identity(kube, namespace, "pullbridge-deploy-key", comment="pullbridge@ci")
    again = ensure_secret_identity(kube, namespace, "pullbridge-deploy-key", comment="other@ignored")
    assert first.created and not again.created
    assert again.public_line == first.public_line  # comment written at creation is kept
    secret = client.CoreV1Api(kube).read_namespaced_secret("pullbridge-deploy-key", namespace)
    assert secret.type == SECRET_TYPE
    assert secret.metadata.annotations[FINGERPRINT_ANNOTATION] == first.fingerprint
    private = base64.b64decode(secret.data[SECRET_KEY])
    assert public_key_line(private, "pullbridge@ci") == first.public_line
    rotated = ensure_secret_identity(kube, namespace, "pullbridge-deploy-key", rotate=True)
    assert rotated.created and rotated.fingerprint != first.fingerprint
    assert ensure_secret_identity(kube, namespace, "pullbridge-deploy-key").fingerprint == rotated.fingerprint


def test_concurrent_first_calls_agree(kube, namespace):
    results, errors = [], []

    def call():
        try:
            results.append(ensure_secret_identity(kube, namespace, "raced").fingerprint)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1


def test_foreign_secret_is_not_overwritten(kube, namespace):
    core = client.CoreV1Api(kube)
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="someone-else"), string_data={"token": "x"}))
    for rotate in (False, True):
        with pytest.raises(IdentityError, match="not a Pullbridge deploy key"):
            ensure_secret_identity(kube, namespace, "someone-else", rotate=rotate)
    assert core.read_namespaced_secret("someone-else", namespace).type == "Opaque"


def test_cli_secret(stack, namespace):
    env = dict(os.environ, KUBECONFIG=stack.kubeconfig)
    env.pop("PULLBRIDGE_CONFIG", None)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "pullbridge", "identity", *args],
                              capture_output=True, text=True, env=env)

    first = run("--secret", f"{namespace}/deploy-key")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("ssh-ed25519 AAAA") and f"secret {namespace}/deploy-key" in first.stderr
    assert run("--secret", f"{namespace}/deploy-key").stdout == first.stdout
    bad = run("--secret", "no-slash")
    assert bad.returncode == 2 and "NAMESPACE/NAME" in bad.stderr
    missing_ns = run("--secret", "t-does-not-exist-x/deploy-key")
    assert missing_ns.returncode == 2 and "cannot create: 404" in missing_ns.stderr
