"""`pullbridge images scan REPO`: run an image scan now, or list what it would change.

Why it exists: operators need to see what image automation would commit
(``--dry-run``) and to force a scan without waiting for the interval or a
registry notification, with the same code path the worker runs.  Like the
other verbs it reads Redis from ``--redis-url`` / ``$REDIS_URL`` (default
``redis://127.0.0.1:6379/0``): a write-back needs it to see that the
repository is suspended and to request the sync, so it refuses to run
without it; a dry run then only warns and reads the registries uncached.
"""

from __future__ import annotations

import json
import sys

from pullbridge.commands import common


def register(sub) -> None:
    p = sub.add_parser("images", help="image update automation")
    verbs = p.add_subparsers(dest="images_command", metavar="VERB")
    verbs.required = True
    scan = verbs.add_parser("scan", help="scan a repository's automated images and write back updates")
    scan.add_argument("repo", help="repository name from the configuration")
    common.add_config_option(scan)
    common.add_redis_option(scan)
    scan.add_argument("--dry-run", action="store_true", help="list what would change; commit nothing")
    scan.add_argument("--json", action="store_true", help="print the result as JSON")
    scan.set_defaults(func=cmd_scan)


@common.redis_errors
def cmd_scan(args) -> int:
    from pullbridge.cli import CommandError
    from worker.images.registry import RegistryError
    from worker.images.scan import scan
    from worker.images.writeback import WriteBackError

    config = common.load(args)
    repo = common.repo_named(config, args.repo)
    dry_run = args.dry_run or repo.images.dry_run
    try:
        conn = common.connect(args)
    except CommandError as exc:
        if not dry_run:
            raise CommandError(f"{exc}; a write-back needs Redis (suspension, sync request): "
                               "use --dry-run to only list changes") from None
        print(f"warning: {exc}: suspension not checked, registry reads not cached", file=sys.stderr)
        conn = None
    try:
        result = scan(conn, config, repo, dry_run=True if args.dry_run else None)
    except (WriteBackError, RegistryError) as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    verb = "would change" if result.dry_run else "changed"
    for change in result.changes:
        print(f"{verb}: {change.describe()} ({change.path})")
    for note in result.skipped + result.errors:
        print(f"note: {note}")
    if result.sha:
        print(f"pushed {result.sha[:12]} to {repo.branch}"
              + (f"; sync requested ({result.sync_job})" if result.sync_job else ""))
    elif not result.changes:
        print("nothing to change")
    return 0
