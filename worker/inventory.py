"""The per-repo inventory, kept in the cluster: what Pullbridge applied last time.

Why it exists: prune must know what Git used to declare, and that knowledge
belongs next to the objects (like Flux's inventory), not in a worker's
cache or in Redis that may be flushed.  One ConfigMap per repo, in the
configured inventory namespace, maps each object id (``namespace_name_group_kind``)
to its apiVersion and the digest of the manifest last applied.  The digest
lets an unchanged object skip its dry-run on the next sync.  An inventory
that cannot be read (edited by hand, written by another tool) fails its
repo's sync before anything is applied, naming the ConfigMap and what is
wrong with it.

The inventories also say who else declares an object: before pruning, a
repo reads the others' (``declared_elsewhere``, one LIST), so an object that
two repos declare is not deleted by the one that dropped it while the other
still declares it (nor while the other's cannot be read).
"""

from __future__ import annotations

import json
from typing import Callable

from worker.apply import object_id
from worker.errors import PermanentError, TemporaryError
from worker.kube import FIELD_MANAGER, ApiError, Kube, sync_error
from worker.render import object_ref

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
DATA_KEY = "inventory.json"
REPO_LABEL = "pullbridge.io/repo"  # on each inventory ConfigMap: whose inventory it is


def configmap_name(repo_name: str) -> str:
    return f"pullbridge-inventory-{repo_name}"


def own_id(namespace: str, repo_name: str) -> str:
    """The inventory ConfigMap's own object id, as inventories name objects."""
    return object_id("", "ConfigMap", namespace, configmap_name(repo_name))


def load(kube: Kube, namespace: str, repo_name: str) -> dict[str, dict]:
    """The inventory entries ({} when there is none yet)."""
    path = f"/api/v1/namespaces/{namespace}/configmaps/{configmap_name(repo_name)}"
    try:
        cm = kube.get(path)
    except ApiError as exc:
        raise sync_error(exc, "reading the inventory") from None
    if not cm:
        return {}
    entries = _entries(cm, namespace, repo_name)
    for oid, entry in entries.items():
        try:
            parse_id(oid)
        except PermanentError as exc:
            raise corrupt(namespace, repo_name, str(exc)) from None
        if not isinstance(entry, dict):
            raise corrupt(namespace, repo_name, f"inventory entry {oid!r} is not a JSON object")
    return entries


def _entries(cm: dict, namespace: str, repo_name: str) -> dict:
    """The entries of an inventory ConfigMap as read, by object id; CorruptInventory when they are not
    a JSON object."""
    try:
        entries = json.loads((cm.get("data") or {}).get(DATA_KEY) or "{}")
    except ValueError:
        raise corrupt(namespace, repo_name, f"{DATA_KEY} is not JSON") from None
    if not isinstance(entries, dict):
        raise corrupt(namespace, repo_name, f"{DATA_KEY} is not a JSON object")
    return entries


class CorruptInventory(PermanentError):
    """An inventory that cannot be read (edited by hand, written by another tool)."""


def corrupt(namespace: str, repo_name: str, what: str) -> CorruptInventory:
    """An inventory that cannot be read: its own repo's sync is refused before anything is applied
    (prune could not trust it), saying how to start afresh; another repo's prune keeps what is stale."""
    return CorruptInventory(f"inventory ConfigMap {namespace}/{configmap_name(repo_name)} is corrupt ({what}): "
                            "fix it, or delete it to start a new inventory (objects Git dropped since the last "
                            "sync are then left in the cluster, not pruned)")


def save(kube: Kube, namespace: str, repo_name: str, entries: dict[str, dict],
         previous: dict[str, dict] | None = None) -> bool:
    """Store ``entries``; no request when they equal ``previous``.  Returns True when written."""
    if previous is not None and previous == entries:
        return False
    _ensure_namespace(kube, namespace)
    body = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": configmap_name(repo_name), "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "pullbridge",
                                REPO_LABEL: repo_name}},
        "data": {DATA_KEY: json.dumps(entries, sort_keys=True, separators=(",", ":"))},
    }
    path = f"/api/v1/namespaces/{namespace}/configmaps/{configmap_name(repo_name)}"
    query = {"fieldManager": FIELD_MANAGER, "force": "true"}
    try:
        try:
            kube.request("PATCH", path, body=body, query=query, content_type=APPLY_CONTENT_TYPE)
        except ApiError as exc:
            if exc.status != 404:
                raise
            # The namespace went away since this process made sure of it (deleted by
            # hand, or pruned): make it again, once, rather than fail every later sync.
            _known_namespaces.discard(namespace)
            _ensure_namespace(kube, namespace)
            kube.request("PATCH", path, body=body, query=query, content_type=APPLY_CONTENT_TYPE)
    except ApiError as exc:
        if _namespace_terminating(exc):  # being deleted: once it is gone, a retry makes it again
            _known_namespaces.discard(namespace)
            raise TemporaryError(f"writing the inventory: namespace {namespace} is being deleted") from None
        raise sync_error(exc, "writing the inventory") from None
    return True


INVENTORY_SELECTOR = f"app.kubernetes.io/managed-by=pullbridge,{REPO_LABEL}"


def declared_elsewhere(kube: Kube, namespace: str, repo_name: str) -> dict[str, list[str]]:
    """Object id -> the other repos whose inventory lists it (one LIST of the inventory ConfigMaps).
    CorruptInventory when one cannot be read: what that repo declares is unknown."""
    try:
        listed = kube.get(f"/api/v1/namespaces/{namespace}/configmaps",
                          query={"labelSelector": INVENTORY_SELECTOR})
    except ApiError as exc:
        raise sync_error(exc, "reading the other repos' inventories") from None
    owners: dict[str, list[str]] = {}
    for cm in (listed or {}).get("items") or []:
        other = ((cm.get("metadata") or {}).get("labels") or {}).get(REPO_LABEL)
        if not other or other == repo_name:
            continue
        for oid in _entries(cm, namespace, other):
            owners.setdefault(oid, []).append(other)
    return owners


SHARED_SHOWN = 5  # objects a "declared by another repo too" note names


def shared_note(previous: dict[str, dict], entries: dict[str, dict],
                declared_elsewhere: Callable[[], dict[str, list[str]]]) -> str | None:
    """A warning for the sync's record when an object it newly declares or changes (a new entry
    or a new digest) is in another repo's inventory too: both repos apply it with the same field
    manager, so each one's sync overwrites what the other declared.  None when there is none (or
    the other inventories cannot be read: prune says so).  ``declared_elsewhere`` is called only
    when something was declared or changed, so an unchanged sync makes no request."""
    touched = [oid for oid, entry in entries.items() if (previous.get(oid) or {}).get("h") != entry.get("h")]
    if not touched:
        return None
    try:
        others = declared_elsewhere()
    except (PermanentError, TemporaryError):
        return None
    shared = [oid for oid in sorted(touched) if oid in others]
    if not shared:
        return None
    named = []
    for oid in shared[:SHARED_SHOWN]:
        namespace, name, _, kind = parse_id(oid)
        named.append(f"{object_ref(kind, namespace, name)} (by {', '.join(sorted(others[oid]))})")
    more = f" and {len(shared) - SHARED_SHOWN} more" if len(shared) > SHARED_SHOWN else ""
    return (f"declared by another repo too: {', '.join(named)}{more}; each repo's sync overwrites what the "
            f"other declares (one field manager, {FIELD_MANAGER}): declare each object in one repo only")


_known_namespaces: set[str] = set()


def _ensure_namespace(kube: Kube, namespace: str) -> None:
    if namespace in _known_namespaces:
        return
    try:
        if kube.get(f"/api/v1/namespaces/{namespace}") is None:
            kube.request("POST", "/api/v1/namespaces",
                         body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    except ApiError as exc:
        if exc.status != 409:
            raise sync_error(exc, f"creating inventory namespace {namespace}") from None
    _known_namespaces.add(namespace)


def _namespace_terminating(exc: ApiError) -> bool:
    causes = (exc.body.get("details") or {}).get("causes") or []
    return exc.status == 403 and any(c.get("reason") == "NamespaceTerminating" for c in causes)


def parse_id(object_id: str) -> tuple[str | None, str, str, str]:
    """``namespace_name_group_kind`` -> (namespace or None, name, group, kind).

    A name may hold '_' (Kubernetes allows it in RBAC names: Role, ClusterRole
    and their bindings), but a namespace (DNS label), a group (DNS subdomain)
    and a kind (CRD kinds are DNS-1035 labels once lowercased) cannot: the
    namespace ends at the first '_', the group and kind are the last two parts.
    """
    namespace, _, rest = object_id.partition("_")
    parts = rest.rsplit("_", 2)
    if len(parts) != 3 or not parts[0] or not parts[2]:
        raise PermanentError(f"inventory entry {object_id!r} is malformed")
    name, group, kind = parts
    return namespace or None, name, group, kind
