"""A force push back to an older commit, end to end: git host -> sync job -> API server -> Redis.

The sync job is forward-only (a late webhook for an older commit never undoes a newer one), but
once a force push took the applied commit off the branch, the branch is what Git declares.
"""

from __future__ import annotations

import pytest

from tests.worker.drift_support import run_reconcile
from tests.worker.sync_manifests import app_files, app_version

pytestmark = pytest.mark.stack


def test_a_force_push_back_to_an_older_commit_is_applied(harness, git_repo, kube, namespace):
    repo = git_repo("forced")
    harness.configure(repo, interval="10s")
    v1 = repo.commit_and_push("v1", app_files("1.0"))
    v2 = repo.commit_and_push("v2", app_files("2.0"))
    assert harness.sync(v2)["result"] == "success"
    late = harness.sync(v1)  # v1's webhook redelivered late: v2 is still on the branch
    assert (late["result"], late["sha"], app_version(kube, namespace)) == ("skipped", None, "2.0")

    repo.force_push(v1)  # revert by force push
    reverted = harness.sync(v1)
    assert (reverted["result"], reverted["sha"]) == ("success", v1), reverted
    assert app_version(kube, namespace) == "1.0"
    assert harness.state()["applied_sha"] == v1
    assert f"applied commit {v2[:12]} is no longer on branch main (force push): the branch head is applied" \
        in reverted["notes"]
    # The head is applied: the next interval finds nothing missed.
    assert run_reconcile(harness)["result"] == "in sync"
    assert [r["reason"] for r in harness.history()] == ["push", "push", "push"]
