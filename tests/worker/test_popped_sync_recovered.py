"""A sync popped by a worker that died at once is run again by the periodic job.

The Procfile's worker listens on three queues, so RQ pops with a plain LPOP:
killed before it records anything, it leaves a ``queued`` job in no list or
registry, which RQ never recovers.  Before the fix every later push and
every periodic tick coalesced into that job, and the commits were never
applied.  On the real stack: the pop is RQ's own ``Queue.dequeue_any`` over
the worker's queues; the ticks are the scheduler's registered job, run by a
real worker; the clock is moved (not waited for) past the lock wait.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from rq import Queue

from pullbridge import keys, queueing
from tests.worker.drift_support import run_reconcile
from tests.worker.sync_manifests import app_files, cm_value

pytestmark = pytest.mark.stack


def test_a_sync_popped_by_a_worker_that_died_is_run_again_by_the_periodic_job(harness, git_repo, kube,
                                                                            namespace, monkeypatch):
    repo = git_repo("popped")
    harness.configure(repo, interval="10s")
    v1 = repo.commit_and_push("v1", app_files("1.0"))
    dead = harness.request(v1)
    queues = [Queue(name, connection=harness.conn)
              for name in (keys.SYNC_QUEUE, keys.STATUS_QUEUE, keys.IMAGES_QUEUE)]
    popped, _ = Queue.dequeue_any(queues, None, connection=harness.conn)
    assert popped.id == dead.job_id  # ... and the worker that popped it is SIGKILLed here
    v2 = repo.commit_and_push("v2", app_files("2.0"))
    later = harness.request(v2)
    assert later.job_id == dead.job_id and not later.new_job  # acknowledged into the dead job

    wait = harness.config.worker.lock_wait + harness.config.worker.lock_ttl
    with monkeypatch.context() as clock:  # the first tick after the pop, a lock wait and more ago
        clock.setattr(queueing, "time", SimpleNamespace(time=lambda: time.time() - 2 * wait))
        first = run_reconcile(harness)
    assert first.get("replaces") is None and first.get("job_id") == dead.job_id  # may still start
    second = run_reconcile(harness)  # now: the job was popped longer ago than any lock wait
    assert second["result"] == "sync queued" and second.get("replaces") == dead.job_id, second
    assert harness.state().get("applied_sha") == v2
    assert cm_value(kube, namespace, "nginx-conf") == "2.0"
    assert harness.conn.zcard(keys.wanted(harness.repo.name)) == 0
