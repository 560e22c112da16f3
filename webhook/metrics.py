"""Prometheus metrics of the receiver, correct under several gunicorn workers.

Why: each gunicorn worker is its own process with its own counters.  When
``PROMETHEUS_MULTIPROC_DIR`` is set (``webhook.gunicorn_conf`` sets it up
before any worker starts), prometheus_client keeps every value in a
memory-mapped file per process and ``/metrics`` adds them all up, so a scrape
sees every delivery whichever worker answers it.  Without the variable
(tests, the Flask dev server) the ordinary in-process registry is used.

Each delivery is tallied in the process first and added to the metrics a
moment later, by a flusher of the worker's own (``start_flusher``, from
gunicorn's ``post_worker_init``) every ``FLUSH_SECONDS``, by a scrape the
worker answers, and when the worker exits.  In multi-process mode each
counter or bucket increment takes a lock, checks the pid and writes the
memory-mapped file: three per delivery, about a seventh of what answering a
forged delivery costs beyond the no-op (``bench/intake``).  Tallied, a burst
of deliveries costs one increment per label set and bucket per flush.  A
scrape therefore sees another worker's deliveries up to ``FLUSH_SECONDS``
late; without a flusher (tests, the dev server) every delivery is added at
once.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import REGISTRY, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DELIVERIES = Counter(
    "pullbridge_webhook_deliveries_total",
    "Webhook deliveries by provider and outcome: queued, coalesced, duplicate, ignored, ping, or the error "
    "answered (unauthorized, unknown_repo, payload_too_large, bad_payload, repository_mismatch, "
    "misconfigured, unavailable, error).",
    ["provider", "outcome"],
)
# up to 10 s: the git hosts' wait (GitHub, GitLab), and 5 s, server.queue_timeout's default, below it
INTAKE_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INTAKE_SECONDS = Histogram(
    "pullbridge_webhook_intake_seconds",
    "Time from reading a webhook request to answering it.",
    ["provider"],
    buckets=INTAKE_BUCKETS,
)

QUEUE_BATCH = Histogram(
    "pullbridge_webhook_queue_batch_size",
    "Pushes recorded per Redis round trip (concurrent pushes share one; see pullbridge.groupcommit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)


def observe_batch(size: int) -> None:
    QUEUE_BATCH.observe(size)


FLUSH_SECONDS = 0.25
_BOUNDS = (*INTAKE_BUCKETS, float("inf"))  # what the histogram's buckets count up to, +Inf last


class _Tally:
    """This process's deliveries since the last flush: one row per provider,
    outcome and latency bucket, so a delivery costs one dict lookup."""

    def __init__(self):
        self.lock = threading.Lock()
        # (provider, outcome, bucket index) -> [deliveries, sum of their seconds]
        self.rows: dict[tuple[str, str, int], list] = {}
        self.flusher: threading.Thread | None = None
        self.stopping = threading.Event()

    def add(self, provider: str, outcome: str, seconds: float) -> None:
        key = (provider, outcome, bisect_left(_BOUNDS, seconds))  # the first bucket whose bound >= seconds
        with self.lock:
            row = self.rows.get(key)
            if row is None:
                self.rows[key] = [1, seconds]
            else:
                row[0] += 1
                row[1] += seconds

    def flush(self) -> None:
        with self.lock:
            rows, self.rows = self.rows, {}
        deliveries: dict[tuple[str, str], int] = {}
        latency: dict[str, list] = {}  # provider -> [sum of seconds, count per bucket...]
        for (provider, outcome, bucket), (count, seconds) in rows.items():
            deliveries[(provider, outcome)] = deliveries.get((provider, outcome), 0) + count
            row = latency.get(provider)
            if row is None:
                row = latency[provider] = [0.0] + [0] * len(_BOUNDS)
            row[0] += seconds
            row[1 + bucket] += count
        for (provider, outcome), count in deliveries.items():
            DELIVERIES.labels(provider, outcome).inc(count)
        for provider, row in latency.items():
            # prometheus_client adds one observation at a time; a flush adds a
            # bucket's count at once, to the same values observe() writes.
            child = INTAKE_SECONDS.labels(provider)
            child._sum.inc(row[0])
            for bucket, count in zip(child._buckets, row[1:]):
                if count:
                    bucket.inc(count)


_tally = _Tally()


def observe(provider: str, outcome: str, seconds: float) -> None:
    """Count one delivery and its intake time (added at the next flush when a flusher runs)."""
    _tally.add(provider, outcome, seconds)
    if _tally.flusher is None:
        _tally.flush()


def flush() -> None:
    """Add what this process tallied to the metrics now."""
    _tally.flush()


def start_flusher() -> None:
    """From now on, this process's tallies are added every FLUSH_SECONDS (idempotent)."""
    if _tally.flusher is not None:
        return

    def run() -> None:
        while not _tally.stopping.wait(FLUSH_SECONDS):
            try:
                _tally.flush()
            except Exception:  # noqa: BLE001 -- a metric never stops the flusher
                pass

    _tally.stopping.clear()
    _tally.flusher = threading.Thread(target=run, name="pullbridge-metrics-flusher", daemon=True)
    _tally.flusher.start()


def stop_flusher() -> None:
    """Flush what is left and add every later delivery at once again."""
    flusher, _tally.flusher = _tally.flusher, None
    if flusher is not None:
        _tally.stopping.set()
        flusher.join(5.0)
    _tally.flush()


def exposition(conn=None, config=None) -> tuple[bytes, str]:
    """The text a scrape gets: the receiver's own metrics (summed over all
    gunicorn workers when multi-process) followed by the sync, drift and queue
    metrics the workers record in Redis (``worker.metrics``), when given a
    connection and configuration."""
    flush()  # this process's own deliveries, up to now
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
