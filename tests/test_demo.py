"""The README's first command, end to end: push -> signed webhook -> applied -> drift reverted."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.stack


def test_demo_runs_the_whole_flow_and_cleans_up(stack):
    done = subprocess.run([sys.executable, "-m", "pullbridge", "demo"], env=stack.env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert out.count("POST /hooks/fluxdemo -> 202") == 2
    assert "APP_VERSION=v2" in out
    assert "Deployment/my-demo/fluxdemo spec.replicas: live 4, declared 1, changed by kubectl" in out
    assert "corrected" in out
    # Cleaned up: the demo namespace is going away and no demo repo is left on the git host.
    ns = subprocess.run([stack.kubectl, "get", "namespace", "my-demo", "-o", "jsonpath={.status.phase}"],
                        env=stack.env, capture_output=True, text=True)
    assert ns.returncode != 0 or ns.stdout == "Terminating"
    assert not list(stack.git_root.glob("fluxdemo-*.git"))
