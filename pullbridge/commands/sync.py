"""`pullbridge sync NAME [--sha SHA] [--wait]`: ask for a sync now, optionally wait for it.

Why: an operator (or a script after a manual push) wants the cluster caught
up without waiting for the next webhook or periodic run.  The request goes
through the same coalescing path as the webhook (``request_sync``), so it
never adds a second queued job for a repo.  A ``--sha`` (full or abbreviated)
must be on the tracked branch, fetched first to check, or nothing is queued.
With ``--wait`` it follows that job, even when a busy worker hands it over to
a fresh one, and prints the sync's change set.  Exit 0: queued (or, with
--wait, synced); 2: --sha is not on the branch, the sync failed or was
skipped because the repo is suspended, --sha was not applied because a
rollback holds the repo at another commit, the wait timed out, or the
request could not be made.
"""

from __future__ import annotations

import sys

from pullbridge.cli import EXIT_ERROR, EXIT_OK, CommandError
from pullbridge.commands import common
from pullbridge.repostate import held_sha, read, state_lines


def register(sub) -> None:
    p = sub.add_parser("sync", help="queue a sync of one repository now (optionally wait for it)",
                       **common.help_text(__doc__))
    p.add_argument("name", help="repository name from the configuration")
    p.add_argument("--sha", help="commit on the tracked branch to sync, full or abbreviated "
                                  "(checked by fetching the branch first; default: the branch head)")
    p.add_argument("--wait", action="store_true", help="wait for the sync and print its change set")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="with --wait: give up waiting after S seconds (exit 2; the sync goes on)")
    common.add_config_option(p)
    common.add_redis_option(p)
    p.set_defaults(func=cmd_sync)


@common.redis_errors
def cmd_sync(args) -> int:
    from pullbridge.queueing import request_sync

    if args.timeout is not None and args.timeout <= 0:
        raise CommandError("--timeout must be positive")
    config = common.load(args)
    repo = common.repo_named(config, args.name)
    conn = common.connect(args)
    # a commit the worker would not apply is refused here: queued, it would sync the branch head
    sha = common.commit_on_branch(config, repo, args.sha, "sync") if args.sha else None
    state = read(conn, repo.name)
    for line in state_lines(repo.name, state):
        print(line, file=sys.stderr)
    request = request_sync(conn, config, repo, sha, reason="cli")
    what = f"commit {sha[:12]}" if sha else f"the head of branch {repo.branch}"
    held = held_sha(state)
    if held and held != sha:  # Mirror.choose applies the held commit whatever is asked
        what = f"the held commit {held[:12]}, not {what}"
    if request.new_job:
        print(f"queued sync job {request.job_id} for {repo.name} ({what})")
    else:
        print(f"a sync of {repo.name} is already queued (job {request.job_id}); it will apply {what}")
    if not args.wait:
        return EXIT_OK
    print(f"waiting for sync job {request.job_id} ...", file=sys.stderr)
    record = common.wait_for_sync(conn, request.job_id, repo.name, args.timeout)
    common.print_record(record, sys.stdout)
    if record.get("result") not in ("success", "skipped"):
        return EXIT_ERROR
    if any(n.startswith("skipped: suspended") for n in record.get("notes") or []):
        print(f"pullbridge: {repo.name} is suspended: nothing was applied "
              f"(the commit waits for `pullbridge resume {repo.name}`)", file=sys.stderr)
        return EXIT_ERROR
    if sha and any(n.startswith(f"{sha[:12]} is not on branch") for n in record.get("notes") or []):
        print(f"pullbridge: commit {sha[:12]} is not on branch {repo.branch}; it was not applied",
              file=sys.stderr)
        return EXIT_ERROR
    held = record.get("sha") or ""
    if sha and held != sha and any(n.startswith("held at ") for n in record.get("notes") or []):
        print(f"pullbridge: commit {sha[:12]} was not applied: {repo.name} is held at {held[:12]} by a "
              f"rollback, which the sync applied instead (`pullbridge resume {repo.name}` releases it)",
              file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK
