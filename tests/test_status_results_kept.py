"""A commit's result, once told, is not overwritten by a sync that does not apply that commit.

A push of an older commit can come again after a newer one was applied (a
redelivered webhook, `pullbridge sync <sha>`, a late delivery racing a new
push).  The sync that takes it applies nothing of it ("already applied a newer
commit", "superseded by ..."), and the receiver's "pending" promises a sync
that will not come; either would replace the commit's own result, a failure
turned green.  Real receiver, real RQ workers over the stack (git host, API
server), a GitHub-like host on a socket.
"""

from __future__ import annotations

import pytest
from rq import Queue, SimpleWorker

from pullbridge import keys
from tests.notify_support import (fake_hosts, github_status_site,  # noqa: F401
                                  run_status_worker, signed_push)
from tests.worker.sync_manifests import app_files

pytestmark = pytest.mark.stack

CONTEXT = "pullbridge/app"


@pytest.fixture
def site(fake_hosts, redis_conn, namespace, git_repo, tmp_path, monkeypatch):  # noqa: F811
    yield from github_status_site(fake_hosts, redis_conn, namespace, git_repo("kept"), tmp_path, monkeypatch)


def push_and_sync(client, conn, sha: str) -> None:
    signed_push(client, sha)
    run_status_worker(conn)  # the receiver's pending, while the sync waits
    SimpleWorker([Queue(keys.SYNC_QUEUE, connection=conn)], connection=conn).work(burst=True)
    run_status_worker(conn)


def told(fake_hosts, sha: str) -> list[tuple[str, str]]:
    return [(r["payload"]["state"], r["payload"]["description"]) for r in fake_hosts.answered("github")
            if r["path"].endswith(sha)]


def test_an_older_commit_pushed_again_keeps_its_own_result(site, fake_hosts, redis_conn):  # noqa: F811
    git, config, client = site
    broken = git.commit_and_push("broken", {"deploy/app.yaml": "kind: [\n"})
    push_and_sync(client, redis_conn, broken)
    [(state, description)] = told(fake_hosts, broken)[-1:]
    assert state == "failure"
    fixed = git.commit_and_push("fixed", app_files("1.0"))
    push_and_sync(client, redis_conn, fixed)
    assert fake_hosts.final[("github", "acme/deploy", fixed, CONTEXT)] == "success"

    before = len(told(fake_hosts, broken))
    push_and_sync(client, redis_conn, broken)  # the first push again, after the fix was applied
    assert len(told(fake_hosts, broken)) == before  # no "sync queued", no "already applied a newer commit"
    assert fake_hosts.final[("github", "acme/deploy", broken, CONTEXT)] == "failure"

    newest = git.commit_and_push("v2", app_files("2.0"))
    signed_push(client, broken)  # again, racing a new push: the sync takes both
    push_and_sync(client, redis_conn, newest)
    assert len(told(fake_hosts, broken)) == before  # not "superseded by" the newest either
    assert fake_hosts.final[("github", "acme/deploy", newest, CONTEXT)] == "success"


def test_a_commit_without_a_result_is_still_told_why_it_was_not_applied(site, fake_hosts, redis_conn):  # noqa: F811
    git, config, client = site
    first = git.commit_and_push("v1", app_files("1.0"))
    second = git.commit_and_push("v2", app_files("2.0"))
    push_and_sync(client, redis_conn, second)
    push_and_sync(client, redis_conn, first)  # delivered late, after the newer commit was applied
    assert told(fake_hosts, first) == [("pending", "sync queued"), ("success", "already applied a newer commit")]
