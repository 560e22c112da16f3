"""What a ``kubectl kustomize`` build reads, checked to stay in the repository before kustomize runs.

Why it exists: kustomize's default load restrictor keeps the *files* a
kustomization reads in its own directory, but follows a *directory* named in
``resources``, ``bases``, ``components``, ``generators``, ``transformers`` or
``validators`` anywhere on the machine: ``resources: [../../other]`` builds
another repository's checkout on a shared worker into this repository's
objects.  And kustomize fetches what looks remote by itself (a git base such as
``https://host/org/repo``, ``git@host:org/repo``, ``github.com/org/repo`` or
``file:///srv/repo.git``; an ``https://`` file), from hosts and through a
transport Pullbridge does not control, so a commit would no longer say what
is deployed.

``walk`` reads every kustomization a build reaches as kustomize 5 reads it
(keys in any letter case, every scalar but null a string, ``bases`` and
``env`` too), with the plugin configurations its ``generators``,
``transformers`` and ``validators`` name, and lists each path they give.
A build is refused (``check_build``), naming the file and the entry, when an
entry is remote, leads outside the checkout (``..`` taken as written, as
kustomize joins paths, then symlinks followed), or asks for what the worker
does not run: Helm charts, and plugin configurations built from a directory
(what those read is known only after kustomize's own transformations).  A
kustomization or configuration this module cannot read, or that is unsafe to
load (``worker.yamlbounds``), is refused too:
kustomize must never follow what was not checked.  Image automation lists
the files a build reads from the same walk (``worker.images.kustomize``).
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from worker import yamlbounds
from worker.errors import PermanentError, cut, shown_path

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

# May name a file, a directory holding a kustomization (read in turn) or a remote base.
BASE_FIELDS = ("resources", "bases", "components")
# Name plugin configurations: a file, or the configuration itself written inline.
PLUGIN_FIELDS = ("generators", "transformers", "validators")
# Name files kustomize loads, relative to the kustomization: label -> keys down to the path.
FILE_FIELDS = {
    "crds": ("crds",), "configurations": ("configurations",),
    "patchesStrategicMerge": ("patchesStrategicMerge",), "patches[].path": ("patches", "path"),
    "patchesJson6902[].path": ("patchesJson6902", "path"), "replacements[].path": ("replacements", "path"),
    "openapi.path": ("openapi", "path"),
    **{f"{generator}[].{key}": (generator, key)
       for generator in ("configMapGenerator", "secretGenerator") for key in ("files", "envs", "env")},
}
# The same in a plugin configuration (PatchTransformer, ConfigMapGenerator, ...), at its top level.
PLUGIN_FILE_FIELDS = {"path": ("path",), "paths": ("paths",), "targetFilePath": ("targetFilePath",),
                      "files": ("files",), "envs": ("envs",), "env": ("env",),
                      "replacements[].path": ("replacements", "path")}
HELM_FIELDS = ("helmCharts", "helmChartInflationGenerator")
HELM_KIND = "HelmChartInflationGenerator"
NO_HELM = "cannot be built: Pullbridge runs kustomize without Helm (charts come from outside the repository)"

# What kustomize fetches rather than reads from disk (a superset): a git base (a URL, user@host:path,
# github.com/..., maybe after "git::") or an http(s) file.
_REMOTE = re.compile(r"://|^(?:git::)?(?:[a-z][a-z0-9-]*@|github\.com[/:])|^https?:", re.IGNORECASE)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _AsKustomizeReads(_Loader):
    """Safe YAML read the way kustomize reads it (Go YAML, then JSON, then strings): every scalar
    but null a string, so ``resources: [2024-01-01]`` names the directory '2024-01-01', and
    ``!!binary`` the text it encodes."""


def _scalar_text(loader: _AsKustomizeReads, node: yaml.Node) -> str:
    return loader.construct_scalar(node)


def _binary_text(loader: _AsKustomizeReads, node: yaml.Node) -> str:
    return base64.decodebytes(loader.construct_scalar(node).encode("ascii")).decode("utf-8", "replace")


for _tag in ("bool", "int", "float", "timestamp"):
    _AsKustomizeReads.add_constructor(f"tag:yaml.org,2002:{_tag}", _scalar_text)
_AsKustomizeReads.add_constructor("tag:yaml.org,2002:binary", _binary_text)


@dataclass(frozen=True)
class Entry:
    """One local path a kustomization, or a plugin configuration it names, gives kustomize."""

    source: Path    # the file naming it (real path)
    field: str      # "resources", "patches[].path", "PatchTransformer path", ...
    value: str      # as written
    target: Path    # where kustomize looks: in the checkout, symlinks followed (it may not exist)


@dataclass
class Build:
    """What one build reads: its kustomizations (real paths, in the order reached), the local
    entries they and their plugin configurations give, and why the build is refused, if it is."""

    kustomizations: list[Path] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


def kustomization_in(directory: Path) -> Path | None:
    return next((directory / name for name in KUSTOMIZATION_FILES if (directory / name).is_file()), None)


def check_build(checkout: Path, directory: Path) -> None:
    """Raise PermanentError (the first refusal) unless all the build of ``directory`` reads is in ``checkout``."""
    refusals = walk(checkout, directory).refusals
    if refusals:
        raise PermanentError(refusals[0])


def walk(checkout: Path, directory: Path) -> Build:
    """The kustomizations the build of ``directory`` reaches and the paths they give; nothing
    outside ``checkout`` or remote is followed, each is a refusal."""
    walker = _Walker(Path(os.path.realpath(checkout)))
    pending, seen = [Path(os.path.realpath(directory))], set()
    while pending:
        current = pending.pop(0)
        kustomization = kustomization_in(current)
        if current in seen or kustomization is None:
            continue  # kustomize reports a directory without a kustomization
        seen.add(current)
        pending.extend(walker.kustomization(kustomization))
    return walker.build


class _Walker:
    def __init__(self, root: Path):
        self.root = root
        self.build = Build()

    def shown(self, path: Path) -> str:
        return shown_path(self.root, path)

    def refuse(self, source: Path, message: str) -> None:
        self.build.refusals.append(f"{self.shown(source)}: {message}")

    def kustomization(self, file: Path) -> list[Path]:
        """Check one kustomization; returns the directories it builds in turn."""
        real = Path(os.path.realpath(file))
        if not real.is_relative_to(self.root):
            self.refuse(file, "symlink leads outside the repository")
            return []
        self.build.kustomizations.append(real)
        docs = self.documents(real, file)
        doc = docs[0] if docs else None
        if not isinstance(doc, dict):
            return []  # kustomize reports an empty or malformed kustomization
        directory = file.parent
        for helm in HELM_FIELDS:
            if any(value is not None for value in _found(doc, (helm,))):
                self.refuse(file, f"{helm} {NO_HELM}")
        bases = [target for name in BASE_FIELDS for value in _strings(doc, (name,))
                 if (target := self.local(file, directory, name, value)) is not None and target.is_dir()]
        for label, keys in FILE_FIELDS.items():
            self.files(file, directory, doc, label, keys)
        for name in PLUGIN_FIELDS:
            for value in _strings(doc, (name,)):
                self.plugin_entry(file, directory, name, value)
        return bases

    def local(self, source: Path, directory: Path, label: str, value: str, path: str | None = None) -> Path | None:
        """Where entry ``value`` (its ``path`` when that is only part of it) leads; None (and a
        refusal) when it is remote or outside the checkout."""
        path = value if path is None else path
        if _REMOTE.search(path):
            self.refuse(source, f"{label} entry {cut(value, 200)!r} is remote: Pullbridge builds from the "
                                "repository only (copy what it names into the repository)")
            return None
        try:  # as kustomize: joined and cleaned as written ("link/.." is "."), then symlinks followed
            target = Path(os.path.realpath(os.path.normpath(os.path.join(directory, path))))
        except ValueError:  # a NUL byte: no file has that name, kustomize fails
            return None
        if not target.is_relative_to(self.root):
            self.refuse(source, f"{label} entry {cut(value, 200)!r} leads outside the repository")
            return None
        self.build.entries.append(Entry(source, label, value, target))
        return target

    def files(self, source: Path, directory: Path, doc: dict, label: str, keys: tuple[str, ...]) -> None:
        for value in _strings(doc, keys):
            if keys[-1] in ("patchesStrategicMerge", "paths") and isinstance(_read_entry(value), list):
                continue  # a patch written inline: nothing is loaded
            path = value.partition("=")[2] if keys[-1] == "files" and "=" in value else value  # "key=path"
            self.local(source, directory, label, value, path)

    def plugin_entry(self, kustomization: Path, directory: Path, name: str, value: str) -> None:
        """One ``generators``/``transformers``/``validators`` entry: inline, or a file (read
        relative to the kustomization, as kustomize configures it)."""
        read = _read_entry(value)
        if isinstance(read, list):
            for config in _configurations(read):
                self.plugin_configuration(kustomization, directory, f"{name}: ", config)
            return
        target = self.local(kustomization, directory, name, value)
        if target is None:
            return
        if target.is_dir():
            self.refuse(kustomization, f"{name} entry {cut(value, 200)!r} is a directory: Pullbridge takes "
                                       f"{name} from files or inline only (what a directory builds may read "
                                       "anything once kustomize has transformed it)")
        elif target.is_file():
            for config in _configurations(self.documents(target, target)):
                self.plugin_configuration(target, directory, "", config)
        elif read is None:  # neither a file nor a configuration YAML reads
            self.refuse(kustomization, f"{name} entry {cut(value, 200)!r} is neither a file in the repository "
                                       "nor a configuration that can be read")

    def plugin_configuration(self, source: Path, directory: Path, prefix: str, config: dict) -> None:
        kind = config.get("kind")
        kind = kind if isinstance(kind, str) and kind else "configuration"
        if kind == HELM_KIND:
            self.refuse(source, f"{prefix}{kind} {NO_HELM}")
        for label, keys in PLUGIN_FILE_FIELDS.items():
            self.files(source, directory, config, f"{prefix}{kind} {label}", keys)

    def documents(self, real: Path, shown: Path) -> list:
        """The YAML documents of a file kustomize reads; [] and a refusal when unreadable."""
        try:
            text = real.read_bytes()
            unsafe = yamlbounds.problem(text)
            if unsafe:
                self.refuse(shown, unsafe)
                return []
            return list(yaml.load_all(text, Loader=_AsKustomizeReads))
        except OSError as exc:
            self.refuse(shown, f"cannot read: {exc.strerror}")
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f": line {mark.line + 1}" if mark else ""
            self.refuse(shown, f"invalid YAML{where}: {cut(getattr(exc, 'problem', None) or exc, 200)}")
        except ValueError:  # !!binary that is not base64
            self.refuse(shown, "invalid YAML: a !!binary value is not base64")
        return []


def _found(node, keys: tuple[str, ...]) -> list:
    """Every value at ``keys`` under ``node``, through lists; keys match in any letter case, as
    kustomize's JSON decoding matches them (``Resources:`` is ``resources``), every match counts."""
    if isinstance(node, list):
        return [value for item in node for value in _found(item, keys)]
    if not keys:
        return [node]
    if not isinstance(node, dict):
        return []
    wanted = keys[0].casefold()
    return [value for key, child in node.items() if str(key).casefold() == wanted
            for value in _found(child, keys[1:])]


def _strings(node, keys: tuple[str, ...]) -> list[str]:
    return [value for value in _found(node, keys) if isinstance(value, str)]


def _read_entry(value: str) -> list | str | None:
    """An entry as kustomize tells inline YAML from a path: its documents when written inline,
    the entry itself when it reads as a path (one string), None when it is no YAML at all."""
    if yamlbounds.problem(value):
        return None
    try:
        docs = list(yaml.load_all(value, Loader=_AsKustomizeReads))
    except (yaml.YAMLError, ValueError):
        return None
    return value if len(docs) == 1 and isinstance(docs[0], str) else docs


def _configurations(docs: list) -> list[dict]:
    """The plugin configurations in ``docs``: each mapping, a list's items and a ``List``'s items."""
    found: list[dict] = []
    for doc in docs:
        for item in doc if isinstance(doc, list) else [doc]:
            if isinstance(item, dict):
                found.append(item)
                found.extend(i for i in _found(item, ("items",)) if isinstance(i, dict))
    return found
