"""A repository's ``paths:`` filter: which changed files concern it.

Why it exists: two places decide whether a change concerns a repository
filtered on ``paths:``, the receiver (from the files a push payload lists,
``webhook.intake``) and the periodic reconcile (from ``git diff`` between the
applied commit and the branch head, ``worker.periodic``).  They must agree on
every path, so both use this one implementation.

A pattern is a glob (``*`` matches any characters, ``/`` included) or a
folder (``deploy`` or ``deploy/``) that matches everything under it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable


def path_matches(path: str, pattern: str) -> bool:
    """Whether the repository-relative file ``path`` matches one ``paths:`` entry."""
    pattern = pattern.strip()
    if not pattern:
        return False
    folder = pattern.rstrip("/")
    return fnmatch.fnmatchcase(path, pattern) or path == folder or path.startswith(folder + "/")


def touches(paths: Iterable[str] | None, patterns: list[str]) -> bool:
    """Whether a change of the files ``paths`` concerns a repo filtered on ``patterns``.

    ``paths`` None means the changed files are not known: the change passes.
    """
    if not patterns or paths is None:
        return True
    return any(path_matches(p, pat) for p in paths for pat in patterns)
