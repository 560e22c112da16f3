"""Gitea and Forgejo webhooks: ``X-Gitea-Signature`` (or ``X-Forgejo-Signature``),
the bare hex HMAC-SHA256 of the body.

Event and delivery come in ``X-Gitea-Event`` / ``X-Gitea-Delivery`` (Forgejo
also sends ``X-Forgejo-*``; both send GitHub- and Gogs-compatible copies).
The push payload is shaped like GitHub's: ``ref``, ``before``, ``after``,
``commits[]`` with ``added``/``modified``/``removed``, ``repository.full_name``.

Neither host has a ping event: the webhook page's "Test Delivery" button
sends a push to the default branch whose ``before`` is its ``after`` (Gitea:
the zero sha and a fake commit; Forgejo: the branch head), which no real ref
update does.  It is reported as a ``ping``, not as a push of the branch (nor,
for Gitea's zero sha, as the branch's deletion).
"""

from __future__ import annotations

from webhook import decoding
from webhook.events import PayloadError, PushEvent, commits_push, field, header
from webhook.providers._signing import hex_signature_ok

NAME = "gitea"
decode = decoding.commits_push  # the body's JSON, as much of it as parse reads
FORM = "payload"  # a form delivery's signature covers the JSON in its payload field
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
    push = commits_push(NAME, delivery_id(headers), payload, repository="repository.full_name",
                        with_paths=with_paths, total_key="total_commits")
    if push.before == push.after:  # the "Test Delivery" button (see the module docstring)
        return PushEvent(NAME, "ping", push.delivery, repository=push.repository)
    return push
