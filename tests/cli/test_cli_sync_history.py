"""`pullbridge sync` and `pullbridge history` with real workers on the real stack."""

from __future__ import annotations

import json
import socket

import pytest
from rq import Queue

from pullbridge import keys
from pullbridge.commands.common import redact, wait_for_sync
from tests.worker.sync_manifests import app_files, app_version, configmap

pytestmark = pytest.mark.stack


def test_sync_queues_once_and_reports_an_unknown_repo(ops, git_repo):
    repo = git_repo("syncq")
    ops.configure(repo)
    sha = repo.commit_and_push("v1", app_files("1.0"))
    code, out, _ = ops.run("sync", "app")
    assert code == 0 and out.startswith("queued sync job sync-app-")
    job_id = out.split()[3]
    code, out, _ = ops.run("sync", "app", "--sha", sha)
    assert code == 0 and f"already queued (job {job_id}); it will apply commit {sha[:12]}" in out
    assert Queue(keys.SYNC_QUEUE, connection=ops.conn).job_ids == [job_id]
    assert ops.conn.zscore(keys.wanted("app"), sha) is not None

    code, out, err = ops.run("sync", "app", "--wait", "--timeout", "0.3")  # no worker is running
    assert code == 2 and f"sync job {job_id} has not finished after 0.3s (status queued)" in err
    assert "it keeps running: see `pullbridge history app`" in err
    code, _, err = ops.run("sync", "app", "--wait", "--timeout", "0")
    assert code == 2 and "--timeout must be positive" in err

    code, _, err = ops.run("sync", "nope")
    assert code == 2 and "unknown repository 'nope' (configured: app)" in err
    code, _, err = ops.run("sync", "app", "--sha", "not-a-sha")
    assert code == 2 and "not a commit sha: 'not-a-sha'" in err
    code, _, err = ops.run("sync")
    assert code == 2 and "usage: pullbridge sync" in err
    code, out, _ = ops.run("sync", "--help")
    assert code == 0 and "--wait" in out and "Exit 0" in out


def test_sync_of_a_commit_not_on_the_branch_queues_nothing(ops, git_repo, kube, namespace):
    """Queued, such a commit made the worker apply the branch head: the cluster moved while the
    command said "not applied".  It is refused before anything is asked; a short sha is taken."""
    repo = git_repo("syncsha")
    ops.configure(repo)
    sha1 = repo.commit_and_push("v1", app_files("1.0"))
    assert ops.sync(sha1)["result"] == "success"
    repo.commit_and_push("v2", app_files("2.0"))  # pushed, not synced: a queued sync would apply it
    repo.git("checkout", "-q", "-b", "side")
    side = repo.commit("side", app_files("3.0"))
    repo.push("side")
    for sha, error in ((side, f"sync: commit {side} is not on branch main"),
                       ("f" * 40, f"sync: commit {'f' * 40} is not on branch main"),
                       ("abc123", "sync: commit abc123 is not on branch main"),
                       ("xyz", "pullbridge: not a commit sha: 'xyz'")):
        code, out, err = ops.run("sync", "app", "--sha", sha)
        assert (code, out) == (2, ""), out + err
        assert error in err
    assert Queue(keys.SYNC_QUEUE, connection=ops.conn).count == 0
    assert ops.conn.zcard(keys.wanted("app")) == 0
    ops.work()
    assert app_version(kube, namespace) == "1.0"

    code, out, err = ops.run("sync", "app", "--sha", sha1[:8])  # abbreviated, like rollback and diff
    assert code == 0 and "queued sync job sync-app-" in out and f"(commit {sha1[:12]})" in out, out + err
    assert ops.conn.zscore(keys.wanted("app"), sha1) is not None


def test_sync_wait_prints_the_change_set_and_fails_with_the_sync(ops, git_repo, kube, namespace):
    repo = git_repo("syncw")
    ops.configure(repo)
    sha1 = repo.commit_and_push("v1", app_files("1.0"))
    ops.start_worker()
    code, out, err = ops.run("sync", "app", "--sha", sha1, "--wait")
    assert code == 0, out + err
    assert f"of app at {sha1[:12]}: success" in out
    assert f"created    Deployment/{namespace}/fluxdemo  (deploy/app.yaml, doc 2)" in out
    assert "3 created, 0 configured, 0 deleted, 0 unchanged, 0 skipped" in out
    assert app_version(kube, namespace) == "1.0"

    bad = app_files("2.0")
    bad["deploy/bad.yaml"] = configmap("Not_A_Valid_Name", "x")
    repo.commit_and_push("invalid", bad)
    code, out, err = ops.run("sync", "app", "--wait", "--timeout", "600")
    assert code == 2, out + err
    assert ": failure" in out and "validation failed, nothing applied" in out
    assert app_version(kube, namespace) == "1.0"


def test_history_lists_syncs_newest_first(ops, git_repo):
    repo = git_repo("hist")
    ops.configure(repo)
    code, out, _ = ops.run("history", "app")
    assert code == 0 and "no syncs recorded for app" in out
    sha1 = repo.commit_and_push("v1", app_files("1.0"))
    ops.sync(sha1)
    sha2 = repo.commit_and_push("v2", app_files("2.0"))
    ops.sync(sha2)
    bad = app_files("3.0")
    bad["deploy/bad.yaml"] = configmap("Not_A_Valid_Name", "x")
    sha3 = repo.commit_and_push("invalid", bad)
    ops.sync(sha3)

    code, out, _ = ops.run("history", "app")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"applied: {sha2[:12]} at " + lines[0].split(" at ", 1)[1]
    assert lines[1].split() == ["TIME", "SHA", "REASON", "RESULT", "+NEW", "~CHG", "-DEL", "=SAME", "ERROR"]
    assert sha3[:12] in lines[2] and "failure" in lines[2] and "validation failed" in lines[2]
    assert lines[3].strip() == "note: permanent failure: not retried until a new push"
    assert sha2[:12] in lines[4] and "success" in lines[4] and "+0 ~2 -0 =1" in lines[4]
    assert sha1[:12] in lines[5] and "push" in lines[5] and "+3 ~0 -0 =0" in lines[5]

    code, out, _ = ops.run("history", "app", "--limit", "1", "--json")
    data = json.loads(out)
    assert code == 0 and [s["sha"] for s in data["syncs"]] == [sha3]
    assert data["state"]["applied_sha"] == sha2 and data["state"]["held_sha"] is None
    assert data["state"]["suspended"] is False

    code, _, err = ops.run("history", "app", "--limit", "0")
    assert code == 2 and "--limit" in err
    code, _, err = ops.run("history", "nope")
    assert code == 2 and "unknown repository 'nope'" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("verb", [["sync", "app"], ["history", "app"], ["rollback", "app", "a" * 40], ["queue"]])
def test_unreachable_redis_is_named_without_its_password(ops, git_repo, verb):
    ops.configure(git_repo("noredis"))
    url = f"redis://:sekrit-pw@127.0.0.1:{_free_port()}/3"
    code, out, err = ops.run(*verb, "--redis-url", url)
    assert code == 2, out + err
    assert f"cannot reach Redis at {url.replace(':sekrit-pw@', '')}" in err
    assert "sekrit" not in err + out


def test_redact_keeps_everything_but_passwords():
    assert redact("redis://user:pw@h:1/0") == "redis://user@h:1/0"
    assert redact("rediss://:pw@h:1/2?ssl_cert_reqs=none") == "rediss://h:1/2?ssl_cert_reqs=none"
    assert redact("redis+sentinel://:pw@a:1,b:2/mymaster/0?sentinel_password=x&socket_timeout=1") == \
        "redis+sentinel://a:1,b:2/mymaster/0?socket_timeout=1"
    assert redact("unix:///run/redis.sock?db=1") == "unix:///run/redis.sock?db=1"
    # A URL missing its scheme: urlsplit would take the user name for one and keep the password.
    assert redact("default:hunter2@10.0.0.1:6379/0") == "***@10.0.0.1:6379/0"
    assert redact("redis:/:hunter2@h:6379") == "***@h:6379"
    assert redact("10.0.0.1:6379") == "10.0.0.1:6379"


def test_a_redis_url_missing_its_scheme_is_refused_without_its_password(ops, git_repo):
    ops.configure(git_repo("noscheme"))
    code, out, err = ops.run("history", "app", "--redis-url", "default:sekrit-pw@127.0.0.1:6379/0")
    assert (code, out) == (2, "")
    assert err.startswith("pullbridge: bad Redis URL ***@127.0.0.1:6379/0: ") and "sekrit" not in err


def test_sync_wait_follows_a_job_that_found_the_repo_locked(ops, git_repo, kube, namespace):
    """A busy repo makes the worker hand the sync to a fresh job; --wait follows it to the end."""
    import threading

    from worker import history

    repo = git_repo("locked")
    ops.configure(repo)
    repo.commit_and_push("v1", app_files("1.0"))
    ops.conn.set(keys.lock("app"), "another-worker", ex=300)
    requeued = threading.Event()

    def release_when_requeued():  # let go once the first job has handed over at least once
        while not requeued.wait(0.1):
            if len(Queue(keys.SYNC_QUEUE, connection=ops.conn).finished_job_registry) > 0:
                requeued.set()
        ops.conn.delete(keys.lock("app"))

    releaser = threading.Thread(target=release_when_requeued, daemon=True)
    releaser.start()
    ops.start_worker()
    code, out, err = ops.run("sync", "app", "--wait")
    requeued.set()
    releaser.join()
    assert code == 0, out + err
    first_job = err.split("waiting for sync job ", 1)[1].split()[0]
    [record] = history.history(ops.conn, "app")
    assert record["result"] == "success" and record["job_id"] != first_job
    assert f"sync {record['id']} of app at " in out and app_version(kube, namespace) == "1.0"


def test_a_sync_asked_for_while_suspended_runs_on_resume(ops, git_repo, kube, namespace):
    """`sync` of a suspended repo says the commit waits for resume; with no --sha no commit was
    recorded as waiting, and resume queued nothing: the branch head stayed unapplied."""
    repo = git_repo("suspsync")
    ops.configure(repo)
    assert ops.sync(repo.commit_and_push("v1", app_files("1.0")))["result"] == "success"
    assert ops.run("suspend", "app")[0] == 0
    repo.commit_and_push("v2", app_files("2.0"))  # pushed without a webhook
    ops.start_worker()
    code, out, err = ops.run("sync", "app", "--wait")
    assert code == 2 and "skipped: suspended" in out, out + err
    assert "nothing was applied (the commit waits for `pullbridge resume app`)" in err

    code, out, err = ops.run("resume", "app")
    assert code == 0 and "app: resumed." in out, out + err
    job_id = out.split("app: sync ", 1)[1].split()[0]
    record = wait_for_sync(ops.conn, job_id, "app", None)
    assert record["result"] == "success" and record["reason"] == "resume"
    assert app_version(kube, namespace) == "2.0"
