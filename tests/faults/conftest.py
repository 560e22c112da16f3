"""Fixtures for the fault suite: Pullbridge's real processes on the local stack,
and a place to put the figures each test reached.

Why it exists: issue 9's promises are about the deployed thing (gunicorn,
``python -m worker``, the scheduler, Redis, the API server), so every test
here drives a ``LocalDeployment`` on this pytest process's own Redis DB and
prints what it measured (syncs run, latencies, retries) in the terminal
summary, where CI keeps it.
"""

from __future__ import annotations

import json

import pytest
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from pullbridge import keys

FIGURES: list[str] = []


@pytest.fixture
def figure():
    """``figure("text")``: a line for the 'fault figures' section of the summary."""
    def add(text: str) -> None:
        FIGURES.append(text)
        print(f"[figure] {text}")
    return add


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("fault figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def deployment(stack, redis_conn):
    """Factory for LocalDeployments on this process's Redis DB; all cleaned up after the test."""
    from pullbridge.demo.harness import LocalDeployment
    from pullbridge.stack import Stack

    made = []

    def make(**kw) -> LocalDeployment:
        kw.setdefault("redis_url", stack.redis_test_url)
        run = LocalDeployment(Stack(), **kw)
        made.append(run)
        return run

    yield make
    for run in made:
        try:
            run.cleanup()
        except RedisError:  # a test's private Redis is already gone: nothing left in it to forget
            import shutil
            shutil.rmtree(run.bare, ignore_errors=True)
            shutil.rmtree(run.tmp, ignore_errors=True)


def sync_jobs(conn: Redis) -> list[str]:
    """Every sync job id RQ knows of: queued, started, scheduled, finished, failed."""
    queue = Queue(keys.SYNC_QUEUE, connection=conn)
    ids = set(queue.get_job_ids())
    for registry in (queue.started_job_registry, queue.scheduled_job_registry,
                     queue.finished_job_registry, queue.failed_job_registry, queue.deferred_job_registry):
        ids.update(registry.get_job_ids())
    return sorted(ids)


def history(conn: Redis, repo: str) -> list[dict]:
    return [json.loads(raw) for raw in conn.lrange(keys.history(repo), 0, -1)]


def configmap(name: str, namespace: str, value: str) -> str:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
            f"data:\n  value: \"{value}\"\n")
