"""Image tags set by a kustomization's ``images:`` entries, found and moved in place.

Why it exists: kustomize applies ``images: [{name, newName, newTag, digest}]``
after it has read the workloads, so for an image such an entry covers, the
tag written in the Deployment is never deployed: the entry's ``newTag`` is.
Automation must move that ``newTag`` instead (as ``kustomize edit set image``
would), and leave alone what it cannot move safely: a digest pin, or an entry
several kustomizations set.  Only the kustomizations the sync's render reads
count: one that is never rendered changes nothing deployed, and taking the
update there would leave the deployed tag old.  And an entry sets the tag of
a container only if the container's file is in what its kustomization builds
(its resources, and what the kustomizations they lead to build), as kustomize
applies it: a shared base's entry never changes the overlay's own workloads,
so moving it would change other overlays and leave this one's tag old.  A
component's entry applies to what its parent has built when the component
is reached.  The edit follows ``worker.images.manifests``: only the
characters of the one scalar change, and the result is re-read before it is
kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from worker.images.manifests import EditError, only_line_changed, read_text, round_trip_yaml, split_lines
from worker.render import KUSTOMIZATION_FILES, uses_kustomize

_PLAIN_TAG = re.compile(r"[^\s,\]\}#'\"]+")  # a plain scalar, block or flow style


@dataclass(frozen=True)
class TagOverride:
    """A kustomization's ``images:`` entry that sets the tag (or digest) of an image name."""

    path: str               # the kustomization file, relative to the checkout
    name: str               # ``images[].name``: matched as kustomize does, against the reference before its tag
    key: str                # "newTag" or "digest"
    raw: str                # the value as written, without its quotes
    new_name: str | None    # ``images[].newName``: the image that is deployed instead, if any
    line: int               # 0-based line of the value's scalar
    column: int             # 0-based column where the scalar (or its quote) starts
    # the files (relative to the checkout, symlinks resolved) whose workloads the entry changes
    builds: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def value(self) -> str:
        return f"{self.key}: {self.raw}"

    @property
    def deployed(self) -> str:
        """The image reference kustomize writes into the workload."""
        separator = ":" if self.key == "newTag" else "@"
        return f"{self.new_name or self.name}{separator}{self.raw}"

    def covers(self, image: str) -> bool:
        return image == self.name or image.startswith((self.name + ":", self.name + "@"))

    def sets_tag_of(self, file: str, image: str) -> bool:
        """Whether kustomize applies this entry to ``image`` declared in ``file`` (a ``real_path``)."""
        return file in self.builds and self.covers(image)


def overrides_in_text(text: str, path: str) -> list[TagOverride]:
    """The ``images:`` entries with ``newTag`` or ``digest`` of one kustomization file."""
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


def kustomize_tag_overrides(root: Path, subdir: str = ".") -> list[TagOverride]:
    """The ``images:`` entries with ``newTag`` or ``digest`` of the kustomizations the render of
    ``root/subdir`` reads (none when that path is not rendered with kustomize), each with the
    files whose workloads it changes (``builds``)."""
    found: list[TagOverride] = []
    checkout = root.resolve()
    for file, builds in kustomization_builds(root, subdir).items():
        path = file.relative_to(checkout).as_posix()
        try:
            overrides = overrides_in_text(read_text(file), path)
        except (YAMLError, UnicodeDecodeError, ValueError):
            continue  # the render reports a broken kustomization; nothing to match here
        files = frozenset(f.relative_to(checkout).as_posix() for f in builds)
        found.extend(replace(o, builds=files) for o in overrides)
    return found


def real_path(root: Path, path: str) -> str:
    """``path`` (relative to the checkout) with symlinks resolved, as ``TagOverride.builds`` holds files."""
    checkout = root.resolve()
    real = (checkout / path).resolve()
    return real.relative_to(checkout).as_posix() if real.is_relative_to(checkout) else path


def _kustomization_in(directory: Path) -> Path | None:
    return next((directory / name for name in KUSTOMIZATION_FILES if (directory / name).is_file()), None)


def kustomization_builds(root: Path, subdir: str = ".") -> dict[Path, frozenset[Path]]:
    """Each kustomization file ``kubectl kustomize`` reads when the sync renders ``root/subdir``
    -> the resource files its ``images:`` entries apply to, as kustomize builds them; sorted by path.

    Empty when that path is not rendered with kustomize (plain YAML: a
    kustomization lying under it is never applied, so its ``images:`` change
    nothing that is deployed).  Otherwise the path's own kustomization and
    those of every directory its ``resources``, ``bases`` and ``components``
    lead to, transitively, inside the checkout; an unrelated overlay next to
    them is not rendered either.  Remote bases are left out (nothing to edit).

    A kustomization's entries apply to its build: its ``resources`` and
    ``bases`` files and what the kustomizations there build, then what its
    components add.  A component is built onto its parent's resources: its
    entries apply to what the parent holds when the component is reached
    (not to what a later component adds), and to its own resources.  Files
    and directories outside the checkout and remote bases are never followed.
    """
    checkout = root.resolve()
    if not uses_kustomize(checkout, subdir):
        return {}
    walk = _BuildWalk(checkout)
    walk.build((checkout / subdir).resolve(), None)
    return {file: frozenset(walk.applies_to[file])
            for file in sorted(walk.applies_to, key=lambda f: f.relative_to(checkout).as_posix())}


class _BuildWalk:
    """Builds kustomizations the way ``kubectl kustomize`` accumulates resources, files only."""

    def __init__(self, checkout: Path):
        self.checkout = checkout
        self.applies_to: dict[Path, set[Path]] = {}    # kustomization file -> what its images: change
        self.built: dict[Path, frozenset[Path]] = {}   # a kustomization built on its own -> its files
        self.open: set[Path] = set()                   # being built: a cycle (kustomize refuses it) stops

    def build(self, directory: Path, parent: frozenset[Path] | None) -> frozenset[Path]:
        """The files the kustomization in ``directory`` outputs; ``parent``: for a component, what
        its parent holds so far (None for a kustomization built on its own)."""
        start = parent or frozenset()
        file = _kustomization_in(directory)
        if file is None or file in self.open:
            return start
        if parent is None and file in self.built:
            return self.built[file]
        self.open.add(file)
        files = set(start)
        try:
            doc = YAML(typ="safe", pure=True).load(read_text(file))
        except (YAMLError, UnicodeDecodeError, ValueError):
            doc = None  # the render reports it; the file is still listed as read
        for entry in _local_entries(doc, "resources") + _local_entries(doc, "bases"):
            target = (directory / entry).resolve()
            if not target.is_relative_to(self.checkout):
                continue
            if target.is_dir():
                files |= self.build(target, None)
            elif target.is_file():
                files.add(target)
        for entry in _local_entries(doc, "components"):
            target = (directory / entry).resolve()
            if target.is_dir() and target.is_relative_to(self.checkout):
                files = set(self.build(target, frozenset(files)))
        self.open.discard(file)
        self.applies_to.setdefault(file, set()).update(files)
        if parent is None:
            self.built[file] = frozenset(files)
        return frozenset(files)


def _local_entries(doc, key: str) -> list[str]:
    """The entries of ``doc[key]`` that name a path in the checkout (not a URL or remote base)."""
    entries = doc.get(key) if isinstance(doc, dict) else None
    return [entry for entry in entries if isinstance(entry, str) and "://" not in entry
            and not entry.startswith(("git@", "github.com/"))] if isinstance(entries, list) else []


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
    except (YAMLError, ValueError) as exc:
        raise EditError(f"{override.path}: the edited file does not parse: {str(exc)[:200]}") from None
    expected = [o if o != override else TagOverride(o.path, o.name, o.key, new_tag, o.new_name, o.line, o.column)
                for o in overrides_in_text(old, override.path)]
    if [(o.name, o.key, o.raw, o.new_name) for o in after] != \
            [(o.name, o.key, o.raw, o.new_name) for o in expected]:
        raise EditError(f"{override.path}: re-reading the edited file does not show only the new tag")
    value = YAML(typ="safe", pure=True).load(new)["images"]
    if not any(isinstance(e, dict) and e.get("name") == override.name and e.get("newTag") == new_tag for e in value):
        raise EditError(f"{override.path}: the new tag of {override.name} does not read back as the string {new_tag!r}")
