"""A sync whose repo lock is taken over while it applies writes nothing more, and its record says what it wrote.

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
from worker.lock import RepoLock

pytestmark = pytest.mark.stack

GUARD = 60  # seconds: only so that a keepalive that never notices cannot hang the suite


@pytest.fixture
def lock_taken_after(harness, monkeypatch):
    """``lock_taken_after(n)`` -> the refs the sync wrote (filled as it runs); another owner takes the
    sync's lock right after its ``n``-th write, which returns once the sync's lock knows it is lost."""
    sync_locks, others = [], []

    class SyncLock(RepoLock):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            sync_locks.append(self)

    def make(n: int) -> list[str]:
        data = json.loads(harness.config_path.read_text())
        data["worker"]["lock_ttl"] = "2s"  # extended every 0.67 s
        harness.config_path.write_text(json.dumps(data))
        harness.configure_from_file()
        monkeypatch.setattr(jobs, "RepoLock", SyncLock)
        written = []
        apply_request = Applier._apply_request

        def apply_then_lose_the_lock(self, item, dry_run, read_answer):
            answer = apply_request(self, item, dry_run, read_answer)
            if not dry_run:
                written.append(item.ref)
                if len(written) == n:
                    [lock] = sync_locks
                    harness.conn.delete(lock.key)  # expired
                    others.append(RepoLock(harness.conn, harness.repo.name, owner="another-worker"))
                    assert others[0].try_acquire()
                    assert lock.lost.wait(GUARD), "the sync's lock never found out it was taken"
            return answer

        monkeypatch.setattr(Applier, "_apply_request", apply_then_lose_the_lock)
        return written

    yield make
    for other in others:
        other.release()


def recorded_changes(harness, summary: dict) -> dict[str, str]:
    return {c["object"]: c["action"] for c in history.get_record(harness.conn, summary["id"])["changes"]}


def test_a_sync_stops_writing_once_its_lock_is_taken(harness, git_repo, kube, namespace, lock_taken_after):
    repo = git_repo("locklost")
    harness.configure(repo, concurrency=1)
    written = lock_taken_after(3)
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
    written = lock_taken_after(1)
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
