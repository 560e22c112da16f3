"""`pullbridge diff NAME`: what a sync of the branch head would change, without changing it.

Why: like ``flux diff``, an operator (or CI) wants to see what a commit
would do to the cluster before it is applied, and a script wants a yes/no.
It runs the worker's own steps in dry-run: fetch the branch with the
worker's ``Mirror``, render, the ``Applier`` in dry-run-only mode (the API
server's server-side dry-run decides created / configured / unchanged), and
a prune preview from the in-cluster inventory.  Configured objects get a
short field diff (live -> after apply).  Exit 0: no difference; 1:
differences; 2: error.
"""

from __future__ import annotations

import json
import sys

from pullbridge.cli import EXIT_NEGATIVE, EXIT_OK, CommandError
from pullbridge.commands import common

MAX_FIELDS = 8
MAX_VALUE = 60
SIGNS = {"created": "+", "configured": "~", "deleted": "-", "skipped": "!", "unchanged": "="}
# Server-populated or bookkeeping fields a field diff would only add noise with.
NOISY_PATHS = ("metadata.annotations.deployment.kubernetes.io/revision",)


def register(sub) -> None:
    p = sub.add_parser("diff", help="dry-run the branch head against the cluster (exit 1: differences)",
                       **common.help_text(__doc__))
    p.add_argument("name", help="repository name from the configuration")
    p.add_argument("--sha", help="diff this commit of the branch instead of its head")
    p.add_argument("--json", action="store_true", help="print the changes as JSON")
    common.add_config_option(p)
    common.add_redis_option(p)
    p.set_defaults(func=cmd_diff)


def diff_applier(**kwargs):
    """The worker's Applier in dry-run-only mode, keeping each dry-run answer (live object,
    object after apply) so configured objects can show a field diff.  Built on first use so
    ``pullbridge --help`` does not import the Kubernetes client."""
    from worker.apply import Applier

    class DiffApplier(Applier):
        def __init__(self, **kw):
            super().__init__(**kw, dry_run_only=True)
            self.dry_runs: dict[str, tuple[dict | None, dict | None]] = {}

        def _apply_request(self, item, dry_run: bool, read_answer: bool):
            result = super()._apply_request(item, dry_run, read_answer)
            if dry_run:
                self.dry_runs[item.ref] = (item.live, result)
            return result

    return DiffApplier(**kwargs)


def flatten(value, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": [1]}}`` -> ``{"a.b[0]": 1}`` (empty dicts and lists kept as leaves)."""
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _show(value) -> str:
    if value is _MISSING:
        return "(unset)"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


_MISSING = object()


def field_diff(live: dict | None, after: dict | None) -> list[str]:
    """Short ``path: old -> new`` lines between the live object and the dry-run result.

    A Secret shows only which fields change: its values (and annotations
    that may copy them) never reach the terminal or a CI log.
    """
    from worker.apply_diff import normalized

    if not live or not after:
        return []
    before, later = flatten(normalized(live)), flatten(normalized(after))
    secret = "Secret" in (live.get("kind"), after.get("kind"))
    lines = []
    for path in sorted(set(before) | set(later)):
        if path.startswith(NOISY_PATHS):
            continue
        old, new = before.get(path, _MISSING), later.get(path, _MISSING)
        if old == new:
            continue
        if secret:  # never print a Secret's values, only which fields change
            lines.append(f"{path}: {'set' if old is _MISSING else 'removed' if new is _MISSING else 'changed'}"
                         " (Secret: value hidden)")
        else:
            lines.append(f"{path}: {_show(old)} -> {_show(new)}")
    return lines


@common.sync_errors("diff")
def compute(config, repo, sha: str | None) -> dict:
    """Fetch, render, dry-run, preview prune.  Returns the head sha and each object's change."""
    from worker import inventory
    from worker.fetch import Mirror
    from worker.kube import process_kube
    from worker.prune import check_allowed, prune
    from worker.render import render

    mirror = Mirror(repo, config=config)  # its ssh: section, not only $PULLBRIDGE_CONFIG's
    head = mirror.fetch()
    target = head
    if sha:
        target = common.resolve_on_branch(mirror, sha, head)
    manifests = render(mirror.checkout(target), repo.path)
    check_allowed(len(manifests), repo.allow_empty)
    kube = process_kube()
    inv_ns = config.worker.inventory_namespace
    previous = inventory.load(kube, inv_ns, repo.name)
    applier = diff_applier(kube=kube, concurrency=config.repo_jobs(repo).concurrency, previous=previous,
                           default_namespace=repo.namespace or config.worker.default_namespace)
    applied = applier.run(manifests)
    pruned = prune(kube, previous, applied.entries, dry_run_only=True,
                   declared_elsewhere=lambda: inventory.declared_elsewhere(kube, inv_ns, repo.name),
                   inventory_id=inventory.own_id(inv_ns, repo.name))
    changes = []
    for change in applied.changes + pruned.changes:
        entry = change.as_dict()
        if change.action == "configured":
            live, after = applier.dry_runs.get(change.ref, (None, None))
            entry["fields"] = field_diff(live, after)
        changes.append(entry)
    return {"repo": repo.name, "branch": repo.branch, "sha": target, "head": head, "changes": changes}


def _state_lines(args, repo) -> list[str]:
    """Held/suspended notes; diff itself does not need Redis, so an unreachable one is only a warning."""
    from pullbridge.repostate import read, state_lines

    try:
        conn = common.connect(args)
        return state_lines(repo.name, read(conn, repo.name))
    except CommandError as exc:
        return [f"warning: repository state not shown: {exc}"]
    except Exception as exc:  # noqa: BLE001 - Redis failing mid-read: still only a warning
        return [f"warning: repository state not shown: {type(exc).__name__}"]


def cmd_diff(args) -> int:
    config = common.load(args)
    repo = common.repo_named(config, args.name)
    for line in _state_lines(args, repo):
        print(line, file=sys.stderr)
    result = compute(config, repo, args.sha)
    differences = [c for c in result["changes"] if c["action"] in ("created", "configured", "deleted")]
    if args.json:
        print(common.dumps({**result, "differences": len(differences)}))
        return EXIT_NEGATIVE if differences else EXIT_OK
    at = "head" if result["sha"] == result["head"] else "commit"
    print(f"{repo.name}: branch {repo.branch} {at} {result['sha'][:12]} against the cluster")
    for change in result["changes"]:
        if change["action"] == "unchanged":
            continue
        source = change.get("source") or change.get("detail") or ""
        print(f"{SIGNS.get(change['action'], '?')} {change['object']} {change['action']}"
              f"{f'  ({source})' if source else ''}")
        fields = change.get("fields")
        if change["action"] == "configured":
            if not fields:
                print("    (no field changes: pullbridge would take over field ownership)")
            for line in (fields or [])[:MAX_FIELDS]:
                print(f"    {line}")
            if fields and len(fields) > MAX_FIELDS:
                print(f"    ... and {len(fields) - MAX_FIELDS} more fields")
    counts = {a: sum(1 for c in result["changes"] if c["action"] == a)
              for a in ("created", "configured", "deleted", "unchanged", "skipped")}
    print(f"{len(differences) or 'no'} difference{'s' if len(differences) != 1 else ''}: "
          f"{common.counts_text(counts)}")
    return EXIT_NEGATIVE if differences else EXIT_OK


