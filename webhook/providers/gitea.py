"""Gitea and Forgejo webhooks: ``X-Gitea-Signature`` (or ``X-Forgejo-Signature``),
the bare hex HMAC-SHA256 of the body.

Event and delivery come in ``X-Gitea-Event`` / ``X-Gitea-Delivery`` (Forgejo
also sends ``X-Forgejo-*``; both send GitHub- and Gogs-compatible copies).
The push payload is shaped like GitHub's: ``ref``, ``before``, ``after``,
``commits[]`` with ``added``/``modified``/``removed``, ``repository.full_name``.
"""

from __future__ import annotations

from webhook.events import PayloadError, PushEvent, commit_paths, field, header, is_zero_sha, sha_field
from webhook.providers._signing import hex_signature_ok

NAME = "gitea"
SIGNATURE_HEADERS = ("X-Gitea-Signature", "X-Forgejo-Signature")
EVENT_HEADERS = ("X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event")
DELIVERY_HEADERS = ("X-Gitea-Delivery", "X-Forgejo-Delivery", "X-Gogs-Delivery")


def _first(headers, names) -> str | None:
    for name in names:
        value = header(headers, name)
        if value:
            return value
    return None


def verify(headers, body: bytes, secret: bytes, *, tolerance: float = 300.0, now: float | None = None) -> bool:
    return hex_signature_ok(_first(headers, SIGNATURE_HEADERS), secret, body)


def delivery_id(headers) -> str | None:
    return _first(headers, DELIVERY_HEADERS)


def parse(headers, payload, *, branch: str | None = None, with_paths: bool = True) -> PushEvent:
    event = (_first(headers, EVENT_HEADERS) or "").strip().lower()
    if not event:
        raise PayloadError(EVENT_HEADERS[0], "header is missing")
    if not isinstance(payload, dict):
        raise PayloadError("body", "must be a JSON object")
    if event != "push":
        return PushEvent(NAME, event, delivery_id(headers),
                         repository=field(payload, "repository.full_name", required=False))
    after = sha_field(payload, "after")
    before = sha_field(payload, "before", required=False)
    commits = payload.get("commits") or []
    if type(commits) is not list:
        raise PayloadError("commits", "must be a list")
    paths = commit_paths(commits) if with_paths else set()
    total = payload.get("total_commits")
    complete = not is_zero_sha(before) and not (isinstance(total, int) and total > len(commits))
    return PushEvent(
        provider=NAME,
        event="push",
        delivery=delivery_id(headers),
        ref=field(payload, "ref"),
        before=before,
        after=after,
        deleted=is_zero_sha(after),
        repository=field(payload, "repository.full_name"),
        paths=frozenset(paths) if complete and with_paths else None,
    )
