"""`pullbridge suspend NAME` / `pullbridge resume NAME`: stop and restart syncing one repo.

Why: during an incident or a manual migration an operator must keep
Pullbridge's hands off a repo's objects without editing the config or
restarting processes.  While suspended, pushes are still recorded (their
commits wait) but no sync applies them and the periodic job neither syncs
nor corrects drift; resuming queues a sync, which applies the waiting commits
(or the branch head) and corrects drift.  ``resume`` also releases a rollback
hold, but not in the same step as a suspension: a suspended repo held by a
rollback resumes at the held commit, and a second ``resume`` releases the
hold (releasing both at once would apply the branch head the rollback kept
out the moment syncing resumed).
"""

from __future__ import annotations

from pullbridge.commands import common


def register(sub) -> None:
    for verb, helptext, func in (
            ("suspend", "stop syncing and correcting a repository", cmd_suspend),
            ("resume", "sync and correct a suspended repository again, and release a rollback hold",
             cmd_resume)):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument("name", help="repository name from the config")
        common.add_config_option(p)
        common.add_redis_option(p)
        p.add_argument("--by", help="who asks, kept in the repo state (default: your user name)")
        p.set_defaults(func=func)


def _context(args):
    """The config, the named repo and a Redis that answers; exit 2 with a clear message otherwise."""
    config = common.load(args)
    return config, common.repo_named(config, args.name), common.connect(args)


@common.redis_errors
def cmd_suspend(args) -> int:
    from pullbridge import repostate

    from worker.lock import RepoLock, token_owner

    _, repo, conn = _context(args)
    changed = repostate.suspend(conn, repo.name, by=args.by)
    if changed:
        print(f"{repo.name}: suspended. Pushes are recorded but not applied, and drift is not corrected, "
              f"until `pullbridge resume {repo.name}`.")
    else:
        print(f"{repo.name}: already suspended.")
    running = RepoLock(conn, repo.name).holder()
    if running:  # a sync or check looks at the flag only when it starts
        print(f"{repo.name}: job {token_owner(running)} was already running and finishes what it started; "
              f"see `pullbridge history {repo.name}`. Nothing after it touches the repo.")
    return 0


@common.redis_errors
def cmd_resume(args) -> int:
    """Resume a suspended repo, or else release its rollback hold; either way, queue a sync."""
    from pullbridge import repostate
    from pullbridge.queueing import request_sync

    config, repo, conn = _context(args)
    changed = repostate.resume(conn, repo.name, by=args.by)
    # A suspended repo is resumed at its held commit: releasing the hold in the same step would
    # apply the branch head the rollback kept out, as soon as the operator resumed syncing.
    released = None if changed else repostate.clear_hold(conn, repo.name)
    held = repostate.held_sha(repostate.read(conn, repo.name)) if changed else None
    waiting = repostate.waiting_commits(conn, repo.name)
    if not changed and not released:
        print(f"{repo.name}: was neither suspended nor held; nothing to do.")
        return 0
    # Either way a sync catches up: a sync asked for while suspended was skipped with
    # "the commit waits for resume", even when it named no commit (the branch head).
    queued = request_sync(conn, config, repo, None, reason="resume")
    if released:
        print(f"{repo.name}: released the rollback hold at {released[:12]}; the branch head applies again.")
    if changed:
        print(f"{repo.name}: resumed" + (f"; {waiting} waiting commit(s)." if waiting else "."))
    if held:
        print(f"{repo.name}: still held at {held[:12]} by a rollback: syncs apply that commit; "
              f"`pullbridge resume {repo.name}` again releases the hold.")
    print(f"{repo.name}: sync {queued.job_id} {'queued' if queued.new_job else 'already queued'}.")
    return 0
