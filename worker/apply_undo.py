"""Undoing what a sync wrote only to validate the rest of its commit.

Why it exists: objects in a Namespace, or of a CRD, that the commit itself
creates cannot be dry-run before that Namespace or CRD exists, nor objects of
a version that an existing CRD only gains in this commit (``worker.apply``):
those Namespaces and CRDs are written first.  When the rest then fails
validation, "nothing applied" must still hold: newest first, what was created
is deleted again, what was changed is put back as it was, and the error says
so.  What could not be undone is named in the error and stays in
``written``, which the sync adds to the inventory so that a later prune
takes it.

"As it was" is the object read before the write, ownership included.
Applying again what Pullbridge had applied before would give back its own
fields but not those its forced write took from other field managers (no
manager would own them any more, so they would go).  So the saved object
is PUT back, only while it is still as the write left it (a resourceVersion
precondition, after comparing it), and PUT once more with its saved
managedFields: with nothing else changing, the API server takes those as
sent, and each field is owned again by whoever owned it before.
"""

from __future__ import annotations

import time

from worker.apply_diff import normalized
from worker.errors import PermanentError, TemporaryError, cut
from worker.kube import FIELD_MANAGER, ApiError, Kube, sync_error

GONE_WAIT = 60.0  # seconds to wait for deleted objects to be gone (a Namespace terminates)
RESTORE_CONFLICTS = 5  # 409s borne per PUT while restoring: a CRD's controller writes its status after a change


def undo(kube: Kube, written: dict, first: list, exc: Exception) -> Exception:
    """Undo, newest first, what ``first`` wrote; ``exc`` retold with what was undone.

    ``written`` is the applier's record of what it wrote (inventory id ->
    entry); an undone object leaves it, and an undone CRD's group is dropped
    from the worker's discovery cache, whose kinds would otherwise outlive it
    (the next commit declaring it again would list a kind that is no longer
    served instead of writing the CRD first).  Waits (up to GONE_WAIT) until the
    deleted objects are gone, so that the next sync finds the cluster as it
    was and not a terminating Namespace.
    """
    from worker.apply import crd_kind, invalid

    removed, restored, gone, left = [], [], [], []
    for item in reversed([i for i in first if i.inventory_id in written]):
        path = item.mapping.path(None, item.obj["metadata"]["name"])
        created = item.action == "created"
        try:
            if created:
                _delete(kube, path)
            else:
                _restore(kube, path, item.live, item.applied)
        except Exception as failed:  # noqa: BLE001 - reported in the error, tracked for prune
            why = f"HTTP {failed.status}: {failed.detail}" if isinstance(failed, ApiError) else failed
            done = "created to validate what it holds; removing it again" if created else \
                "configured to validate what uses it; restoring it"
            left.append(f"{item.ref} ({done} failed: {cut(why, 150)})")
            continue
        del written[item.inventory_id]
        (removed if created else restored).append(item.ref)
        if created:
            gone.append(path)
        if item.obj["kind"] == "CustomResourceDefinition":
            kube.forget(crd_kind(item.obj)[0])
    if not removed and not restored and not left:
        return exc
    deadline = time.monotonic() + GONE_WAIT
    while gone and time.monotonic() < deadline:
        gone = [path for path in gone if _exists(kube, path)]
        time.sleep(0.2 if gone else 0)
    undone = "; ".join(([f"created {', '.join(removed)} removed again"] if removed else []) +
                       ([f"configured {', '.join(restored)} restored"] if restored else []))
    if left:
        applied = "nothing applied but " + "; ".join(left) + (f"; {undone}" if undone else "")
    else:
        applied = f"nothing applied ({undone})" if undone else "nothing applied"
    exc = sync_error(exc, "validating")
    if getattr(exc, "invalid_errors", None) is not None:
        return invalid(exc.invalid_errors, applied)
    if isinstance(exc, TemporaryError):
        return TemporaryError(f"{exc}; {applied}", exc.delay)
    return PermanentError(f"{exc}; {applied}")


def _delete(kube: Kube, path: str) -> None:
    try:
        kube.delete(path)
    except ApiError as exc:
        if exc.status != 404:  # already gone is as good
            raise


def _restore(kube: Kube, path: str, before: dict, written: dict) -> None:
    """Put ``before`` back over ``written`` (the API server's answer to the write): its content,
    then its managedFields (the first PUT made Pullbridge the owner of every field it changed)."""
    body = {key: value for key, value in before.items() if key != "status"}  # status is the server's
    _replace(kube, path, body, expected=written)
    _replace(kube, path, body, expected=before)


def _replace(kube: Kube, path: str, body: dict, expected: dict) -> None:
    """PUT ``body`` at ``path`` while the object there is still ``expected`` (status and bookkeeping aside)."""
    for attempt in range(RESTORE_CONFLICTS):
        current = kube.get(path)
        if current is None:
            raise PermanentError("deleted by another writer meanwhile")
        if normalized(current) != normalized(expected):
            raise PermanentError("changed by another writer meanwhile")
        metadata = {**body["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}
        try:
            kube.request("PUT", path, body={**body, "metadata": metadata}, query={"fieldManager": FIELD_MANAGER})
            return
        except ApiError as exc:
            if exc.status != 409 or attempt == RESTORE_CONFLICTS - 1:
                raise


def _exists(kube: Kube, path: str) -> bool:
    try:
        return kube.get(path) is not None
    except Exception:  # noqa: BLE001 - only waited for: unknown counts as gone
        return False
