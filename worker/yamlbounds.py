"""Bounds on YAML from a repository, checked before it is loaded.

Why it exists: a repository's YAML is written by its developers, and on a
shared worker by other tenants.  Three small files would otherwise take the
worker down: nesting a few ten thousand levels deep (``[[[[...]]]]``) crashes
the process outright in libyaml's composer (a segmentation fault: the job is
lost and retried into the same crash); an alias bomb ("billion laughs": nine
anchors each naming the one before nine times) loads in a millisecond, as
shared nodes, and then expands to billions of values wherever the objects are
copied or sent as JSON; and an alias inside the node it names (``&a [*a]``)
loads as a structure that contains itself, which no JSON can hold.
``kubectl`` refuses the last two as well ("excessive aliasing", "anchor value
contains itself").

``problem`` reads the events of a YAML stream (libyaml's parser keeps no call
stack per level) and says what is wrong, naming the line; callers name the file.
"""

from __future__ import annotations

from collections import Counter

import yaml

from worker.errors import cut

MAX_DEPTH = 200  # collections in collections; a CRD's schema stays well below
MAX_ALIAS_EXPANSION = 100_000  # values aliases may add to one document
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# How libyaml (0.2.5 on) stops at 1000 levels.  Its scanner reads flow collections ahead of the
# parser, so ``[[[[...`` a few thousand deep fails there before the parser has given 200 events.
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"


def problem(text: str | bytes) -> str | None:
    """What makes ``text`` unsafe to load (``line N: ...``), or None.  Invalid YAML is left to the
    loader, which names the problem better, except nesting too deep for libyaml: a loader written
    in Python (ruamel.yaml's, which image automation uses) recurses into it and fails."""
    try:
        return _first_problem(yaml.parse(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        if getattr(exc, "problem", None) == _LIBYAML_TOO_DEEP:
            return f"line {exc.problem_mark.line + 1}: YAML nested deeper than {MAX_DEPTH} levels"
        return None


def _first_problem(events) -> str | None:
    open_collections: list[list] = []  # [anchor, values so far] of each collection not yet closed
    open_anchors: Counter[str] = Counter()  # their anchors (one may be defined again inside itself)
    sizes: dict[str, int] = {}  # anchor -> values its node holds, itself included, aliases expanded
    added = 0  # values the aliases of this document add

    def done(anchor: str | None, size: int) -> None:
        if anchor is not None:
            sizes[anchor] = size
        if open_collections:
            open_collections[-1][1] += size

    for event in events:
        if isinstance(event, yaml.ScalarEvent):
            done(event.anchor, 1)
            continue
        line = event.start_mark.line + 1
        if isinstance(event, yaml.DocumentStartEvent):
            sizes, added = {}, 0
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(open_collections) >= MAX_DEPTH:
                return f"line {line}: YAML nested deeper than {MAX_DEPTH} levels"
            open_collections.append([event.anchor, 1])
            if event.anchor is not None:
                open_anchors[event.anchor] += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_collections.pop()
            if anchor is not None:
                open_anchors[anchor] -= 1
            done(anchor, size)
        elif isinstance(event, yaml.AliasEvent):
            if open_anchors[event.anchor] > 0:  # a lookup, not a scan of every open collection
                return f"line {line}: YAML alias *{cut(event.anchor, 100)} lies inside the node it names"
            size = sizes.get(event.anchor, 1)  # an unknown anchor: the loader reports it
            added += size
            if added > MAX_ALIAS_EXPANSION:
                return (f"line {line}: YAML aliases expand the document by more than "
                        f"{MAX_ALIAS_EXPANSION} values (an alias bomb)")
            done(None, size)
    return None
