"""Metrics recorded by worker processes and read by the web process's collector, through Redis."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue

from pullbridge import keys
from pullbridge.config import parse_config
from tests.notify_support import dead_redis
from worker import metrics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def config():
    return parse_config({"repos": [
        {"name": n, "url": f"https://git.example/acme/{n}.git", "provider": "github", "secret_env": "S"}
        for n in ("app", "infra")]})


def scrape(conn, config, clock=None) -> dict:
    registry = CollectorRegistry()
    collector = metrics.register_collectors(registry, conn, config)
    if clock:
        collector.clock = clock
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_worker_process_records_web_process_reads(redis_conn, config):
    conn = redis_conn
    kwargs = conn.connection_pool.connection_kwargs
    script = textwrap.dedent(f"""
        import redis
        from worker import metrics
        conn = redis.Redis(host={kwargs.get('host', '127.0.0.1')!r}, port={kwargs.get('port', 6379)},
                           db={kwargs.get('db', 0)}, password={kwargs.get('password')!r})
        metrics.record_sync(conn, "app", "success", 0.7, finished_at=1000.0)
        metrics.record_sync(conn, "app", "failure", 42.0)
        metrics.record_sync(conn, "app", "success", 4000.0, finished_at=2000.0)
        metrics.record_drift(conn, "app", found=3, corrected=2)
        metrics.record_sync(conn, "gone", "success", 1.0)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)  # a separate process, like a worker
    conn.hset(keys.state("infra"), "last_check_at", "2400.0")  # as worker.periodic leaves it

    s = scrape(conn, config, clock=lambda: 2500.0)
    assert s[("pullbridge_metrics_redis_up", ())] == 1
    assert s[("pullbridge_sync_results_total", (("repo", "app"), ("result", "success")))] == 2
    assert s[("pullbridge_sync_results_total", (("repo", "app"), ("result", "failure")))] == 1
    bucket = lambda le: s[("pullbridge_sync_duration_seconds_bucket", (("le", le), ("repo", "app")))]  # noqa: E731
    assert bucket("0.5") == 0 and bucket("1.0") == 1 and bucket("60.0") == 2 and bucket("1800.0") == 2
    assert bucket("+Inf") == 3
    assert s[("pullbridge_sync_duration_seconds_count", (("repo", "app"),))] == 3
    assert s[("pullbridge_sync_duration_seconds_sum", (("repo", "app"),))] == pytest.approx(4042.7)
    assert s[("pullbridge_drift_found_total", (("repo", "app"),))] == 3
    assert s[("pullbridge_drift_corrected_total", (("repo", "app"),))] == 2
    assert s[("pullbridge_last_success_timestamp_seconds", (("repo", "app"),))] == 2000.0
    assert s[("pullbridge_last_success_age_seconds", (("repo", "app"),))] == 500.0
    assert ("pullbridge_last_success_age_seconds", (("repo", "infra"),)) not in s  # never succeeded
    assert s[("pullbridge_last_check_timestamp_seconds", (("repo", "infra"),))] == 2400.0  # but checked
    assert s[("pullbridge_last_check_age_seconds", (("repo", "infra"),))] == 100.0
    assert ("pullbridge_last_check_age_seconds", (("repo", "app"),)) not in s  # never checked
    assert not any(dict(labels).get("repo") == "gone" for _, labels in s)  # not configured any more


def test_queue_depth_is_read_at_scrape_time(redis_conn, config):
    conn = redis_conn
    queue = Queue(keys.SYNC_QUEUE, connection=conn)
    for _ in range(3):
        queue.enqueue_call("worker.jobs.sync", args=("app",))
    Queue(keys.STATUS_QUEUE, connection=conn).enqueue_call("worker.status.post", args=("app", "0" * 40, "pending", "x"))
    s = scrape(conn, config)
    assert s[("pullbridge_queue_jobs", (("queue", keys.SYNC_QUEUE), ("state", "queued")))] == 3
    assert s[("pullbridge_queue_jobs", (("queue", keys.STATUS_QUEUE), ("state", "queued")))] == 1
    assert s[("pullbridge_queue_jobs", (("queue", keys.SYNC_QUEUE), ("state", "failed")))] == 0


def test_redis_down_gives_up_zero_and_recording_does_not_raise(config):
    dead = dead_redis()
    metrics.record_sync(dead, "app", "success", 1.0)
    metrics.record_drift(dead, "app", 1, 1)
    s = scrape(dead, config)
    assert s == {("pullbridge_metrics_redis_up", ()): 0}


def test_exposition_has_prometheus_content_type(redis_conn, config):
    body, content_type = metrics.exposition(redis_conn, config)
    assert content_type.startswith("text/plain")
    assert b"pullbridge_metrics_redis_up 1.0" in body
