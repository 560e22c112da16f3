"""`pullbridge rollback`: the old commit is applied and held; pushes do not move it until resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq import Queue

from pullbridge import keys, repostate
from pullbridge.commands.common import wait_for_sync
from pullbridge.queueing import request_sync
from tests.worker.sync_manifests import app_files, app_version
from worker import periodic

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def test_rollback_applies_the_old_commit_and_holds_it_until_resume(ops, git_repo, kube, namespace):
    repo = git_repo("rollback")
    ops.configure(repo)
    sha1 = repo.commit_and_push("v1", app_files("1.0"))
    assert ops.sync(sha1)["result"] == "success"
    sha2 = repo.commit_and_push("v2", app_files("2.0"))
    assert ops.sync(sha2)["result"] == "success"
    assert app_version(kube, namespace) == "2.0"

    code, out, err = ops.run("rollback", "app", sha1[:8])
    assert code == 0, out + err
    assert f"HELD: app is held at {sha1[:12]} by a rollback since " in out
    assert "pushes are not applied until `pullbridge resume app`" in out
    assert repostate.held_sha(repostate.read(ops.conn, "app")) == sha1
    ops.work()
    assert app_version(kube, namespace) == "1.0"

    # a push (webhook path) and a periodic run: the repo stays at the held commit
    sha3 = repo.commit_and_push("v3", app_files("3.0"))
    held = ops.sync(sha3)
    assert held["result"] == "success" and held["sha"] == sha1
    assert f"held at {sha1[:12]} by a rollback until `pullbridge resume app`" in held["notes"]
    request_sync(ops.conn, ops.config, ops.repo, None, reason="periodic")
    ops.work()
    assert app_version(kube, namespace) == "1.0"
    assert ops.conn.zcard(keys.wanted("app")) == 0
    assert periodic.reconcile("app")["result"] == "in sync"  # the held commit's objects, not the head's
    assert repostate.read(ops.conn, "app")["last_check_result"].endswith(
        f"; held at {sha1[:12]} by a rollback: head {sha3[:12]} not applied until `pullbridge resume app`")

    code, out, _ = ops.run("history", "app")
    assert code == 0 and out.startswith(f"HELD: app is held at {sha1[:12]} by a rollback")
    assert f"note: held at {sha1[:12]} by a rollback" in out
    code, out, _ = ops.run("history", "app", "--json")
    assert json.loads(out)["state"]["held_sha"] == sha1
    code, out, err = ops.run("sync", "app")
    assert code == 0 and err.startswith(f"HELD: app is held at {sha1[:12]}")
    assert out.endswith(f" for app (the held commit {sha1[:12]}, not the head of branch main)\n"), out
    code, out, err = ops.run("diff", "app")  # the branch head differs from the held cluster state
    assert code == 1 and err.startswith(f"HELD: app is held at {sha1[:12]}")
    assert '"1.0" -> "3.0"' in out

    # `pullbridge resume app` releases the hold and queues a sync of the branch head
    code, out, _ = ops.run("resume", "app")
    assert code == 0 and f"released the rollback hold at {sha1[:12]}" in out
    ops.work()
    assert app_version(kube, namespace) == "3.0"
    code, out, _ = ops.run("history", "app")
    assert "HELD" not in out.splitlines()[0]
    assert repostate.clear_hold(ops.conn, "app") is None


def test_rollback_wait_and_refusals(ops, git_repo, kube, namespace, tmp_path):
    repo = git_repo("rbwait")
    ops.configure(repo)
    sha1 = repo.commit_and_push("v1", app_files("1.0"))
    sha2 = repo.commit_and_push("v2", app_files("2.0"))
    assert ops.sync(sha2)["result"] == "success"

    code, _, err = ops.run("rollback", "nope", sha1)
    assert code == 2 and "unknown repository 'nope'" in err
    code, _, err = ops.run("rollback", "app", "not-a-sha")
    assert code == 2 and "not a commit sha" in err
    code, _, err = ops.run("rollback", "app", "f" * 40)
    assert code == 2 and "not on branch main" in err
    # a commit that exists on another branch only is refused too
    repo.git("checkout", "-q", "-b", "side")
    side = repo.commit("side", {"deploy/side.yaml": "kind: x\n"})
    repo.push("side")
    code, _, err = ops.run("rollback", "app", side)
    assert code == 2 and "not on branch main" in err
    assert repostate.read(ops.conn, "app").get("held_sha") is None
    ops.conn.hset(keys.state("app"), "suspended", "1")
    code, _, err = ops.run("rollback", "app", sha1)
    assert code == 2 and "app is suspended" in err
    ops.conn.hdel(keys.state("app"), "suspended")

    ops.start_worker()
    repostate.hold(ops.conn, "app", sha2)
    code, out, err = ops.run("rollback", "app", sha1, "--wait")
    assert code == 0, out + err
    assert f"note: app was held at {sha2[:12]}; the hold moves to {sha1[:12]}" in err
    assert f"of app at {sha1[:12]}: success" in out
    assert f"configured Deployment/{namespace}/fluxdemo" in out
    assert app_version(kube, namespace) == "1.0"


def test_a_rollback_that_fails_keeps_the_hold_and_says_so(ops, git_repo, kube, namespace):
    from tests.worker.sync_manifests import configmap

    repo = git_repo("rbfail")
    ops.configure(repo)
    bad = app_files("1.0")
    bad["deploy/bad.yaml"] = configmap("Not_A_Valid_Name", "x")
    broken = repo.commit_and_push("broken", bad)
    repo.remove("deploy/bad.yaml")
    good = repo.commit_and_push("fixed", app_files("2.0"))
    assert ops.sync(good)["result"] == "success"
    ops.start_worker()
    code, out, err = ops.run("rollback", "app", broken, "--wait")
    assert code == 2, out + err
    assert ": failure" in out and "validation failed" in out
    assert f"the rollback to {broken[:12]} was not applied; app stays held there" in err
    assert repostate.held_sha(repostate.read(ops.conn, "app")) == broken
    assert app_version(kube, namespace) == "2.0"


def test_sync_wait_of_a_commit_a_hold_overrides_exits_2(ops, git_repo, kube, namespace):
    """`sync --sha X --wait` on a held repo: the sync succeeds, but it applied the held commit."""
    repo = git_repo("heldsync")
    ops.configure(repo)
    sha1 = repo.commit_and_push("v1", app_files("1.0"))
    assert ops.sync(sha1)["result"] == "success"
    sha2 = repo.commit_and_push("v2", app_files("2.0"))
    repostate.hold(ops.conn, "app", sha1)
    ops.start_worker()
    code, out, err = ops.run("sync", "app", "--sha", sha2, "--wait")
    assert code == 2, out + err
    assert f"of app at {sha1[:12]}: success" in out
    assert (f"pullbridge: commit {sha2[:12]} was not applied: app is held at {sha1[:12]} by a rollback"
            in err)
    assert app_version(kube, namespace) == "1.0"
    code, out, err = ops.run("sync", "app", "--sha", sha1, "--wait")  # the held commit itself: fine
    assert code == 0, out + err


def test_a_rollback_overtaken_by_another_names_the_hold_that_won(ops, git_repo, kube, namespace):
    """Two operators roll back at once: the second joins the first's queued sync and moves the hold.
    The first's --wait must not say its repo "stays held" at a commit it is no longer held at."""
    repo = git_repo("rbrace")
    ops.configure(repo)
    sha1 = repo.commit_and_push("v1", app_files("1.0"))
    sha2 = repo.commit_and_push("v2", app_files("2.0"))
    sha3 = repo.commit_and_push("v3", app_files("3.0"))
    assert ops.sync(sha3)["result"] == "success"
    first = _rollback_waiting_in_a_subprocess(ops, sha1)
    code, out, err = ops.run("rollback", "app", sha2)
    assert code == 0 and "rollback sync joins queued job" in out, out + err
    ops.start_worker()
    out, err = first.communicate()
    assert first.returncode == 2, out + err
    assert f"of app at {sha2[:12]}: success" in out
    assert (f"pullbridge: the rollback to {sha1[:12]} was not applied; another rollback moved the hold "
            f"meanwhile: HELD: app is held at {sha2[:12]} by a rollback since ") in err
    assert "stays held there" not in err
    assert app_version(kube, namespace) == "2.0"


def _rollback_waiting_in_a_subprocess(ops, sha) -> subprocess.Popen:
    """``pullbridge rollback app SHA --wait`` in its own process, returned once its sync is queued
    (no worker runs yet, so that sync waits for whatever the test does next)."""
    command = subprocess.Popen([sys.executable, "-m", "pullbridge", "rollback", "app", sha, "--wait"],
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    queue = Queue(keys.SYNC_QUEUE, connection=ops.conn)
    while not (queue.count and repostate.held_sha(repostate.read(ops.conn, "app")) == sha):
        assert command.poll() is None, command.communicate()
        time.sleep(0.1)
    return command


def test_a_rollback_suspended_before_its_sync_ran_says_resume_applies_it(ops, git_repo, kube, namespace):
    repo = git_repo("rbsusp2")
    ops.configure(repo)
    sha1 = repo.commit_and_push("v1", app_files("1.0"))
    sha2 = repo.commit_and_push("v2", app_files("2.0"))
    assert ops.sync(sha2)["result"] == "success"
    first = _rollback_waiting_in_a_subprocess(ops, sha1)
    assert ops.run("suspend", "app")[0] == 0
    ops.start_worker()
    out, err = first.communicate()
    assert first.returncode == 2, out + err
    assert "skipped: suspended" in out
    assert (f"pullbridge: the rollback to {sha1[:12]} was not applied; app was suspended meanwhile; it stays "
            "held there, and `pullbridge resume app` resumes it at that commit") in err
    assert app_version(kube, namespace) == "2.0"
    code, out, _ = ops.run("resume", "app")  # resumed at the held commit: the rollback applies now
    assert code == 0 and f"still held at {sha1[:12]}" in out
    record = wait_for_sync(ops.conn, out.split("app: sync ", 1)[1].split()[0], "app", None)
    assert record["result"] == "success" and record["sha"] == sha1
    assert app_version(kube, namespace) == "1.0"


def test_resuming_a_suspended_held_repo_keeps_the_hold(ops, git_repo, kube, namespace):
    """Held at a good commit, suspended for maintenance, resumed: the bad head must not come back
    with the resume; a second resume releases the hold."""
    repo = git_repo("rbsusp")
    ops.configure(repo)
    good = repo.commit_and_push("good", app_files("1.0"))
    assert ops.sync(good)["result"] == "success"
    repo.commit_and_push("bad", app_files("2.0"))
    assert ops.sync()["result"] == "success"
    assert ops.run("rollback", "app", good)[0] == 0
    ops.work()
    assert ops.run("suspend", "app")[0] == 0
    pushed = repo.commit_and_push("still bad", app_files("3.0"))
    assert ops.sync(pushed)["result"] == "skipped"  # suspended: the pushed commit waits

    code, out, err = ops.run("resume", "app")
    assert code == 0, out + err
    assert "app: resumed; 1 waiting commit(s)." in out
    assert (f"app: still held at {good[:12]} by a rollback: syncs apply that commit; "
            "`pullbridge resume app` again releases the hold.") in out
    assert "released" not in out
    ops.work()
    assert app_version(kube, namespace) == "1.0"
    assert repostate.held_sha(repostate.read(ops.conn, "app")) == good
    code, out, _ = ops.run("history", "app")
    assert out.startswith(f"HELD: app is held at {good[:12]}") and "SUSPENDED" not in out

    code, out, _ = ops.run("resume", "app")
    assert code == 0 and f"released the rollback hold at {good[:12]}" in out
    ops.work()
    assert app_version(kube, namespace) == "3.0"


def test_suspending_during_a_running_sync_says_that_sync_finishes(ops, git_repo):
    """The flag is read when a sync starts: one already running still applies what it took."""
    from worker.lock import RepoLock

    ops.configure(git_repo("susprun"))
    running = RepoLock(ops.conn, "app", owner="sync-app-0123456789ab")
    assert running.try_acquire()  # the lock a running sync job holds
    try:
        code, out, err = ops.run("suspend", "app")
    finally:
        running.release()
    assert code == 0, out + err
    assert ("app: job sync-app-0123456789ab was already running and finishes what it started; "
            "see `pullbridge history app`. Nothing after it touches the repo.") in out
    code, out, _ = ops.run("suspend", "app")  # nothing running now
    assert (code, out) == (0, "app: already suspended.\n")
