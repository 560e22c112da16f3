"""Deleting again what a sync created only to validate the rest of its commit.

Why it exists: objects in a Namespace, or of a CRD, that the commit itself
creates cannot be dry-run before that Namespace or CRD exists
(``worker.apply``), so those are written first.  When the rest then fails
validation, "nothing applied" must still hold: what was created is deleted
again, newest first, and the error says so.  What could not be deleted is
named in the error and stays in ``written``, which the sync adds to the
inventory so that a later prune takes it.
"""

from __future__ import annotations

import time

from worker.errors import PermanentError, TemporaryError, cut
from worker.kube import ApiError, Kube, sync_error

GONE_WAIT = 60.0  # seconds to wait for deleted objects to be gone (a Namespace terminates)


def undo(kube: Kube, written: dict, first: list, exc: Exception) -> Exception:
    """Delete again, newest first, what ``first`` created; ``exc`` retold with what was undone.

    ``written`` is the applier's record of what it wrote (inventory id ->
    entry); a deleted object leaves it, and a deleted CRD's group is dropped
    from the worker's discovery cache, whose kinds would otherwise outlive it
    (the next commit declaring it again would list a kind that is no longer
    served instead of creating the CRD first).  Waits (up to GONE_WAIT) until the
    deleted objects are gone, so that the next sync finds the cluster as it
    was and not a terminating Namespace.
    """
    from worker.apply import crd_kind, invalid

    removed, gone, left = [], [], []
    for item in reversed([i for i in first if i.inventory_id in written]):
        if item.action != "created":
            left.append(f"{item.ref} (configured to validate what uses it)")
            continue
        path = item.mapping.path(None, item.obj["metadata"]["name"])
        try:
            kube.delete(path)
        except Exception as failed:  # noqa: BLE001 - reported in the error, tracked for prune
            if not (isinstance(failed, ApiError) and failed.status == 404):
                why = f"HTTP {failed.status}: {failed.message}" if isinstance(failed, ApiError) else failed
                left.append(f"{item.ref} (created to validate what it holds; removing it again "
                            f"failed: {cut(why, 150)})")
                continue
        del written[item.inventory_id]
        removed.append(item.ref)
        gone.append(path)
        if item.obj["kind"] == "CustomResourceDefinition":  # discovery served its kind: no more
            kube.forget(crd_kind(item.obj)[0])
    if not removed and not left:
        return exc
    deadline = time.monotonic() + GONE_WAIT
    while gone and time.monotonic() < deadline:
        gone = [path for path in gone if _exists(kube, path)]
        time.sleep(0.2 if gone else 0)
    undone = f"created {', '.join(removed)} removed again" if removed else ""
    if left:
        applied = "nothing applied but " + "; ".join(left) + (f"; {undone}" if undone else "")
    else:
        applied = f"nothing applied ({undone})" if undone else "nothing applied"
    exc = sync_error(exc, "validating")
    if getattr(exc, "invalid_details", None) is not None:
        return invalid(exc.invalid_details, applied)
    if isinstance(exc, TemporaryError):
        return TemporaryError(f"{exc}; {applied}", exc.delay)
    return PermanentError(f"{exc}; {applied}")


def _exists(kube: Kube, path: str) -> bool:
    try:
        return kube.get(path) is not None
    except Exception:  # noqa: BLE001 - only waited for: unknown counts as gone
        return False
