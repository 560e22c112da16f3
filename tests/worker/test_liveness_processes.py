"""The real worker and scheduler processes vouch for themselves in ``$PULLBRIDGE_ALIVE_FILE``
(``pullbridge.liveness``) for as long as RQ itself would count them alive: the worker for its TTL
between jobs and for a job's timeout while one runs, the scheduler for its loop's next turn; a
stopped process stops vouching."""

from __future__ import annotations

import os
import signal
import time

import pytest
from rq import Queue
from rq.job import Job

from pullbridge import keys
from tests.test_liveness import probe
from tests.worker.process_support import wait_for

pytestmark = pytest.mark.stack


def deadline(path) -> float | None:
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return None


def test_the_worker_vouches_for_its_ttl_when_idle_and_for_a_jobs_timeout_while_it_runs(harness, git_repo, tmp_path,
                                                                                     processes):
    from rq.defaults import DEFAULT_WORKER_TTL

    harness.configure(git_repo("aliveworker"))
    alive = tmp_path / "worker-alive"
    processes("worker", "worker", "--name", f"alive-test-{os.getpid()}",
              env={"PULLBRIDGE_ALIVE_FILE": str(alive), "PULLBRIDGE_CACHE_DIR": str(tmp_path / "mirrors")})
    wait_for("the worker listening", lambda: "Listening on" in (tmp_path / "worker.log").read_text(), tmp_path)
    idle = deadline(alive) - time.time()
    assert DEFAULT_WORKER_TTL < idle <= DEFAULT_WORKER_TTL + 60, idle  # its BLPOP waits TTL - 15 s at most
    assert probe(str(alive)).returncode == 0
    job = Queue(keys.SYNC_QUEUE, connection=harness.conn).enqueue("time.sleep", 2, job_timeout=900)
    wait_for("the job started", lambda: Job.fetch(job.id, connection=harness.conn).get_status() == "started",
             tmp_path)
    assert 900 < deadline(alive) - time.time() <= 960
    wait_for("the job finished", lambda: Job.fetch(job.id, connection=harness.conn).is_finished, tmp_path)


def test_the_scheduler_vouches_for_its_next_turn_and_a_stopped_one_does_not(harness, git_repo, tmp_path, processes):
    from worker.scheduler import RELOAD_CHECK_SECONDS

    harness.configure(git_repo("alive"), interval="1h")
    alive = tmp_path / "scheduler-alive"
    scheduler = processes("scheduler", "worker.scheduler", env={"PULLBRIDGE_ALIVE_FILE": str(alive)})
    first = wait_for("a first turn", lambda: deadline(alive) and deadline(alive) - time.time() < 300, tmp_path)
    assert first - time.time() <= RELOAD_CHECK_SECONDS + 60
    later = wait_for("a later turn", lambda: (deadline(alive) or 0) > first and deadline(alive), tmp_path)
    assert probe(str(alive)).returncode == 0
    scheduler.send_signal(signal.SIGSTOP)  # hung, as far as a probe can tell
    try:
        time.sleep(RELOAD_CHECK_SECONDS * 2)
        assert deadline(alive) == pytest.approx(later, abs=RELOAD_CHECK_SECONDS + 1)  # at most one turn was ending
        stopped_at = deadline(alive)
        time.sleep(RELOAD_CHECK_SECONDS * 2)
        assert deadline(alive) == stopped_at  # nothing vouches any more: the probe fails once it has passed
    finally:
        scheduler.send_signal(signal.SIGCONT)
