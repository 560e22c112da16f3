"""The one shape every provider's push payload is parsed into, and the
filters the receiver applies to it.

Why it exists: GitHub, GitLab, Gitea, Bitbucket Server and the generic
format all say the same few things (which ref moved, from which sha to which,
in which repository, touching which files) in different words.  The
receiver's decisions (tracked branch? tag? deletion? path filter?) are made
once, on ``PushEvent``, not five times in five dialects; the path filter's
matching is ``pullbridge.pathfilter``, which the worker shares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ZERO_SHA_RE = re.compile(r"^0+\Z")
SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})\Z")
DELIVERY_RE = re.compile(r"^[A-Za-z0-9._:@+=/-]{1,200}\Z")

BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"


class PayloadError(ValueError):
    """A verified payload is not what its provider documents; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str = "is missing"):
        self.field = field
        self.problem = problem
        super().__init__(f"{field} {problem}")


@dataclass(frozen=True)
class PushEvent:
    """What one webhook delivery says, in provider-neutral words.

    ``event`` is normalized: ``push`` for a ref update (branch or tag),
    ``ping`` for a connectivity check, anything else is the host's own name
    and is never synced.  ``paths`` is None when the host did not (or could
    not completely) say which files changed; a path filter then lets it pass.
    """

    provider: str
    event: str
    delivery: str | None = None
    ref: str | None = None
    before: str | None = None
    after: str | None = None
    deleted: bool = False
    repository: str | None = None
    paths: frozenset[str] | None = None

    @property
    def branch(self) -> str | None:
        if self.ref and self.ref.startswith(BRANCH_PREFIX):
            return self.ref[len(BRANCH_PREFIX):]
        return None

    @property
    def tag(self) -> str | None:
        if self.ref and self.ref.startswith(TAG_PREFIX):
            return self.ref[len(TAG_PREFIX):]
        return None

    @property
    def is_tag_push(self) -> bool:
        return self.tag is not None


# --- helpers the provider parsers share (pure) ---------------------------------

def field(payload, dotted: str, kind=str, required: bool = True):
    """``payload["a"]["b"]`` for ``"a.b"``, checked to be ``kind``; PayloadError naming it otherwise."""
    node = payload
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node or node[part] is None:
            if required:
                raise PayloadError(dotted)
            return None
        node = node[part]
    if not isinstance(node, kind) or (kind is int and isinstance(node, bool)):
        raise PayloadError(dotted, f"must be a {_kind_name(kind)}")
    return node


def _kind_name(kind) -> str:
    names = {str: "string", dict: "object", list: "list", bool: "boolean", int: "number"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def sha_field(payload, dotted: str, required: bool = True) -> str | None:
    value = field(payload, dotted, str, required)
    if value is None:
        return None
    value = value.lower()
    if not SHA_RE.match(value):
        raise PayloadError(dotted, "must be a 40 or 64 character hex commit sha")
    return value


def is_zero_sha(sha: str | None) -> bool:
    return bool(sha) and bool(ZERO_SHA_RE.match(sha))


def commit_paths(commits, list_name: str = "commits") -> set[str]:
    """Union of added/modified/removed over GitHub/GitLab/Gitea style commit objects."""
    if type(commits) is not list:
        raise PayloadError(list_name, "must be a list")
    paths: set[str] = set()
    for i, commit in enumerate(commits):
        if type(commit) is not dict:
            raise PayloadError(f"{list_name}[{i}]", "must be an object")
        for key in ("added", "modified", "removed"):
            items = commit.get(key)
            if not items:
                continue
            if type(items) is not list:
                raise PayloadError(f"{list_name}[{i}].{key}", "must be a list of strings")
            for path in items:
                if type(path) is not str:
                    raise PayloadError(f"{list_name}[{i}].{key}", "must be a list of strings")
            paths.update(items)
    return paths


def commits_push(provider: str, delivery: str | None, payload: dict, *, repository: str,
                 with_paths: bool, total_key: str | None = None,
                 max_commits: int | None = None) -> PushEvent:
    """A push in the shape GitHub, Gitea/Forgejo and GitLab share: ``ref``, ``before``,
    ``after`` and ``commits[]`` with added/modified/removed paths.

    The changed paths are only trusted (``paths`` set) when the payload lists
    every commit: not for a new branch (zero ``before``), a forced push, a
    list the host cut short (``total_key`` larger than the list, or
    ``max_commits`` reached), or a branch that moved with no commit listed
    (GitLab and Gitea send no ``forced`` flag: their force push back to an
    older commit lists nothing); then path filters let the push through.
    A GitLab or Gitea force push that rewrites history lists only its new
    commits, not what it reverted: the periodic reconcile catches that one.
    """
    after = sha_field(payload, "after")
    before = sha_field(payload, "before", required=False)
    commits = payload.get("commits") or []
    if type(commits) is not list:
        raise PayloadError("commits", "must be a list")
    paths = commit_paths(commits) if with_paths else set()
    total = payload.get(total_key) if total_key else None
    complete = not (is_zero_sha(before) or payload.get("forced") is True
                    or (not commits and before != after)
                    or (isinstance(total, int) and total > len(commits))
                    or (max_commits is not None and len(commits) >= max_commits))
    return PushEvent(
        provider=provider,
        event="push",
        delivery=delivery,
        ref=field(payload, "ref"),
        before=before,
        after=after,
        deleted=payload.get("deleted") is True or is_zero_sha(after),
        repository=field(payload, repository),
        paths=frozenset(paths) if complete and with_paths else None,
    )


class WsgiHeaders:
    """A request's headers read straight from its WSGI environ, case-insensitively.

    What werkzeug's ``EnvironHeaders`` reads, for a fraction of its cost per
    lookup; the receiver looks up three to six headers per delivery.  Only
    ``get`` is offered: it is all the providers use.
    """

    __slots__ = ("environ",)
    _keys: dict[str, str] = {}  # header name as the providers spell it -> environ key

    def __init__(self, environ):
        self.environ = environ

    def get(self, name: str, default=None):
        key = self._keys.get(name)
        if key is None:
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            if len(self._keys) < 256:  # the providers' own names; never grows with requests
                self._keys[name] = key
        return self.environ.get(key, default)


def header(headers, name: str) -> str | None:
    """Case-insensitive header lookup on WsgiHeaders, Werkzeug Headers or a plain dict."""
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        lower = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lower:
                return candidate
    return value


# --- filters --------------------------------------------------------------------

def same_repository(payload_name: str | None, configured: str | None, after_url_root: bool = False) -> bool:
    """Whether a payload naming ``payload_name`` is about the repository configured as
    ``configured``.  Compared case-insensitively: GitHub, GitLab and Gitea resolve owner/name
    in any case, and Bitbucket Server's clone URLs spell the project key in lowercase.
    ``configured`` is None only for a ``generic`` repository without ``repository:``, whose
    payloads are then not checked (the configuration derives it for every other provider).

    ``after_url_root`` (``RepoConfig.repository_may_have_url_root``): ``configured`` may begin
    with the relative URL root of a GitLab served under a sub-path, which its payloads leave
    out (``gitlab/group/name`` from ``https://host/gitlab/group/name.git``, ``group/name`` in
    the payload), so a name ``configured`` ends with, after a ``/``, matches too."""
    if configured is None:
        return True
    if payload_name is None:
        return False
    payload, ours = payload_name.casefold(), configured.casefold()
    return payload == ours or (after_url_root and ours.endswith("/" + payload))
