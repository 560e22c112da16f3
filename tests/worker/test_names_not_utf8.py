"""A file name that is not UTF-8 (Git allows any bytes) through real syncs: each sync is recorded,
and its page shows, naming the file with those bytes escaped."""

from __future__ import annotations

import os

import pytest

from tests.pages.conftest import redis_url
from tests.worker.sync_manifests import configmap

pytestmark = pytest.mark.stack


def test_a_file_name_that_is_not_utf8_is_recorded_and_shown(harness, git_repo):
    repo = git_repo("names")
    deploy = os.fsencode(repo.work / "deploy")
    os.makedirs(deploy)
    for name, text in ((b"caf\xe9.yaml", configmap("cafe", "1")), (b"\xff.yaml", configmap("Not_A_Name", "2"))):
        with open(deploy + b"/" + name, "w") as f:
            f.write(text)
    harness.configure(repo, retries=0)
    failed = harness.sync(repo.commit_and_push("names that are not UTF-8"))
    assert failed["result"] == "failure", failed
    assert "ConfigMap/" + harness.namespace + "/Not_A_Name (deploy/\\xff.yaml, doc 1): " in failed["error"]
    os.unlink(deploy + b"/\xff.yaml")
    synced = harness.sync(repo.commit_and_push("the invalid one removed"))
    assert synced["result"] == "success", synced

    from webhook import create_app
    client = create_app(harness.config, redis_url=redis_url(harness.conn)).test_client()
    for summary, shown in ((failed, "deploy/\\xff.yaml"), (synced, "deploy/caf\\xe9.yaml")):
        page = client.get(f"/syncs/{summary['id']}")
        assert page.status_code == 200 and shown in page.data.decode(), summary
