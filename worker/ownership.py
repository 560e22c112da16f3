"""Field ownership: fields of an object that Pullbridge leaves to someone else.

Why it exists: some declared fields are legitimately managed by another
actor once the object exists (``spec.replicas`` under a HorizontalPodAutoscaler,
an annotation a controller rewrites).  If Pullbridge kept applying them it
would flap against that actor, and drift correction would revert it every
interval.  An object lists such fields in one annotation::

    metadata:
      annotations:
        pullbridge.io/ignore-fields: "spec.replicas, metadata.annotations[example.com/build]"

Path syntax (the same syntax drift entries are shown in):

* ``a.b.c``          nested map keys;
* ``[key.with/dots]``  one map key holding dots or slashes (annotation and label keys);
* ``[name=nginx]``    the item of a list whose ``name`` is ``nginx`` (containers, env, ports...);
* ``[2]``            a list item by position (lists without names);
* ``*`` or ``[*]``     any key or any item.

A path covers everything below it.  Listed fields are removed from the body
Pullbridge applies (so server-side apply releases Pullbridge's ownership of
them) and are never reported or corrected as drift.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, replace

from worker.errors import PermanentError

IGNORE_ANNOTATION = "pullbridge.io/ignore-fields"
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+\Z")


@dataclass(frozen=True)
class Tok:
    """One path step: kind is 'key', 'name' (list item by name), 'index' or 'any'."""

    kind: str
    value: object = None

    def show(self, first: bool) -> str:
        if self.kind == "key":
            key = str(self.value)
            if _PLAIN_KEY.match(key):
                return key if first else f".{key}"
            return f"[{key}]"
        if self.kind == "name":
            return f"[name={self.value}]"
        if self.kind == "index":
            return f"[{self.value}]"
        return "*" if first else ".*"


def show_path(tokens) -> str:
    return "".join(t.show(i == 0) for i, t in enumerate(tokens)) or "(object)"


def parse_path(text: str) -> tuple[Tok, ...]:
    """``spec.template.spec.containers[name=app].image`` -> tokens; ValueError when malformed."""
    tokens: list[Tok] = []
    i, n = 0, len(text)
    expect_key = True
    while i < n:
        ch = text[i]
        if ch == "[":
            end = text.find("]", i)
            if end < 0:
                raise ValueError(f"unclosed '[' in {text!r}")
            inner = text[i + 1:end]
            if not inner:
                raise ValueError(f"empty '[]' in {text!r}")
            if inner == "*":
                tokens.append(Tok("any"))
            elif inner.startswith("name="):
                tokens.append(Tok("name", inner[5:]))
            elif inner.isdigit():
                tokens.append(Tok("index", int(inner)))
            else:
                tokens.append(Tok("key", inner))
            i = end + 1
            expect_key = False
        elif ch == ".":
            if expect_key:
                raise ValueError(f"empty path step in {text!r}")
            i += 1
            expect_key = True
        else:
            m = re.compile(r"[^.\[\]]+").match(text, i)
            if not m or not expect_key:
                raise ValueError(f"unexpected {ch!r} in {text!r}")
            word = m.group(0).strip()
            tokens.append(Tok("any") if word == "*" else Tok("key", word))
            i = m.end()
            expect_key = False
    if not tokens or expect_key:
        raise ValueError(f"incomplete path {text!r}")
    return tuple(tokens)


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def ignored_paths(obj: dict) -> list[tuple[Tok, ...]]:
    """The paths an object's annotation excludes; ValueError naming the bad one."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(IGNORE_ANNOTATION)
    if not raw:
        return []
    return [parse_path(p) for p in _split_top(str(raw))]


def step_matches(pattern: Tok, step: Tok) -> bool:
    return pattern.kind == "any" or pattern == step


def is_ignored(path, patterns) -> bool:
    """True when a pattern is ``path`` or one of its ancestors."""
    for pattern in patterns:
        if len(pattern) <= len(path) and all(step_matches(p, s) for p, s in zip(pattern, path)):
            return True
    return False


def _remove(node, pattern: tuple[Tok, ...]) -> None:
    if not pattern or node is None:
        return
    head, rest = pattern[0], pattern[1:]
    if isinstance(node, dict):
        keys = list(node) if head.kind == "any" else [head.value] if head.kind == "key" else []
        for key in keys:
            if key not in node:
                continue
            if rest:
                _remove(node[key], rest)
            else:
                del node[key]
    elif isinstance(node, list):
        if head.kind == "any":
            picked = list(range(len(node)))
        elif head.kind == "name":
            picked = [i for i, x in enumerate(node) if isinstance(x, dict) and x.get("name") == head.value]
        elif head.kind == "index" and head.value < len(node):
            picked = [head.value]
        else:
            picked = []
        if rest:
            for i in picked:
                _remove(node[i], rest)
        else:
            for i in sorted(picked, reverse=True):
                del node[i]


def strip_ignored(obj: dict) -> list[tuple[Tok, ...]]:
    """Remove the annotated fields from ``obj`` in place; return the patterns used.

    ``metadata.name``/``namespace`` and the annotation itself are never removed.
    """
    patterns = ignored_paths(obj)
    for pattern in patterns:
        if pattern[0] == Tok("key", "metadata") and len(pattern) >= 2 and pattern[1] in (
                Tok("key", "name"), Tok("key", "namespace"), Tok("key", "annotations"), Tok("any")):
            if len(pattern) == 2 or pattern[2] in (Tok("key", IGNORE_ANNOTATION), Tok("any")):
                raise ValueError(f"{show_path(pattern)} cannot be ignored")
        if pattern in ((Tok("key", "apiVersion"),), (Tok("key", "kind"),), (Tok("key", "metadata"),), (Tok("any"),)):
            raise ValueError(f"{show_path(pattern)} cannot be ignored")
        _remove(obj, pattern)
    return patterns


def stripped_manifests(manifests) -> list:
    """The manifests with each ignore-fields annotation applied to a copy of its body.

    A manifest without the annotation is passed on as it is: the bodies given
    are never changed (the render cache keeps the declared ones, whose list
    positions the drift scan's ignore paths name), and an unchanged Manifest
    keeps its cached digest.  A malformed annotation is a permanent error
    naming the object and file.
    """
    out = []
    for m in manifests:
        if not ((m.obj.get("metadata") or {}).get("annotations") or {}).get(IGNORE_ANNOTATION):
            out.append(m)
            continue
        obj = copy.deepcopy(m.obj)
        try:
            strip_ignored(obj)
        except ValueError as exc:
            raise PermanentError(f"{m.ref} ({m.source}): annotation {IGNORE_ANNOTATION}: {exc}") from None
        out.append(replace(m, obj=obj))
    return out
