"""Delete what Git no longer declares, and nothing else.

Why it exists: removing a file from Git must remove its objects, but a
broken render must never wipe a cluster.  Prune works only from the
in-cluster inventory of the last apply and runs only after a successful
apply.  It refuses when the commit rendered no objects (unless the repo sets
``allow_empty``), keeps objects annotated ``pullbridge.io/prune: disabled``
(they leave the inventory: Pullbridge lets go of them), keeps objects another
repo's inventory still lists (they leave this repo's inventory: the other
repo keeps them), and objects already gone are dropped from the inventory.
While another repo's inventory cannot be read, nothing is pruned (any stale
object may be that repo's): all of it is kept, saying why, to be pruned later.
An object whose apiVersion is no longer served (a CRD's version dropped, a
built-in one a cluster upgrade removed) is read and deleted through another
version of its group: it is the same object.  One deleted (by prune or before)
that waits for finalizers says which in its change: it stays, terminating,
until they finish.
Namespaces and CRDs go last, and not at all while they hold an object that
stays (deleting a Namespace deletes everything in it, a CRD all its
objects): one this commit still declares, another repo declares, or one
annotated as kept, be it one this sync skips or one an earlier sync let go
of (what the Namespace or CRD holds is looked through, metadata only, when
nothing the sync knows holds it).  Such a Namespace or CRD stays in the
inventory, to be pruned once it is empty, unless an annotated object holds
it: Pullbridge lets go of both then, as it does of the annotated object.  The
Namespace holding the inventories (Pullbridge's own, when Git declares it) is
let go of in the same way, never deleted: it would take every repo's record of
what to prune with it.  One
whose contents cannot all be read (a group-version whose discovery fails, as
an aggregated API's does while its server is down; a kind that cannot be
listed, forbidden or unavailable) is kept as well, naming what could not be
read, and stays in the inventory to be looked through again on the next sync:
prune never deletes what it could not inspect, nor fails the sync for it.  A
deleted CRD's group leaves the worker's discovery cache, so that a later
commit declaring the CRD again creates it before its objects.  As apply
does, prune deletes nothing more once the repo lock is lost (``LockLost``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from worker.apply import Change, crd_kind, crd_namespaced
from worker.errors import PermanentError, cut
from worker.inventory import CorruptInventory, parse_id
from worker.kube import ApiError, Kube, Mapping, split_api_version, sync_error
from worker.lock import RepoLock
from worker.render import STAGE_ONE_KINDS, kind_rank, object_ref

PRUNE_ANNOTATION = "pullbridge.io/prune"
PRUNE_DISABLED = "disabled"
KEPT = f"{PRUNE_ANNOTATION}: {PRUNE_DISABLED}"  # why an annotated object stays, as changes show it
INVENTORY = "Pullbridge's inventory"  # why the inventory ConfigMap stays, as changes show it
CRD = ("apiextensions.k8s.io", "CustomResourceDefinition")


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
          declared_elsewhere: Callable[[], dict[str, list[str]]] | None = None,
          inventory_id: str | None = None, result: PruneResult | None = None,
          lock: RepoLock | None = None) -> PruneResult:
    """Delete objects in ``previous`` but not in ``desired``.

    ``declared_elsewhere`` (called only when something is stale): object id ->
    the other repos that declare it; those objects are left to them.
    ``inventory_id``: this repo's inventory ConfigMap, which stays: its
    Namespace holds every repo's inventory and is let go of, never deleted.
    ``result``: filled as prune goes, so that one that fails part way still
    says what it deleted.  ``lock``: the repo lock, checked before each delete (no Redis request).
    """
    result = PruneResult() if result is None else result
    stale = stale_entries(previous, desired)
    order = sorted(stale, key=lambda oid: (parse_id(oid)[3] in STAGE_ONE_KINDS, -kind_rank(parse_id(oid)[3]), oid))
    try:
        elsewhere = declared_elsewhere() if stale and declared_elsewhere is not None else {}
    except CorruptInventory as exc:  # any stale object may be the other repo's: none is deleted
        for oid in order:
            namespace, name, _, kind = parse_id(oid)
            result.changes.append(Change(object_ref(kind, namespace, name), "skipped",
                                         detail=f"another repo's inventory cannot be read: {exc}"))
        result.kept = dict(stale)
        return result
    staying = Staying(kube, desired, elsewhere)
    if inventory_id is not None:
        staying.add(inventory_id, INVENTORY, let_go=True)
    for oid in order:
        namespace, name, group, kind = parse_id(oid)
        ref = object_ref(kind, namespace, name)
        if oid in elsewhere:
            result.changes.append(Change(ref, "skipped", detail="still declared by "
                                         + ", ".join(sorted(elsewhere[oid])) + ": left to it"))
            staying.add(oid, "still declared by " + ", ".join(sorted(elsewhere[oid])))
            continue
        api_version = stale[oid].get("v") or ""
        try:
            mapping, live = read_stale(kube, api_version, kind, namespace, name)
            if mapping is None:
                result.changes.append(Change(ref, "skipped", detail="kind no longer served"))
                continue
            if live is None:
                continue  # already gone
            path = mapping.path(namespace, name)
            if kept_by_annotation(live.get("metadata") or {}):
                result.changes.append(Change(ref, "skipped", detail=KEPT))
                staying.add(oid, KEPT, let_go=True)
                continue
            if (live.get("metadata") or {}).get("deletionTimestamp"):
                result.changes.append(Change(ref, "deleted", detail="; ".join(
                    ["already terminating", *waiting_for_finalizers(live)])))
                continue
            try:
                held = staying.holding(kind, group, live)
            except NotLookedThrough as exc:  # it may hold what must stay: kept, and looked through again
                result.changes.append(Change(ref, "skipped", detail=str(exc)))
                result.kept[oid] = stale[oid]
                continue
            if held is not None:
                held_ref, why, let_go = held
                result.changes.append(Change(ref, "skipped", detail=f"holds objects that stay: {held_ref} ({why})"))
                if not let_go:
                    result.kept[oid] = stale[oid]  # pruned once nothing in it stays
                continue
            if not dry_run_only:
                if lock is not None:
                    lock.check()
                kube.delete(path, live=live)
                if (group, kind) == CRD:  # its kind goes with it: the worker's discovery must not keep it
                    kube.forget(crd_kind(live)[0])
            result.changes.append(Change(ref, "deleted", detail="".join(waiting_for_finalizers(live))))
        except ApiError as exc:
            if exc.status == 404:
                continue
            raise sync_error(exc, f"pruning {ref}") from None
    if dry_run_only:
        result.kept = dict(stale)
    return result


def waiting_for_finalizers(live: dict) -> list[str]:
    """What a deleted object still waits for, as its change says it: it stays, terminating, until
    its finalizers' controllers finish (forever, if none runs); [] when it has none."""
    finalizers = (live.get("metadata") or {}).get("finalizers") or []
    return [f"waiting for finalizers: {', '.join(finalizers)}"] if finalizers else []


def read_stale(kube: Kube, api_version: str, kind: str, namespace: str | None,
               name: str) -> tuple[Mapping | None, dict | None]:
    """Where a stale object's kind is served (None: nowhere), and the object as it is (None: gone).

    In the apiVersion it was applied in, else in another version of its group:
    a CRD's version dropped since, or a built-in one a cluster upgrade removed,
    names an object that the group's other versions still serve.  A 404 about
    the kind rather than the object (discovery was stale: the Kube forgot the
    group) looks the kind up again.
    """
    mapping = served_mapping(kube, api_version, kind)
    live = kube.get(mapping.path(namespace, name)) if mapping else None
    if mapping is not None and live is None:
        again = served_mapping(kube, api_version, kind)
        if again is not None and again != mapping:
            mapping, live = again, kube.get(again.path(namespace, name))
    return mapping, live


def served_mapping(kube: Kube, api_version: str, kind: str) -> Mapping | None:
    """``kind`` in ``api_version``, else in another version of its group that serves it (the
    group's preferred version first); None when no version does."""
    mapping = kube.mapping(api_version, kind)
    if mapping is not None:
        return mapping
    group, version = split_api_version(api_version)
    if group:
        served = kube.get(f"/apis/{group}") or {}
        versions = [v.get("version") for v in [served.get("preferredVersion") or {}, *served.get("versions", [])]]
    else:
        versions = (kube.get("/api") or {}).get("versions") or []
    for other in dict.fromkeys(v for v in versions if v and v != version):
        mapping = kube.mapping(f"{group}/{other}" if group else other, kind)
        if mapping is not None:
            return mapping
    return None


class NotLookedThrough(Exception):
    """Not all that a Namespace or CRD holds could be read (a group-version whose discovery failed,
    a kind that could not be listed): the message says what, and why."""

    def __init__(self, failures: dict[str, ApiError]):
        super().__init__("could not look through " + "; ".join(
            f"{what}: HTTP {exc.status}: {cut(exc.detail)}" for what, exc in failures.items()))


def kept_by_annotation(metadata: dict) -> bool:
    return (metadata.get("annotations") or {}).get(PRUNE_ANNOTATION) == PRUNE_DISABLED


def custom_objects(crd: dict) -> Mapping | None:
    """Where the objects of a live CustomResourceDefinition are read; None when it serves no version."""
    spec = crd.get("spec") or {}
    served = [v.get("name") for v in spec.get("versions") or [] if v.get("served")]
    if not served:
        return None
    group, kind = crd_kind(crd)
    return Mapping(group, served[0], kind, (spec.get("names") or {}).get("plural"), crd_namespaced(crd) is True)


class Staying:
    """What a stale Namespace or CRD would take with it: the objects that stay.

    First what the sync knows: the ids this commit declares and those other
    repos declare, read only once a Namespace or CRD is stale, and the stale
    objects prune skips, added as it goes (before any Namespace or CRD: those
    come last).  An annotated object (or the inventory) is named first, as it
    decides that Pullbridge lets go.  When none of those holds it, what the
    Namespace or CRD holds in the cluster is looked through for an annotated object, one
    an earlier sync let go of: every namespaced kind in the Namespace (kinds
    discovered once per prune), every object of the CRD.  NotLookedThrough
    when not all of it could be read.
    """

    def __init__(self, kube: Kube, desired: dict[str, dict], elsewhere: dict[str, list[str]]):
        self._kube = kube
        self._namespaced_kinds: tuple[list[Mapping], dict[str, ApiError]] | None = None
        self._declared = (desired, elsewhere)
        self._indexed = False
        self._by_namespace: dict[str, tuple[str, str, bool]] = {}
        self._by_kind: dict[tuple[str, str], tuple[str, str, bool]] = {}

    def add(self, oid: str, why: str, let_go: bool = False) -> None:
        """``oid`` stays, for ``why``; ``let_go``: what holds it is let go of, as it is (an
        annotated object, Pullbridge's inventory), not kept to be pruned once it is empty."""
        try:
            namespace, name, group, kind = parse_id(oid)
        except PermanentError:
            return  # an id this version cannot read: it cannot name what holds it either
        held = (object_ref(kind, namespace, name), why, let_go)
        for index, key in ((self._by_namespace, namespace), (self._by_kind, (group, kind))):
            if key and (key not in index or let_go and not index[key][2]):
                index[key] = held

    def holding(self, kind: str, group: str, live: dict) -> tuple[str, str, bool] | None:
        """(ref, why it stays, let go) of one object that keeps this one, or None; NotLookedThrough
        when none is known and what it holds could not all be read."""
        if (group, kind) == ("", "Namespace"):
            key, index = live["metadata"]["name"], self._by_namespace
        elif (group, kind) == CRD:
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
        return index.get(key) or self._annotated_in(kind, live)

    def _annotated_in(self, kind: str, live: dict) -> tuple[str, str, bool] | None:
        """The first object in the Namespace (or of the CRD) ``live`` annotated as kept, or None."""
        if kind == "Namespace":
            if self._namespaced_kinds is None:
                self._namespaced_kinds = self._kube.namespaced_kinds()
            kinds, undiscovered = self._namespaced_kinds
            if undiscovered:
                raise NotLookedThrough(undiscovered)
            found = [(m, m.collection(live["metadata"]["name"])) for m in kinds]
        else:
            mapping = custom_objects(live)
            found = [(mapping, mapping.collection(None))] if mapping else []
        for mapping, collection in found:
            try:
                for meta in self._kube.list_metadata(collection):
                    if kept_by_annotation(meta):
                        return object_ref(mapping.kind, meta.get("namespace"), meta.get("name")), KEPT, True
            except ApiError as exc:
                if exc.status != 404:  # 404: the kind went away since it was discovered
                    raise NotLookedThrough({f"kind {mapping.kind} in {mapping.api_version}": exc}) from None
        return None
