"""``python -m worker``: a long-lived RQ worker for the sync, status and image-scan queues.

Why it exists: the Procfile's ``worker`` process.  It loads the configuration
($PULLBRIDGE_CONFIG) and the Kubernetes client once, connects to $REDIS_URL
and runs an RQ worker with its scheduler (so Retry intervals fire).  Jobs run
in this process (no fork per job), so clients, discovery and git mirrors are
reused across jobs.

Redis going away (a restart, a failover) does not end it: ``worker.redis_outage``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from rq import Queue

from pullbridge import keys, liveness
from pullbridge.config import ConfigError
from pullbridge.config_types import log_level
from pullbridge.logformat import LOG_FORMAT_ENV, log_format, setup_process_logging
from pullbridge.redis_url import RedisUnusable, connect_checked
from worker.errors import PermanentError
from worker.jobs import process_config
from worker.kube import process_kube
from worker.redis_outage import SyncWorker

log = logging.getLogger("pullbridge.worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: RQ's)")
    parser.add_argument("--log-level", type=log_level, default=os.environ.get("PULLBRIDGE_LOG_LEVEL", "INFO"),
                        help="DEBUG, INFO, WARNING, ERROR (any case; default $PULLBRIDGE_LOG_LEVEL or INFO)")
    parser.add_argument("--log-format", type=log_format, default=os.environ.get(LOG_FORMAT_ENV, "json"),
                        help=f"json (one object per line) or text (default ${LOG_FORMAT_ENV} or json)")
    args = parser.parse_args(argv)
    setup_process_logging(args.log_level, args.log_format)
    liveness.vouch(liveness.STARTUP_SECONDS)
    try:
        config = process_config()
        process_kube()
    except (ConfigError, PermanentError) as exc:
        log.error("worker: %s", exc)
        return 2
    try:
        conn = connect_checked(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    except RedisUnusable as exc:
        log.error("worker: %s", exc)
        return 2
    queues = [Queue(name, connection=conn) for name in keys.QUEUES.values()]
    worker = SyncWorker(queues, connection=conn, name=args.name)
    logging.getLogger("pullbridge.sync").info("worker %s: %d repos, queues %s", worker.name,
                                               len(config.repos), ", ".join(q.name for q in queues))
    worker.work(burst=args.burst, with_scheduler=True, logging_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
