"""Comparing a declared object with its live copy, field by field, and who changed a field.

Why it exists: the drift scan (``worker.drift``) needs two pure answers about
one object, kept apart from its API calls: which *declared* fields differ
from the live object (``differences``: maps by key, lists of named items by
``name``, other lists by position; fields nobody declared are never drift),
and which field manager other than Pullbridge's apply owns such a field now
(``changed_by``, from managedFields).  ``fields_cover`` also tells the scan
which differences are at fields Pullbridge's apply still owns (the server's
normalisation, not drift).

An ignore-fields path that picks an item of a named list by position
(``containers[0]``) is translated to the item's name (``by_name``), as the
comparison walks such lists by ``name`` and the apply removes the item at
that position.
"""

from __future__ import annotations

import json

from worker.kube import FIELD_MANAGER
from worker.ownership import Tok, is_ignored

SKIPPED_TOP = ("apiVersion", "kind", "status")
SKIPPED_METADATA = ("name", "namespace")


def _same_scalar(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _named(items) -> bool:
    return all(isinstance(x, dict) and isinstance(x.get("name"), str) for x in items)


def differences(declared, live, path=(), ignored=()):
    """Yield ``(path tokens, declared value, live value)`` for every declared field that differs."""
    if isinstance(declared, dict):
        if not isinstance(live, dict):
            if declared or live is not None:
                yield path, declared, live
            return
        for key, value in declared.items():
            step = path + (Tok("key", key),)
            if is_ignored(step, ignored):
                continue
            if not path and key in SKIPPED_TOP:
                continue
            if path == (Tok("key", "metadata"),) and key in SKIPPED_METADATA:
                continue
            if key not in live or live[key] is None:
                if value not in (None, {}, []):
                    yield step, value, None
                continue
            yield from differences(value, live[key], step, ignored)
    elif isinstance(declared, list):
        if not isinstance(live, list):
            if declared or live is not None:
                yield path, declared, live
            return
        if declared and _named(declared) and _named(live):
            by_name = {x["name"]: x for x in live}
            for item in declared:
                step = path + (Tok("name", item["name"]),)
                if is_ignored(step, ignored):
                    continue
                if item["name"] not in by_name:
                    yield step, item, None
                else:
                    yield from differences(item, by_name[item["name"]], step, ignored)
        elif len(declared) != len(live):
            yield path, declared, live
        else:
            for i, (d, l) in enumerate(zip(declared, live)):
                yield from differences(d, l, path + (Tok("index", i),), ignored)
    elif declared is not None and not _same_scalar(declared, live):
        yield path, declared, live


def adds_items(answer, live, tokens) -> bool:
    """True when a list on the way to ``tokens`` has more items in ``answer`` (the dry-run of the
    declared object) than in ``live``.

    The API server merges many lists by a key other than ``name`` or the position the scan
    walks them by: a container's or a Service's ``ports`` by port and protocol, ``volumeMounts``
    by ``mountPath``.  Applying the declared object over a hand edit of such a key keeps the
    edited item and adds the declared one beside it, so the item the scan finds at the declared
    name or position is still the live one; the apply changes the object all the same.
    """
    for i, tok in enumerate(tokens):
        if tok.kind in ("name", "index"):
            ours, theirs = value_at(answer, tokens[:i]), value_at(live, tokens[:i])
            if isinstance(ours, list) and isinstance(theirs, list) and len(ours) != len(theirs):
                return True
    return False


def value_at(obj, tokens):
    node = obj
    for tok in tokens:
        if isinstance(node, dict) and tok.kind == "key":
            node = node.get(tok.value)
        elif isinstance(node, list) and tok.kind == "name":
            node = next((x for x in node if isinstance(x, dict) and x.get("name") == tok.value), None)
        elif isinstance(node, list) and tok.kind == "index" and tok.value < len(node):
            node = node[tok.value]
        else:
            return None
    return node


# -- who changed it -------------------------------------------------------------

def fields_cover(fields, tokens, live) -> bool:
    """True when a managedFields ``fieldsV1`` set owns the field at ``tokens`` (or a parent of it)."""
    node, live_node = fields, live
    for tok in tokens:
        if not isinstance(node, dict):
            return False
        if not node and node is not fields:
            return True  # owns the whole (atomic) value above this step
        if tok.kind == "key":
            node = node.get(f"f:{tok.value}")
            live_node = live_node.get(tok.value) if isinstance(live_node, dict) else None
        elif tok.kind == "name":
            item = value_at(live_node, (tok,)) if isinstance(live_node, list) else None
            live_node = item
            node = _match_item(node, item, tok.value)
        elif tok.kind == "index":
            # A list merged by keys (ports by port and protocol) names its items k:{...}, not i:<n>.
            item = live_node[tok.value] if isinstance(live_node, list) and tok.value < len(live_node) else None
            by_position = node.get(f"i:{tok.value}")
            node = by_position if by_position is not None else _match_item(node, item, None)
            live_node = item
        else:
            return False
        if node is None:
            return False
    return True


def _match_item(node: dict, item, name) -> dict | None:
    for key, sub in node.items():
        if not key.startswith("k:"):
            continue
        try:
            ident = json.loads(key[2:])
        except ValueError:
            continue
        if isinstance(item, dict) and isinstance(ident, dict) and ident and \
                all(item.get(k) == v for k, v in ident.items()):
            return sub
        if item is None and ident == {"name": name}:
            return sub
    return None


def changed_by(live: dict, tokens) -> dict | None:
    """The newest managedFields entry other than Pullbridge's own apply that owns ``tokens``."""
    best = None
    for mf in (live.get("metadata") or {}).get("managedFields") or []:
        if mf.get("manager") == FIELD_MANAGER and mf.get("operation") == "Apply":
            continue
        if fields_cover(mf.get("fieldsV1") or {}, tokens, live):
            if best is None or (mf.get("time") or "") > (best.get("time") or ""):
                best = mf
    return best


def by_name(pattern: tuple, declared) -> tuple:
    """``pattern`` with each ``[i]`` on a list of named items turned into ``[name=<declared[i].name>]``.

    The apply removes ``containers[0]`` by position from the declared body; the scan
    walks named lists by name, so it must skip the same item under its name.  Steps
    after a ``*`` are left as written.
    """
    out, node = [], declared
    for i, tok in enumerate(pattern):
        if tok.kind == "any":
            return tuple(out) + tuple(pattern[i:])
        if tok.kind == "index" and isinstance(node, list) and node and _named(node) and tok.value < len(node):
            tok = Tok("name", node[tok.value]["name"])
        out.append(tok)
        node = value_at(node, (tok,)) if node is not None else None
    return tuple(out)
