"""The periodic reconcile of a repository with ``paths:``: the branch head is synced only when a
file the filter matches differs between the applied commit and it (a real ``git diff``), as the
receiver would have decided; a force push that reverted a filtered file is synced too."""

from __future__ import annotations

import pytest

from worker.fetch import Mirror

from tests.worker.drift_support import run_reconcile
from tests.worker.sync_manifests import app_files, app_version

pytestmark = pytest.mark.stack


@pytest.fixture
def filtered(harness, git_repo):
    repo = git_repo("paths")
    harness.configure(repo, interval="10s", paths=["deploy/"])
    harness.git = repo
    harness.v1 = repo.commit_and_push("v1", app_files("1.0"))
    assert harness.sync(harness.v1)["result"] == "success"
    return harness


def test_a_push_outside_the_paths_is_not_synced_by_the_periodic_job(filtered, kube, namespace, monkeypatch):
    v1 = filtered.v1
    docs = filtered.git.commit_and_push("docs only", {"docs/readme.md": "words\n"})  # the receiver ignored it
    result = run_reconcile(filtered)
    assert result["result"] == "in sync", result
    note = f"head {docs[:12]} changes no file matching paths since applied {v1[:12]}: not synced"
    assert filtered.state()["last_check_result"].endswith(f"objects checked; {note}")
    assert filtered.state()["applied_sha"] == v1
    assert [r["reason"] for r in filtered.history()] == ["push"]

    # The next interval knows this head already: no fetch, no diff.
    def no_fetch(self):
        raise AssertionError("the head was compared with paths again")
    with monkeypatch.context() as patched:
        patched.setattr(Mirror, "fetch", no_fetch)
        assert run_reconcile(filtered)["result"] == "in sync"
    assert filtered.state()["last_check_result"].endswith(note)

    # A push that changes a filtered file is a missed push again.
    v2 = filtered.git.commit_and_push("v2", app_files("2.0"))
    result = run_reconcile(filtered)
    assert (result["result"], result["sha"]) == ("sync queued", v2)
    assert filtered.state()["last_check_result"].startswith(
        f"missed push: {v2[:12]} not applied (a file matching paths changed since {v1[:12]}), sync ")
    assert filtered.state()["applied_sha"] == v2 and app_version(kube, namespace) == "2.0"
    assert [r["reason"] for r in filtered.history()] == ["periodic", "push"]


def test_a_force_push_that_reverts_a_filtered_file_is_synced(filtered, kube, namespace):
    v2 = filtered.git.commit_and_push("v2", app_files("2.0"))
    assert filtered.sync(v2)["result"] == "success"
    # Rewrite main as v1 plus a docs-only commit: GitLab and Gitea list only that commit (docs/),
    # so the receiver ignores the push; deploy/ went back to 1.0 all the same.
    filtered.git.git("reset", "-q", "--hard", filtered.v1)
    rewritten = filtered.git.commit("docs only", {"docs/readme.md": "words\n"})
    filtered.git.force_push()
    result = run_reconcile(filtered)
    assert (result["result"], result["sha"]) == ("sync queued", rewritten)
    assert filtered.state()["applied_sha"] == rewritten and app_version(kube, namespace) == "1.0"


def test_a_force_push_back_to_an_older_commit_is_synced(filtered, kube, namespace):
    v2 = filtered.git.commit_and_push("v2", app_files("2.0"))
    assert filtered.sync(v2)["result"] == "success"
    filtered.git.force_push(filtered.v1)
    result = run_reconcile(filtered)
    assert (result["result"], result["sha"]) == ("sync queued", filtered.v1)
    assert filtered.state()["applied_sha"] == filtered.v1 and app_version(kube, namespace) == "1.0"
    assert run_reconcile(filtered)["result"] == "in sync"  # applied: nothing queued every interval
