"""`pullbridge suspend NAME` / `pullbridge resume NAME`: stop and restart syncing one repo.

Why: during an incident or a manual migration an operator must keep
Pullbridge's hands off a repo's objects without editing the config or
restarting processes.  While suspended, pushes are still recorded (their
commits wait) but no sync applies them and the periodic job neither syncs
nor corrects drift; resuming queues a sync when commits are waiting.
"""

from __future__ import annotations

import os

from pullbridge.cli import CommandError
from pullbridge.config import CONFIG_ENV, ConfigError, load_config


def register(sub) -> None:
    for verb, helptext, func in (
            ("suspend", "stop syncing and correcting a repository", cmd_suspend),
            ("resume", "sync and correct a suspended repository again, and release a rollback hold",
             cmd_resume)):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument("name", help="repository name from the config")
        p.add_argument("--config", help=f"YAML file (default: ${CONFIG_ENV})")
        p.add_argument("--by", help="who asks, kept in the repo state (default: your user name)")
        p.set_defaults(func=func)


def _context(args):
    from redis import Redis

    try:
        config = load_config(args.config or os.environ.get(CONFIG_ENV))
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    repo = config.repo(args.name)
    if repo is None:
        known = ", ".join(r.name for r in config.repos) or "none"
        raise CommandError(f"no repository named {args.name!r} in the configuration (known: {known})")
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    return config, repo, Redis.from_url(url)


def cmd_suspend(args) -> int:
    from redis.exceptions import RedisError

    from pullbridge import repostate

    _, repo, conn = _context(args)
    try:
        changed = repostate.suspend(conn, repo.name, by=args.by)
    except RedisError as exc:
        raise CommandError(f"cannot reach Redis: {exc}") from None
    if changed:
        print(f"{repo.name}: suspended. Pushes are recorded but not applied, and drift is not corrected, "
              f"until `pullbridge resume {repo.name}`.")
    else:
        print(f"{repo.name}: already suspended.")
    return 0


def cmd_resume(args) -> int:
    """Resume a suspended repo and release a rollback hold; either way, queue a sync if needed."""
    from redis.exceptions import RedisError

    from pullbridge import repostate
    from pullbridge.queueing import request_sync

    config, repo, conn = _context(args)
    try:
        changed = repostate.resume(conn, repo.name, by=args.by)
        released = repostate.clear_hold(conn, repo.name)
        waiting = repostate.waiting_commits(conn, repo.name)
        wants_sync = released or (changed and waiting)
        queued = request_sync(conn, config, repo, None, reason="resume") if wants_sync else None
    except RedisError as exc:
        raise CommandError(f"cannot reach Redis: {exc}") from None
    if not changed and not released:
        print(f"{repo.name}: was neither suspended nor held; nothing to do.")
        return 0
    if released:
        print(f"{repo.name}: released the rollback hold at {released[:12]}; the branch head applies again.")
    if changed:
        print(f"{repo.name}: resumed" + (f"; {waiting} waiting commit(s)." if waiting else "."))
    if queued:
        print(f"{repo.name}: sync {queued.job_id} queued.")
    else:
        print(f"{repo.name}: the next push or periodic check syncs it.")
    return 0
