"""Prometheus metrics of syncs, drift and queues, correct across worker processes.

Why it is built this way: syncs run in RQ worker processes (forked per job,
possibly on other machines) while ``/metrics`` is served by the web process.
prometheus_client's in-process metrics would only ever show the web
process's own numbers, and its multiprocess mode (PROMETHEUS_MULTIPROC_DIR)
only works for processes sharing one directory on one host and needs
cleanup of dead processes' files.  Instead the worker *records* into Redis
(a few HINCRBYs per sync, in one round trip) and a custom collector *reads*
Redis at scrape time.  Queue depths and the age of the last successful sync
are computed at scrape time too, so they are right even when no worker runs.

Worker side (never raise; a metric is not worth a sync):

* ``record_sync(conn, repo_name, result, duration_seconds)`` after each sync attempt;
* ``record_drift(conn, repo_name, found, corrected)`` after each drift check.

Web side: ``register_collectors(registry, conn, config)`` then serve
``prometheus_client.generate_latest(registry)`` (or use ``exposition``).

Exposed (per-repo series only for repositories in the current config):

* ``pullbridge_sync_duration_seconds`` histogram {repo}
* ``pullbridge_sync_results_total`` counter {repo, result}
* ``pullbridge_drift_found_total`` / ``pullbridge_drift_corrected_total`` counters {repo}
  (objects found drifted / objects reverted)
* ``pullbridge_queue_jobs`` gauge {queue, state=queued|started|scheduled|deferred|failed}
* ``pullbridge_last_success_timestamp_seconds`` and ``pullbridge_last_success_age_seconds`` gauges {repo}
* ``pullbridge_last_check_timestamp_seconds`` and ``pullbridge_last_check_age_seconds`` gauges {repo}:
  the last periodic check, which a repo in sync with no push has too (its last success may be old)
* ``pullbridge_metrics_redis_up`` gauge: 0 when Redis could not be read (other series are then absent)
"""

from __future__ import annotations

import logging
import math
import re
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.registry import (DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry,
                         StartedJobRegistry)

from pullbridge import keys
from pullbridge.config import Config

log = logging.getLogger(__name__)

DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
QUEUES = tuple(keys.QUEUES.values())
RESULT_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}\Z")


def _bucket(seconds: float) -> str:
    for bound in DURATION_BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


def record_sync(conn: Redis, repo_name: str, result: str, duration_seconds: float,
                finished_at: float | None = None) -> None:
    """Count one finished sync attempt: result ('success', 'failure', ...) and duration."""
    if not RESULT_RE.match(result or ""):
        log.warning("metrics: odd sync result %r for %s; recorded as 'other'", result, repo_name)
        result = "other"
    duration = max(0.0, float(duration_seconds))
    durations = keys.metrics_durations(repo_name)
    try:
        with conn.pipeline(transaction=True) as pipe:
            pipe.hincrby(keys.metrics_counters(), f"sync_results|{repo_name}|{result}", 1)
            pipe.hincrby(durations, _bucket(duration), 1)
            pipe.hincrby(durations, "count", 1)
            pipe.hincrbyfloat(durations, "sum", duration)
            if result == "success":
                pipe.hset(keys.metrics_last_success(), repo_name, finished_at or time.time())
            pipe.execute()
    except RedisError as exc:
        log.warning("metrics: sync of %s not recorded: %s", repo_name, exc)


def record_drift(conn: Redis, repo_name: str, found: int, corrected: int) -> None:
    """Count objects found drifted and objects reverted by one drift check."""
    try:
        with conn.pipeline(transaction=True) as pipe:
            pipe.hincrby(keys.metrics_counters(), f"drift_found|{repo_name}|", int(found))
            pipe.hincrby(keys.metrics_counters(), f"drift_corrected|{repo_name}|", int(corrected))
            pipe.execute()
    except RedisError as exc:
        log.warning("metrics: drift of %s not recorded: %s", repo_name, exc)


class PullbridgeCollector(Collector):
    """Reads Pullbridge's metrics from Redis at every scrape."""

    def __init__(self, conn: Redis, config: Config, clock=time.time):
        self.conn = conn
        self.config = config
        self.clock = clock

    def describe(self):
        return []  # unchecked collector: families depend on what Redis holds

    def collect(self):
        up = GaugeMetricFamily("pullbridge_metrics_redis_up", "1 if Redis could be read for this scrape")
        try:
            families = list(self._families())
        except RedisError as exc:
            log.warning("metrics: Redis unreadable at scrape: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self):
        repos = [r.name for r in self.config.repos]
        conn = self.conn
        with conn.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.metrics_counters())
            pipe.hgetall(keys.metrics_last_success())
            for name in repos:
                pipe.hgetall(keys.metrics_durations(name))
            for name in repos:
                pipe.hget(keys.state(name), "last_check_at")  # written by every periodic check
            replies = pipe.execute()
        counters, last_success = replies[0], replies[1]
        durations, last_check = replies[2:2 + len(repos)], replies[2 + len(repos):]

        results = CounterMetricFamily("pullbridge_sync_results", "Finished sync attempts by result",
                                      labels=["repo", "result"])
        found = CounterMetricFamily("pullbridge_drift_found", "Objects found drifted from Git",
                                    labels=["repo"])
        corrected = CounterMetricFamily("pullbridge_drift_corrected", "Drifted objects reverted to Git",
                                        labels=["repo"])
        wanted = set(repos)
        for field, value in sorted(counters.items()):
            kind, repo, label = field.decode().split("|", 2)
            if repo not in wanted:
                continue
            if kind == "sync_results":
                results.add_metric([repo, label], float(value))
            elif kind == "drift_found":
                found.add_metric([repo], float(value))
            elif kind == "drift_corrected":
                corrected.add_metric([repo], float(value))
        yield results
        yield found
        yield corrected

        histogram = HistogramMetricFamily("pullbridge_sync_duration_seconds", "Duration of sync attempts",
                                          labels=["repo"])
        for name, raw in zip(repos, durations):
            if not raw:
                continue
            data = {k.decode(): v for k, v in raw.items()}
            running, buckets = 0, []
            for bound in DURATION_BUCKETS:
                running += int(data.get(repr(bound), 0))
                buckets.append((_fmt(bound), running))
            buckets.append(("+Inf", int(data.get("count", 0))))
            histogram.add_metric([name], buckets, sum_value=float(data.get("sum", 0)))
        yield histogram

        now = self.clock()
        yield from _time_and_age("last_success", "the last successful sync",
                                 [(name, last_success.get(name.encode())) for name in repos], now)
        yield from _time_and_age("last_check", "the last periodic check (in sync or not)",
                                 list(zip(repos, last_check)), now)

        depth = GaugeMetricFamily("pullbridge_queue_jobs", "RQ jobs by queue and state",
                                  labels=["queue", "state"])
        for queue_name in QUEUES:
            depth.add_metric([queue_name, "queued"], Queue(queue_name, connection=conn).count)
            for state, registry_class in (("started", StartedJobRegistry), ("scheduled", ScheduledJobRegistry),
                                          ("deferred", DeferredJobRegistry), ("failed", FailedJobRegistry)):
                registry = registry_class(queue_name, connection=conn)
                depth.add_metric([queue_name, state], registry.get_job_count(cleanup=False))
        yield depth


def _time_and_age(what: str, described: str, stamps: list, now: float):
    """``pullbridge_<what>_timestamp_seconds`` and ``_age_seconds`` {repo}, from (repo, Unix time
    or None) pairs: a repo with no time yet has neither."""
    stamp = GaugeMetricFamily(f"pullbridge_{what}_timestamp_seconds", f"Unix time of {described}",
                              labels=["repo"])
    age = GaugeMetricFamily(f"pullbridge_{what}_age_seconds", f"Seconds since {described}", labels=["repo"])
    for name, raw in stamps:
        if raw is None:
            continue
        when = float(raw)
        stamp.add_metric([name], when)
        age.add_metric([name], max(0.0, now - when))
    yield stamp
    yield age


def _fmt(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def register_collectors(registry: CollectorRegistry, conn: Redis, config: Config) -> PullbridgeCollector:
    """Register Pullbridge's Redis-backed collector on ``registry`` (call once per registry)."""
    collector = PullbridgeCollector(conn, config)
    registry.register(collector)
    return collector


def exposition(conn: Redis, config: Config) -> tuple[bytes, str]:
    """Body and Content-Type of a /metrics answer, for a web view that keeps no registry."""
    registry = CollectorRegistry()
    register_collectors(registry, conn, config)
    return generate_latest(registry), CONTENT_TYPE_LATEST
