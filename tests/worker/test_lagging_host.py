"""A webhook that arrives before the git host can serve its commit, end to end.

A host may send the push event before the copy of the repository a fetch reaches has the
commit (replicas behind a load balancer).  The sync fetches again after short pauses instead
of answering the commit "not on branch" with a red status while the branch head it applied
is older.  Here the commit is pushed to the real git server during the sync's first pause.
"""

from __future__ import annotations

import pytest

from tests.worker.sync_manifests import app_files, app_version
from worker import jobs

pytestmark = pytest.mark.stack


def test_a_commit_the_host_did_not_have_yet_is_fetched_again_and_applied(harness, git_repo, kube, namespace,
                                                                          monkeypatch):
    repo = git_repo("lagging")
    harness.configure(repo)
    v1 = repo.commit_and_push("v1", app_files("1.0"))
    assert harness.sync(v1)["result"] == "success"
    v2 = repo.commit("v2", app_files("2.0"))  # the webhook comes; the host does not serve v2 yet
    pauses = []

    def host_catches_up(seconds):
        pauses.append(seconds)
        repo.push()

    monkeypatch.setattr(jobs, "pause_before_refetch", host_catches_up)
    done = harness.sync(v2)
    assert (done["result"], done["sha"]) == ("success", v2), done
    assert app_version(kube, namespace) == "2.0"
    assert pauses == [jobs.UNFETCHED_PAUSES[0]]
    assert f"fetched again for {pauses[0]:g}s until the git host had {v2[:12]}" in done["notes"]
    assert not any("not on branch" in note for note in done["notes"])


def test_a_commit_the_host_never_serves_is_named_not_on_the_branch_after_the_pauses(
        harness, git_repo, kube, namespace, monkeypatch):
    repo = git_repo("gone")
    harness.configure(repo)
    v1 = repo.commit_and_push("v1", app_files("1.0"))
    lost = repo.commit("v2", app_files("2.0"))  # never pushed: a force push took it away first
    pauses = []
    monkeypatch.setattr(jobs, "pause_before_refetch", pauses.append)
    done = harness.sync(lost)
    assert (done["result"], done["sha"]) == ("success", v1), done  # the branch head, as before
    assert app_version(kube, namespace) == "1.0"
    assert pauses == list(jobs.UNFETCHED_PAUSES)
    waited = sum(jobs.UNFETCHED_PAUSES)
    assert f"the git host still lacked {lost[:12]} after {waited:g}s of fetching again" in done["notes"]
    assert f"{lost[:12]} is not on branch main" in done["notes"]


def test_commits_the_host_has_are_not_waited_for(harness, git_repo, monkeypatch):
    repo = git_repo("prompt")
    harness.configure(repo)
    monkeypatch.setattr(jobs, "pause_before_refetch", lambda seconds: pytest.fail("paused"))
    v1 = repo.commit_and_push("v1", app_files("1.0"))
    v2 = repo.commit_and_push("v2", app_files("2.0"))
    assert harness.sync(v2)["result"] == "success"
    late = harness.sync(v1)  # a late redelivery: the mirror has it, older than what is applied
    assert (late["result"], late["sha"]) == ("skipped", None)
