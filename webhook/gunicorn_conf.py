"""Gunicorn settings for the Procfile's ``web`` process.

Why these defaults (2 cores): a push is mostly CPU (HMAC, JSON, the Redis
client) plus one round trip that waits for Redis' fsync (``appendfsync
always``: about a millisecond here).  One process per core keeps both cores
busy; 16 threads each keep enough pushes waiting on fsync at once.  More
processes with fewer threads measured worse with ``bench/intake`` (4x2 cost
about 60% more CPU per push than 2x8 or 2x16: more processes contending for
two cores).  ``gthread`` also keeps connections alive.

Environment overrides (read here, so the Procfile stays one line):
``PORT`` (8080), ``WEB_CONCURRENCY`` (workers), ``GUNICORN_THREADS``,
``GUNICORN_WORKER_CLASS``, ``GUNICORN_TIMEOUT``, ``GUNICORN_KEEPALIVE``,
``GUNICORN_BACKLOG``, ``GUNICORN_ACCESSLOG`` (a path or ``-``; off by
default, the app logs every delivery itself).  ``GUNICORN_CMD_ARGS`` still
overrides anything here, as gunicorn documents.

Metrics across workers: ``PROMETHEUS_MULTIPROC_DIR`` is created (when not
given) before any worker is forked and emptied at start, and a dead
worker's live gauges are dropped in ``child_exit``.
"""

import os
import shutil
import tempfile


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


bind = f"0.0.0.0:{_int('PORT', 8080)}"
workers = _int("WEB_CONCURRENCY", 2)
threads = _int("GUNICORN_THREADS", 16)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = 20
keepalive = _int("GUNICORN_KEEPALIVE", 15)
backlog = _int("GUNICORN_BACKLOG", 2048)
worker_connections = 1000
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
proc_name = "pullbridge-web"

_multiproc = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if not _multiproc:
    _multiproc = tempfile.mkdtemp(prefix="pullbridge-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _multiproc


def on_starting(server):
    """Start from an empty metrics directory: stale files would double-count."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for entry in os.listdir(path):
        full = os.path.join(path, entry)
        if os.path.isdir(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            os.unlink(full)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
