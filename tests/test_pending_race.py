"""A late "pending" from the receiver never becomes a commit's last status.

The receiver queues the sync, then (outside the repo lock) the pending
status.  If its thread stalls in between while a worker runs the whole sync,
the pending is enqueued after the sync's "running" and "success".  Here the
stall is made deterministic: the receiver's pending step is held back until
a real RQ worker has run the real sync (stack git host and API server),
then the status worker posts everything to a GitHub-like host on a socket.
"""

from __future__ import annotations

import json

import pytest
from rq import Queue, SimpleWorker

from pullbridge import keys
from pullbridge.config import load_config
from tests.notify_support import GITHUB_TOKEN, fake_hosts, run_status_worker  # noqa: F401
from tests.pages.conftest import redis_url
from tests.webhook import payloads as P
from tests.worker.sync_manifests import app_files
from webhook.intake import Intake
from worker.status import enqueue_status, sync_waiting

pytestmark = pytest.mark.stack

SECRET = "pending-race-secret"
CONTEXT = "pullbridge/app"


@pytest.fixture
def site(fake_hosts, redis_conn, namespace, git_repo, tmp_path, monkeypatch):  # noqa: F811
    from webhook import create_app

    git = git_repo("race")
    path = tmp_path / "pullbridge.yaml"
    path.write_text(json.dumps({
        "server": {"public_url": "https://pb.example"},
        "worker": {"inventory_namespace": namespace},
        "repos": [{"name": "app", "url": git.http_url, "provider": "github", "repository": "acme/deploy",
                   "secret_env": "PB_TEST_RACE_SECRET", "namespace": namespace,
                   "status": {"token_env": "PB_TEST_RACE_TOKEN", "api_url": fake_hosts.base + "/github",
                              "backoff": [0], "retries": 1}}],
    }))
    monkeypatch.setenv("PULLBRIDGE_CONFIG", str(path))
    monkeypatch.setenv("PULLBRIDGE_CACHE_DIR", str(tmp_path / "mirrors"))
    monkeypatch.setenv("PB_TEST_RACE_SECRET", SECRET)
    monkeypatch.setenv("PB_TEST_RACE_TOKEN", GITHUB_TOKEN)
    config = load_config(path)
    app = create_app(config, redis_url=redis_url(redis_conn))
    app.testing = True
    yield git, config, app.test_client()
    app.extensions["pullbridge"].conn.close()


def push(client, sha: str) -> str:
    body = json.dumps(P.github_push(full_name="acme/deploy", after=sha)).encode()
    answer = client.post("/hooks/app", data=body, headers=P.signed_headers("github", SECRET.encode(), body))
    assert answer.status_code == 202, answer.data
    return answer.get_json()["job_id"]


def run_sync_worker(conn) -> None:
    SimpleWorker([Queue(keys.SYNC_QUEUE, connection=conn)], connection=conn).work(burst=True)


def test_a_pending_enqueued_after_the_sync_finished_is_not_posted_last(site, fake_hosts, redis_conn,  # noqa: F811
                                                                        monkeypatch):
    git, config, client = site
    held = []
    original = Intake._pending_status
    monkeypatch.setattr(Intake, "_pending_status", lambda self, *args: held.append((self, args)) or "held")
    sha = git.commit_and_push("v1", app_files("1.0"))
    push(client, sha)
    run_sync_worker(redis_conn)  # the worker runs the whole sync while the web thread stalls
    [(intake, args)] = held
    assert original(intake, *args) == "pending queued"  # the stalled thread goes on: pending comes last
    run_status_worker(redis_conn)

    posted = [r["payload"]["description"] for r in fake_hosts.answered("github")]
    assert posted[0] == "sync running" and posted[-1].startswith("applied: ")
    assert "sync queued" not in posted
    assert fake_hosts.final[("github", "acme/deploy", sha, CONTEXT)] == "success"


def test_a_pending_is_posted_while_its_sync_waits_even_after_a_requeue(site, fake_hosts, redis_conn):  # noqa: F811
    git, config, client = site
    repo = config.repo("app")
    sha = git.commit_and_push("v1", app_files("1.0"))
    job_id = push(client, sha)
    assert sync_waiting(redis_conn, job_id)
    run_status_worker(redis_conn)
    assert [r["payload"]["description"] for r in fake_hosts.answered("github")] == ["sync queued"]

    # a job that found the repo locked hands over to another job: still waiting
    from worker.lock import RepoLock

    other = RepoLock(redis_conn, "app", owner="another-worker")
    assert other.acquire(1)
    SimpleWorker([Queue(keys.SYNC_QUEUE, connection=redis_conn)], connection=redis_conn).work(burst=True, max_jobs=1)
    assert sync_waiting(redis_conn, job_id)
    enqueue_status(redis_conn, config, repo, sha, "pending", "sync queued again", sync_id=job_id, sync_job=job_id)
    run_status_worker(redis_conn)
    assert fake_hosts.answered("github")[-1]["payload"]["description"] == "sync queued again"
    other.release()
    run_sync_worker(redis_conn)
    assert not sync_waiting(redis_conn, job_id)
    assert not sync_waiting(redis_conn, "sync-app-000000000000")  # unknown (or expired): not waiting
