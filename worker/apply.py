"""Validate then server-side apply a rendered commit, writing only what drifted.

Why it exists: this is where Git meets the cluster, and it must be all or
nothing and cheap when nothing changed.  The flow, after fluxcd/pkg ssa:

1. map every object to its API resource; namespaced objects (a new CRD's
   scope says for its kind) without a namespace get the repo's default one;
2. read the live objects with one LIST per resource and namespace;
3. an object whose desired manifest is the one recorded in the inventory at
   its last apply, that pullbridge still manages, and whose desired fields
   all still hold live, is unchanged: no request at all (these comparisons
   are ``worker.apply_diff``'s);
4. every other object is server-side dry-run applied (field manager
   ``pullbridge``, force).  If any is rejected, or any kind is not served,
   nothing is written and one error names each such object and its file.
   A dry-run result equal to the live object (ignoring managedFields,
   resourceVersion, generation, status...) is unchanged too, so it keeps its
   resourceVersion;
5. Namespaces and CRDs are applied first (CRDs waited for until
   Established), then the rest, kind by kind in a stable order, each kind
   concurrently.

Objects in a Namespace or of a CRD that the commit creates, or of a version
an existing CRD gains in it, cannot be dry-run before that is written: only
those Namespaces and CRDs are written before the rest is validated (a change
to an existing Namespace waits), and when the rest fails, what was created
is deleted again and what was changed put back as it was
(``worker.apply_undo``), so that "nothing applied" holds.

Each write first checks, without asking Redis, that the repo lock is still
surely ours: once not, another worker may be applying the repo, so nothing
more is written (nor undone), and ``LockLost`` ends the run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.apply_diff import digest, unchanged_as_recorded, unchanged_by_apply
from worker.errors import PermanentError, TemporaryError, cut
from worker.kube import FIELD_MANAGER, ApiError, KindGone, Kube, Mapping, parallel, sync_error
from worker.lock import LockLost, RepoLock
from worker.render import STAGE_ONE_KINDS, Manifest, check_duplicates, object_ref

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
CRD_WAIT = 60.0
MAX_ERRORS_SHOWN = 10


@dataclass
class Change:
    """One object's fate in a sync."""

    ref: str
    action: str  # created | configured | unchanged | deleted | skipped
    source: str = ""
    detail: str = ""

    def as_dict(self) -> dict:
        out = {"object": self.ref, "action": self.action}
        if self.source:
            out["source"] = self.source
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class Item:
    manifest: Manifest
    obj: dict
    mapping: Mapping | None = None
    live: dict | None = None  # as read before this sync wrote it
    action: str | None = None  # decided action
    applied: dict | None = None  # the API server's answer to a write made only to validate the rest

    @property
    def ref(self) -> str:
        meta = self.obj["metadata"]
        return object_ref(self.obj["kind"], meta.get("namespace"), meta["name"])

    @property
    def digest(self) -> str:
        """Digest of the desired object, cached on its Manifest (a rendered commit is reused)."""
        ns = self.obj["metadata"].get("namespace")
        cache = self.manifest.__dict__.setdefault("_digests", {})
        if ns not in cache:
            cache[ns] = digest(self.obj)
        return cache[ns]

    @property
    def inventory_id(self) -> str:
        return object_id(self.manifest.group, self.obj["kind"], self.obj["metadata"].get("namespace"),
                         self.obj["metadata"]["name"])


def invalid(errors: list[str], applied: str = "nothing applied") -> PermanentError:
    """Some objects failed their dry-run; ``errors`` names each with its file.

    A plain PermanentError (operators read its class on the queue page and in
    RQ's failed registry) whose message names the first ``MAX_ERRORS_SHOWN``
    (it becomes the commit status, the alert, the history line).  It carries
    ``invalid_errors``, so that ``worker.apply_undo`` can retell it with what
    was undone, and ``full_text``, naming every object, for the sync's record
    (its page lists every failing object).  With more than one, the summary
    counts them first, as a status cut to 140 characters (GitHub's) still
    shows: ``validation failed for 3 objects, nothing applied: ...``."""
    shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
    more = f" (and {len(errors) - MAX_ERRORS_SHOWN} more)" if len(errors) > MAX_ERRORS_SHOWN else ""
    summary = f"validation failed{f' for {len(errors)} objects' if len(errors) > 1 else ''}, {applied}: "
    exc = PermanentError(f"{summary}{shown}{more}")
    exc.invalid_errors = errors
    exc.full_text = summary + "; ".join(errors)
    return exc


class UnknownKind(PermanentError):
    """The API server serves no such kind (a typo, a CRD not installed); the message names the object."""


@dataclass
class ApplyResult:
    changes: list[Change] = field(default_factory=list)
    entries: dict[str, dict] = field(default_factory=dict)  # inventory after this apply


def object_id(group: str, kind: str, namespace: str | None, name: str) -> str:
    """Inventory id, Flux style: ``namespace_name_group_kind``."""
    return f"{namespace or ''}_{name}_{group}_{kind}"


def crd_kind(crd: dict) -> tuple[str, str | None]:
    """(group, kind) of the objects a CustomResourceDefinition serves."""
    spec = crd.get("spec") or {}
    return spec.get("group", ""), (spec.get("names") or {}).get("kind")


def crd_namespaced(crd: dict) -> bool | None:
    """Whether a CustomResourceDefinition's objects are namespaced; None when its scope says neither."""
    return {"Namespaced": True, "Cluster": False}.get((crd.get("spec") or {}).get("scope"))


def describe_api_error(item: Item, exc: ApiError) -> str:
    return f"{item.ref} ({item.manifest.source}): {cut(exc.detail)}"


class Applier:
    """Applies one rendered commit; ``previous`` is the inventory of the last apply, ``lock``
    the repo lock it writes under (checked before each write)."""

    def __init__(self, kube: Kube, *, concurrency: int, default_namespace: str,
                 previous: dict[str, dict] | None = None, dry_run_only: bool = False,
                 lock: RepoLock | None = None):
        self.kube = kube
        self._check_lock = lock.check if lock is not None else lambda: None
        self.concurrency = concurrency
        self.default_namespace = default_namespace
        self.previous = previous or {}
        self.dry_run_only = dry_run_only
        self._live_cache: dict[tuple[str, str | None], dict[str, dict]] = {}
        self.written: dict[str, dict] = {}  # inventory entries of what this run wrote (and kept)
        self._items: list[Item] = []

    # -- helpers ----------------------------------------------------------
    def _apply_request(self, item: Item, dry_run: bool, read_answer: bool) -> dict | None:
        """Server-side apply ``item``; the object the API server answers when ``read_answer``.

        The dry-run validates strictly (unknown fields are errors).  The real
        apply of an object that passed its dry-run skips field validation.
        Answers that are not read are asked for in protobuf where the server
        has it, which is cheaper for it to encode.
        """
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if dry_run:
            query.update(dryRun="All", fieldValidation="Strict")
        else:
            query["fieldValidation"] = "Ignore"
        meta = item.obj["metadata"]
        return self.kube.request("PATCH", item.mapping.path(meta.get("namespace"), meta["name"]),
                                 body=item.obj, query=query, content_type=APPLY_CONTENT_TYPE,
                                 decode=read_answer, protobuf=not read_answer, live=item.live)

    def _resolve(self, item: Item, pending_crd_kinds: dict) -> bool:
        """Fill ``item.mapping`` and its namespace (or none); False when the kind comes from a CRD of
        this commit (``pending_crd_kinds``: (group, kind) -> namespaced, None: as written)."""
        m = item.manifest
        mapping = self.kube.mapping(m.api_version, m.kind)
        if mapping is None and (m.group, m.kind) not in pending_crd_kinds:
            raise UnknownKind(f"{m.ref} ({m.source}): the API server has no kind {m.kind} in {m.api_version}")
        item.mapping = mapping
        namespaced = mapping.namespaced if mapping else pending_crd_kinds[(m.group, m.kind)]
        # From the namespace the manifest declares, not the item's: an earlier resolve with stale
        # discovery (the kind cluster-scoped then) may have removed it.
        namespace = m.namespace
        if namespaced:
            namespace = namespace or self.default_namespace
        elif namespaced is False:
            namespace = None
        meta = item.obj["metadata"]
        if namespace:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return mapping is not None

    def _load_live(self, items: list[Item], fresh_namespaces: set[str]) -> None:
        """Fill ``item.live`` with one LIST per resource and namespace."""
        wanted = {(i.mapping, i.obj["metadata"].get("namespace")) for i in items}
        wanted = [k for k in wanted if k[1] not in fresh_namespaces and k not in self._live_cache]
        self._live_cache.update(self.kube.list_each(wanted, self.concurrency))
        for i in items:
            ns = i.obj["metadata"].get("namespace")
            i.live = self._live_cache.get((i.mapping, ns), {}).get(i.obj["metadata"]["name"])

    # -- the phases -------------------------------------------------------
    def _validate(self, items: list[Item], unknown: Sequence[str] = ()) -> None:
        """Decide each item's action; dry-run those that may differ.  Raise if any is invalid,
        naming first the objects of ``unknown`` kinds (``_plan``'s), so that one push says all."""
        to_check = []
        for item in items:
            if unchanged_as_recorded(item.obj, item.live, self.previous.get(item.inventory_id), item.digest):
                item.action = "unchanged"
            else:
                to_check.append(item)
        # The answer is read only when there is a live object to compare it with.
        results = parallel(lambda i: self._apply_request(i, True, i.live is not None), to_check,
                           self.concurrency)
        errors, temporary = list(unknown), None
        for item, result in zip(to_check, results):
            if isinstance(result, ApiError) and not result.temporary:
                errors.append(describe_api_error(item, result))
            elif isinstance(result, Exception):
                temporary = temporary or sync_error(result, f"dry-run of {item.ref}")
            elif item.live is None:
                item.action = "created"
            elif unchanged_by_apply(item.obj, item.live, result):
                item.action = "unchanged"
            else:
                item.action = "configured"
        if errors:
            raise invalid(errors)
        if temporary is not None:
            raise temporary

    def _write(self, items: list[Item], read_answers: bool = False) -> None:
        """Apply the items that need it concurrently, started in their (stable) order.

        As in Flux's staged apply, only Namespaces and CRDs form a stage of
        their own; everything else is one batch.  With ``read_answers`` each
        written item keeps the API server's answer in ``applied``.  Once the
        lock is lost, the writes not started yet are not made: LockLost.
        """
        todo = [i for i in items if i.action in ("created", "configured")]
        if self.dry_run_only or not todo:
            return

        def write(item: Item) -> dict | None:
            self._check_lock()
            return self._apply_request(item, False, read_answers)

        results = parallel(write, todo, self.concurrency)
        for item, result in zip(todo, results):  # every success is recorded, even when one failed
            if not isinstance(result, Exception):
                self.written[item.inventory_id] = {"v": item.obj["apiVersion"], "h": item.digest}
                item.applied = result
        lost = next((r for r in results if isinstance(r, LockLost)), None)
        if lost is not None:
            raise lost
        for item, result in zip(todo, results):
            if isinstance(result, ApiError) and not result.temporary:
                raise PermanentError(f"applying {describe_api_error(item, result)}")
            if isinstance(result, Exception):
                raise sync_error(result, f"applying {item.ref}")

    def _wait_crds(self, crds: list[Item]) -> None:
        deadline = time.monotonic() + CRD_WAIT
        for item in crds:
            path = item.mapping.path(None, item.obj["metadata"]["name"])
            while True:
                self._check_lock()  # a lost lock ends the wait: nothing more is written
                live = self.kube.get(path) or {}
                conditions = (live.get("status") or {}).get("conditions") or []
                if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                    break
                if time.monotonic() > deadline:
                    raise TemporaryError(f"{item.ref} is not Established after {CRD_WAIT:.0f}s")
                time.sleep(0.1)
        for group in {(i.obj.get("spec") or {}).get("group") for i in crds}:
            self.kube.forget(group)

    def run(self, manifests: list[Manifest]) -> ApplyResult:
        # Only metadata.namespace is ever changed on an item: copy that level, share the rest.
        items = self._items = [Item(m, {**m.obj, "metadata": dict(m.obj["metadata"])}) for m in manifests]
        crd_kinds = {crd_kind(i.obj): crd_namespaced(i.obj) for i in items
                     if i.obj["kind"] == "CustomResourceDefinition"}
        try:
            deferred, later, now, fresh, unknown = self._plan(items, crd_kinds)
        except KindGone:  # discovery was stale (a CRD deleted since); the Kube forgot that group
            deferred, later, now, fresh, unknown = self._plan(items, crd_kinds)
        self._validate(now, unknown)
        stage_one = [i for i in now if i.obj["kind"] in STAGE_ONE_KINDS]
        first = self._needed_first(stage_one, deferred, later, fresh)
        if deferred or later:
            try:
                self._write(first, read_answers=True)  # what undo puts back a changed one over
                self._validate_rest(deferred, later, first, crd_kinds, fresh)
            except LockLost:  # another worker may rely on what was written: undoing is a write too
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised, saying what was undone
                raise self._undo(first, exc) from None
        written_first = {id(i) for i in first}
        stage_one = [i for i in stage_one if id(i) not in written_first]  # the rest of stage one
        self._write(stage_one)
        crds = [i for i in stage_one if i.obj["kind"] == "CustomResourceDefinition"]
        if crds and not self.dry_run_only:
            self._wait_crds(crds)
        self._write([i for i in items if i.obj["kind"] not in STAGE_ONE_KINDS])
        result = ApplyResult()
        for item in items:
            result.changes.append(Change(item.ref, item.action or "skipped", item.manifest.source))
            result.entries[item.inventory_id] = {"v": item.obj["apiVersion"], "h": item.digest}
        return result

    def written_changes(self) -> list[Change]:
        """What a run that failed wrote all the same, and kept: the sync's change set says so."""
        return [Change(i.ref, i.action, i.manifest.source) for i in self._items if i.inventory_id in self.written]

    def _plan(self, items: list[Item], crd_kinds: dict) \
            -> tuple[list[Item], list[Item], list[Item], set[str], list[str]]:
        """Resolve every item and read the live objects of those that can be dry-run now:
        (deferred: of a CRD this commit creates, later: in a Namespace it creates, now, those
        Namespaces, unknown: the error of each object whose kind is not served, which is left out
        of the rest, so that the others are still dry-run and one failure names them all).
        KindGone: a kind discovery served is gone; planning again resolves it afresh
        (it may come from this commit's own CRD now, or be no kind at all)."""
        deferred, unknown, resolved = [], [], []
        for item in items:
            try:
                if not self._resolve(item, crd_kinds):
                    deferred.append(item)
                resolved.append(item)
            except UnknownKind as exc:
                unknown.append(str(exc))
        ready = [i for i in resolved if i.mapping is not None]
        check_duplicates([i.manifest for i in resolved], [i.obj["metadata"].get("namespace") for i in resolved])
        declared = {i.obj["metadata"]["name"] for i in ready
                    if i.obj["kind"] == "Namespace" and i.manifest.group == ""}
        fresh = {name for name in declared if not self._namespace_exists(name)}
        # Objects in namespaces this commit creates cannot be dry-run before those exist.
        later = [i for i in ready if i.obj["metadata"].get("namespace") in fresh]
        now = [i for i in ready if i.obj["metadata"].get("namespace") not in fresh]
        self._load_live(now, fresh)
        return deferred, later, now, fresh, unknown

    def _needed_first(self, stage_one: list[Item], deferred: list[Item], later: list[Item],
                      fresh: set[str]) -> list[Item]:
        """The Namespaces and CRDs that must exist before ``deferred`` and ``later`` can be dry-run."""
        namespaces = {i.obj["metadata"].get("namespace") for i in later + deferred}
        kinds = {(i.manifest.group, i.manifest.kind) for i in deferred}
        return [i for i in stage_one
                if (i.obj["kind"] == "Namespace" and i.obj["metadata"]["name"] in namespaces & fresh)
                or (i.obj["kind"] == "CustomResourceDefinition" and crd_kind(i.obj) in kinds)]

    def _validate_rest(self, deferred: list[Item], later: list[Item], first: list[Item],
                       crd_kinds: dict, fresh: set[str]) -> None:
        """Dry-run the objects that needed ``first`` (already written) to exist."""
        crds = [i for i in first if i.obj["kind"] == "CustomResourceDefinition"]
        if crds and not self.dry_run_only:
            self._wait_crds(crds)
        deadline = time.monotonic() + CRD_WAIT
        for item in deferred:
            if self.dry_run_only:
                if not self._resolve(item, crd_kinds):
                    item.action = "created"  # report mode: its CRD is not there yet
                continue
            # Discovery serves a new CRD's kind a moment after it is Established.
            while not self._resolve(item, crd_kinds if time.monotonic() < deadline else {}):
                time.sleep(0.1)
                self.kube.forget(item.manifest.group)
        rest = [i for i in deferred + later if i.mapping is not None]
        self._load_live(rest, fresh)
        if self.dry_run_only:
            for item in rest:
                item.action = "configured" if item.live else "created"
        else:
            self._validate(rest)

    def _undo(self, first: list[Item], exc: Exception) -> Exception:
        """Undo what ``first`` wrote (``worker.apply_undo``); ``exc`` retold with what was undone."""
        from worker.apply_undo import undo

        return undo(self.kube, self.written, first, exc)

    def _namespace_exists(self, name: str) -> bool:
        """One GET per namespace the commit declares: no cluster-wide list, so a worker
        whose RBAC covers only its own namespaces can still sync."""
        try:
            return self.kube.get(f"/api/v1/namespaces/{name}") is not None
        except ApiError as exc:
            if exc.status == 403:  # not ours to read: not ours to create either; let dry-run say so
                return True
            raise sync_error(exc, f"reading namespace {name}") from None
