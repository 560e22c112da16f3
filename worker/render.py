"""Render a checkout into Kubernetes objects, each remembering its file and document.

Why it exists: everything after rendering (validation errors, change sets,
prune) must name where an object came from.  Two inputs are supported:

* plain YAML/JSON: every ``*.yaml``/``*.yml``/``*.json`` under the configured
  path, nested folders included, multi-document; files holding no manifest
  (no document with ``apiVersion`` and ``kind``, nor with ``metadata`` and one
  of them, see ``_meant_as_object``) and hidden folders are ignored,
  even YAML using tags of other tools (``!Ref``, ``!!python/name:``);
* kustomize, when the path holds a ``kustomization.yaml``: rendered by a real
  ``kubectl kustomize`` ($PULLBRIDGE_KUBECTL, else ``kubectl`` on PATH), once
  ``worker.kustomization`` has checked that the build reads nothing outside the
  checkout and nothing remote.

A path or symlink leading out of the checkout (or nowhere) is a permanent
error, as is bad YAML, YAML unsafe to load (``worker.yamlbounds``), a
malformed manifest (a tag YAML does not know included), the same object
declared twice, or more than MAX_MANIFEST_BYTES to parse.
Errors name files relative to the repository, kustomize's too: it names what
it visits by absolute path.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from worker.errors import PermanentError, TemporaryError, cut, shown_path
from worker import yamlbounds
from worker.kustomization import check_build, kustomization_in

KUBECTL_ENV = "PULLBRIDGE_KUBECTL"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
KUSTOMIZE_TIMEOUT = 120
# C0 and C1 controls, and Unicode's bidirectional marks, embeddings, overrides and isolates
MIB = 1024 * 1024
# What one render may parse: the files under the path, or what kustomize outputs (a 3 KB
# kustomization repeating one 1 MB file 200 times in a configMapGenerator builds 200 MB).  Parsed,
# manifests take about 11 times their size in memory; a worker is given 1 GiB.
MAX_MANIFEST_BYTES = 32 * MIB
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _TagTolerantLoader(_Loader):
    """The safe loader, except that a tag it does not know (CloudFormation's ``!Ref``,
    mkdocs' ``!!python/name:``) gives the plain value and is noted in ``unknown_tags``:
    such a file is no manifest and is ignored, while a manifest using one is refused."""

    unknown_tags: list


def _construct_unknown_tag(loader: _TagTolerantLoader, suffix: str, node: yaml.Node):
    loader.unknown_tags.append(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TagTolerantLoader.add_multi_constructor("", _construct_unknown_tag)

# Apply order, after Flux's ssa sort: what others depend on comes first.
KIND_ORDER = [
    "CustomResourceDefinition", "Namespace", "ResourceQuota", "StorageClass", "ServiceAccount",
    "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ConfigMap",
    "Secret", "Endpoints", "Service", "LimitRange", "PriorityClass", "PersistentVolume",
    "PersistentVolumeClaim", "Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]
_KIND_RANK = {kind: i for i, kind in enumerate(KIND_ORDER)}
STAGE_ONE_KINDS = ("CustomResourceDefinition", "Namespace")


@dataclass
class Manifest:
    """One desired object and where it was declared (``doc`` counts from 1)."""

    obj: dict
    file: str
    doc: int

    @property
    def api_version(self) -> str:
        return self.obj["apiVersion"]

    @property
    def kind(self) -> str:
        return self.obj["kind"]

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]

    @property
    def namespace(self) -> str | None:
        return (self.obj.get("metadata") or {}).get("namespace") or None

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def source(self) -> str:
        return f"{self.file}, doc {self.doc}"

    @property
    def ref(self) -> str:
        """``Kind/namespace/name`` or ``Kind/name``, as errors and change sets show it."""
        return object_ref(self.kind, self.namespace, self.name)


def object_ref(kind: str, namespace: str | None, name: str) -> str:
    """``Kind/namespace/name``, or ``Kind/name`` for a cluster-scoped object."""
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def kind_rank(kind: str) -> int:
    return _KIND_RANK.get(kind, len(KIND_ORDER))


def sort_key(m: Manifest) -> tuple:
    return (kind_rank(m.kind), m.kind if kind_rank(m.kind) == len(KIND_ORDER) else "",
            m.group, m.namespace or "", m.name)


def sort_manifests(manifests: list[Manifest]) -> list[Manifest]:
    """Stable apply order: CRDs, Namespaces, then by kind rank, group, namespace, name."""
    return sorted(manifests, key=sort_key)


def _inside(root: Path, path: Path) -> bool:
    """Does ``path`` lead into ``root``, symlinks followed?  (A loop of links never raises here.)"""
    return Path(os.path.realpath(path)).is_relative_to(root)


def render(checkout: Path, path: str = ".") -> list[Manifest]:
    """All objects declared under ``path`` of ``checkout``, in apply order."""
    root = Path(checkout).resolve()
    base = root / path
    if not _inside(root, base):
        raise PermanentError(f"path {path!r} leads outside the repository")
    if not base.exists():
        raise PermanentError(f"path {path!r} does not exist in the repository")
    if kustomization_in(base) is not None:
        manifests = kustomize(root, base)
    else:
        files = [base] if base.is_file() else walk(root, base)
        size = sum(file.stat().st_size for file in files)
        if size > MAX_MANIFEST_BYTES:
            raise PermanentError(f"path {path!r}: its manifest files total {size / MIB:.1f} MiB, more than the "
                                 f"{MAX_MANIFEST_BYTES // MIB} MiB Pullbridge renders")
        manifests = [m for file in files for m in parse_file(file, shown_path(root, file))]
    check_duplicates(manifests)
    return sort_manifests(manifests)


def uses_kustomize(checkout: Path, path: str = ".") -> bool:
    base = Path(checkout) / path
    return base.is_dir() and kustomization_in(base) is not None


def walk(root: Path, base: Path, suffixes: tuple[str, ...] = MANIFEST_SUFFIXES, *,
         lenient: bool = False) -> list[Path]:
    """Files under ``base`` named with one of ``suffixes``, in name order.  A symlink must lead to
    a file or folder inside ``root``; each file and folder is read once, under the first path that
    reaches it (a link to one read anyway, or to a folder above, adds nothing).  ``lenient`` (the
    image scan, which reports what it cannot read and goes on): a symlink leading outside ``root``
    or nowhere is listed as it is when its name has a suffix, for the caller to refuse, and never
    entered, instead of failing the walk."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def first_time(path: Path) -> bool:
        status = path.stat()  # symlinks followed
        if (status.st_dev, status.st_ino) in seen:
            return False
        seen.add((status.st_dev, status.st_ino))
        return True

    # (path, as shown, "folder" / "file" / "bad link"): depth first, in name order, without a call
    # per level (a commit may nest folders a thousand deep)
    pending = [(base, base, "folder")]
    while pending:
        path, shown, kind = pending.pop()
        if kind == "bad link":
            found.append(shown)
            continue
        if not first_time(path):
            continue
        if kind == "file":
            found.append(shown)
            continue
        entries = []
        for entry in sorted(path.iterdir(), key=lambda p: p.name):
            if entry.name.startswith("."):
                continue
            display = shown / entry.name
            if entry.is_symlink():
                bad = None
                if not _inside(root, entry):
                    bad = "symlink leads outside the repository"
                elif not entry.exists():  # what it named would silently no longer be applied, and be pruned
                    bad = "symlink leads nowhere (its target is missing, or links lead in a loop)"
                if bad and not lenient:
                    raise PermanentError(f"{shown_path(root, display)}: {bad}")
                if bad:
                    if entry.name.endswith(suffixes):
                        entries.append((entry, display, "bad link"))
                    continue
            if entry.is_dir():
                entries.append((entry, display, "folder"))
            elif entry.is_file() and entry.name.endswith(suffixes):
                entries.append((entry, display, "file"))
        pending.extend(reversed(entries))
    return found


def parse_file(file: Path, rel: str) -> list[Manifest]:
    """The manifests in one file; [] when it declares none (not a manifest file)."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PermanentError(f"{rel}: cannot read: {cut(exc, 200)}") from None
    return parse_documents(text, rel)


def parse_documents(text: str, rel: str, *, strict: bool = False) -> list[Manifest]:
    """Parse multi-document YAML; ``strict``: every non-empty document must be a manifest."""
    unsafe = yamlbounds.problem(text)
    if unsafe:
        raise PermanentError(f"{rel}: {unsafe}")
    loader = _TagTolerantLoader(text)
    docs, unknown_tags = [], []
    try:
        while loader.check_data():
            loader.unknown_tags = []
            docs.append(loader.get_data())
            unknown_tags.append(loader.unknown_tags)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f": line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PermanentError(f"{rel}{where}: invalid YAML: {cut(problem, 200)}") from None
    except (ValueError, KeyError, TypeError, AttributeError):  # `!!int x`, `!!bool maybe`...
        # Not the exception's text: it quotes the value, which may be a secret.
        raise PermanentError(f"{rel}: invalid YAML: a value does not match its explicit tag") from None
    finally:
        loader.dispose()
    if not strict and not any(_meant_as_object(d) for d in docs):
        return []
    out: list[Manifest] = []
    for index, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        where = f"{rel}, doc {index}"
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            raise PermanentError(f"{where}: not a Kubernetes object (apiVersion and kind are required)")
        if unknown_tags[index - 1]:
            node = unknown_tags[index - 1][0]
            raise PermanentError(f"{where}: line {node.start_mark.line + 1}: YAML tag {cut(node.tag, 100)!r} "
                                 "cannot be used in a Kubernetes object")
        for obj in objects_in_doc(doc):
            out.append(_checked(obj, rel, index))
    return out


def objects_in_doc(doc) -> list:
    """The objects one document declares: the ``items`` of a ``kind: List`` (or any other
    ``...List``, as ``kubectl get -o yaml`` writes them), else the document itself.  The image
    scan reads its round-trip documents the same way (``worker.images.manifests``)."""
    items = doc.get("items") if isinstance(doc, dict) and str(doc.get("kind")).endswith("List") else None
    return list(items) if isinstance(items, list) else [doc]


def _meant_as_object(doc) -> bool:
    """Does ``doc`` declare a Kubernetes object, or try to: apiVersion and kind, or metadata and
    one of them (whatever its case), or a bare list holding such objects (kubectl refuses it)?
    A file with such a document is a manifest file, so an object whose apiVersion was forgotten or
    misspelt fails the sync instead of leaving Git unseen, and being pruned.  Other YAML (a Helm
    Chart.yaml's apiVersion, tool configs) is not."""
    if isinstance(doc, list):
        return any(isinstance(item, dict) and _meant_as_object(item) for item in doc)
    if not isinstance(doc, dict):
        return False
    if "apiVersion" in doc and "kind" in doc:
        return True
    return isinstance(doc.get("metadata"), dict) and any(str(key).lower() in ("apiversion", "kind") for key in doc)


def _checked(obj, rel: str, index: int) -> Manifest:
    where = f"{rel}, doc {index}"
    if not isinstance(obj, dict) or not isinstance(obj.get("apiVersion"), str) \
            or not isinstance(obj.get("kind"), str):
        raise PermanentError(f"{where}: not a Kubernetes object (apiVersion and kind are required)")
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        if isinstance(meta, dict) and meta.get("generateName"):
            raise PermanentError(f"{where}: {obj['kind']} uses generateName, which cannot be synced")
        raise PermanentError(f"{where}: {obj['kind']} has no metadata.name")
    if "namespace" in meta and not isinstance(meta["namespace"], str):
        raise PermanentError(f"{where}: metadata.namespace must be a string")
    return Manifest(obj, rel, index)


def check_duplicates(manifests: list[Manifest], namespaces: list[str | None] | None = None) -> None:
    """Refuse an object declared twice, naming both places.

    ``namespaces``: the namespace each object is applied in, once the applier
    knows (the default one filled in, none for a cluster-scoped kind), so that
    ``cfg`` without a namespace and ``cfg`` in the default one are one object.
    Without it, the namespace as written.
    """
    seen: dict[tuple, Manifest] = {}
    for index, m in enumerate(manifests):
        namespace = m.namespace if namespaces is None else namespaces[index]
        key = (m.group, m.kind, namespace, m.name)
        if key in seen:
            ref = object_ref(m.kind, namespace, m.name)
            raise PermanentError(f"{ref} is declared twice: {seen[key].source} and {m.source}")
        seen[key] = m


def kubectl_binary() -> str:
    return os.environ.get(KUBECTL_ENV) or "kubectl"


_NAME_CHAR = r"[\w.@+~-]"  # what continues a file name after a path (not a quote, a colon, a space)


def repo_relative(text: str, root: Path) -> str:
    """``text`` with each path in the checkout ``root`` shown relative to it, ``root`` itself as
    '.': errors must not show where a checkout (or a copy of one) lies on the worker."""
    in_root = re.compile(re.escape(str(root)) + rf"(?:(?P<inside>/)(?={_NAME_CHAR})|/?(?!{_NAME_CHAR}))")
    return in_root.sub(lambda match: "" if match["inside"] else ".", text)


def kustomize(root: Path, base: Path) -> list[Manifest]:
    """Run ``kubectl kustomize`` on ``base``, once all it would read is known to be in the checkout
    (``worker.kustomization``); objects are attributed to its kustomization file."""
    rel = shown_path(root, kustomization_in(base))
    check_build(root, base)
    with tempfile.TemporaryFile() as output:  # not in memory: read only once known not to be too large
        try:
            proc = subprocess.run([kubectl_binary(), "kustomize", str(base)], stdout=output, stderr=subprocess.PIPE,
                                  timeout=KUSTOMIZE_TIMEOUT, cwd=root, env={**os.environ, "HOME": str(root)})
        except FileNotFoundError:
            raise TemporaryError(f"kubectl not found (set {KUBECTL_ENV})") from None
        except subprocess.TimeoutExpired:
            raise TemporaryError(f"kubectl kustomize took longer than {KUSTOMIZE_TIMEOUT}s") from None
        if proc.returncode < 0:  # the kernel's OOM killer picks the largest process: a build held in memory
            raise PermanentError(f"{rel}: kustomize failed: kubectl was killed by signal {-proc.returncode} "
                                 "(out of memory, building too much?)")
        if proc.returncode != 0:
            message = repo_relative(proc.stderr.decode("utf-8", "replace"), root)
            raise PermanentError(f"{rel}: kustomize failed: {cut(message, 400)}")
        size = os.fstat(output.fileno()).st_size
        if size > MAX_MANIFEST_BYTES:
            raise PermanentError(f"{rel}: kustomize built {size / MIB:.1f} MiB of objects, more than the "
                                 f"{MAX_MANIFEST_BYTES // MIB} MiB Pullbridge renders (a generator or "
                                 "replacement repeating a large file?)")
        output.seek(0)
        text = output.read().decode("utf-8")
    return parse_documents(text, rel, strict=True)
