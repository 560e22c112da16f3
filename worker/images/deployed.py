"""The containers a sync deploys, each with the one value in Git that sets its image tag.

Why it exists: image automation must change what the sync deploys, and only
that.  In a path rendered as plain YAML every workload file is applied as
written, so a container's own image line is what runs.  In a path the sync
renders with kustomize (``worker.render``), what runs is ``kubectl
kustomize``'s output: a file no kustomization builds is never applied, a
patch's image replaces the one of the workload it patches, and a
kustomization's ``images:`` entries apply after its patches and after all it
includes (its resources' kustomizations first, then its components in
order), so of several entries for one image the outermost wins, unless an
inner ``newName`` renamed the image it would match.  Bumping anything else
makes a commit that changes nothing deployed, or leaves the deployed tag old.

Rather than model kustomize, this asks it.  In a copy of the checkout, each
value the build may take a tag from (the tag of every container in the files
the build reads, every ``images:`` entry's ``newTag`` or ``digest``) is
replaced by a marker of its own; the copy is rendered by the same ``kubectl
kustomize`` as the sync; the marker in each rendered container's image names
the one value that reaches it.  A container showing no marker takes its tag
from nothing the automation can edit (an inline or JSON patch, a
replacement, a value spread over lines) and gets no source.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from worker.errors import PermanentError, TemporaryError
from worker.images.kustomize import TagOverride, build_inputs, overrides_in_text
from worker.images.manifests import (UNREADABLE, ContainerImage, ScanProblems, containers_in_doc, containers_in_files,
                                     find_containers, read_text, split_lines, write_text)
from worker.render import render, shown_path, uses_kustomize

Source = ContainerImage | TagOverride


@dataclass
class Deployed:
    """One container as the sync deploys it, and what sets its tag."""

    container: ContainerImage   # the deployed workload's name, annotations (its policy) and image
    source: Source | None       # the image line or images: entry whose value it runs; None: nothing editable


def deployed_containers(root: Path, subdir: str = ".", default_namespace: str = "default"
                        ) -> tuple[list[Deployed], ScanProblems]:
    """Every container the sync of ``root/subdir`` deploys, with its source; unreadable files
    and a path that does not render are listed in the problems, not fatal."""
    if not uses_kustomize(root, subdir):
        containers, problems = find_containers(root, subdir, default_namespace)
        return [Deployed(c, c) for c in containers], problems
    return _traced(root.resolve(), subdir, default_namespace)


@dataclass(frozen=True)
class _Mark:
    source: Source
    marker: str
    value: str      # the source's value as the file holds it (without quotes)
    written: str    # the scalar written in the copy instead
    shown: str      # how the marker reads in a rendered image reference
    real: str       # what the reference reads there with the source's own value


def _mark(source: Source, marker: str) -> _Mark:
    """The marker ``source`` writes: a container's tag (its name and digest kept, as entries
    match by name), an entry's newTag, or an entry's digest."""
    if isinstance(source, TagOverride):
        if source.key == "newTag":
            return _Mark(source, marker, source.raw, marker, f":{marker}", f":{source.raw}")
        return _Mark(source, marker, source.raw, f"sha256:{marker}", f"@sha256:{marker}", f"@{source.raw}")
    rest, at, digest = source.image.partition("@")
    colon = rest.rfind(":")
    name, tag = (rest[:colon], rest[colon:]) if colon > rest.rfind("/") else (rest, "")
    return _Mark(source, marker, source.image, f"{name}:{marker}{at}{digest}", f":{marker}", tag)


def _write_marks(copy: Path, marks: list[_Mark]) -> list[_Mark]:
    """Write each mark over its source's value in ``copy``; returns those written (a value not
    written as one-line characters at its place is left as it is)."""
    written: list[_Mark] = []
    by_file: dict[str, list[_Mark]] = {}
    for mark in marks:
        if mark.source.line >= 0:
            by_file.setdefault(mark.source.real_path, []).append(mark)
    for path, in_file in by_file.items():
        lines = split_lines(read_text(copy / path))
        for mark in sorted(in_file, key=lambda m: (m.source.line, m.source.column), reverse=True):
            line, column = lines[mark.source.line], mark.source.column
            start = column + 1 if line[column:column + 1] in ("'", '"') else column
            if line[start:start + len(mark.value)] == mark.value:
                lines[mark.source.line] = line[:start] + mark.written + line[start + len(mark.value):]
                written.append(mark)
        write_text(copy / path, "".join(lines))
    return written


def _traced(checkout: Path, subdir: str, default_namespace: str) -> tuple[list[Deployed], ScanProblems]:
    kustomizations, files = build_inputs(checkout, subdir)
    lines, problems = containers_in_files(checkout, subdir, files, default_namespace)
    entries: list[TagOverride] = []
    for file in kustomizations:
        try:
            entries.extend(replace(entry, file=file.relative_to(checkout).as_posix())
                           for entry in overrides_in_text(read_text(file), shown_path(checkout, file)))
        except UNREADABLE:
            continue  # the render reports a broken kustomization
    nonce = uuid.uuid4().hex[:16]
    marker = re.compile(f"pb{nonce}x[0-9]+")
    with tempfile.TemporaryDirectory(prefix="pb-images-trace-") as tmp:
        copy = Path(tmp) / "checkout"
        shutil.copytree(checkout, copy, symlinks=True, ignore=shutil.ignore_patterns(".git"))
        marks = _write_marks(copy, [_mark(s, f"pb{nonce}x{n}") for n, s in enumerate([*lines, *entries])])
        try:
            rendered = render(copy, subdir)
        except (PermanentError, TemporaryError) as exc:
            problems.files.append((subdir, f"no image is changed while the path does not render: {exc}"))
            return [], problems
    by_marker = {m.marker: m for m in marks}
    found: list[Deployed] = []
    for manifest in rendered:
        for container in containers_in_doc(manifest.obj, manifest.file, default_namespace):
            shown = [by_marker[m] for m in marker.findall(container.image)]
            image = container.image
            for mark in shown:
                image = image.replace(mark.shown, mark.real)
            found.append(Deployed(replace(container, image=image), shown[0].source if len(shown) == 1 else None))
    return found, problems
