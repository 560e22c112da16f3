"""Find automated workloads in a checkout and change one image reference in place.

Why it exists: write-back must leave a manifest exactly as its author wrote
it except for the one image reference that moves (comments, key order,
quoting, indentation, other documents of a multi-document file).  The files
are read with ruamel.yaml's round-trip loader, which keeps the exact line and
column of every scalar and its quoting style; the edit then replaces only
those characters in the original text, and is checked twice before it is
kept: the new text parses to the same documents with only that value
changed, and a line diff shows that line and no other changed.  Dumping the
whole tree back would also keep comments but may re-indent sequences or fold
long lines, which is the kind of noise write-back commits must not have.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError, DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from worker import yamlbounds
from worker.errors import cut
from worker.images.policy import PolicyError, TagFilter, WorkloadPolicy, workload_policy
from worker.render import MANIFEST_SUFFIXES, MAX_MANIFEST_BYTES, MIB, objects_in_doc, shown_path, walk

# kind -> keys from the document root to its pod spec
POD_SPEC_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_LINES = re.compile(r"(?<=\n)")


def split_lines(text: str) -> list[str]:
    """Lines with their endings, split only at '\n' (CRLF kept whole), as YAML counts them."""
    return [part for part in _LINES.split(text) if part]


def read_text(path: Path) -> str:
    """A file's exact text: no newline translation, so CRLF files stay CRLF."""
    return path.read_bytes().decode("utf-8")


def write_text(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8"))


class UnsafeYAML(ValueError):
    """YAML that would take the worker down, refused before it is loaded (``worker.yamlbounds``):
    ruamel.yaml composes nodes a call per level, so nesting a few hundred deep raised
    RecursionError out of the scan."""


def check_bounds(text: str) -> None:
    """Raise UnsafeYAML, naming the line, unless ``text`` is safe to load."""
    unsafe = yamlbounds.problem(text)
    if unsafe:
        raise UnsafeYAML(unsafe)


# What reading a file with ruamel.yaml raises when the file is not YAML it can load: its own errors,
# a value that does not match its explicit tag (``!!int x``, ``!!float no``, ``!!bool maybe``,
# ``!!set x`` raise ValueError, IndexError, KeyError, AttributeError), text that is not UTF-8, and
# nesting within the bounds but with a caller's stack deep enough: ruamel.yaml takes about four
# calls per level, so 200 levels take 800 of Python's 1000.
UNREADABLE = (YAMLError, ValueError, LookupError, TypeError, AttributeError, RecursionError)


def why_unreadable(exc: Exception) -> str:
    """Why a file raising one of UNREADABLE is not read: one line, naming the line, quoting no
    value (a Secret's may be there; ruamel.yaml's messages quote the lines around the problem)."""
    if isinstance(exc, (UnsafeYAML, UnicodeDecodeError)):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "YAML nested too deep for the image scan to read"
    mark = getattr(exc, "problem_mark", None) if isinstance(exc, MarkedYAMLError) else None
    where = f"line {mark.line + 1}: " if mark else ""
    if isinstance(exc, DuplicateKeyError):
        return f"{where}invalid YAML: a key is given twice in one mapping"
    if isinstance(exc, MarkedYAMLError) and not isinstance(exc, ConstructorError):  # the syntax: no value quoted
        return f"{where}invalid YAML: {cut(exc.problem, 200)}"
    return f"{where}invalid YAML: a value does not match its explicit tag"


class EditError(Exception):
    """The image reference could not be changed without touching anything else."""


@dataclass(frozen=True)
class ContainerImage:
    """One container of one workload, where its image reference sits in which file."""

    path: str           # file path relative to the checkout root, as reports show it (``worker.render.shown_path``)
    workload: str       # Flux v1 style id: namespace:kind/name
    container: str
    init: bool
    image: str
    line: int           # 0-based line of the image scalar (-1: a rendered object's, in no file)
    column: int         # 0-based column where the scalar (or its quote) starts
    policy: WorkloadPolicy
    filter: TagFilter | None  # None when the annotation could not be parsed
    filter_error: str | None = None
    default_namespace: str = "default"  # what ``workload`` names when the manifest names no namespace
    file: str | None = None  # the file's real path (links followed), where ``path`` shows another

    @property
    def real_path(self) -> str:
        """The file to read and write, relative to the checkout."""
        return self.path if self.file is None else self.file

    @property
    def label(self) -> str:
        """How scan reports name it: ``namespace:kind/name container c``."""
        return f"{self.workload} container {self.container}"


@dataclass
class ScanProblems:
    files: list[tuple[str, str]]  # (path, why it was skipped)


def round_trip_yaml() -> YAML:
    """ruamel.yaml's round-trip loader: every scalar's line, column and quoting kept."""
    y = YAML(typ="rt", pure=True)
    y.preserve_quotes = True
    return y


def _dig(doc, path):
    node = doc
    for key in path:
        if not hasattr(node, "get"):
            return None
        node = node.get(key)
    return node


def manifest_files(root: Path, subdir: str = ".") -> list[Path]:
    """Every *.yaml / *.yml / *.json under ``root/subdir``, as the sync reads them (``worker.render.walk``:
    hidden names skipped, a symlinked folder inside the repository followed, each file and folder
    once), except that a symlink leading outside or nowhere is listed, for ``containers_in_files``
    to report, instead of failing the scan."""
    return walk(root.resolve(), (root / subdir).resolve(), MANIFEST_SUFFIXES, lenient=True)


def containers_in_text(text: str, path: str, default_namespace: str = "default") -> list[ContainerImage]:
    """Every container of every workload in one (possibly multi-document) file; a workload
    without ``metadata.namespace`` is named in ``default_namespace``, where the sync puts it."""
    check_bounds(text)
    out: list[ContainerImage] = []
    for doc in round_trip_yaml().load_all(text):
        for obj in objects_in_doc(doc):
            out.extend(containers_in_doc(obj, path, default_namespace))
    return out


def containers_in_doc(doc, path: str, default_namespace: str = "default") -> list[ContainerImage]:
    """The containers of one document: read round-trip, each with the line and column of its
    image; a plain ``dict`` (a rendered object, in no file) gives line and column -1."""
    if not hasattr(doc, "get") or doc.get("kind") not in POD_SPEC_PATHS:
        return []
    meta = doc.get("metadata") or {}
    if not hasattr(meta, "get"):
        return []
    workload = f"{meta.get('namespace') or default_namespace}:{doc['kind'].lower()}/{meta.get('name')}"
    policy = workload_policy(dict(meta.get("annotations") or {}))
    pod = _dig(doc, POD_SPEC_PATHS[doc["kind"]])
    if not hasattr(pod, "get"):
        return []
    specs = [(c, init) for field, init in (("initContainers", True), ("containers", False))
             for c in pod.get(field) or [] if hasattr(c, "get")]
    # a filter for a misspelt container would leave the real one on glob:* (any newest tag)
    strays = sorted(set(policy.tag_filters) - {str(c.get("name")) for c, _ in specs})
    stray_error = (f"{path}: {', '.join('tag.' + s for s in strays)} names no container "
                   f"(its containers: {', '.join(str(c.get('name')) for c, _ in specs)})") if strays else None
    out: list[ContainerImage] = []
    for container, init in specs:
        if not isinstance(container.get("image"), str):
            continue
        name = str(container.get("name"))
        line, column = container.lc.value("image") if hasattr(container, "lc") else (-1, -1)
        try:
            tag_filter, error = (None, stray_error) if stray_error else (policy.filter_for(name), None)
        except PolicyError as exc:
            tag_filter, error = None, f"{path}: tag.{name}: {exc}"
        out.append(ContainerImage(path=path, workload=workload, container=name, init=init,
                                  image=str(container["image"]), line=line, column=column,
                                  policy=policy, filter=tag_filter, filter_error=error,
                                  default_namespace=default_namespace))
    return out


def find_containers(root: Path, subdir: str = ".", default_namespace: str = "default"
                    ) -> tuple[list[ContainerImage], ScanProblems]:
    """All workload containers under ``root/subdir``; unreadable files are listed, not fatal."""
    return containers_in_files(root, subdir, manifest_files(root, subdir), default_namespace)


def containers_in_files(root: Path, subdir: str, files: list[Path], default_namespace: str = "default"
                        ) -> tuple[list[ContainerImage], ScanProblems]:
    """All workload containers of ``files`` (under ``root``, what the sync of ``subdir`` reads);
    unreadable files are listed, not fatal.  None when they total more than the render parses:
    ruamel.yaml's round trip takes about 2 s and 30 MiB of memory per MiB."""
    problems = ScanProblems(files=[])
    size = sum(file.stat().st_size for file in files if file.is_file())
    if size > MAX_MANIFEST_BYTES:
        problems.files.append((subdir, f"no image is changed: its YAML files total {size / MIB:.1f} MiB, more "
                                       f"than the {MAX_MANIFEST_BYTES // MIB} MiB Pullbridge renders"))
        return [], problems
    found: list[ContainerImage] = []
    inside = root.resolve()
    read: set[Path] = set()
    for file in files:
        real, rel = Path(os.path.realpath(file)), shown_path(inside, file)
        if not real.is_relative_to(inside):  # the worker's files, another tenant's
            problems.files.append((rel, "symlink leads outside the repository: not read"))
            continue
        if real in read:  # a link to a file read already: the sync applies it once too
            continue
        read.add(real)
        try:
            found.extend(replace(c, file=real.relative_to(inside).as_posix())  # edited there, not through a link
                         for c in containers_in_text(read_text(file), rel, default_namespace))
        except OSError as exc:  # a symlink leading nowhere, or links leading in a loop
            problems.files.append((rel, f"cannot read: {exc.strerror}"))
        except UNREADABLE as exc:
            problems.files.append((rel, why_unreadable(exc)))
    return found, problems


def replace_image(text: str, target: ContainerImage, new_image: str) -> str:
    """``text`` with the image scalar of ``target`` replaced by ``new_image``, nothing else.

    Raises EditError when the file no longer holds ``target.image`` at that
    spot or the result would differ anywhere else.
    """
    if new_image == target.image:
        return text
    lines = split_lines(text)
    if target.line >= len(lines):
        raise EditError(f"{target.path}: line {target.line + 1} is gone")
    line = lines[target.line]
    col = target.column
    quote = line[col:col + 1]
    start = col + 1 if quote in ("'", '"') else col
    end = start + len(target.image)
    if line[start:end] != target.image:
        raise EditError(f"{target.path}:{target.line + 1}: image is not written as one plain scalar here")
    if quote in ("'", '"'):
        if line[end:end + 1] != quote:
            raise EditError(f"{target.path}:{target.line + 1}: quoted image continues past the reference")
    elif line[end:end + 1] not in ("", "\n", "\r", " ", "\t"):
        raise EditError(f"{target.path}:{target.line + 1}: image continues past the reference")
    lines[target.line] = line[:start] + new_image + line[end:]
    new_text = "".join(lines)
    verify_single_change(text, new_text, target, new_image)
    return new_text


def only_line_changed(old: str, new: str, path: str, line: int) -> None:
    """EditError unless ``new`` differs from ``old`` in line ``line`` (0-based) and nowhere else."""
    changed = [op for op in difflib.SequenceMatcher(a=split_lines(old), b=split_lines(new),
                                                    autojunk=False).get_opcodes() if op[0] != "equal"]
    if [op[1:] for op in changed] != [(line, line + 1, line, line + 1)]:
        raise EditError(f"{path}: the edit would change more than line {line + 1}")


def verify_single_change(old: str, new: str, target: ContainerImage, new_image: str) -> None:
    """Exactly one line differs, and re-reading finds the new image where the old one was."""
    only_line_changed(old, new, target.path, target.line)
    namespace = target.default_namespace
    before = [(c.workload, c.container, c.image) for c in containers_in_text(old, target.path, namespace)]
    after = [(c.workload, c.container, c.image) for c in containers_in_text(new, target.path, namespace)]
    expected = [(w, n, new_image if (w, n) == (target.workload, target.container) and i == target.image
                 else i) for w, n, i in before]
    if after != expected:
        raise EditError(f"{target.path}: re-reading the edited file does not show only the new image")
