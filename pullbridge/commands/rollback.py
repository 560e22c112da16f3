"""`pullbridge rollback NAME SHA`: apply an older commit and hold the repository there.

Why: when a bad commit reached the cluster, the operator needs the last good
state back now, and it must stay back while the fix is written: pushes,
periodic syncs and drift correction all keep applying the held commit.
The commit must be on the tracked branch (the branch is fetched first to
check).  The hold is the repo state field ``held_sha``
(``pullbridge.repostate``), honoured by the worker's ``Mirror.choose``; it
lasts until ``pullbridge resume NAME``.  Exit 0: held and the rollback sync
queued (with --wait: applied); 2: error, or with --wait the sync failed.
"""

from __future__ import annotations

import sys

from pullbridge.cli import EXIT_ERROR, EXIT_OK, CommandError
from pullbridge.commands import common
from pullbridge.repostate import hold, hold_line, is_suspended, read


def register(sub) -> None:
    p = sub.add_parser("rollback", help="apply an older commit and hold the repository there until resume",
                       **common.help_text(__doc__))
    p.add_argument("name", help="repository name from the configuration")
    p.add_argument("sha", help="commit on the tracked branch (full or abbreviated sha)")
    p.add_argument("--wait", action="store_true", help="wait for the rollback sync and print its change set")
    p.add_argument("--timeout", type=float, metavar="S", help="with --wait: give up waiting after S seconds")
    common.add_config_option(p)
    common.add_redis_option(p)
    p.set_defaults(func=cmd_rollback)


@common.redis_errors
def cmd_rollback(args) -> int:
    from pullbridge.queueing import request_sync

    if args.timeout is not None and args.timeout <= 0:
        raise CommandError("--timeout must be positive")
    config = common.load(args)
    repo = common.repo_named(config, args.name)
    conn = common.connect(args)
    state = read(conn, repo.name)
    if is_suspended(state):
        raise CommandError(f"{repo.name} is suspended: no sync would apply the rollback; "
                           f"`pullbridge resume {repo.name}` first")
    sha = common.commit_on_branch(config, repo, args.sha, "rollback")
    if repo.mode == "report":
        print(f"note: {repo.name} is in report mode: the rollback sync only dry-runs", file=sys.stderr)
    previous = state.get("held_sha")
    if previous and previous != sha:
        print(f"note: {repo.name} was held at {previous[:12]}; the hold moves to {sha[:12]}", file=sys.stderr)
    hold(conn, repo.name, sha, by="rollback")
    request = request_sync(conn, config, repo, sha, reason="rollback")
    print(hold_line(repo.name, read(conn, repo.name)))
    print(f"rollback sync {'queued as' if request.new_job else 'joins queued'} job {request.job_id}")
    if not args.wait:
        return EXIT_OK
    print(f"waiting for sync job {request.job_id} ...", file=sys.stderr)
    record = common.wait_for_sync(conn, request.job_id, repo.name, args.timeout)
    common.print_record(record, sys.stdout)
    if record.get("result") != "success" or record.get("sha") != sha:
        print(f"pullbridge: the rollback to {sha[:12]} was not applied; {_hold_now(conn, repo.name, sha)}",
              file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _hold_now(conn, repo_name: str, sha: str) -> str:
    """Where the repo is held now: a suspend, another rollback or a resume may have come meanwhile."""
    now = read(conn, repo_name)
    held = now.get("held_sha")
    if held == sha and is_suspended(now):  # resuming it keeps the hold: the rollback applies then
        return (f"{repo_name} was suspended meanwhile; it stays held there, and `pullbridge resume {repo_name}` "
                f"resumes it at that commit")
    if held == sha:
        return f"{repo_name} stays held there (`pullbridge resume {repo_name}` releases it)"
    if held:
        return f"another rollback moved the hold meanwhile: {hold_line(repo_name, now)}"
    return f"the hold was released meanwhile (`pullbridge resume {repo_name}`): the branch head applies"
