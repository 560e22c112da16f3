"""Tag policies from workload annotations, and picking the newest allowed tag.

Why it exists: Flux v1 users already annotate workloads (``fluxcd.io/`` or the
older ``flux.weave.works/`` prefix) with ``automated``, ``locked`` and
``tag.<container>: glob:|semver:|regex:`` filters.  This module reads those
annotations the same way and decides, from a registry's tags, which tag a
container should run.  It is pure logic: no network, no git.

Ordering, as Flux v1 did it: ``semver:`` picks the highest version inside the
range (SemVer 2.0 precedence from the ``semver`` package); ``glob:`` and
``regex:`` pick the tag whose image was created last (config blob
``created``); among tags created at the same moment the *lowest* tag name
wins (Flux v1's ``image.NewerByCreated``), which also makes the choice
independent of the order the registry lists tags in.  A tag named ``latest``
(any case) is never picked, except by the filter ``glob:latest`` (Flux v1's
``matchWithLatest``): it usually moves with every build, so committing it
would deploy nothing new.

Range syntax is Flux v1's (Masterminds semver): ``||`` between alternatives,
comma or space between comparators that must all hold, operators
``= != > >= < <= ~ ~> ^``, wildcards ``x X *`` and partial versions (``1.8``),
hyphen ranges ``1.2 - 1.4``.  A pre-release matches a comparator set in which
every comparator names a pre-release (Masterminds', so Flux v1's: ``>=1.0.0-0``
takes any pre-release from 1.0.0 on), or one that names a pre-release of the
same major.minor.patch (npm's: ``>=1.8.0-rc.1 <1.9`` takes 1.8.0's release
candidates); no other range matches pre-releases.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

import semver

PREFIXES = ("fluxcd.io/", "flux.weave.works/")  # first one wins when both are set
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class PolicyError(ValueError):
    """An annotation holds a filter that cannot be understood."""


# ---------------------------------------------------------------- annotations

@dataclass(frozen=True)
class WorkloadPolicy:
    automated: bool
    locked: bool
    ignored: bool
    tag_filters: dict[str, str]  # container name -> raw filter ("glob:develop-v*")

    @property
    def frozen(self) -> bool:
        """Never touch this workload."""
        return self.locked or self.ignored

    def filter_for(self, container: str) -> "TagFilter":
        return TagFilter.parse(self.tag_filters.get(container, "glob:*"))


def _truthy(value) -> bool:
    return str(value).strip().lower() == "true"


def workload_policy(annotations: dict | None) -> WorkloadPolicy:
    """Read Flux v1 automation annotations (both prefixes) from a workload's metadata."""
    annotations = annotations or {}

    def get(key: str):
        for prefix in PREFIXES:
            if prefix + key in annotations:
                return annotations[prefix + key]
        return None

    filters: dict[str, str] = {}
    for prefix in reversed(PREFIXES):  # fluxcd.io/ applied last, so it wins
        for key, value in annotations.items():
            if key.startswith(prefix + "tag."):
                filters[key[len(prefix) + 4:]] = str(value)
    return WorkloadPolicy(automated=_truthy(get("automated")), locked=_truthy(get("locked")),
                          ignored=_truthy(get("ignore")), tag_filters=filters)


# ---------------------------------------------------------------- semver

_VERSION_CORE = re.compile(r"^\d+(?:\.\d+){0,2}(?=$|[-+])")


def parse_tag_version(tag: str) -> semver.Version | None:
    """A tag as a semantic version ('v' prefix and '1.8' allowed), or None.

    Numbers of the version core may be zero-padded, as Flux v1 (Masterminds'
    ``NewVersion``) read them: calendar tags ``24.04`` and ``2024.01.15`` are
    24.4.0 and 2024.1.15; a pre-release number may not (``1.0.0-rc.01``).
    """
    text = tag[1:] if tag[:1] in ("v", "V") else tag
    core = _VERSION_CORE.match(text)
    if not core:
        return None
    text = ".".join(str(int(number)) for number in core.group(0).split(".")) + text[core.end():]
    try:
        return semver.Version.parse(text, optional_minor_and_patch=True)
    except (ValueError, TypeError):
        return None


_PARTIAL = re.compile(r"^v?(?P<major>\d+|[xX*])(?:\.(?P<minor>\d+|[xX*]))?(?:\.(?P<patch>\d+|[xX*]))?"
                      r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_COMPARATOR = re.compile(r"^(?P<op>!=|>=|=>|<=|=<|~>|[=<>~^])?\s*(?P<ver>\S+)$")


@dataclass(frozen=True)
class _Bound:
    op: str  # one of ">=", ">", "<", "<=", "=", "!="
    version: semver.Version
    line: bool = False  # the upper end of '~1.9', '^1', '1.8': below that release line, its pre-releases too

    def holds(self, v: semver.Version) -> bool:
        c = (v.finalize_version() if self.line else v).compare(self.version)
        return {">=": c >= 0, ">": c > 0, "<": c < 0, "<=": c <= 0, "=": c == 0, "!=": c != 0}[self.op]


def _partial(text: str) -> tuple[list[int | None], str | None]:
    m = _PARTIAL.match(text)
    if not m:
        raise PolicyError(f"{text!r} is not a version")
    parts: list[int | None] = []
    for name in ("major", "minor", "patch"):
        raw = m.group(name)
        if raw is None or raw in ("x", "X", "*"):
            break
        parts.append(int(raw))
    return parts, m.group("pre")


def _v(major: int, minor: int = 0, patch: int = 0, pre: str | None = None) -> semver.Version:
    return semver.Version(major, minor, patch, prerelease=pre)


def _lower(parts, pre) -> semver.Version:
    return _v(*(parts + [0, 0, 0])[:3], pre=pre if len(parts) == 3 else None)


def _next(parts) -> semver.Version:
    """The first version above a partial one ('1.8' -> 1.9.0-0 style: 1.9.0)."""
    if len(parts) == 1:
        return _v(parts[0] + 1)
    if len(parts) == 2:
        return _v(parts[0], parts[1] + 1)
    return _v(parts[0], parts[1], parts[2] + 1)


def _comparator(token: str) -> list[_Bound]:
    m = _COMPARATOR.match(token)
    if not m:
        raise PolicyError(f"{token!r} is not a version constraint")
    op = {"=>": ">=", "=<": "<=", "~>": "~"}.get(m.group("op") or "", m.group("op") or "")
    parts, pre = _partial(m.group("ver"))
    if not parts:  # '*', 'x', '>=*'
        return [] if op in ("", "=", ">=", "<=", "~", "^") else [_Bound("<", _v(0, 0, 0, "0"))]
    full = len(parts) == 3
    if op == "~":
        upper = _v(parts[0] + 1) if len(parts) == 1 else _v(parts[0], parts[1] + 1)
        return [_Bound(">=", _lower(parts, pre)), _Bound("<", upper, line=True)]
    if op == "^":
        if parts[0] > 0 or len(parts) == 1:
            upper = _v(parts[0] + 1)
        elif len(parts) == 2 or parts[1] > 0:
            upper = _v(0, parts[1] + 1)
        else:
            upper = _v(0, 0, parts[2] + 1)
        return [_Bound(">=", _lower(parts, pre)), _Bound("<", upper, line=True)]
    if op in ("", "="):
        if full:
            return [_Bound("=", _lower(parts, pre))]
        return [_Bound(">=", _lower(parts, None)), _Bound("<", _next(parts), line=True)]
    if op == "!=":
        if full:
            return [_Bound("!=", _lower(parts, pre))]
        raise PolicyError(f"{token!r}: != needs a full version")
    if op == ">":
        return [_Bound(">", _lower(parts, pre))] if full else [_Bound(">=", _next(parts))]
    if op == ">=":
        return [_Bound(">=", _lower(parts, pre))]
    if op == "<":
        return [_Bound("<", _lower(parts, pre))]
    if op == "<=":
        return [_Bound("<=", _lower(parts, pre))] if full else [_Bound("<", _next(parts), line=True)]
    raise PolicyError(f"{token!r}: unknown operator")  # pragma: no cover


def _names_prerelease(token: str) -> bool:
    """Whether a comparator (already read by ``_comparator``) names a pre-release: ``>=1.0.0-0``."""
    return _partial(_COMPARATOR.match(token).group("ver"))[1] is not None


class SemverRange:
    """A Flux v1 / Masterminds style version constraint, e.g. '~1.8', '>=1.0, <2.0', '^1 || ^2'."""

    def __init__(self, text: str):
        self.text = text.strip()
        if not self.text:
            raise PolicyError("empty semver range")
        # per alternative: its bounds, the versions whose pre-releases it names, whether every comparator names one
        self.alternatives: list[tuple[list[_Bound], set[tuple[int, int, int]], bool]] = []
        for alt in self.text.split("||"):
            alt = alt.strip()
            if not alt:
                raise PolicyError(f"{text!r}: empty alternative around '||'")
            hyphen = re.match(r"^(\S+)\s+-\s+(\S+)$", alt)
            tokens = [f">={hyphen.group(1)}", f"<={hyphen.group(2)}"] if hyphen else \
                re.sub(r"(!=|>=|=>|<=|=<|~>|[=<>~^])\s+", r"\1", alt).replace(",", " ").split()
            bounds: list[_Bound] = []
            for token in tokens:
                bounds.extend(_comparator(token))
            pre_ok = {(b.version.major, b.version.minor, b.version.patch)
                      for b in bounds if b.version.prerelease}
            self.alternatives.append((bounds, pre_ok, bool(tokens) and all(map(_names_prerelease, tokens))))

    def allows(self, version: semver.Version) -> bool:
        for bounds, pre_ok, every_names_pre in self.alternatives:
            if version.prerelease and not every_names_pre and \
                    (version.major, version.minor, version.patch) not in pre_ok:
                continue
            if all(b.holds(version) for b in bounds):
                return True
        return False

    def __repr__(self) -> str:
        return f"SemverRange({self.text!r})"


# ---------------------------------------------------------------- filters

@dataclass(frozen=True)
class TagCandidate:
    tag: str
    created: datetime | None = None


def _unquote(pattern: str) -> str:
    """``">=1.0 <2.0"`` -> ``>=1.0 <2.0``: in ``tag.app: semver:">=1.0 <2.0"`` YAML keeps the
    quotes as characters; no tag can contain a quote, so a quoted pattern never meant them."""
    if len(pattern) >= 2 and pattern[0] == pattern[-1] and pattern[0] in ("'", '"'):
        return pattern[1:-1].strip()
    return pattern


class TagFilter:
    """One ``tag.<container>`` filter: kind 'glob', 'semver' or 'regex'."""

    def __init__(self, kind: str, pattern: str):
        self.kind = kind
        self.pattern = pattern
        if not pattern and kind != "semver":  # an empty regex would match every tag
            raise PolicyError(f"empty {kind} pattern")
        if kind == "semver":
            self._range = SemverRange(pattern)
        elif kind == "regex":
            try:
                self._regex = re.compile(pattern)
            except re.error as exc:
                raise PolicyError(f"regex {pattern!r}: {exc}") from None
        elif kind != "glob":
            raise PolicyError(f"unknown filter kind {kind!r}")

    @classmethod
    def parse(cls, raw: str) -> "TagFilter":
        raw = str(raw).strip()
        kind, sep, pattern = raw.partition(":")
        kind = kind.lower()
        if sep and kind in ("glob", "semver", "regex", "regexp"):
            return cls("regex" if kind == "regexp" else kind, _unquote(pattern.strip()))
        return cls("glob", _unquote(raw))  # Flux v1: a bare pattern is a glob

    @property
    def needs_created(self) -> bool:
        """glob and regex order by image creation time, which costs registry reads."""
        return self.kind != "semver"

    def matches(self, tag: str) -> bool:
        if tag.lower() == "latest" and not (self.kind == "glob" and self.pattern == "latest"):
            return False  # Flux v1: only ``glob:latest`` asks for it
        if self.kind == "glob":
            return fnmatch.fnmatchcase(tag, self.pattern)
        if self.kind == "regex":
            return self._regex.search(tag) is not None
        version = parse_tag_version(tag)
        return version is not None and self._range.allows(version)

    def newest(self, candidates: Iterable[TagCandidate]) -> TagCandidate | None:
        """The tag this filter would deploy among ``candidates`` (already filtered or not)."""
        allowed = [c for c in candidates if self.matches(c.tag)]
        if not allowed:
            return None
        if self.kind == "semver":
            return max(allowed, key=lambda c: (parse_tag_version(c.tag), c.tag))
        newest = max(c.created or EPOCH for c in allowed)
        return min((c for c in allowed if (c.created or EPOCH) == newest), key=lambda c: c.tag)

    def __repr__(self) -> str:
        return f"{self.kind}:{self.pattern}"


def pick_tag(filter_: TagFilter, tags: Iterable[str],
             created: Callable[[str], datetime | None]) -> TagCandidate | None:
    """Filter ``tags`` first, then ask ``created`` only for the ones that match."""
    matching = [t for t in tags if filter_.matches(t)]
    if filter_.needs_created:
        return filter_.newest(TagCandidate(t, created(t)) for t in matching)
    return filter_.newest(TagCandidate(t) for t in matching)
