"""Prometheus metrics of the receiver, correct under several gunicorn workers.

Why: each gunicorn worker is its own process with its own counters.  When
``PROMETHEUS_MULTIPROC_DIR`` is set (``webhook.gunicorn_conf`` sets it up
before any worker starts), prometheus_client keeps every value in a
memory-mapped file per process and ``/metrics`` adds them all up, so a scrape
sees every delivery whichever worker answers it.  Without the variable
(tests, the Flask dev server) the ordinary in-process registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import REGISTRY, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DELIVERIES = Counter(
    "pullbridge_webhook_deliveries_total",
    "Webhook deliveries by provider and outcome (queued, coalesced, duplicate, ignored, rejected, ...).",
    ["provider", "outcome"],
)
INTAKE_SECONDS = Histogram(
    "pullbridge_webhook_intake_seconds",
    "Time from reading a webhook request to answering it.",
    ["provider"],
    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

QUEUE_BATCH = Histogram(
    "pullbridge_webhook_queue_batch_size",
    "Pushes recorded per Redis round trip (concurrent pushes share one; see pullbridge.groupcommit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)


def observe_batch(size: int) -> None:
    QUEUE_BATCH.observe(size)


_children: dict = {}  # (provider, outcome) -> (counter child, histogram child): labels() once


def observe(provider: str, outcome: str, seconds: float) -> None:
    pair = _children.get((provider, outcome))
    if pair is None:
        pair = (DELIVERIES.labels(provider, outcome), INTAKE_SECONDS.labels(provider))
        _children[(provider, outcome)] = pair
    pair[0].inc()
    pair[1].observe(seconds)


def exposition(conn=None, config=None) -> tuple[bytes, str]:
    """The text a scrape gets: the receiver's own metrics (summed over all
    gunicorn workers when multi-process) followed by the sync, drift and queue
    metrics the workers record in Redis (``worker.metrics``), when given a
    connection and configuration."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if conn is not None and config is not None:
        from worker.metrics import exposition as worker_exposition

        text += worker_exposition(conn, config)[0]
    return text, CONTENT_TYPE_LATEST
