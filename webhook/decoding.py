"""A verified body, decoded into what a provider's ``parse`` reads and no more.

Why it exists: a push payload is mostly what Pullbridge never reads: commit
messages, authors, timestamps, URLs, the repository's and the pusher's
descriptions.  Building Python objects for all of it was, after the Redis
write, the largest cost of accepting a push (``bench/intake``'s 8 KB GitHub
push: 27 us with orjson).  For the shape GitHub, Gitea/Forgejo and GitLab
share, msgspec reads the whole document (malformed JSON is still refused)
but builds only the declared fields: about 10 us for the same push, 5 us
for a repository without path filters (the commits are only counted), and
less, relatively, for real payloads, whose ``repository`` object alone
carries about a hundred fields.

What ``parse`` gets is the same dict it would get from a full parse, minus
fields it never reads, so its checks and its error messages are unchanged.
A payload that does not fit the declared shape (``repository`` a string,
a commit that is not an object, a body that is not an object) is decoded
again in full, and ``parse`` names the culprit as before.

Every decoder raises ``ValueError`` for a body that is not JSON or not
UTF-8, and may raise ``RecursionError`` for absurd nesting.

GitHub and Gitea/Forgejo can also send a push as a form
(``application/x-www-form-urlencoded``: ``payload=<URL-encoded JSON>``;
GitHub's API creates hooks that way unless told otherwise): ``form_payload``
takes the JSON out of it, which then goes to the decoders above.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

import msgspec
import orjson
from msgspec import UNSET, Struct, UnsetType

from webhook.events import PayloadError

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
FORM_FIELD = "payload"


def is_form(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` header says the body is a URL-encoded form (parameters ignored)."""
    return bool(content_type) and content_type.partition(";")[0].strip().lower() == FORM_CONTENT_TYPE


def _form_unquote(text: bytes) -> bytes:
    return unquote_to_bytes(text.replace(b"+", b" "))


def form_payload(body: bytes) -> bytes:
    """The ``payload`` field of a form-encoded body, decoded to the exact bytes the host sent.

    PayloadError naming the field when the form has none, or more than one
    (which one the host signed would be a guess)."""
    found = None
    for pair in body.split(b"&"):
        name, _, value = pair.partition(b"=")
        if _form_unquote(name) == FORM_FIELD.encode():
            if found is not None:
                raise PayloadError(FORM_FIELD, "form field is given more than once")
            found = value
    if found is None:
        raise PayloadError(FORM_FIELD, "form field is missing (Content-Type says the body is a form)")
    return _form_unquote(found)


def full(body: bytes, *, with_paths: bool = True) -> Any:
    """Every field (the small Bitbucket Server and generic payloads)."""
    return orjson.loads(body)


class _CommitPaths(Struct):
    added: Any = UNSET
    modified: Any = UNSET
    removed: Any = UNSET


class _Repository(Struct):
    full_name: Any = UNSET


class _Project(Struct):
    path_with_namespace: Any = UNSET


# Every field events.commits_push and the GitHub, Gitea and GitLab parsers read.
_FIELDS = [(name, Any, UNSET) for name in ("object_kind", "ref", "before", "after", "deleted", "forced",
                                           "total_commits", "total_commits_count")]
_FIELDS += [("repository", _Repository | None | UnsetType, UNSET),
            ("project", _Project | None | UnsetType, UNSET)]
_with_paths = msgspec.json.Decoder(msgspec.defstruct(
    "CommitsPush", [*_FIELDS, ("commits", list[_CommitPaths] | None | UnsetType, UNSET)]))
# Without path filters parse only counts the commits: each is checked to be JSON and skipped.
_counted = msgspec.json.Decoder(msgspec.defstruct(
    "CommitsPushCounted", [*_FIELDS, ("commits", list[msgspec.Raw] | None | UnsetType, UNSET)]))


def commits_push(body: bytes, *, with_paths: bool = True) -> Any:
    """The fields of a GitHub, Gitea/Forgejo or GitLab push (or ping) payload.

    ``with_paths=False`` (a repository without path filters): ``commits``
    holds one None per commit, since only their number is read.
    """
    if not body.isascii():
        body.decode("utf-8")  # msgspec does not look inside strings it skips; orjson did
    try:
        if with_paths:
            return msgspec.to_builtins(_with_paths.decode(body))
        payload = _counted.decode(body)
        if payload.commits:
            payload.commits = [None] * len(payload.commits)
        return msgspec.to_builtins(payload)
    except msgspec.ValidationError:
        return orjson.loads(body)  # valid JSON of another shape: parse names what is wrong
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
