"""`pullbridge diff` on the real stack: exit 0 after a sync, 1 with per-object changes, 2 on errors."""

from __future__ import annotations

import json

import pytest

from tests.worker.sync_manifests import app_files, cm_value, configmap

pytestmark = pytest.mark.stack


def test_diff_is_clean_after_a_sync_and_names_each_change_after_a_commit(ops, git_repo, kube, namespace):
    repo = git_repo("diff")
    ops.configure(repo)
    sha1 = repo.commit_and_push("v1", app_files("1.0"))

    code, out, _ = ops.run("diff", "app")
    assert code == 1, out  # nothing applied yet: everything would be created
    assert f"+ ConfigMap/{namespace}/nginx-conf created  (deploy/app.yaml, doc 1)" in out
    assert "3 differences: 3 created" in out

    assert ops.sync(sha1)["result"] == "success"
    code, out, err = ops.run("diff", "app")
    assert code == 0, out + err
    assert "no differences" in out and sha1[:12] in out

    files = app_files("2.0")
    del files["deploy/extra/settings.yaml"]
    files["deploy/new.yaml"] = configmap("brand-new", "n")
    repo.remove("deploy/extra")
    sha2 = repo.commit_and_push("v2", files)
    code, out, _ = ops.run("diff", "app")
    assert code == 1, out
    assert sha2[:12] in out
    assert f"~ ConfigMap/{namespace}/nginx-conf configured" in out
    assert '    data.value: "1.0" -> "2.0"' in out
    assert f"~ Deployment/{namespace}/fluxdemo configured" in out
    assert '"1.0" -> "2.0"' in out.split(f"Deployment/{namespace}/fluxdemo", 1)[1]
    assert f"+ ConfigMap/{namespace}/brand-new created" in out
    assert f"- ConfigMap/{namespace}/settings deleted" in out
    assert "4 differences: 1 created, 2 configured, 1 deleted" in out
    # a dry run changed nothing
    assert cm_value(kube, namespace, "nginx-conf") == "1.0"
    assert cm_value(kube, namespace, "settings") == "a"
    assert cm_value(kube, namespace, "brand-new") is None

    code, out, _ = ops.run("diff", "app", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["sha"] == sha2 and data["differences"] == 4
    by_object = {c["object"]: c for c in data["changes"]}
    assert by_object[f"ConfigMap/{namespace}/nginx-conf"]["fields"] == ['data.value: "1.0" -> "2.0"']

    code, out, _ = ops.run("diff", "app", "--sha", sha1[:10])  # an older commit of the branch
    assert code == 0, out


def test_diff_errors_exit_2(ops, git_repo, namespace):
    repo = git_repo("differr")
    ops.configure(repo)
    repo.commit_and_push("v1", app_files("1.0"))
    code, _, err = ops.run("diff", "nope")
    assert code == 2 and "unknown repository 'nope' (configured: app)" in err

    code, _, err = ops.run("diff", "app", "--sha", "0" * 40)
    assert code == 2 and "not on branch main" in err

    bad = app_files("1.0")
    bad["deploy/bad.yaml"] = configmap("Not_A_Valid_Name", "x")
    repo.commit_and_push("invalid", bad)
    code, out, err = ops.run("diff", "app")
    assert code == 2, out
    assert "diff: validation failed, nothing applied" in err and "deploy/bad.yaml" in err

    repo.remove("deploy")
    repo.commit_and_push("empty")
    code, _, err = ops.run("diff", "app")
    assert code == 2 and "renders no objects" in err


def test_diff_of_an_unreachable_git_host_exits_2(ops, git_repo):
    repo = git_repo("gone")
    ops.configure(repo, url="http://127.0.0.1:9/nothing.git")
    code, _, err = ops.run("diff", "app")
    assert code == 2 and err.startswith("pullbridge: diff: ")


def test_diff_works_without_redis_and_says_why_the_state_is_missing(ops, git_repo, namespace):
    repo = git_repo("diffnoredis")
    ops.configure(repo)
    repo.commit_and_push("v1", app_files("1.0"))
    code, out, err = ops.run("diff", "app", "--redis-url", "redis://:pw@127.0.0.1:9/0")
    assert code == 1, out + err
    assert "warning: repository state not shown: cannot reach Redis at redis://127.0.0.1:9/0" in err
    assert "pw" not in err


def test_exit_codes_reach_the_shell(ops, git_repo):
    """The same verbs as a separate `python -m pullbridge` process, as a script would run them."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    repo = git_repo("shell")
    ops.configure(repo)
    sha = repo.commit_and_push("v1", app_files("1.0"))
    env = {**os.environ, "PYTHONPATH": str(root)}

    def run(*argv):
        return subprocess.run([sys.executable, "-m", "pullbridge", *argv], cwd=root, env=env,
                              capture_output=True, text=True).returncode

    assert run("diff", "app") == 1
    ops.sync(sha)
    assert run("diff", "app") == 0
    assert run("diff", "nope") == 2
    assert run("history", "app") == 0
    assert run("queue", "retry", "--all-failed") == 1
    assert run("rollback", "app") == 2  # usage


def _secret(value: str) -> str:
    return f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: {value}\n"


def test_diff_of_a_secret_names_the_field_but_never_its_value(ops, git_repo, namespace):
    import base64

    repo = git_repo("secret")
    ops.configure(repo)
    assert ops.sync(repo.commit_and_push("v1", {"deploy/s.yaml": _secret("old-hunter2")}))["result"] == "success"
    repo.commit_and_push("v2", {"deploy/s.yaml": _secret("new-hunter2")})
    code, out, err = ops.run("diff", "app")
    assert code == 1, out + err
    assert f"~ Secret/{namespace}/creds configured" in out
    assert "data.password: changed (Secret: value hidden)" in out
    for value in ("old-hunter2", "new-hunter2"):
        assert value not in out + err and base64.b64encode(value.encode()).decode() not in out + err
    code, out, _ = ops.run("diff", "app", "--json")
    assert code == 1 and "hunter2" not in out and "aHVudGVy" not in out
