"""Cluster drift: live objects that no longer hold what the applied commit declares.

Why it exists: Git is the source of truth even when someone runs
``kubectl scale`` or ``kubectl edit``.  A scan compares, for every object the
last applied commit declares, each *declared* field with the live value at
the same path (maps by key, lists of named items by ``name``, other lists by
position: ``worker.drift_compare``).  Fields the object excludes with
``pullbridge.io/ignore-fields`` are skipped; fields nobody declared (defaults,
other controllers' additions) are never drift.  The declared manifest is the reference rather than
Pullbridge's managedFields because a hand edit takes a field's ownership
away from Pullbridge: ``kubectl scale`` leaves the ``kubectl`` manager owning
``spec.replicas``.

Cost: one LIST per kind and namespace and a local comparison.  A difference
at a field Pullbridge's apply still owns (managedFields) is the server's
normalisation (``cpu: 0.5`` is stored as ``500m``): with server-side apply
anyone else who changes a value takes its ownership.  The remaining
*candidates* get one server-side dry-run each, which confirms the
difference survives normalisation and defaulting; otherwise it is not drift.  A declared object missing
from its LIST is drift (deleted); a LIST that finds its kind no longer served
(a CRD deleted since the worker discovered it) resolves the objects again:
that kind is then not checked, and its CRD, when declared, is drift.  Each
entry names the field, the live and declared values, and who changed it when
managedFields tell: the manager that now owns the field, its operation,
subresource and time.

A Secret's values (any field outside ``metadata``) are replaced with
``(hidden: Secret data)`` when an entry is made, so the log, the alerts and the
history record never hold them.  Such an entry keeps the live Secret's
``resourceVersion`` instead (``revision``, never stored): it stands in for the
value in the periodic job's drift fingerprint, so a Secret edited to yet another
value is new drift rather than "unchanged".  A candidate whose dry-run the API server
rejects (an immutable field changed by re-creating the object by hand) is
still drift: its local differences are reported with the rejection as their
``note``, and the object is not re-applied (the apply would be rejected too).
The rejection of a Secret hides the declared and live values it quotes
(``worker.secretmask``: the dry-run passes the live object along).

A Secret declared with ``stringData`` is compared as the server stores it
(``as_stored``: the values base64-encoded into ``data``), since a live Secret
never shows ``stringData``; its ignore-fields paths under ``stringData`` also
cover ``data``.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field

from worker.apply import APPLY_CONTENT_TYPE
from worker.errors import cut
from worker.drift_compare import adds_items, by_name, changed_by, differences, fields_cover, value_at
from worker.kube import FIELD_MANAGER, ApiError, KindGone, Kube, Mapping, parallel, sync_error
from worker.ownership import Tok, ignored_paths, show_path
from worker.render import Manifest, object_ref
from worker.secretmask import HIDDEN

MAX_VALUE_CHARS = 200
IDENTITY_KEYS = ("object", "field", "live", "declared", "note", "corrected")


@dataclass
class DriftEntry:
    """One drifted field (or a deleted object: ``field`` is ``(object)``)."""

    object: str
    field: str
    live: object
    declared: object
    source: str = ""
    manager: str | None = None
    operation: str | None = None
    subresource: str | None = None
    changed_at: str | None = None
    corrected: bool = False
    note: str = ""  # why the entry is unconfirmed (dry-run rejected)
    revision: str = ""  # hidden values: the live object's resourceVersion (identity only, never stored)

    def as_dict(self) -> dict:
        out = {"object": self.object, "field": self.field, "live": _short(self.live),
               "declared": _short(self.declared), "corrected": self.corrected}
        for key in ("source", "manager", "operation", "subresource", "changed_at", "note"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out

    def identity(self) -> dict:
        """What this entry found, for telling drift that persists from new drift (not stored)."""
        return {**{k: v for k, v in self.as_dict().items() if k in IDENTITY_KEYS}, "revision": self.revision}

    def describe(self) -> str:
        who = f" by {self.manager}" + (f" ({self.operation}" + (f" /{self.subresource}" if self.subresource else "")
                                        + ")" if self.operation else "") if self.manager else ""
        when = f" at {self.changed_at}" if self.changed_at else ""
        note = f" ({self.note})" if self.note else ""
        return f"{self.object} {self.field}: live {json.dumps(self.live)} declared " \
               f"{json.dumps(self.declared)}{who}{when}{note}"


def _short(value):
    text = json.dumps(value, sort_keys=True)
    return value if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


@dataclass
class Target:
    """A declared object resolved to its API resource."""

    manifest: Manifest
    obj: dict
    mapping: Mapping
    ignored: list = field(default_factory=list)

    @property
    def namespace(self) -> str | None:
        return self.obj["metadata"].get("namespace")

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]

    @property
    def ref(self) -> str:
        return object_ref(self.obj["kind"], self.namespace, self.name)


@dataclass
class ScanResult:
    entries: list[DriftEntry] = field(default_factory=list)
    drifted: list[Target] = field(default_factory=list)  # objects to re-apply
    rejected: list[str] = field(default_factory=list)  # drifted objects whose dry-run was rejected
    checked: int = 0
    candidates: int = 0
    notes: list[str] = field(default_factory=list)


def _entry(t: Target, tokens, live_value, declared, live: dict | None = None, note: str = "") -> DriftEntry:
    """A drift entry for ``t`` (``tokens`` empty: the whole object) against the ``live`` object;
    a Secret's values outside ``metadata`` are hidden, its resourceVersion kept in their place."""
    revision = ""
    if t.obj.get("kind") == "Secret" and tokens and tokens[0] != Tok("key", "metadata"):
        live_value, declared = HIDDEN, HIDDEN
        revision = str(((live or {}).get("metadata") or {}).get("resourceVersion") or "")
    owner = (changed_by(live, tokens) if live and tokens else None) or {}
    return DriftEntry(t.ref, show_path(tokens), live_value, declared, t.manifest.source,
                      manager=owner.get("manager"), operation=owner.get("operation"),
                      subresource=owner.get("subresource"), changed_at=owner.get("time"), note=note,
                      revision=revision)


# -- the scan -------------------------------------------------------------------

def resolve(kube: Kube, manifests: list[Manifest], default_namespace: str) -> tuple[list[Target], list[str]]:
    """Map declared objects to API resources (namespaced ones get the default namespace)."""
    targets, notes = [], []
    for m in manifests:
        mapping = kube.mapping(m.api_version, m.kind)
        if mapping is None:
            notes.append(f"{m.ref}: kind {m.kind} in {m.api_version} is not served; not checked")
            continue
        obj = copy.deepcopy(m.obj)
        meta = obj["metadata"]
        if mapping.namespaced and not meta.get("namespace"):
            meta["namespace"] = default_namespace
        elif not mapping.namespaced:
            meta.pop("namespace", None)
        try:
            ignored = ignored_paths(obj)
        except ValueError as exc:
            notes.append(f"{m.ref}: bad ignore-fields annotation ({exc}); not checked")
            continue
        translated = [by_name(p, obj) for p in ignored]
        ignored += [p for p in translated if p not in ignored]
        if m.kind == "Secret" and m.api_version == "v1" and isinstance(obj.get("stringData"), dict):
            obj, ignored = as_stored(obj), ignored + [_as_data(p) for p in ignored if p[:1] == (STRING_DATA,)]
        targets.append(Target(m, obj, mapping, ignored))
    return targets, notes


STRING_DATA = Tok("key", "stringData")


def as_stored(secret: dict) -> dict:
    """A Secret as the API server stores it: ``stringData`` written into ``data`` (base64; it wins
    over a ``data`` key of the same name, as on the server).  A live Secret never shows
    ``stringData``, so a declared one is compared, and dry-run, as ``data``: otherwise a hand
    edit of such a value would never be drift."""
    obj = dict(secret)
    data = dict(obj.get("data") or {})
    for key, value in obj.pop("stringData").items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    obj["data"] = data
    return obj


def _as_data(path: tuple) -> tuple:
    return (Tok("key", "data"),) + tuple(path[1:])


def list_live(kube: Kube, targets: list[Target], concurrency: int = 8) -> dict:
    """One LIST per resource and namespace: {(mapping, namespace): {name: object}}."""
    wanted = sorted({(t.mapping, t.namespace) for t in targets}, key=lambda k: (k[0].resource, k[1] or ""))
    return kube.list_each(wanted, concurrency)


def dry_run(kube: Kube, target: Target, live: dict) -> dict:
    """Server-side dry-run of the declared object; a rejection hides ``live``'s Secret values too."""
    return kube.request("PATCH", target.mapping.path(target.namespace, target.name), body=target.obj,
                        query={"fieldManager": FIELD_MANAGER, "force": "true", "dryRun": "All"},
                        content_type=APPLY_CONTENT_TYPE, live=live)


def scan(kube: Kube, manifests: list[Manifest], *, default_namespace: str, concurrency: int = 8) -> ScanResult:
    """Compare live objects with ``manifests`` (the applied commit, ignore-fields still annotated)."""
    result = ScanResult()
    targets, result.notes = resolve(kube, manifests, default_namespace)
    try:
        live_by_key = list_live(kube, targets, concurrency)
    except KindGone:  # discovery was stale (a CRD deleted since): resolved afresh, such a kind is not checked
        targets, result.notes = resolve(kube, manifests, default_namespace)
        live_by_key = list_live(kube, targets, concurrency)
    candidates: list[tuple[Target, dict, list]] = []
    for t in targets:
        result.checked += 1
        live = live_by_key.get((t.mapping, t.namespace), {}).get(t.name)
        if live is None:
            result.entries.append(_entry(t, (), None, "present"))
            result.drifted.append(t)
            continue
        if (live.get("metadata") or {}).get("deletionTimestamp"):
            result.entries.append(_entry(t, (), "terminating", "present", live))
            result.drifted.append(t)
            continue
        ours = [mf.get("fieldsV1") or {} for mf in (live.get("metadata") or {}).get("managedFields") or []
                if mf.get("manager") == FIELD_MANAGER and mf.get("operation") == "Apply"]
        # A field Pullbridge's apply still owns was changed by nobody since: with server-side
        # apply, any other writer that changes a value takes its ownership.  Such a difference
        # is the server's normalisation (0.1 CPU stored as 100m) and needs no dry-run.
        diffs = [d for d in differences(t.obj, live, (), t.ignored)
                 if not any(fields_cover(f, d[0], live) for f in ours)]
        if diffs:
            candidates.append((t, live, diffs))
    result.candidates = len(candidates)
    answers = parallel(lambda c: dry_run(kube, c[0], c[1]), candidates, concurrency)
    for (t, live, diffs), answer in zip(candidates, answers):
        if isinstance(answer, Exception):
            if isinstance(answer, ApiError) and not answer.temporary:
                # Unconfirmed, but the live object is not what Git declares and re-applying
                # it would be rejected as well: report the local differences, correct nothing.
                rejection = f"dry-run rejected: {cut(answer.message, 200)}"
                result.notes.append(f"{t.ref}: {rejection}; not corrected")
                result.rejected.append(t.ref)
                result.entries.extend(_entry(t, tokens, live_value, declared, live, rejection)
                                      for tokens, declared, live_value in diffs)
                continue
            raise sync_error(answer, f"dry-run of {t.ref}")
        found = False
        for tokens, declared, live_value in diffs:
            if value_at(answer, tokens) == live_value and not adds_items(answer, live, tokens):
                continue  # the server normalises the declared value to what is live
            result.entries.append(_entry(t, tokens, live_value, declared, live))
            found = True
        if found:
            result.drifted.append(t)
    return result
