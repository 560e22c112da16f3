"""`pullbridge queue`: the sync, status and images queues, their failed jobs, retry and purge.

Why: when syncs pile up or fail, the operator needs the queue depths and the
failed jobs' errors at a glance, a way to run failed jobs again once the
cause is fixed (``queue retry``: RQ's ``FailedJobRegistry.requeue``), and a
way to drop work (``queue purge``: queued jobs, or with ``--failed`` the
failed ones), asked for confirmation unless ``--yes``.  Purging a queued
sync forgets its job, not the commits it was asked for: the next sync of
that repository still applies them.  Exit 0: done; 1: nothing to retry /
purge declined; 2: error.
"""

from __future__ import annotations

import sys

from pullbridge import keys
from pullbridge.cli import EXIT_NEGATIVE, EXIT_OK, CommandError
from pullbridge.commands import common

QUEUES = keys.QUEUES
MAX_ERROR = 100
_FORGET_MARKER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def register(sub) -> None:
    p = sub.add_parser("queue", help="queue depths and failed jobs; retry or purge jobs",
                       **common.help_text(__doc__))
    p.add_argument("--json", action="store_true", help="print depths and failed jobs as JSON")
    common.add_redis_option(p)
    p.set_defaults(func=cmd_show)
    verbs = p.add_subparsers(dest="queue_command", metavar="VERB")
    retry = verbs.add_parser("retry", help="re-enqueue failed jobs")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("job_id", nargs="?", help="id of a failed job (see `pullbridge queue`)")
    which.add_argument("--all-failed", action="store_true", help="every failed job of the chosen queues")
    _queue_option(retry)
    common.add_redis_option(retry, under_verb=True)
    retry.set_defaults(func=cmd_retry)
    purge = verbs.add_parser("purge", help="delete queued jobs (or, with --failed, failed jobs)")
    purge.add_argument("--failed", action="store_true", help="delete the failed jobs instead of the queued ones")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _queue_option(purge)
    common.add_redis_option(purge, under_verb=True)
    purge.set_defaults(func=cmd_purge)


def _queue_option(parser) -> None:
    parser.add_argument("--queue", choices=sorted(QUEUES), action="append",
                        help=f"only this queue (repeatable; default: {', '.join(QUEUES)})")


def _queues(args, conn) -> list:
    from rq import Queue

    names = getattr(args, "queue", None) or list(QUEUES)
    return [Queue(QUEUES[n], connection=conn) for n in names]


def _error_of(job) -> str:
    result = job.latest_result()
    text = (result.exc_string if result is not None and result.exc_string else "") or ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = " ".join(lines[-1].split()) if lines else "(no error recorded)"
    return last if len(last) <= MAX_ERROR else last[: MAX_ERROR - 3] + "..."


def depths(queue) -> dict[str, int]:
    return {"queued": queue.count, "scheduled": queue.scheduled_job_registry.count,
            "started": queue.started_job_registry.count, "failed": queue.failed_job_registry.count,
            "deferred": queue.deferred_job_registry.count}


def failed_jobs(queue) -> list[dict]:
    from rq.job import Job

    out = []
    ids = queue.failed_job_registry.get_job_ids()
    for job_id, job in zip(ids, Job.fetch_many(ids, connection=queue.connection)):
        if job is None:
            continue
        out.append({"id": job_id, "queue": queue.name, "description": job.description or job.func_name,
                    "repo": (job.meta or {}).get("repo"),
                    "ended_at": job.ended_at.isoformat() if job.ended_at else None,
                    "error": _error_of(job)})
    return out


@common.redis_errors
def cmd_show(args) -> int:
    conn = common.connect(args)
    report = {q.name: {"depths": depths(q), "failed_jobs": failed_jobs(q)} for q in _queues(args, conn)}
    if args.json:
        print(common.dumps(report))
        return EXIT_OK
    columns = ("queued", "scheduled", "started", "failed", "deferred")
    width = max(len(name) for name in report)
    print(f"{'QUEUE'.ljust(width)}  " + "  ".join(c.upper() for c in columns))
    for name, data in report.items():
        print(f"{name.ljust(width)}  " + "  ".join(str(data['depths'][c]).rjust(len(c)) for c in columns))
    failed = [job for data in report.values() for job in data["failed_jobs"]]
    if failed:
        print(f"\nfailed jobs ({len(failed)}; `pullbridge queue retry JOB_ID` runs one again):")
        for job in failed:
            print(f"  {job['id']}  {job['ended_at'] or '-'}  {job['description']}\n    {job['error']}")
    return EXIT_OK


@common.redis_errors
def cmd_retry(args) -> int:
    from rq.exceptions import InvalidJobOperation, NoSuchJobError

    conn = common.connect(args)
    queues = _queues(args, conn)
    if args.all_failed:
        targets = [(q, job_id) for q in queues for job_id in q.failed_job_registry.get_job_ids()]
        if not targets:
            print("no failed jobs to retry")
            return EXIT_NEGATIVE
    else:
        owner = [q for q in queues if args.job_id in q.failed_job_registry]
        if not owner:
            raise CommandError(f"no failed job {args.job_id!r} in the "
                               f"{' or '.join(q.name for q in queues)} queue (see `pullbridge queue`)")
        targets = [(owner[0], args.job_id)]
    for queue, job_id in targets:
        try:
            queue.failed_job_registry.requeue(job_id)
        except (InvalidJobOperation, NoSuchJobError):
            print(f"{job_id}: no longer failed or gone; skipped", file=sys.stderr)
            continue
        print(f"re-enqueued {job_id} on {queue.name}")
    return EXIT_OK


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise CommandError(f"{question} needs confirmation: run it again with --yes")
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


@common.redis_errors
def cmd_purge(args) -> int:
    from rq.job import Job

    conn = common.connect(args)
    queues = _queues(args, conn)
    if args.failed:
        targets = [(q, q.failed_job_registry.get_job_ids()) for q in queues]
        what = "failed"
    else:
        targets = [(q, q.get_job_ids()) for q in queues]
        what = "queued"
    total = sum(len(ids) for _, ids in targets)
    if not total:
        print(f"no {what} jobs to purge")
        return EXIT_OK
    listing = ", ".join(f"{len(ids)} on {q.name}" for q, ids in targets if ids)
    if not _confirm(f"delete {total} {what} job{'s' if total != 1 else ''} ({listing})?", args.yes):
        print("nothing purged")
        return EXIT_NEGATIVE
    for queue, ids in targets:
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=conn)):
            if args.failed:
                queue.failed_job_registry.remove(job_id, delete_job=True)
                continue
            repo = ((job.meta if job else None) or {}).get("repo")
            if repo:  # forget the repo's "a sync is queued" marker first, so a new request queues afresh
                conn.eval(_FORGET_MARKER, 1, keys.queued(repo), job_id)
            if job is not None:
                job.delete(remove_from_queue=True)
            else:
                conn.lrem(queue.key, 0, job_id)
    print(f"purged {total} {what} job{'s' if total != 1 else ''} ({listing})")
    return EXIT_OK
