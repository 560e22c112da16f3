"""The periodic job and a branch head other than the applied commit: wait for a push when its sync
failed for good, queue it again when the failure was temporary, leave it to its sync when one is
queued or running, and say when the git host cannot tell it; always in the check result."""

from __future__ import annotations

import re
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from rq import Queue

from pullbridge import keys
from pullbridge.identity import ensure_file_identity
from pullbridge.queueing import take_wanted
from worker import inventory, periodic, periodic_claim
from worker.errors import TemporaryError
from worker.lock import RepoLock

from tests.worker.drift_support import ignoring, kubectl, replicas, run_reconcile
from tests.worker.sync_manifests import app_files, deployment

pytestmark = pytest.mark.stack

BAD_ANNOTATION = ignoring("spec..x", deployment("fluxdemo", "2.0"))


@pytest.fixture
def synced(harness, git_repo):
    repo = git_repo("heads")
    repo.commit_and_push("v1", app_files("1.0"))
    harness.configure(repo, interval="10s", retries=0)
    assert harness.sync(None)["result"] == "success"
    harness.git = repo
    return harness


def test_permanently_failed_head_waits_for_a_push_even_after_drift_records(synced, stack, namespace):
    v1 = synced.state()["applied_sha"]
    head = synced.git.commit_and_push("broken", {**app_files("2.0"), "deploy/app.yaml": BAD_ANNOTATION})
    failed = synced.sync(head)
    assert failed["result"] == "failure" and failed["sha"] == head
    waiting = f"head {head[:12]} failed to sync; waiting for a new push"
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=3", "-n", namespace)
    assert run_reconcile(synced)["result"] == "drift corrected"  # the drift of the applied commit
    assert replicas(stack, namespace) == 1
    assert synced.state()["last_check_result"] == f"drift corrected: 1 object(s), 1 corrected; {waiting}"
    for _ in range(2):  # the drift record is now the newest in the history: the head still waits
        assert run_reconcile(synced)["result"] == "in sync"
        assert synced.state()["last_check_result"].endswith(f"objects checked; {waiting}")
    assert [r["reason"] for r in synced.history()] == ["drift", "push", "push"]
    assert synced.state()["applied_sha"] == v1


def test_temporarily_failed_head_is_synced_once_the_cluster_is_back(synced, monkeypatch):
    head = synced.git.commit_and_push("v2", app_files("2.0"))

    def unreachable(*args, **kwargs):
        raise TemporaryError("API server unreachable: connection refused")
    with monkeypatch.context() as down:
        down.setattr(inventory, "load", unreachable)
        failed = synced.sync(head)  # retries: 0, so this was the last attempt
    assert (failed["result"], failed["sha"]) == ("failure", head)
    assert failed["error"].startswith("TemporaryError: API server unreachable")
    # The API server is back: the next interval queues the head again, and the sync applies it.
    result = run_reconcile(synced)
    assert result["result"] == "sync queued" and result["sha"] == head
    assert synced.state()["last_check_result"].startswith(f"head {head[:12]} failed (TemporaryError: ")
    assert synced.state()["applied_sha"] == head
    assert [(r["reason"], r["result"]) for r in synced.history()][:2] == [("periodic", "success"),
                                                                         ("push", "failure")]


def test_unreachable_git_host_is_said_in_the_check_result_and_the_cluster_kept(synced, stack, namespace):
    v1 = synced.state()["applied_sha"]
    synced.configure(synced.git, url="http://127.0.0.1:9/heads.git", interval="10s", retries=0)
    kubectl(stack, "scale", "deployment/fluxdemo", "--replicas=3", "-n", namespace)
    for _ in range(2):  # every interval says so; no sync is queued, none piles up
        result = run_reconcile(synced)
        assert result["result"] in ("drift corrected", "in sync")
        check = synced.state()["last_check_result"]
        assert "branch head not checked: git ls-remote failed" in check, check
        assert synced.conn.zcard(keys.wanted(synced.repo.name)) == 0
    assert replicas(stack, namespace) == 1  # drift of the applied commit is still corrected
    assert synced.state()["applied_sha"] == v1
    assert [r["reason"] for r in synced.history()] == ["drift", "push"]


def test_a_check_hanging_on_its_git_host_is_not_joined_by_the_next_intervals(synced, monkeypatch):
    """A git host that accepts the connection and never answers: the run waits for git's timeout.
    The next interval's run must not start another (each would take a worker), but say so."""
    host = socket.socket()
    host.bind(("127.0.0.1", 0))
    host.listen(8)  # never accepted: git's request hangs until the socket closes
    synced.configure(synced.git, url=f"http://127.0.0.1:{host.getsockname()[1]}/heads.git",
                     interval="10s", retries=0)
    guard = keys.periodic_guard(synced.repo.name)
    synced.conn.delete(guard)
    first: list[dict] = []
    hanging = threading.Thread(target=lambda: first.append(periodic.reconcile(synced.repo.name)))
    hanging.start()
    try:
        while not synced.conn.exists(guard):  # the hanging run has claimed its interval
            time.sleep(0.05)
        while 0 < synced.conn.pttl(guard) <= periodic_claim.guard_ms(synced.repo.interval):
            time.sleep(0.2)  # an interval's claim would lapse here while the run still hangs
        with monkeypatch.context() as later_on:  # the next interval's tick, a minute on
            later_on.setattr(periodic_claim, "time", SimpleNamespace(time=lambda: time.time() + 60))
            later = run_reconcile(synced, next_interval=False)
        assert later["result"] == "still running", later
        assert re.fullmatch(r"the check started 6\ds ago is still running \(interval 10s\); "
                            r"this interval's check skipped", synced.state()["last_check_result"])
    finally:
        host.close()  # the hanging request is reset
        hanging.join()
    assert first[0]["result"] == "in sync"
    assert "branch head not checked: git ls-remote failed" in synced.state()["last_check_result"]
    # The run is over: its claim covers the rest of its interval only, as a quick run's does.
    assert 0 < synced.conn.pttl(guard) <= periodic_claim.guard_ms(synced.repo.interval)


def test_a_head_whose_sync_is_queued_or_running_is_not_a_missed_push(synced):
    """The webhook arrived: the periodic job neither calls it a missed push nor adds a sync."""
    queue = Queue(keys.SYNC_QUEUE, connection=synced.conn)
    v2 = synced.git.commit_and_push("v2", app_files("2.0"))
    queued = synced.request(v2).job_id
    assert periodic.reconcile(synced.repo.name) == {"result": "sync pending", "sha": v2, "job_id": queued}
    assert synced.state()["last_check_result"] == f"head {v2[:12]} not applied yet: sync {queued} queued"
    assert queue.job_ids == [queued]
    # The worker has taken the job (it holds the repo and the wanted commits) and is applying it.
    lock = RepoLock(synced.conn, synced.repo.name, owner=queued)
    assert lock.acquire(0)
    try:
        take_wanted(synced.conn, synced.repo.name, queued)
        queue.remove(queued)
        synced.conn.delete(keys.periodic_guard(synced.repo.name))
        assert periodic.reconcile(synced.repo.name) == {"result": "sync pending", "sha": v2, "job_id": queued}
        assert synced.state()["last_check_result"] == \
            f"head {v2[:12]} not applied yet: {lock.token} holds the repo"
        assert queue.count == 0, "no second sync of the same head"
    finally:
        lock.release()
    # A sync that died with the wanted commits (no job queued, none holds the repo) is replaced.
    synced.conn.delete(keys.periodic_guard(synced.repo.name))
    assert run_reconcile(synced)["result"] == "sync queued"
    assert synced.state()["applied_sha"] == v2


def test_a_git_host_that_times_out_is_said_without_the_credentials_of_its_url(synced, monkeypatch):
    """git's own messages hide a URL's user:password; the timeout's (GitPython's) quotes the command."""
    host = socket.socket()
    host.bind(("127.0.0.1", 0))
    host.listen(8)  # never answers
    try:
        synced.configure(synced.git, url=f"http://pb:s3cret-token@127.0.0.1:{host.getsockname()[1]}/heads.git",
                         interval="10s", retries=0)
        monkeypatch.setattr(periodic, "FETCH_TIMEOUT", 1)
        assert run_reconcile(synced)["result"] == "in sync"
    finally:
        host.close()
    check = synced.state()["last_check_result"]
    assert "branch head not checked: git ls-remote failed" in check and "did not complete" in check, check
    assert "s3cret-token" not in check and "http://***@127.0.0.1:" in check


def test_a_repo_whose_ssh_is_not_set_up_is_still_checked_and_says_what_to_run(synced, tmp_path, monkeypatch):
    """First run on a bare machine: the repo's host is not pinned yet. The check says so (and
    checks drift) instead of failing the periodic job."""
    (tmp_path / "known_hosts").write_text("")
    monkeypatch.setenv("PULLBRIDGE_KNOWN_HOSTS", str(tmp_path / "known_hosts"))
    monkeypatch.setenv("PULLBRIDGE_IDENTITY", str(ensure_file_identity(tmp_path / "identity").location))
    synced.configure(synced.git, url="ssh://git@127.0.0.1:1/heads.git", interval="10s", retries=0)
    assert run_reconcile(synced)["result"] == "in sync"
    check = synced.state()["last_check_result"]
    assert "branch head not checked: git over SSH is not set up: repo app: no host key pinned for " \
        "[127.0.0.1]:1" in check and "run `pullbridge known-hosts add 127.0.0.1 --port 1`" in check, check
