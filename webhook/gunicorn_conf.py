"""Gunicorn settings for the Procfile's ``web`` process.

Why these defaults (2 cores): one process per core, each serving its
connections with gevent (up to ``worker_connections`` at once), through
``webhook.gunicorn_worker.FairGeventWorker``: gunicorn's gevent worker, made
to take keep-alive connections in turn (see that module).  A push waits
about a millisecond for Redis' fsync (``appendfsync always``); with gevent
that wait is a cheap switch to another request in the same thread, and the
pushes waiting together share one round trip (``pullbridge.groupcommit``).
With OS threads (``gthread``, the previous default) every such wait handed
the GIL to another thread: about 17 context switches per push against 2 with
gevent, and ``bench/intake`` measured twice the push throughput (about 2,950
against 1,500 pushes/s) and a p99 at 70% load of about 22 ms against 52 ms.
The app is loaded in each worker after gunicorn's gevent worker has patched
the standard library, so every socket and lock in it cooperates.

Environment overrides (read here, so the Procfile stays one line):
``PORT`` (8080), ``WEB_HOST`` (the address to listen on: ``0.0.0.0``, every
interface, as a container needs; the demo, the tests and the benches set
``127.0.0.1``), ``WEB_CONCURRENCY`` (workers), ``GUNICORN_THREADS`` (gthread only),
``GUNICORN_WORKER_CLASS`` (``gevent``, the default, means the fair worker
above; ``gthread`` works too), ``GUNICORN_WORKER_CONNECTIONS``,
``GUNICORN_TIMEOUT``, ``GUNICORN_KEEPALIVE``,
``GUNICORN_BACKLOG``, ``GUNICORN_ACCESSLOG`` (a path or ``-``; off by
default, the app logs every delivery itself; a line names the path, never the query).  ``GUNICORN_CMD_ARGS`` still
overrides anything here, as gunicorn documents.

Per worker, once the app is loaded (``post_worker_init``): the garbage
collector stops scanning the loaded app's objects, log lines are written
by a writer of their own and deliveries are added to the metrics by a
flusher of their own (every quarter second), both of which finish their
work when the worker exits (``worker_exit``).

Connections across workers: the master makes the shared counts by which each
worker leaves a new connection to a worker holding fewer
(``webhook.accept_balance``), and frees a dead worker's slot in ``child_exit``.

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


bind = f"{os.environ.get('WEB_HOST', '').strip() or '0.0.0.0'}:{_int('PORT', 8080)}"
workers = _int("WEB_CONCURRENCY", 2)
threads = _int("GUNICORN_THREADS", 16)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "").strip() or "gevent"
if worker_class == "gevent":
    worker_class = "webhook.gunicorn_worker.FairGeventWorker"
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = 20
keepalive = _int("GUNICORN_KEEPALIVE", 15)
backlog = _int("GUNICORN_BACKLOG", 2048)
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", 1000)
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
# gunicorn's default line, with the path where it has the request line: a registry hook's
# secret may be in the query (?token=, Docker Hub's only way).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
proc_name = "pullbridge-web"

_multiproc = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if not _multiproc:
    _multiproc = tempfile.mkdtemp(prefix="pullbridge-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _multiproc


def on_starting(server):
    """Start from an empty metrics directory: stale files would double-count.  Make the
    shared connection counts the workers balance their accepts by (``webhook.accept_balance``)."""
    from webhook import accept_balance

    accept_balance.install()
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for entry in os.listdir(path):
        full = os.path.join(path, entry)
        if os.path.isdir(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            os.unlink(full)


def post_worker_init(worker):
    """Once the app is loaded in this worker: freeze what exists, start the log
    writer and the metrics flusher (``webhook.metrics``).

    ``gc.freeze()`` moves the ~65,000 objects of the loaded app (Flask, redis,
    rq, ...) out of the collector's sight.  A full collection otherwise walks
    them all: 50-60 ms, every few seconds under load, during which every
    request of the worker waits (it set the p99 of ``bench/intake``'s paced
    run).  Frozen, a full collection took about 1 ms.
    """
    import gc

    from webhook.logs import start_writer
    from webhook.metrics import start_flusher

    gc.freeze()
    start_writer()
    start_flusher()


def worker_exit(server, worker):
    """Write the log lines still queued and add the tallied metrics before the worker goes."""
    from webhook.logs import stop_writer
    from webhook.metrics import stop_flusher

    stop_flusher()
    stop_writer()


def pre_fork(server, worker):
    from webhook import accept_balance

    accept_balance.assign_slot(worker)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    from webhook import accept_balance

    multiprocess.mark_process_dead(worker.pid)
    accept_balance.release_slot(worker)
