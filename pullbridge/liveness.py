"""Liveness of the worker and scheduler processes: a file saying until when the process vouches
for itself, and the probe that reads it (``python -m pullbridge.liveness``).

Why it exists: the web process answers ``/healthz``, but an RQ worker and the reconcile
scheduler serve no HTTP.  A process stuck for good (a job blocked past its timeout in code
that never sees the alarm, a loop waiting on a connection that will not answer) stays
"Running" to Kubernetes while no sync or periodic check happens.  Each RQ heartbeat already
says how long until the next one: its TTL, after which RQ itself counts the worker dead (a
job's timeout + 60 s while a job runs, the worker TTL + 60 s between jobs, and
``worker.scheduler.RELOAD_CHECK_SECONDS`` + 60 s in the scheduler's loop).  With ``$PULLBRIDGE_ALIVE_FILE`` set, each heartbeat also
writes that deadline (seconds since the epoch) to the file, and so does a process waiting
for Redis to come back (waiting is not hung: restarting it would not bring Redis back).

The probe exits 0 while the deadline is ahead, 1 once it has passed (or the file is missing
or garbled), saying which on one line: the Deployments' ``livenessProbe`` runs it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

log = logging.getLogger("pullbridge.liveness")

ALIVE_FILE_ENV = "PULLBRIDGE_ALIVE_FILE"
STARTUP_SECONDS = 300.0  # a starting process vouches this long: config, Kubernetes client, Redis


def vouch(seconds: float) -> None:
    """Promise a sign of life within ``seconds`` (nothing without ``$PULLBRIDGE_ALIVE_FILE``).
    Written whole (a new file renamed over the old), so the probe never reads half of it."""
    path = os.environ.get(ALIVE_FILE_ENV)
    if not path:
        return
    part = f"{path}.{os.getpid()}.part"
    try:
        with open(part, "w") as out:
            out.write(f"{time.time() + seconds:.3f}\n")
        os.replace(part, path)
    except OSError as exc:  # a full or read-only volume must not stop the work; the probe will say it
        log.warning("could not write %s: %s", path, exc)  # a line of the process's own log format


def check(path: str, now: float | None = None) -> tuple[bool, str]:
    """(alive, what to say) for the file at ``path``."""
    try:
        with open(path) as src:
            deadline = float(src.read().strip())
    except FileNotFoundError:
        return False, f"{path} does not exist: the process has not vouched for itself"
    except (OSError, ValueError) as exc:
        return False, f"{path} cannot be read as a deadline: {exc}"
    left = deadline - (time.time() if now is None else now)
    if left < 0:
        return False, f"no sign of life for {-left:.0f}s past the deadline the process gave ({path})"
    return True, f"alive: next sign of life due within {left:.0f}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pullbridge.liveness", description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=os.environ.get(ALIVE_FILE_ENV),
                        help=f"the file (default ${ALIVE_FILE_ENV})")
    args = parser.parse_args(argv)
    if not args.path:
        print(f"pullbridge liveness: no file: pass one or set ${ALIVE_FILE_ENV}", file=sys.stderr)
        return 2
    alive, said = check(args.path)
    print(said, file=sys.stdout if alive else sys.stderr)
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
