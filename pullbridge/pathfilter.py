"""A repository's ``paths:`` filter: which changed files concern it.

Why it exists: two places decide whether a change concerns a repository
filtered on ``paths:``, the receiver (from the files a push payload lists,
``webhook.intake``) and the periodic reconcile (from ``git diff`` between the
applied commit and the branch head, ``worker.periodic``).  They must agree on
every path, so both use this one implementation.

A pattern is a glob or a folder:

* ``*`` matches any characters, ``/`` included (``deploy/*.yaml`` matches
  ``deploy/a/b.yaml``); ``?`` one character; ``[...]`` a set;
* ``**/`` at the start of a pattern or after a ``/`` also matches no folder
  at all, as in gitignore and GitHub Actions' ``paths:`` (``**/x.yaml``
  matches ``x.yaml`` and ``a/b/x.yaml``; ``deploy/**/app.yaml`` matches
  ``deploy/app.yaml``);
* a folder (``deploy`` or ``deploy/``) matches everything under it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator

ANY_FOLDERS = "**/"


def path_matches(path: str, pattern: str) -> bool:
    """Whether the repository-relative file ``path`` matches one ``paths:`` entry."""
    pattern = pattern.strip()
    if not pattern:
        return False
    folder = pattern.rstrip("/")
    if path == folder or path.startswith(folder + "/"):
        return True
    return any(fnmatch.fnmatchcase(path, glob) for glob in _zero_folder_variants(pattern))


def _zero_folder_variants(pattern: str) -> Iterator[str]:
    """``pattern``, and it with any of its ``**/`` (at the start or after a ``/``) left out.

    fnmatch's ``*`` crosses ``/``, so ``**/`` there matches one or more
    folders; leaving it out matches none.
    """
    start = 0
    while (at := pattern.find(ANY_FOLDERS, start)) != -1 and at > 0 and pattern[at - 1] != "/":
        start = at + 1
    if at == -1:
        yield pattern
        return
    head, rest = pattern[:at], pattern[at + len(ANY_FOLDERS):]
    for tail in _zero_folder_variants(rest):
        yield head + ANY_FOLDERS + tail
        yield head + tail


def touches(paths: Iterable[str] | None, patterns: list[str]) -> bool:
    """Whether a change of the files ``paths`` concerns a repo filtered on ``patterns``.

    ``paths`` None means the changed files are not known: the change passes.
    """
    if not patterns or paths is None:
        return True
    return any(path_matches(p, pat) for p in paths for pat in patterns)
