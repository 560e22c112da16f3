"""A sync whose repo lock is taken over while it applies (or prunes) writes nothing more, and its record says what
it wrote (or deleted).

On the real stack: the sync runs in this process with a 2 s lock TTL, writing one object at a time
(concurrency 1).  Right after its n-th write, the lock's key is deleted (as when it expires during a Redis
outage or a stall) and another owner takes it, as another worker would; the sync's write waits until its
lock's own keepalive has found that out.  From then on, no write may be made: another worker may be
applying the same repo.
"""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client

from tests.worker.sync_manifests import configmap, in_namespace, inventory_ids, namespace_doc, read_namespace
from worker import history, jobs
from worker.apply import Applier
from worker.kube import Kube
from worker.lock import RepoLock

pytestmark = pytest.mark.stack

GUARD = 60  # seconds: only so that a keepalive that never notices cannot hang the suite


@pytest.fixture
def lock_taken_after(harness, monkeypatch):
    """``lock_taken_after(n, cls, method, named)`` -> what the sync wrote (filled as it runs): ``named(*args)``
    of each call of ``cls.method`` that writes (None for the others).  Another owner takes the sync's lock
    right after its ``n``-th write, which returns once the sync's lock knows it is lost."""
    sync_locks, others = [], []

    class SyncLock(RepoLock):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            sync_locks.append(self)

    def make(n: int, cls: type, method: str, named) -> list[str]:
        data = json.loads(harness.config_path.read_text())
        data["worker"]["lock_ttl"] = "2s"  # extended every 0.67 s
        harness.config_path.write_text(json.dumps(data))
        harness.configure_from_file()
        monkeypatch.setattr(jobs, "RepoLock", SyncLock)
        written = []
        write = getattr(cls, method)

        def write_then_lose_the_lock(*args, **kwargs):
            answer = write(*args, **kwargs)
            if (name := named(*args, **kwargs)) is not None:
                written.append(name)
                if len(written) == n:
                    [lock] = sync_locks
                    harness.conn.delete(lock.key)  # expired
                    others.append(RepoLock(harness.conn, harness.repo.name, owner="another-worker"))
                    assert others[0].try_acquire()
                    assert lock.lost.wait(GUARD), "the sync's lock never found out it was taken"
            return answer

        monkeypatch.setattr(cls, method, write_then_lose_the_lock)
        return written

    yield make
    for other in others:
        other.release()


def applied_ref(applier, item, dry_run, read_answer):
    return None if dry_run else item.ref


def recorded_changes(harness, summary: dict) -> dict[str, str]:
    return {c["object"]: c["action"] for c in history.get_record(harness.conn, summary["id"])["changes"]}


def test_a_sync_stops_writing_once_its_lock_is_taken(harness, git_repo, kube, namespace, lock_taken_after):
    repo = git_repo("locklost")
    harness.configure(repo, concurrency=1)
    written = lock_taken_after(3, Applier, "_apply_request", applied_ref)
    names = {f"cm-{i:02}" for i in range(20)}
    files = {"deploy/many.yaml": "---\n".join(configmap(name, "1") for name in sorted(names))}
    failed = harness.sync(repo.commit_and_push("twenty configmaps", files))
    assert failed["result"] == "retrying", failed
    assert failed["error"].startswith("LockLost: lost the lock "), failed
    assert len(written) == 3, written
    assert recorded_changes(harness, failed) == {ref: "created" for ref in written}
    present = {cm.metadata.name for cm in client.CoreV1Api(kube).list_namespaced_config_map(namespace).items}
    assert {f"ConfigMap/{namespace}/{name}" for name in present & names} == set(written)
    assert inventory_ids(kube, namespace) == set()  # the lock's new holder writes the inventory


@pytest.fixture
def new_namespaces(kube):
    names = [f"pb-lost-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    yield names
    for name in names:
        if read_namespace(kube, name) is not None:
            client.CoreV1Api(kube).delete_namespace(name)


def test_what_was_written_first_is_not_undone_once_the_lock_is_taken(
        harness, git_repo, kube, namespace, new_namespaces, lock_taken_after):
    """Namespaces the commit creates are written before what they hold is validated; the lock is taken
    after the first: the second is not written, and the first is not deleted again (the new holder may be
    applying into it)."""
    repo = git_repo("locklostfirst")
    harness.configure(repo, concurrency=1)
    written = lock_taken_after(1, Applier, "_apply_request", applied_ref)
    files = {f"deploy/{name}.yaml": namespace_doc(name) + "---\n" + in_namespace(configmap("app", "1"), name)
             for name in new_namespaces}
    failed = harness.sync(repo.commit_and_push("two namespaces", files))
    assert failed["result"] == "retrying", failed
    assert failed["error"].startswith("LockLost: lost the lock "), failed
    [first] = written
    assert first.startswith("Namespace/")
    assert recorded_changes(harness, failed) == {first: "created"}
    created = [name for name in new_namespaces if read_namespace(kube, name) is not None]
    assert [f"Namespace/{name}" for name in created] == written


def test_prune_stops_deleting_once_the_lock_is_taken(harness, git_repo, kube, namespace, lock_taken_after):
    repo = git_repo("locklostprune")
    harness.configure(repo, concurrency=1)
    names = {f"cm-{i:02}" for i in range(20)}
    files = {"deploy/many.yaml": "---\n".join(configmap(name, "1") for name in sorted(names)),
             "deploy/stays.yaml": configmap("stays", "1")}
    assert harness.sync(repo.commit_and_push("twenty configmaps", files))["result"] == "success"
    tracked = inventory_ids(kube, namespace)
    deleted = lock_taken_after(3, Kube, "delete", lambda kube, path, live=None: path.rsplit("/", 1)[1])
    repo.remove("deploy/many.yaml")
    failed = harness.sync(repo.commit_and_push("drop them"))
    assert failed["result"] == "retrying", failed
    assert failed["error"].startswith("LockLost: lost the lock "), failed
    assert len(deleted) == 3, deleted
    changes = recorded_changes(harness, failed)
    assert {ref: action for ref, action in changes.items() if action != "unchanged"} == {
        f"ConfigMap/{namespace}/{name}": "deleted" for name in deleted}
    present = {cm.metadata.name for cm in client.CoreV1Api(kube).list_namespaced_config_map(namespace).items}
    assert names - present == set(deleted)
    assert inventory_ids(kube, namespace) == tracked  # the lock's new holder writes the inventory


def test_a_last_attempt_that_lost_its_lock_leaves_the_new_holders_result(
        harness, git_repo, namespace, lock_taken_after, monkeypatch):
    """The lock's new holder applies the commit and posts its result; the last attempt of the sync that lost
    the lock posts its error only to a commit without one, never over the new holder's green check."""
    from rq import Queue
    from pullbridge import keys
    from worker import status

    monkeypatch.setenv("PB_TOKEN", "t")
    repo = git_repo("locklostlast")
    harness.configure(repo, concurrency=1, retries=0, provider="github", repository="o/locklostlast",
                      status={"token_env": "PB_TOKEN", "api_url": "http://127.0.0.1:9", "retries": 0})
    lock_taken_after(1, Applier, "_apply_request", applied_ref)
    sha = repo.commit_and_push("three configmaps", {"deploy/cms.yaml": "---\n".join(
        configmap(f"cm-{i}", "1") for i in range(3))})
    failed = harness.sync(sha)
    assert (failed["result"], failed["error"][:19]) == ("failure", "LockLost: lost the "), failed
    [error] = [job for job in Queue(keys.STATUS_QUEUE, connection=harness.conn).jobs if job.args[2] == "error"]
    assert error.args[:2] == ("app", sha)
    harness.conn.hset(keys.status_order("app", sha), "result", "success")  # the new holder's, posted first
    _, _, state, description, sync_id = error.args
    answer = status.post_now(harness.conn, harness.config, harness.repo, sha, state, description, sync_id,
                             **error.kwargs)
    assert answer == "stale"  # dropped: nothing was sent to the host
