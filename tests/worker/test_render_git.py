"""Rendering what a real commit holds, through the worker's own checkout (a bare mirror, ``git
archive``): symlinks a developer commits, which may lead anywhere on the worker."""

from __future__ import annotations

import os

import pytest

from tests.worker.sync_manifests import cm_value, configmap

pytestmark = pytest.mark.stack


def test_a_link_whose_target_a_commit_removes_fails_the_sync_and_prunes_nothing(harness, git_repo, kube,
                                                                                namespace):
    repo = git_repo("links")
    harness.configure(repo, path="deploy")
    repo.write("shared/settings.yaml", configmap("settings", "a"))
    repo.write("deploy/app.yaml", configmap("app", "1"))
    os.symlink("../shared", repo.work / "deploy/shared")
    first = harness.sync(repo.commit_and_push("v1"))
    assert first["result"] == "success", first
    assert cm_value(kube, namespace, "settings") == "a"

    repo.remove("shared")  # the link stays, leading nowhere
    second = harness.sync(repo.commit_and_push("move shared away"))
    assert second["result"] == "failure", second
    assert second["error"] == "deploy/shared: symlink leads nowhere (its target is missing, or links lead in a loop)"
    assert cm_value(kube, namespace, "settings") == "a"


def test_a_link_to_a_file_of_the_worker_is_never_read(harness, git_repo, kube, namespace, tmp_path):
    secret = tmp_path / "worker-secret.yaml"
    secret.write_text(configmap("stolen", "worker secret"))
    repo = git_repo("steal")
    harness.configure(repo, path="deploy")
    repo.write("deploy/app.yaml", configmap("app", "1"))
    os.symlink(secret, repo.work / "deploy/key.yaml")
    done = harness.sync(repo.commit_and_push("steal"))
    assert done["result"] == "failure", done
    assert done["error"] == "deploy/key.yaml: symlink leads outside the repository"
    assert cm_value(kube, namespace, "stolen") is None and cm_value(kube, namespace, "app") is None
