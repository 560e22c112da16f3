"""A worker killed with SIGKILL in the middle of a sync.

How Pullbridge recovers, and why this way: RQ 3 only notices an abandoned
job once its heartbeat has expired (a SimpleWorker's is the job timeout plus
60 s) and a worker's maintenance pass (every 10 minutes) runs; it then
retries the job if it has retries left.  That is a backstop, too slow to be
the mechanism.  The mechanism is Pullbridge's own state: a wanted sha leaves
the wanted set only after a successful sync (``done_wanted``), the dead
worker's repo lock expires after ``worker.lock_ttl``, the branch head differs
from the recorded applied commit, so the periodic reconcile (the scheduler
process) queues a sync that another worker runs to the end.  Server-side
apply is idempotent and the inventory is written only after apply and prune,
so the half-applied first attempt leaves nothing to repair by hand.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest
from kubernetes import client
from rq import Queue

from pullbridge import keys
from pullbridge.demo.harness import wait_for
from tests.faults.conftest import configmap, history

pytestmark = pytest.mark.stack

OBJECTS = 250


def manifests(namespace: str, version: str, count: int) -> str:
    return "---\n".join(configmap(f"kill-{i:03d}", namespace, version) for i in range(count))


def test_worker_sigkilled_mid_sync_is_finished_by_another(deployment, namespace, kube, redis_conn, figure):
    name = f"kill{uuid.uuid4().hex[:6]}"
    run = deployment(name=name, full_name=f"pullbridge/{name}",
                     repo_settings={"interval": "10s", "concurrency": 1})
    run.write_config({"worker": {"inventory_namespace": namespace, "lock_ttl": "4s", "lock_wait": "2s"}})
    core = client.CoreV1Api(kube)
    run.start("web", "worker")

    # v1: a few objects, applied normally: the inventory the killed sync must not corrupt.
    v1, status, _ = run.push({"deploy/all.yaml": manifests(namespace, "v1", 5),
                              "deploy/gone.yaml": configmap("kill-gone", namespace, "v1")}, "v1")
    assert status == 202
    applied = lambda sha: (redis_conn.hget(keys.state(name), "applied_sha") or b"").decode() == sha  # noqa: E731
    assert wait_for(lambda: applied(v1), 60, 0.2) is not None, run.log_tail("worker")

    # v2: many objects applied one at a time, and one removed (a prune): slow enough to kill mid-way.
    v2, status, answer = run.push({"deploy/all.yaml": manifests(namespace, "v2", OBJECTS),
                                   "deploy/gone.yaml": None}, "v2")
    assert status == 202
    started = Queue(keys.SYNC_QUEUE, connection=redis_conn).started_job_registry

    def v2_count() -> int:
        items = core.list_namespaced_config_map(namespace).items
        return sum(1 for cm in items if cm.metadata.name.startswith("kill-") and (cm.data or {}).get("value") == "v2")

    def mid_sync() -> bool:
        return (answer["job_id"] in started.get_job_ids() and redis_conn.exists(keys.lock(name))
                and 10 <= v2_count() < OBJECTS)

    assert wait_for(mid_sync, 60, 0.05) is not None, run.log_tail("worker")
    worker = run.procs.pop("worker")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    killed_at = time.monotonic()
    at_kill = v2_count()
    assert 0 < at_kill < OBJECTS and applied(v1)
    assert answer["job_id"] in started.get_job_ids()  # abandoned: RQ still thinks it runs
    assert redis_conn.zscore(keys.wanted(name), v2) is not None  # still wanted: nothing lost

    run.start("worker", "scheduler")  # another worker, and the periodic reconcile
    took = wait_for(lambda: applied(v2), 120, 0.2)
    assert took is not None, run.log_tail("worker", 60) + run.log_tail("scheduler", 20)
    assert v2_count() == OBJECTS
    names = {cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items}
    assert "kill-gone" not in names  # the prune the killed sync never reached
    from worker.inventory import configmap_name, DATA_KEY
    inv = core.read_namespaced_config_map(configmap_name(name), namespace)
    entries = json.loads(inv.data[DATA_KEY])
    assert len(entries) == OBJECTS and all("kill-gone" not in key for key in entries)
    records = history(redis_conn, name)
    finisher = next(r for r in records if r.get("sha") == v2 and r.get("result") == "success")
    assert finisher["job_id"] != answer["job_id"]
    assert redis_conn.zcard(keys.wanted(name)) == 0
    figure(f"SIGKILL mid-sync: killed with {at_kill}/{OBJECTS} objects at v2 (lock held, job in RQ's started "
           f"registry); the periodic reconcile queued {finisher['reason']} sync {finisher['job_id']} which applied "
           f"the commit {took:.1f}s after a new worker started ({time.monotonic() - killed_at:.1f}s after the kill); "
           f"inventory {len(entries)} entries, pruned object gone")


def test_worker_sigkilled_before_it_took_the_commits_is_recovered(deployment, namespace, kube, redis_conn,
                                                                  figure):
    """Killed while waiting for the repo lock: the queued marker still names the dead job.

    Without ``release_dead_marker`` every later push and the periodic job
    coalesce into that dead job until RQ's own clean-up, minutes later.
    """
    from worker.lock import RepoLock

    name = f"killw{uuid.uuid4().hex[:6]}"
    run = deployment(name=name, full_name=f"pullbridge/{name}", repo_settings={"interval": "10s"})
    run.write_config({"worker": {"inventory_namespace": namespace, "lock_ttl": "4s", "lock_wait": "2s"}})
    core = client.CoreV1Api(kube)
    run.start("web", "worker")
    applied = lambda sha: (redis_conn.hget(keys.state(name), "applied_sha") or b"").decode() == sha  # noqa: E731
    v1, status, _ = run.push({"deploy/a.yaml": configmap("killw", namespace, "v1")}, "v1")
    assert status == 202 and wait_for(lambda: applied(v1), 60, 0.2) is not None, run.log_tail("worker")

    held = RepoLock(redis_conn, name, ttl=30, owner="test")  # someone else's sync, as far as the worker knows
    assert held.acquire(5)
    v2, status, answer = run.push({"deploy/a.yaml": configmap("killw", namespace, "v2")}, "v2")
    assert status == 202
    started = Queue(keys.SYNC_QUEUE, connection=redis_conn).started_job_registry
    assert wait_for(lambda: answer["job_id"] in started.get_job_ids(), 30, 0.02) is not None
    worker = run.procs.pop("worker")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    held.release()
    killed_at = time.monotonic()
    assert redis_conn.get(keys.queued(name)).decode() == answer["job_id"]  # the marker names a dead job
    # A push now is acknowledged into that dead job...
    v3, status, later = run.push({"deploy/a.yaml": configmap("killw", namespace, "v3")}, "v3")
    assert status == 202 and later["job_id"] == answer["job_id"] and later["coalesced"]

    run.start("worker", "scheduler")
    took = wait_for(lambda: applied(v3), 90, 0.2)
    dead = Queue(keys.SYNC_QUEUE, connection=redis_conn).fetch_job(answer["job_id"])
    assert took is not None, (f"dead job {answer['job_id']}: status {dead and dead.get_status()}, started "
                              f"{dead and dead.started_at}\n" + run.log_tail("worker", 40)
                              + run.log_tail("scheduler", 20))
    assert core.read_namespaced_config_map("killw", namespace).data["value"] == "v3"
    assert redis_conn.zcard(keys.wanted(name)) == 0
    figure(f"SIGKILL while waiting for the repo lock: a later push was acknowledged into the dead job; the "
           f"periodic reconcile released the dead queued marker and re-queued the wanted commits: applied "
           f"{time.monotonic() - killed_at:.1f}s after the kill")


def test_release_dead_marker_only_releases_dead_jobs(redis_conn):
    """The rule behind the recovery above, job state by job state (RQ's real registries)."""
    from datetime import datetime, timedelta, timezone

    from rq.job import JobStatus

    from pullbridge.queueing import release_dead_marker

    queue = Queue(keys.SYNC_QUEUE, connection=redis_conn)
    marker = keys.queued("rel")

    def mark(job_id: str) -> None:
        redis_conn.set(marker, job_id)

    job = queue.enqueue("worker.jobs.sync", "rel", job_id="sync-rel-queued")
    mark(job.id)
    assert release_dead_marker(redis_conn, "rel", 10) is None  # queued: alive
    job.set_status(JobStatus.STARTED)
    job.started_at = datetime.now(timezone.utc)
    job.save()
    assert release_dead_marker(redis_conn, "rel", 10) is None  # started just now: may be waiting for the lock
    job.started_at = datetime.now(timezone.utc) - timedelta(seconds=30)
    job.save()
    assert release_dead_marker(redis_conn, "rel", 10) == job.id  # started long ago, never took the commits
    assert not redis_conn.exists(marker)
    mark("sync-rel-gone")
    assert release_dead_marker(redis_conn, "rel", 10) == "sync-rel-gone"  # vanished
    job.set_status(JobStatus.FAILED)
    mark(job.id)
    assert release_dead_marker(redis_conn, "rel", 10) == job.id  # failed
    assert release_dead_marker(redis_conn, "rel", 10) is None  # no marker: nothing to do


def test_release_dead_marker_sees_a_job_taken_but_not_yet_marked_started(redis_conn):
    """RQ takes a job in two steps (an execution, then status 'started'); a worker killed
    between them leaves a job that says 'queued' but is in no queue.  Seen on CI."""
    from rq import SimpleWorker

    from pullbridge.queueing import release_dead_marker

    queue = Queue(keys.SYNC_QUEUE, connection=redis_conn)
    job = queue.enqueue("worker.jobs.sync", "rel2", job_id="sync-rel2-taken")
    redis_conn.set(keys.queued("rel2"), job.id)
    assert release_dead_marker(redis_conn, "rel2", 0) is None  # waiting in its queue: alive, however old
    worker = SimpleWorker([queue], connection=redis_conn)
    taken, _ = worker.dequeue_job_and_maintain_ttl(timeout=1)
    assert taken.id == job.id
    worker.prepare_execution(taken)  # step one only: the worker dies here
    assert taken.get_status() == "queued" and job.id not in queue.get_job_ids()
    assert release_dead_marker(redis_conn, "rel2", 10) is None  # taken just now: may be about to start
    time.sleep(0.05)
    assert release_dead_marker(redis_conn, "rel2", 0.01) == job.id  # taken a while ago, never started
    assert not redis_conn.exists(keys.queued("rel2"))


def test_release_dead_marker_sees_a_job_popped_but_never_taken(redis_conn, monkeypatch):
    """The worker (a SimpleWorker on three queues) pops with a plain LPOP: killed before it
    records an execution, it leaves a 'queued' job in no list and no registry, which RQ
    never recovers.  The marker is released once the job has been seen so for longer than
    the lock wait; a job waiting in its queue never is, however long it waits."""
    from types import SimpleNamespace

    from rq.job import JobStatus

    from pullbridge import queueing
    from pullbridge.config import parse_config
    from pullbridge.queueing import release_dead_marker, request_sync

    config = parse_config({"repos": [{"name": "rel3", "url": "file:///nowhere.git", "provider": "github",
                                      "repository": "o/rel3", "secret_env": "PB_SECRET", "path": "deploy"}]})
    repo = config.repo("rel3")
    first = request_sync(redis_conn, config, repo, "a" * 40, reason="push")
    assert first.new_job
    half_a_minute_ago = SimpleNamespace(time=lambda: time.time() - 30)
    with monkeypatch.context() as clock:
        clock.setattr(queueing, "time", half_a_minute_ago)
        assert release_dead_marker(redis_conn, "rel3", 0) is None  # waiting in its queue: alive
    assert release_dead_marker(redis_conn, "rel3", 0) is None  # ... however long

    queues = [Queue(n, connection=redis_conn) for n in (keys.SYNC_QUEUE, keys.STATUS_QUEUE, keys.IMAGES_QUEUE)]
    popped, queue = Queue.dequeue_any(queues, None, connection=redis_conn)  # what the worker does
    assert popped.id == first.job_id and popped.get_status() == JobStatus.QUEUED and not popped.get_executions()
    assert first.job_id not in queue.get_job_ids() + queue.intermediate_queue.get_job_ids()
    assert first.job_id not in queue.started_job_registry.get_job_ids()
    # ... the worker is SIGKILLed here.  The first check to see the job so dates it:
    with monkeypatch.context() as clock:
        clock.setattr(queueing, "time", half_a_minute_ago)
        assert release_dead_marker(redis_conn, "rel3", 10) is None  # popped just now: may be about to start
    assert release_dead_marker(redis_conn, "rel3", 60) is None  # popped 30 s ago, the lock wait is longer
    assert release_dead_marker(redis_conn, "rel3", 10) == first.job_id  # popped 30 s ago, never taken
    assert not redis_conn.exists(keys.queued("rel3"))
    second = request_sync(redis_conn, config, repo, "b" * 40, reason="push")
    assert second.new_job and len(queues[0]) == 1  # the next push is no longer lost in the dead job


def test_release_dead_marker_dates_each_pop_of_a_retried_job_afresh(redis_conn, monkeypatch):
    """A job re-queued (a retry) and popped again must not inherit the time an earlier pop
    was seen: it was alive all along."""
    from types import SimpleNamespace

    from pullbridge import queueing
    from pullbridge.queueing import release_dead_marker

    queue = Queue(keys.SYNC_QUEUE, connection=redis_conn)
    job = queue.enqueue("worker.jobs.sync", "rel4", job_id="sync-rel4-retried")
    redis_conn.set(keys.queued("rel4"), job.id)
    assert Queue.dequeue_any([queue, Queue(keys.STATUS_QUEUE, connection=redis_conn)], None,
                             connection=redis_conn)[0].id == job.id
    with monkeypatch.context() as clock:
        clock.setattr(queueing, "time", SimpleNamespace(time=lambda: time.time() - 30))
        assert release_dead_marker(redis_conn, "rel4", 10) is None  # popped (seen 30 s ago)
    queue.enqueue_job(job)  # taken after all, failed, re-queued for its retry
    assert release_dead_marker(redis_conn, "rel4", 0) is None  # waiting in its queue again
    assert Queue.dequeue_any([queue, Queue(keys.STATUS_QUEUE, connection=redis_conn)], None,
                             connection=redis_conn)[0].id == job.id
    assert release_dead_marker(redis_conn, "rel4", 10) is None  # popped just now, not 30 s ago
    assert redis_conn.get(keys.queued("rel4")).decode() == job.id
