"""Commit statuses end to end: enqueue_status -> real RQ worker -> HTTP on a real socket.

The fake hosts (tests/notify_support.py) check each request against the
documented GitHub, GitLab and Gitea APIs and answer 4xx like them.
"""

from __future__ import annotations

import logging
import time

import pytest
from rq import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from pullbridge import keys
from pullbridge.config import parse_config
from tests.notify_support import (BITBUCKET_TOKEN, GITEA_TOKEN, GITHUB_TOKEN, GITLAB_TOKEN, dead_redis,  # noqa: F401
                                  fake_hosts, free_port, run_status_worker)
from tests.rq_support import enqueue_when_due
from worker.status import enqueue_status

SHA = "0123456789abcdef0123456789abcdef01234567"
SHA2 = "fedcba9876543210fedcba9876543210fedcba98"


def make_config(hosts, monkeypatch, tmp_path, gitlab_url="https://gitlab.example/group/sub/deploy.git",
                **status_overrides):
    monkeypatch.setenv("GH_TOKEN", GITHUB_TOKEN)
    monkeypatch.setenv("GL_TOKEN", GITLAB_TOKEN)
    monkeypatch.setenv("BB_TOKEN", BITBUCKET_TOKEN)
    (tmp_path / "gitea-token").write_text(GITEA_TOKEN + "\n")
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    common = {"backoff": [0], "retries": 3, "timeout": 5}
    data = {
        "server": {"public_url": "https://pullbridge.example/"},
        "repos": [
            {"name": "gh", "url": "https://github.example/acme/deploy.git", "provider": "github",
             "secret_env": "HOOK_SECRET",
             "status": {"api_url": hosts.base + "/github", "token_env": "GH_TOKEN", **common,
                        **status_overrides}},
            {"name": "gl", "url": gitlab_url, "provider": "gitlab",
             "branch": "prod", "secret_env": "HOOK_SECRET",
             "status": {"api_url": hosts.base + "/gitlab/api/v4", "token_env": "GL_TOKEN",
                        "context": "pullbridge/cluster-a", **common, **status_overrides}},
            {"name": "tea", "url": "git@gitea.example:acme/deploy.git", "provider": "gitea",
             "secret_env": "HOOK_SECRET",
             "status": {"api_url": hosts.base + "/gitea/api/v1", "token_file": str(tmp_path / "gitea-token"),
                        **common, **status_overrides}},
            {"name": "bb", "url": "https://bitbucket.example/scm/ACME/deploy.git", "provider": "bitbucket-server",
             "branch": "release", "secret_env": "HOOK_SECRET",
             "status": {"api_url": hosts.base + "/bitbucket", "token_env": "BB_TOKEN", **common, **status_overrides}},
            {"name": "quiet", "url": "https://github.example/acme/deploy.git", "provider": "github",
             "secret_env": "HOOK_SECRET"},
        ],
    }
    path = tmp_path / "pullbridge.yaml"
    import json
    path.write_text(json.dumps(data))  # JSON is YAML
    monkeypatch.setenv("PULLBRIDGE_CONFIG", str(path))
    return parse_config(data)


@pytest.fixture
def setup(fake_hosts, redis_conn, monkeypatch, tmp_path):  # noqa: F811
    config = make_config(fake_hosts, monkeypatch, tmp_path)
    return fake_hosts, redis_conn, config


def test_github_status_follows_the_documented_api(setup):
    hosts, conn, config = setup
    repo = config.repo("gh")
    long_text = "apply failed: " + "x" * 300
    enqueue_status(conn, config, repo, SHA, "pending", "queued", sync_id="s-1")
    enqueue_status(conn, config, repo, SHA, "running", "syncing", sync_id="s-1")
    enqueue_status(conn, config, repo, SHA, "failure", long_text, sync_id="s-1")
    run_status_worker(conn)

    sent = hosts.answered("github")
    assert [r["payload"]["state"] for r in sent] == ["pending", "pending", "failure"]
    first = sent[0]
    assert first["path"] == f"/github/repos/acme/deploy/statuses/{SHA}"
    assert first["headers"]["authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert first["headers"]["accept"] == "application/vnd.github+json"
    assert first["headers"]["x-github-api-version"] == "2022-11-28"
    assert first["headers"]["user-agent"].startswith("pullbridge/")
    assert first["payload"] == {"state": "pending", "context": "pullbridge/gh", "description": "queued",
                                "target_url": "https://pullbridge.example/syncs/s-1"}
    assert len(sent[2]["payload"]["description"]) == 140
    assert hosts.final[("github", "acme/deploy", SHA, "pullbridge/gh")] == "failure"
    assert FailedJobRegistry(keys.STATUS_QUEUE, connection=conn).count == 0


def test_gitlab_status_uses_encoded_path_name_ref_and_private_token(setup):
    hosts, conn, config = setup
    repo = config.repo("gl")
    for state in ("pending", "running", "running", "success"):
        enqueue_status(conn, config, repo, SHA, state, f"{state} now", sync_id="s-9")
    run_status_worker(conn)

    sent = hosts.answered("gitlab")
    assert [r["payload"]["state"] for r in sent] == ["pending", "running", "running", "success"]
    assert sent[0]["path"] == f"/gitlab/api/v4/projects/group%2Fsub%2Fdeploy/statuses/{SHA}"
    assert sent[0]["headers"]["private-token"] == GITLAB_TOKEN
    assert "authorization" not in sent[0]["headers"]
    assert sent[0]["payload"]["name"] == "pullbridge/cluster-a"
    assert sent[0]["payload"]["ref"] == "prod"
    # the second "running" got GitLab's 400 "Cannot transition ... from :running": not an error
    assert FailedJobRegistry(keys.STATUS_QUEUE, connection=conn).count == 0
    assert hosts.final[("gitlab", "group/sub/deploy", SHA, "pullbridge/cluster-a")] == "success"


def test_a_gitlab_under_a_relative_url_root_takes_the_project_path_below_the_root(setup, monkeypatch, tmp_path):
    """The fake GitLab answers under the relative URL root /gitlab; the clone URL's path begins with
    that root, which is no part of the project's path: ``status.api_url`` says where the root ends."""
    hosts, conn, _ = setup
    config = make_config(hosts, monkeypatch, tmp_path, gitlab_url="https://gitlab.example/gitlab/group/sub/deploy.git")
    enqueue_status(conn, config, config.repo("gl"), SHA, "success", "applied")
    run_status_worker(conn)
    assert [r["path"] for r in hosts.requests] == [f"/gitlab/api/v4/projects/group%2Fsub%2Fdeploy/statuses/{SHA}"]
    assert hosts.final[("gitlab", "group/sub/deploy", SHA, "pullbridge/cluster-a")] == "success"


def test_a_sync_status_is_cut_to_each_hosts_own_limit(setup):
    """The sync queues its statuses through worker.jobs._status: GitLab takes 255 characters, GitHub 140."""
    from worker.jobs import _status

    hosts, conn, config = setup
    error = "validation failed, nothing applied: " + "Deployment/shop/web (deploy/app.yaml, doc 2): bad; " * 20
    for name in ("gl", "gh"):
        _status(conn, config, config.repo(name), SHA, "failure", error, "s-1")
    run_status_worker(conn)
    gitlab, github = hosts.answered("gitlab")[0]["payload"], hosts.answered("github")[0]["payload"]
    assert len(gitlab["description"]) == 255 and gitlab["description"].endswith("…")
    assert gitlab["description"][:254] == " ".join(error.split())[:254]
    assert len(github["description"]) == 140 and github["description"].endswith("…")


def test_gitlab_failure_state_is_failed(setup):
    hosts, conn, config = setup
    enqueue_status(conn, config, config.repo("gl"), SHA, "error", "render error")
    run_status_worker(conn)
    sent = hosts.answered("gitlab")
    assert sent[0]["payload"]["state"] == "failed"
    assert "target_url" not in sent[0]["payload"]  # no sync id, no link


def test_gitea_uses_token_auth_under_api_v1(setup):
    hosts, conn, config = setup
    enqueue_status(conn, config, config.repo("tea"), SHA, "running", "syncing", sync_id="s-2")
    run_status_worker(conn)
    sent = hosts.answered("gitea")
    assert sent[0]["path"] == f"/gitea/api/v1/repos/acme/deploy/statuses/{SHA}"
    assert sent[0]["headers"]["authorization"] == f"token {GITEA_TOKEN}"
    assert sent[0]["payload"]["state"] == "pending"
    assert hosts.final[("gitea", "acme/deploy", SHA, "pullbridge/tea")] == "pending"


def test_bitbucket_server_gets_a_build_status_under_its_repository(setup):
    hosts, conn, config = setup
    repo = config.repo("bb")
    enqueue_status(conn, config, repo, SHA, "running", "sync running", sync_id="s-3")
    enqueue_status(conn, config, repo, SHA, "failure", "apply failed: " + "x" * 300, sync_id="s-3")
    enqueue_status(conn, config, repo, SHA2, "success", "already applied a newer commit")  # no sync id
    run_status_worker(conn)

    sent = hosts.answered("bitbucket")
    assert [r["path"] for r in sent] == [f"/bitbucket/rest/api/latest/projects/ACME/repos/deploy/commits/{s}/builds"
                                         for s in (SHA, SHA, SHA2)]
    assert sent[0]["headers"]["authorization"] == f"Bearer {BITBUCKET_TOKEN}"
    assert sent[0]["payload"] == {"key": "pullbridge/bb", "name": "pullbridge/bb", "state": "INPROGRESS",
                                  "url": "https://pullbridge.example/syncs/s-3", "ref": "refs/heads/release",
                                  "description": "sync running"}
    assert len(sent[1]["payload"]["description"]) == 255
    assert sent[2]["payload"]["url"] == "https://pullbridge.example/repos/bb"  # the url is required
    assert hosts.final[("bitbucket", "ACME/deploy", SHA, "pullbridge/bb")] == "FAILED"
    assert hosts.final[("bitbucket", "ACME/deploy", SHA2, "pullbridge/bb")] == "SUCCESSFUL"
    assert FailedJobRegistry(keys.STATUS_QUEUE, connection=conn).count == 0


def test_gitlab_409_is_retried_once_then_posted(setup):
    hosts, conn, config = setup
    hosts.script.append((409, {"message": "409 Conflict: commit status is already being updated"}, {}))
    enqueue_status(conn, config, config.repo("gl"), SHA, "success", "applied 3 objects")
    run_status_worker(conn)
    assert len(hosts.requests) == 2
    assert hosts.final[("gitlab", "group/sub/deploy", SHA, "pullbridge/cluster-a")] == "success"
    assert FailedJobRegistry(keys.STATUS_QUEUE, connection=conn).count == 0


def test_server_errors_are_retried_until_retries_run_out(setup, caplog):
    hosts, conn, config = setup
    caplog.set_level(logging.INFO)
    for _ in range(10):
        hosts.script.append((500, {"message": "boom"}, {}))
    enqueue_status(conn, config, config.repo("gh"), SHA, "success", "ok")
    run_status_worker(conn)
    assert len(hosts.requests) == 4  # first try + 3 retries
    assert FailedJobRegistry(keys.STATUS_QUEUE, connection=conn).count == 1
    said = [r for r in caplog.records if r.name == "worker.outbound"]
    assert [r.levelname for r in said] == ["WARNING"] * 3 + ["ERROR"]
    assert all("will retry" in r.getMessage() for r in said[:3])
    assert said[-1].getMessage() == f"status success gh@{SHA[:12]}: giving up, no retry left: " \
                                    f"status success gh@{SHA[:12]}: HTTP 500: {{\"message\": \"boom\"}}"


@pytest.mark.parametrize("code", [403, 429])
def test_a_secondary_rate_limit_without_headers_waits_a_minute(setup, code):
    """GitHub: a secondary rate limit is a 403 or 429 saying so; without retry-after or
    x-ratelimit-remaining: 0, wait at least one minute before retrying."""
    hosts, conn, config = setup
    hosts.script.append((code, {"message": "You have exceeded a secondary rate limit. Please wait a few "
                                           "minutes before you try again."}, {}))
    queued_at = time.time()
    job_id = enqueue_status(conn, config, config.repo("gh"), SHA, "success", "ok")
    run_status_worker(conn)
    assert FailedJobRegistry(keys.STATUS_QUEUE, connection=conn).count == 0
    scheduled = ScheduledJobRegistry(keys.STATUS_QUEUE, connection=conn)
    assert scheduled.get_scheduled_time(job_id).timestamp() >= queued_at + 59
    scheduled.remove(job_id)  # the minute is up: queue it as the scheduler would
    queue = Queue(keys.STATUS_QUEUE, connection=conn)
    queue.enqueue_job(queue.fetch_job(job_id))
    run_status_worker(conn)
    assert hosts.final[("github", "acme/deploy", SHA, "pullbridge/gh")] == "success"


def test_a_403_that_is_no_rate_limit_is_permanent(setup):
    hosts, conn, config = setup
    hosts.script.append((403, {"message": "Resource not accessible by personal access token"}, {}))
    job_id = enqueue_status(conn, config, config.repo("gh"), SHA, "success", "ok")
    run_status_worker(conn)
    assert len(hosts.requests) == 1
    assert FailedJobRegistry(keys.STATUS_QUEUE, connection=conn).get_job_ids() == [job_id]


def test_connection_refused_is_retried(setup, monkeypatch, tmp_path):
    hosts, conn, config = setup
    dead = f"http://127.0.0.1:{free_port()}"
    config = make_config(type("H", (), {"base": dead})(), monkeypatch, tmp_path)
    job_id = enqueue_status(conn, config, config.repo("gh"), SHA, "success", "ok")
    run_status_worker(conn)
    failed = FailedJobRegistry(keys.STATUS_QUEUE, connection=conn)
    assert failed.get_job_ids() == [job_id]
    job = Queue(keys.STATUS_QUEUE, connection=conn).fetch_job(job_id)
    assert "no answer" in job.latest_result().exc_string
    assert job.retries_left == 0


def test_validation_error_is_permanent_and_logged_without_the_token(setup, caplog):
    hosts, conn, config = setup
    hosts.known_projects.discard("acme/deploy")  # the host now answers 404
    caplog.set_level(logging.INFO)
    job_id = enqueue_status(conn, config, config.repo("gh"), SHA, "success", "ok")
    run_status_worker(conn)
    assert len(hosts.requests) == 1  # no retry for a 4xx
    assert FailedJobRegistry(keys.STATUS_QUEUE, connection=conn).get_job_ids() == [job_id]
    assert "HTTP 404" in caplog.text
    assert GITHUB_TOKEN not in caplog.text
    job = Queue(keys.STATUS_QUEUE, connection=conn).fetch_job(job_id)
    assert GITHUB_TOKEN not in (job.latest_result().exc_string or "")


def test_a_token_with_a_line_break_is_refused_without_showing_it(setup, tmp_path, caplog):
    """A token file holding two lines (a rotated token kept below the new one) cannot go in a
    header; urllib's own refusal would quote the whole header, token included, into the log
    and the failed job that the /queue page shows."""
    hosts, conn, config = setup
    caplog.set_level(logging.INFO)
    (tmp_path / "gitea-token").write_text(f"{GITEA_TOKEN}\nold-token-never-logged\n")
    job_id = enqueue_status(conn, config, config.repo("tea"), SHA, "success", "ok")
    run_status_worker(conn)
    assert hosts.requests == []
    assert FailedJobRegistry(keys.STATUS_QUEUE, connection=conn).get_job_ids() == [job_id]
    error = Queue(keys.STATUS_QUEUE, connection=conn).fetch_job(job_id).latest_result().exc_string
    for text in (error, caplog.text):
        assert GITEA_TOKEN not in text and "old-token-never-logged" not in text
    assert f"file:{tmp_path / 'gitea-token'} holds a space, line break or other character" in error


def test_bad_token_is_permanent(setup, monkeypatch):
    hosts, conn, config = setup
    monkeypatch.setenv("GH_TOKEN", "wrong")
    enqueue_status(conn, config, config.repo("gh"), SHA, "pending", "queued")
    run_status_worker(conn)
    assert [r.get("provider") for r in hosts.requests] == ["github"]
    assert FailedJobRegistry(keys.STATUS_QUEUE, connection=conn).count == 1


@pytest.mark.parametrize("code", [301, 302, 303, 308])
def test_a_redirect_is_not_followed_and_fails_saying_where_it_pointed(setup, code, caplog):
    """Followed, urllib would re-send the POST as a GET with the token, and GitHub's 200 to that
    GET (the list of statuses) would read as "posted"."""
    hosts, conn, config = setup
    caplog.set_level(logging.INFO)
    hosts.script.append((code, {"message": "Moved"}, {"Location": f"/secure/github/repos/acme/deploy/statuses/{SHA}"}))
    job_id = enqueue_status(conn, config, config.repo("gh"), SHA, "success", "applied")
    run_status_worker(conn)
    assert [r.get("method", "POST") for r in hosts.requests] == ["POST"]  # no GET, no retry
    assert FailedJobRegistry(keys.STATUS_QUEUE, connection=conn).get_job_ids() == [job_id]
    error = Queue(keys.STATUS_QUEUE, connection=conn).fetch_job(job_id).latest_result().exc_string
    assert f"HTTP {code}: redirected to {hosts.base}/secure/github/repos/acme/deploy/statuses/{SHA}" in error
    assert "status.api_url" in error
    assert GITHUB_TOKEN not in error and GITHUB_TOKEN not in caplog.text


def test_429_retry_after_delays_the_retry(setup):
    hosts, conn, config = setup
    hosts.script.append((429, {"message": "slow down"}, {"Retry-After": "2"}))
    queued_at = time.time()
    job_id = enqueue_status(conn, config, config.repo("gh"), SHA, "success", "ok")
    run_status_worker(conn)
    scheduled = ScheduledJobRegistry(keys.STATUS_QUEUE, connection=conn)
    assert scheduled.get_job_ids() == [job_id]
    when = scheduled.get_scheduled_time(job_id).timestamp()
    assert when >= queued_at + 1  # interval 0 stretched to Retry-After: 2 (RQ keeps whole seconds)
    enqueue_when_due(conn, keys.STATUS_QUEUE, job_id)
    run_status_worker(conn)
    assert len(hosts.requests) == 2
    assert hosts.final[("github", "acme/deploy", SHA, "pullbridge/gh")] == "success"


def test_late_older_status_does_not_overwrite_a_newer_one(setup):
    hosts, conn, config = setup
    repo = config.repo("gh")
    queue = Queue(keys.STATUS_QUEUE, connection=conn)
    old = enqueue_status(conn, config, repo, SHA, "pending", "sync 1 queued", sync_id="s-1")
    new = enqueue_status(conn, config, repo, SHA, "success", "sync 2 applied", sync_id="s-2")
    # the older job is delayed (e.g. its first attempt failed): the newer one runs first
    queue.remove(old)
    run_status_worker(conn)
    queue.enqueue_job(queue.fetch_job(old))
    run_status_worker(conn)
    assert [r["payload"]["state"] for r in hosts.requests] == ["success"]
    assert queue.fetch_job(old).return_value() == "stale"
    assert queue.fetch_job(new).return_value() == "posted"
    # other commits are independent
    enqueue_status(conn, config, repo, SHA2, "pending", "queued")
    run_status_worker(conn)
    assert hosts.final[("github", "acme/deploy", SHA2, "pullbridge/gh")] == "pending"


def test_repo_without_status_settings_posts_nothing(setup):
    hosts, conn, config = setup
    assert enqueue_status(conn, config, config.repo("quiet"), SHA, "pending", "queued") is None
    assert Queue(keys.STATUS_QUEUE, connection=conn).count == 0


def test_unknown_state_is_refused(setup):
    hosts, conn, config = setup
    with pytest.raises(ValueError):
        enqueue_status(conn, config, config.repo("gh"), SHA, "done", "x")


def test_redis_down_does_not_raise_into_the_sync(setup):
    hosts, conn, config = setup
    dead = dead_redis()
    assert enqueue_status(dead, config, config.repo("gh"), SHA, "pending", "queued") is None


def test_forking_worker_retries_a_500_and_honours_retry_after(setup):
    """The production worker class forks a work horse per job: retry decisions are made there."""
    from rq import Worker

    hosts, conn, config = setup
    hosts.script += [(500, {"message": "boom"}, {}), (429, {"message": "slow"}, {"Retry-After": "30"})]
    job_id = enqueue_status(conn, config, config.repo("gl"), SHA, "running", "syncing", sync_id="s-5")
    queued_at = time.time()
    Worker([Queue(keys.STATUS_QUEUE, connection=conn)], connection=conn).work(burst=True)
    assert len(hosts.requests) == 2  # 500 -> retried at once (backoff 0); 429 -> scheduled
    when = ScheduledJobRegistry(keys.STATUS_QUEUE, connection=conn).get_scheduled_time(job_id).timestamp()
    assert when >= queued_at + 29
