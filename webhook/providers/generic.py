"""The generic provider, for hosts and scripts that speak none of the others.

Request: ``X-Signature: sha256=<hex HMAC-SHA256 of the body>``, optional
``X-Event`` (default ``push``; ``ping`` answers 200) and ``X-Delivery`` or
``Idempotency-Key`` (an id that stays the same when the sender retries).  Body (JSON)::

    {"ref": "refs/heads/main",             # required, a full ref name
     "after": "<40 or 64 hex sha>",        # required; all zeros = branch deleted
     "before": "<sha>",                    # optional
     "repository": "owner/name",           # required where repository: is configured (else 403)
     "paths": ["deploy/app.yaml"],         # optional; changed files for path filters
     "deleted": false}                     # optional
"""

from __future__ import annotations

from webhook import decoding
from webhook.events import PayloadError, PushEvent, field, header, is_zero_sha, sha_field
from webhook.providers._signing import hex_signature_ok

NAME = "generic"
decode = decoding.full  # the body's JSON, as much of it as parse reads
FORM = None  # JSON only (curl -d sends a form Content-Type): the body is JSON
SIGNATURE_HEADER = "X-Signature"
EVENT_HEADER = "X-Event"
DELIVERY_HEADERS = ("X-Delivery", "Idempotency-Key")


def verify(headers, body: bytes, secret: bytes, *, tolerance: float = 300.0, now: float | None = None) -> bool:
    return hex_signature_ok(header(headers, SIGNATURE_HEADER), secret, body, prefix="sha256=")


def delivery_id(headers) -> str | None:
    for name in DELIVERY_HEADERS:
        value = header(headers, name)
        if value:
            return value
    return None


def parse(headers, payload, *, branch: str | None = None, with_paths: bool = True) -> PushEvent:
    event = (header(headers, EVENT_HEADER) or "push").strip().lower()
    if not isinstance(payload, dict):
        raise PayloadError("body", "must be a JSON object")
    repository = payload.get("repository")
    if isinstance(repository, dict):
        repository = field(payload, "repository.full_name", required=False)
    elif repository is not None and not isinstance(repository, str):
        raise PayloadError("repository", "must be a string")
    if event != "push":
        return PushEvent(NAME, event, delivery_id(headers), repository=repository)
    paths = payload.get("paths")
    if paths is not None and (not isinstance(paths, list) or not all(isinstance(p, str) for p in paths)):
        raise PayloadError("paths", "must be a list of strings")
    ref = field(payload, "ref")
    if not ref.startswith("refs/"):  # "main" would be answered "not the tracked branch 'main'"
        raise PayloadError("ref", "must be a full ref name: refs/heads/<branch> or refs/tags/<tag>")
    after = sha_field(payload, "after")
    deleted = field(payload, "deleted", bool, required=False)
    return PushEvent(
        provider=NAME,
        event="push",
        delivery=delivery_id(headers),
        ref=ref,
        before=sha_field(payload, "before", required=False),
        after=after,
        deleted=bool(deleted) or is_zero_sha(after),
        repository=repository,
        paths=frozenset(paths) if paths is not None else None,
    )
