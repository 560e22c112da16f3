"""``python -m worker.scheduler``: the Procfile's ``scheduler`` process.

Why it exists: each repository needs its periodic reconcile
(``worker.periodic.reconcile(repo_name)``) queued once per ``interval``.  This
is RQ's own ``CronScheduler`` with one interval ``CronJob`` per repo on the
sync queue, so the ordinary workers run it.  Any number of schedulers may
run (one per host, say): the job itself claims its interval with an atomic
Redis key, so the duplicates they queue do nothing.

Repos with the same interval are not checked at the same moment (a load
spike on the git host and the API server): each repo's check falls at its
own offset within the interval, derived from its name (``RepoCronJob``), so
it is the same after a restart and in every scheduler.  RQ's interval
``CronJob`` has no such offset (it runs at once when the scheduler starts,
then every interval after that), and its ``cron`` form cannot express one
for every interval (cron steps restart at each hour or day, so ``*/7``
minutes is not every 7 minutes; and it follows the local clock).

The config file ($PULLBRIDGE_CONFIG) is watched: when it changes, repos that
were added start their schedule, removed ones stop, and a changed interval
takes effect; a repo whose interval did not change keeps its timing.  A
config that does not load keeps the previous schedule (and says so in the log).

Redis unreachable (restarted, failed over) does not end the process: RQ's
loop would exit on the first refused connection, so it is begun again once
Redis answers (``worker.redis_outage``), keeping each repo's timing.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from redis import Redis
from rq.cron import CronJob, CronScheduler, now

from pullbridge import keys, liveness
from pullbridge.config import CONFIG_ENV, Config, ConfigError, load_config
from pullbridge.config_types import log_level
from pullbridge.logformat import LOG_FORMAT_ENV, log_format, setup_process_logging
from pullbridge.redis_url import RedisUnusable, connect_checked
from worker.redis_outage import rerun_while_redis_is_down

log = logging.getLogger("pullbridge.scheduler")

JOB_FUNC = "worker.periodic.reconcile"
RELOAD_CHECK_SECONDS = 2.0


def job_name(repo_name: str) -> str:
    return f"pullbridge-reconcile:{repo_name}"


def offset_seconds(repo_name: str, interval: int) -> float:
    """Where in each ``interval`` (seconds) the repo's check falls: a fraction of it fixed by a
    hash of the name (not Python's ``hash``, which differs from one process to the next)."""
    fraction = int.from_bytes(hashlib.sha256(repo_name.encode()).digest()[:8], "big") / 2 ** 64
    return interval * fraction


class RepoCronJob(CronJob):
    """An interval CronJob queued at the moments when the Unix time, less ``offset``, is a whole
    number of intervals: the first such moment after the scheduler starts (not at once, as RQ's
    interval jobs do), then once every interval.  Moments missed (a scheduler that was stopped or
    stalled) are not caught up: the next one comes."""

    def __init__(self, *args, offset: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.offset = offset
        self.next_enqueue_time = self.moment_after(now())

    def moment_after(self, when: datetime) -> datetime:
        """The first of this job's moments later than ``when``."""
        count = math.floor((when.timestamp() - self.offset) / self.interval) + 1
        return datetime.fromtimestamp(count * self.interval + self.offset, timezone.utc)

    def get_next_enqueue_time(self) -> datetime:
        # Later than the moment just due as well: the enqueue time RQ records is its clock at the
        # start of the tick, which may fall just before that moment.
        return self.moment_after(max(t for t in (self.latest_enqueue_time, self.next_enqueue_time) if t))

    def should_run(self) -> bool:
        return now() >= self.next_enqueue_time


def cron_jobs(config: Config) -> list[RepoCronJob]:
    """One interval CronJob per repo (RQ wants whole seconds; round up), at the repo's offset."""
    from worker.periodic import reconcile

    jobs = []
    for repo in config.repos:
        settings = config.repo_jobs(repo)
        interval = max(1, math.ceil(repo.interval))
        jobs.append(RepoCronJob(keys.SYNC_QUEUE, func=reconcile, args=(repo.name,), interval=interval,
                                offset=offset_seconds(repo.name, interval), name=job_name(repo.name),
                                job_timeout=int(settings.job_timeout), result_ttl=3600, failure_ttl=86400,
                                meta={"repo": repo.name, "reason": "periodic"}))
    return jobs


class ReconcileScheduler(CronScheduler):
    """A CronScheduler whose jobs follow the Pullbridge config file."""

    def __init__(self, connection: Redis, config_path: str, **kwargs):
        super().__init__(connection, **kwargs)
        self.config_path = config_path
        self.config_file = config_path
        self._mtime: float | None = None
        self.config = None
        self._stopping = False  # SIGTERM/SIGINT seen: Redis being unreachable must not restart the loop
        self.reload(initial=True)

    def _stat(self) -> float:
        try:
            return Path(self.config_path).stat().st_mtime
        except OSError:
            return -1.0

    def reload(self, initial: bool = False) -> bool:
        """Re-read the config when its file changed; True when the schedule changed."""
        mtime = self._stat()
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        try:
            config = load_config(self.config_path)
            fresh = cron_jobs(config)
        except (ConfigError, ValueError, OverflowError) as exc:
            if initial:
                raise
            log.error("scheduler: config not reloaded, keeping the previous schedule: %s", exc)
            return False
        self.config = config
        old = {job.name: job for job in self._cron_jobs}
        new = []
        for job in fresh:
            before = old.get(job.name)
            if before is not None and before.interval == job.interval:
                job.latest_enqueue_time = before.latest_enqueue_time
                job.next_enqueue_time = before.next_enqueue_time
            new.append(job)
        changed = [j.name for j in new if j.name not in old or old[j.name].interval != j.interval]
        removed = [name for name in old if name not in {j.name for j in new}]
        self._cron_jobs = new
        if initial or changed or removed:
            log.info("scheduler: %d repos scheduled%s%s", len(new),
                     f"; new/changed: {', '.join(changed)}" if changed and not initial else "",
                     f"; removed: {', '.join(removed)}" if removed else "")
            for job in new:
                log.info("  %s every %ss, %.1fs into each interval, on %s", job.name, job.interval, job.offset,
                         job.queue_name)
        return bool(changed or removed)

    def enqueue_jobs(self) -> list[CronJob]:
        if self.reload():
            self.save()
        self.request_image_scans()
        return super().enqueue_jobs()

    def request_image_scans(self) -> None:
        """Image automation: queue the scans whose ``images.interval`` has passed (a Redis TTL
        per repo keeps several schedulers from scanning more often)."""
        from worker.images.scan import request_due_scans

        try:
            request_due_scans(self.connection, self.config)
        except Exception:  # noqa: BLE001 - a registry scan must never stop the reconcile schedule
            log.exception("scheduler: could not queue image scans")

    def calculate_sleep_interval(self) -> float:
        return min(super().calculate_sleep_interval(), RELOAD_CHECK_SECONDS)

    def heartbeat(self) -> None:
        liveness.vouch(RELOAD_CHECK_SECONDS + 60)  # the loop's longest sleep, and time for its work
        super().heartbeat()

    def start(self) -> None:
        """RQ's loop, begun again after Redis was unreachable, until SIGTERM/SIGINT."""
        rerun_while_redis_is_down(super().start, lambda: self._stopping, "scheduler", vouches=True)

    def _request_stop(self, signum, frame):
        self._stopping = True
        super()._request_stop(signum, frame)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.scheduler", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help=f"YAML file (default: ${CONFIG_ENV})")
    parser.add_argument("--log-level", type=log_level, default=os.environ.get("PULLBRIDGE_LOG_LEVEL", "INFO"),
                        help="DEBUG, INFO, WARNING, ERROR (any case; default $PULLBRIDGE_LOG_LEVEL or INFO)")
    parser.add_argument("--log-format", type=log_format, default=os.environ.get(LOG_FORMAT_ENV, "json"),
                        help=f"json (one object per line) or text (default ${LOG_FORMAT_ENV} or json)")
    args = parser.parse_args(argv)
    setup_process_logging(args.log_level, args.log_format)
    liveness.vouch(liveness.STARTUP_SECONDS)
    path = args.config or os.environ.get(CONFIG_ENV)
    if not path:
        log.error("scheduler: no configuration: set %s or pass --config", CONFIG_ENV)
        return 2
    try:
        conn = connect_checked(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    except RedisUnusable as exc:
        log.error("scheduler: %s", exc)
        return 2
    try:
        scheduler = ReconcileScheduler(conn, path, logging_level=args.log_level)
    except ConfigError as exc:
        log.error("scheduler: %s", exc)
        return 2
    scheduler.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
