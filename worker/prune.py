"""Delete what Git no longer declares, and nothing else.

Why it exists: removing a file from Git must remove its objects, but a
broken render must never wipe a cluster.  Prune works only from the
in-cluster inventory of the last apply and runs only after a successful
apply.  It refuses when the commit rendered no objects (unless the repo sets
``allow_empty``), keeps objects annotated ``pullbridge.io/prune: disabled``
(they leave the inventory: Pullbridge lets go of them), keeps objects another
repo's inventory still lists (they leave this repo's inventory: the other
repo keeps them), and objects already gone are dropped from the inventory.
Namespaces and CRDs go last, and not at all while they hold an object that
stays (deleting a Namespace deletes everything in it, a CRD all its
objects): one this commit still declares, another repo declares, or one
annotated as kept.  Such a Namespace or CRD stays in the inventory, to be
pruned once it is empty, unless an annotated object holds it: Pullbridge
lets go of both then, as it no longer sees the annotated object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from worker.apply import Change, crd_kind
from worker.errors import PermanentError
from worker.inventory import parse_id
from worker.kube import ApiError, Kube, sync_error
from worker.render import STAGE_ONE_KINDS, kind_rank

PRUNE_ANNOTATION = "pullbridge.io/prune"
PRUNE_DISABLED = "disabled"


@dataclass
class PruneResult:
    changes: list[Change] = field(default_factory=list)
    kept: dict[str, dict] = field(default_factory=dict)  # stale entries still to be tracked


def stale_entries(previous: dict[str, dict], desired: dict[str, dict]) -> dict[str, dict]:
    return {oid: entry for oid, entry in previous.items() if oid not in desired}


def check_allowed(rendered: int, allow_empty: bool) -> None:
    if rendered == 0 and not allow_empty:
        raise PermanentError("the commit renders no objects; refusing to prune everything "
                             "(set allow_empty: true for this repo to allow it)")


def prune(kube: Kube, previous: dict[str, dict], desired: dict[str, dict], *,
          dry_run_only: bool = False,
          declared_elsewhere: Callable[[], dict[str, list[str]]] | None = None) -> PruneResult:
    """Delete objects in ``previous`` but not in ``desired``.

    ``declared_elsewhere`` (called only when something is stale): object id ->
    the other repos that declare it; those objects are left to them.
    """
    result = PruneResult()
    stale = stale_entries(previous, desired)
    elsewhere = declared_elsewhere() if stale and declared_elsewhere is not None else {}
    order = sorted(stale, key=lambda oid: (parse_id(oid)[3] in STAGE_ONE_KINDS, -kind_rank(parse_id(oid)[3]), oid))
    staying = Staying(desired, elsewhere)
    for oid in order:
        namespace, name, group, kind = parse_id(oid)
        ref = f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
        if oid in elsewhere:
            result.changes.append(Change(ref, "skipped", detail="still declared by "
                                         + ", ".join(sorted(elsewhere[oid])) + ": left to it"))
            staying.add(oid, "still declared by " + ", ".join(sorted(elsewhere[oid])))
            continue
        api_version = stale[oid].get("v") or ""
        try:
            mapping = kube.mapping(api_version, kind)
            if mapping is None:
                result.changes.append(Change(ref, "skipped", detail="kind no longer served"))
                continue
            path = mapping.path(namespace, name)
            live = kube.get(path)
            if live is None:
                continue  # already gone
            annotations = (live.get("metadata") or {}).get("annotations") or {}
            if annotations.get(PRUNE_ANNOTATION) == PRUNE_DISABLED:
                result.changes.append(Change(ref, "skipped", detail=f"{PRUNE_ANNOTATION}: {PRUNE_DISABLED}"))
                staying.add(oid, f"{PRUNE_ANNOTATION}: {PRUNE_DISABLED}", annotated=True)
                continue
            if (live.get("metadata") or {}).get("deletionTimestamp"):
                result.changes.append(Change(ref, "deleted", detail="already terminating"))
                continue
            held = staying.holding(kind, group, live)
            if held is not None:
                held_ref, why, annotated = held
                result.changes.append(Change(ref, "skipped", detail=f"holds objects that stay: {held_ref} ({why})"))
                if not annotated:
                    result.kept[oid] = stale[oid]  # pruned once nothing in it stays
                continue
            if not dry_run_only:
                kube.delete(path)
            result.changes.append(Change(ref, "deleted"))
        except ApiError as exc:
            if exc.status == 404:
                continue
            raise sync_error(exc, f"pruning {ref}") from None
    if dry_run_only:
        result.kept = dict(stale)
    return result


class Staying:
    """What a stale Namespace or CRD would take with it: the objects that stay.

    The ids this commit declares and those other repos declare are read only
    once a Namespace or CRD is stale; the stale objects prune skips are added
    as it goes (before any Namespace or CRD: those come last).  An annotated
    object is named first, as it decides that Pullbridge lets go.
    """

    def __init__(self, desired: dict[str, dict], elsewhere: dict[str, list[str]]):
        self._declared = (desired, elsewhere)
        self._indexed = False
        self._by_namespace: dict[str, tuple[str, str, bool]] = {}
        self._by_kind: dict[tuple[str, str], tuple[str, str, bool]] = {}

    def add(self, oid: str, why: str, annotated: bool = False) -> None:
        try:
            namespace, name, group, kind = parse_id(oid)
        except PermanentError:
            return  # an id this version cannot read: it cannot name what holds it either
        held = (f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}", why, annotated)
        for index, key in ((self._by_namespace, namespace), (self._by_kind, (group, kind))):
            if key and (key not in index or annotated and not index[key][2]):
                index[key] = held

    def holding(self, kind: str, group: str, live: dict) -> tuple[str, str, bool] | None:
        """(ref, why it stays, annotated) of one object that keeps this one, or None."""
        if (group, kind) == ("", "Namespace"):
            key, index = live["metadata"]["name"], self._by_namespace
        elif (group, kind) == ("apiextensions.k8s.io", "CustomResourceDefinition"):
            key, index = crd_kind(live), self._by_kind
        else:
            return None
        if not self._indexed:
            self._indexed = True
            desired, elsewhere = self._declared
            for oid in desired:
                self.add(oid, "still declared")
            for oid, repos in elsewhere.items():
                self.add(oid, "still declared by " + ", ".join(sorted(repos)))
        return index.get(key)
