"""What counts as unchanged: a desired object against its live one, and a dry-run's answer.

Why it exists: a sync must cost no write, and if it can no request, for an
object that already is as Git says.  These are the comparisons behind that
decision, after fluxcd/pkg ssa's diff: ``worker.apply`` decides with them
whether an object is dry-run and written, ``worker.apply_undo`` whether an
object is still as a write left it, ``pullbridge diff`` what a dry-run
would change.  All of it is pure: no API server is asked here.
"""

from __future__ import annotations

import hashlib
import json

from worker.kube import FIELD_MANAGER

IGNORED_METADATA = ("managedFields", "resourceVersion", "generation", "creationTimestamp",
                    "selfLink", "uid")


def digest(obj: dict) -> str:
    """Of a desired object, as the inventory records it at its apply."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]


def normalized(obj: dict) -> dict:
    """``obj`` without what the server changes on its own (status, bookkeeping metadata)."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for key in IGNORED_METADATA:
        meta.pop(key, None)
    out["metadata"] = meta
    return out


def is_subset(desired, live) -> bool:
    """True when every field set in ``desired`` has the same value in ``live``."""
    if desired is None or desired == {} or desired == []:
        return live in (None, {}, []) or live == desired
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(is_subset(v, live.get(k)) if v in (None, {}, []) else (k in live and is_subset(v, live[k]))
                   for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and \
            all(is_subset(d, l) for d, l in zip(desired, live))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    return desired == live


def declares_fields(obj: dict) -> bool:
    """False for an object that sets nothing but its name (the server then records no owner)."""
    meta = obj.get("metadata") or {}
    return any(k not in ("apiVersion", "kind", "metadata") for k in obj) or \
        any(k not in ("name", "namespace") and v not in (None, {}, []) for k, v in meta.items())


def managed_by_us(live: dict, desired: dict | None = None) -> bool:
    """True when pullbridge applied ``live`` (or ``desired`` declares no field to own)."""
    if desired is not None and not declares_fields(desired):
        return True
    return any(mf.get("manager") == FIELD_MANAGER and mf.get("operation") == "Apply"
               for mf in (live.get("metadata") or {}).get("managedFields") or [])


def unchanged_as_recorded(desired: dict, live: dict | None, recorded: dict | None, desired_digest: str) -> bool:
    """Unchanged without a request: ``desired`` (of digest ``desired_digest``) is the manifest
    ``recorded`` in the inventory at its last apply, Pullbridge still manages ``live``, and every
    desired field still holds there."""
    return live is not None and bool(recorded) and recorded.get("h") == desired_digest \
        and managed_by_us(live, desired) and is_subset(desired, live)


def unchanged_by_apply(desired: dict, live: dict, answer: dict) -> bool:
    """Unchanged after all: the dry-run ``answer`` to applying ``desired`` equals ``live`` but for
    what the server changes on its own, and Pullbridge manages ``live``."""
    return managed_by_us(live, desired) and normalized(answer) == normalized(live)
