"""The rendered objects of an applied commit, kept so a drift scan does not re-render.

Why it exists: the periodic reconcile compares the cluster with the applied
commit every interval; rendering it again each time (a checkout, YAML
parsing, maybe ``kubectl kustomize``) would cost more than the scan itself.
Rendered manifests are kept in memory (a few commits per process) and as a
JSON file next to the git mirror (a few per repo), keyed by commit and path;
a file is written whole or not at all, and what a killed worker left half
written is removed once old.
The sync job seeds the cache with what it just applied (``remember``).

The cache holds the *declared* bodies, ``pullbridge.io/ignore-fields``
still in them: the scan matches an ignore path by position (``containers[0]``)
to the item's name in the declared list, and a correction strips the listed
fields once.  Callers must not change the manifests they get; the sync strips
a copy.  Files of the earlier format (a kustomization's could hold stripped
bodies) are never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

from worker.errors import PermanentError
from worker.fetch import STALE_TEMP_AGE, Mirror
from worker.render import Manifest, render

log = logging.getLogger("pullbridge.drift")

RENDER_CACHE_SIZE = 8
KEEP_RENDERED_FILES = 3
CACHE_FORMAT = "declared"  # in the file name: older files may hold stripped bodies
_rendered: OrderedDict[tuple, list[Manifest]] = OrderedDict()


def _key(mirror: Mirror, sha: str) -> tuple:
    return (str(mirror.root), mirror.repo.name, mirror.repo.path, sha)


def _keep(key: tuple, manifests: list[Manifest]) -> None:
    _rendered[key] = manifests
    _rendered.move_to_end(key)
    while len(_rendered) > RENDER_CACHE_SIZE:
        _rendered.popitem(last=False)


def remember(mirror: Mirror, sha: str, manifests: list[Manifest]) -> None:
    """Keep what a sync rendered for ``sha`` (declared bodies, not stripped; call once the sync is done).

    Nothing to do when ``sha`` is cached already (a sync of an unchanged commit).  Never raises.
    """
    key = _key(mirror, sha)
    if key in _rendered:
        _rendered.move_to_end(key)
        return
    try:
        _keep(key, list(manifests))
        _write_cache(_cache_file(mirror, sha, mirror.repo.path), manifests)
    except Exception:  # noqa: BLE001 - a cache must never fail a sync
        log.exception("could not cache the rendered objects of %s@%s", mirror.repo.name, sha[:12])


def _cache_file(mirror: Mirror, sha: str, path: str) -> Path:
    """The file for ``path`` at ``sha``: the path readable, and hashed, as 'deploy/prod' and
    'deploy-prod' read alike once made a file name."""
    safe = "".join(c if c.isalnum() else "_" for c in path)
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return mirror.root / f"{mirror.repo.name}.rendered" / f"{sha}-{safe}-{digest}.{CACHE_FORMAT}.json"


def rendered(mirror: Mirror, sha: str) -> list[Manifest]:
    """The manifests of ``sha``: memory, then a JSON file next to the mirror, then a render."""
    repo = mirror.repo
    key = _key(mirror, sha)
    if key in _rendered:
        _rendered.move_to_end(key)
        return _rendered[key]
    file = _cache_file(mirror, sha, repo.path)
    manifests = None
    if file.is_file():
        try:
            manifests = [Manifest(d["obj"], d["file"], d["doc"]) for d in json.loads(file.read_text())]
        except (ValueError, KeyError, TypeError, OSError):
            manifests = None
    if manifests is None:
        if not mirror.has_commit(sha):
            mirror.fetch()
        if not mirror.has_commit(sha):
            raise PermanentError(f"the applied commit {sha[:12]} is no longer on branch {repo.branch}")
        manifests = render(mirror.checkout(sha), repo.path)
        _write_cache(file, manifests)
    _keep(key, manifests)
    return manifests


def _write_cache(file: Path, manifests: list[Manifest]) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps([{"obj": m.obj, "file": m.file, "doc": m.doc} for m in manifests])
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=file.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        os.replace(tmp, file)
        old = sorted((p for p in file.parent.glob("*.json")), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in old[KEEP_RENDERED_FILES:]:
            stale.unlink(missing_ok=True)
        killed = time.time() - STALE_TEMP_AGE  # an older temporary file's writer was killed
        for partial in file.parent.glob(".tmp-*"):
            if partial.stat().st_mtime < killed:
                partial.unlink(missing_ok=True)
    except OSError as exc:  # a cache is not worth failing the check
        log.warning("could not cache rendered objects in %s: %s", file.parent.name, exc)
