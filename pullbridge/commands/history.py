"""`pullbridge history NAME [--limit N] [--json]`: what the last syncs of a repository did.

Why: "what did the push at 10:02 change, and why did it fail?" answered from
the sync records the worker keeps in Redis (``worker.history``), newest
first: time, commit, reason, result, counts and error.  A repository held
by a rollback or suspended says so above the table.  Exit 0 (also when no
sync is recorded yet); 2 on error.
"""

from __future__ import annotations


from pullbridge.cli import EXIT_OK, CommandError
from pullbridge.commands import common
from pullbridge.repostate import public, read, state_lines, when

MAX_ERROR = 80


def register(sub) -> None:
    p = sub.add_parser("history", help="the sync history of one repository",
                       **common.help_text(__doc__))
    p.add_argument("name", help="repository name from the configuration")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="show the newest N syncs (default 20)")
    p.add_argument("--json", action="store_true", help="print the state and the sync summaries as JSON")
    common.add_config_option(p)
    common.add_redis_option(p)
    p.set_defaults(func=cmd_history)


def short_counts(counts: dict) -> str:
    if not counts:
        return "-"
    return (f"+{counts.get('created', 0)} ~{counts.get('configured', 0)} -{counts.get('deleted', 0)} "
            f"={counts.get('unchanged', 0)}" + (f" !{counts['skipped']}" if counts.get("skipped") else ""))


def _cut(text: str | None, limit: int = MAX_ERROR) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@common.redis_errors
def cmd_history(args) -> int:
    from worker import history

    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    config = common.load(args)
    repo = common.repo_named(config, args.name)
    conn = common.connect(args)
    state = read(conn, repo.name)
    syncs = history.history(conn, repo.name, args.limit)
    if args.json:
        print(common.dumps({"repo": repo.name, "state": public(state), "syncs": syncs}))
        return EXIT_OK
    for line in state_lines(repo.name, state):
        print(line)
    applied = state.get("applied_sha")
    if applied:
        print(f"applied: {applied[:12]} at {when(state.get('applied_at'))}")
    if not syncs:
        print(f"no syncs recorded for {repo.name}")
        return EXIT_OK
    rows = [("TIME", "SHA", "REASON", "RESULT", "+NEW ~CHG -DEL =SAME", "ERROR")]
    for s in syncs:
        result = s.get("result") or "?"
        if s.get("dry_run"):
            result += " (dry run)"
        rows.append((when(s.get("finished_at") or s.get("started_at")), (s.get("sha") or "-")[:12],
                     s.get("reason") or "-", result, short_counts(s.get("counts") or {}),
                     _cut(s.get("error"))))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for i, row in enumerate(rows):
        print(("  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths)) + "  " + row[5]).rstrip())
        notes = syncs[i - 1].get("notes") if i else None
        for note in notes or []:
            print(f"    note: {_cut(note, 120)}")
    return EXIT_OK
