"""Kustomization ``images:`` entries found and moved in place, and the files a build reads.

Why it exists: kustomize applies ``images: [{name, newName, newTag, digest}]``
after it has read the workloads, so for an image such an entry covers, the
tag written in the Deployment may never be deployed: the entry's ``newTag``
is.  Automation must then move that ``newTag`` instead (as ``kustomize edit
set image`` would).  Which value a deployed container really takes is asked
of kustomize itself (``worker.images.deployed``); this module lists what it
can ask about: the entries of one kustomization file, and the local files
the render of a path reads (kustomizations, resources, patches).  The edit
follows ``worker.images.manifests``: only the characters of the one scalar
change, and the result is re-read before it is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from ruamel.yaml import YAML

from worker.images.manifests import (UNREADABLE, EditError, check_bounds, only_line_changed, round_trip_yaml,
                                     split_lines, why_unreadable)
from worker.kustomization import walk
from worker.render import uses_kustomize

_PLAIN_TAG = re.compile(r"[^\s,\]\}#'\"]+")  # a plain scalar, block or flow style


@dataclass(frozen=True)
class TagOverride:
    """A kustomization's ``images:`` entry that sets the tag (or digest) of an image name."""

    path: str               # the kustomization file, relative to the checkout, as reports show it
    name: str               # ``images[].name``: the image name it applies to
    key: str                # "newTag" or "digest"
    raw: str                # the value as written, without its quotes
    new_name: str | None    # ``images[].newName``: the image that is deployed instead, if any
    line: int               # 0-based line of the value's scalar (-1: not a one-line value)
    column: int             # 0-based column where the scalar (or its quote) starts
    file: str | None = None  # the file's real path (links followed), where ``path`` shows another

    @property
    def real_path(self) -> str:
        """The file to read and write, relative to the checkout."""
        return self.path if self.file is None else self.file

    @property
    def value(self) -> str:
        return f"{self.key}: {self.raw}"


def overrides_in_text(text: str, path: str) -> list[TagOverride]:
    """The ``images:`` entries with ``newTag`` or ``digest`` of one kustomization file."""
    check_bounds(text)
    doc = round_trip_yaml().load(text)
    entries = doc.get("images") if hasattr(doc, "get") else None
    lines = split_lines(text)
    found: list[TagOverride] = []
    for entry in entries if isinstance(entries, list) else []:
        if not hasattr(entry, "get") or not entry.get("name"):
            continue
        key = next((k for k in ("newTag", "digest") if entry.get(k) is not None), None)
        if key is None:
            continue
        line, column = entry.lc.value(key)
        raw = _scalar_at(lines[line], column) if line < len(lines) else None
        if raw is None or raw[:1] in ("|", ">", "&", "*", "!") or (isinstance(entry[key], str) and raw != entry[key]):
            # a block scalar, an alias, a tagged value or one spread over lines: found, never edited
            raw, line, column = str(entry[key]), -1, -1
        new_name = entry.get("newName")
        found.append(TagOverride(path, str(entry["name"]), key, raw,
                                 str(new_name) if new_name else None, line, column))
    return found


# The entries whose files may hold workloads or patches of them (not data, CRDs, JSON patches).
WORKLOAD_FIELDS = ("resources", "bases", "components", "patchesStrategicMerge", "patches[].path")


def build_inputs(root: Path, subdir: str = ".") -> tuple[list[Path], list[Path]]:
    """The local files ``kubectl kustomize`` reads when the sync renders ``root/subdir``:
    (the kustomization files, the resource and patch files they name), real paths, sorted.

    Both empty when that path is not rendered with kustomize (plain YAML: a
    kustomization lying under it is never applied).  Otherwise the path's
    own kustomization and those of every directory its ``resources``,
    ``bases`` and ``components`` lead to, transitively (``worker.kustomization``'s
    walk), with the files they and their ``patchesStrategicMerge`` and
    ``patches`` name; an overlay nothing there leads to is not read.  Files and
    directories outside the checkout and remote bases are never followed (the
    render refuses them), nor inline patches.
    """
    checkout = root.resolve()
    if not uses_kustomize(checkout, subdir):
        return [], []
    build = walk(checkout, checkout / subdir)
    files = {entry.target for entry in build.entries if entry.field in WORKLOAD_FIELDS and entry.target.is_file()}
    return sorted(build.kustomizations), sorted(files)


def _scalar_at(line: str, column: int) -> str | None:
    """The one-line scalar starting at ``column`` (quotes stripped), None if it is not one."""
    quote = line[column:column + 1]
    if quote in ("'", '"'):
        end = line.find(quote, column + 1)
        return line[column + 1:end] if end > column else None
    match = _PLAIN_TAG.match(line, column)
    return match.group(0) if match else None


def _reads_as_string(tag: str) -> bool:
    """Whether ``newTag: <tag>`` unquoted is a string to YAML (``1.10`` is a number, kustomize refuses it)."""
    return isinstance(YAML(typ="safe", pure=True).load(f"t: {tag}\n")["t"], str)


def replace_tag(text: str, override: TagOverride, new_tag: str) -> str:
    """``text`` with the ``newTag`` of ``override`` set to ``new_tag``, nothing else changed.

    A plain value that YAML would read as a number or a boolean is written
    quoted.  Raises EditError when the file no longer holds the value there or
    the result would differ anywhere else.
    """
    if override.key != "newTag" or override.line < 0:
        raise EditError(f"{override.path}: images entry {override.name} has no one-line newTag to change")
    if new_tag == override.raw:
        return text
    lines = split_lines(text)
    line = lines[override.line] if override.line < len(lines) else ""
    if _scalar_at(line, override.column) != override.raw:
        raise EditError(f"{override.path}:{override.line + 1}: newTag of {override.name} is no longer {override.raw}")
    quote = line[override.column:override.column + 1]
    if quote in ("'", '"'):
        written, end = f"{quote}{new_tag}{quote}", override.column + len(override.raw) + 2
    else:
        written = new_tag if _reads_as_string(new_tag) else f"'{new_tag}'"
        end = override.column + len(override.raw)
    lines[override.line] = line[:override.column] + written + line[end:]
    new_text = "".join(lines)
    _verify(text, new_text, override, new_tag)
    return new_text


def _verify(old: str, new: str, override: TagOverride, new_tag: str) -> None:
    """One line differs, and re-reading gives the same entries with only this newTag moved."""
    only_line_changed(old, new, override.path, override.line)
    try:
        after = overrides_in_text(new, override.path)
    except UNREADABLE as exc:
        raise EditError(f"{override.path}: the edited file does not parse: {why_unreadable(exc)}") from None
    expected = [replace(o, raw=new_tag) if (o.line, o.column) == (override.line, override.column) else o
                for o in overrides_in_text(old, override.path)]
    if [(o.name, o.key, o.raw, o.new_name) for o in after] != \
            [(o.name, o.key, o.raw, o.new_name) for o in expected]:
        raise EditError(f"{override.path}: re-reading the edited file does not show only the new tag")
    value = YAML(typ="safe", pure=True).load(new)["images"]
    if not any(isinstance(e, dict) and e.get("name") == override.name and e.get("newTag") == new_tag for e in value):
        raise EditError(f"{override.path}: the new tag of {override.name} does not read back as the string {new_tag!r}")
