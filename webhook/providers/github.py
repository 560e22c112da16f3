"""GitHub webhooks: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.

Events come in ``X-GitHub-Event`` (``push``, ``ping``, ...), the delivery id
in ``X-GitHub-Delivery`` (a GUID that stays the same on a redelivery).  The
push payload carries ``ref``, ``before``, ``after``, ``created``,
``deleted``, ``forced``, ``commits[]`` (at most 2048, each with
``added``/``modified``/``removed``) and ``repository.full_name``.
"""

from __future__ import annotations

from webhook import decoding
from webhook.events import PayloadError, PushEvent, commits_push, field, header
from webhook.providers._signing import hex_signature_ok

NAME = "github"
decode = decoding.commits_push  # the body's JSON, as much of it as parse reads
FORM = "body"  # a form delivery's signature covers the form as sent
SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
MAX_COMMITS = 2048  # GitHub lists at most this many commits in a push payload


def verify(headers, body: bytes, secret: bytes, *, tolerance: float = 300.0, now: float | None = None) -> bool:
    return hex_signature_ok(header(headers, SIGNATURE_HEADER), secret, body, prefix="sha256=")


def delivery_id(headers) -> str | None:
    return header(headers, DELIVERY_HEADER)


def event_name(headers) -> str:
    return (header(headers, EVENT_HEADER) or "").strip().lower()


def parse(headers, payload, *, branch: str | None = None, with_paths: bool = True) -> PushEvent:
    event = event_name(headers)
    if not event:
        raise PayloadError(EVENT_HEADER, "header is missing")
    if not isinstance(payload, dict):
        raise PayloadError("body", "must be a JSON object")
    repository = field(payload, "repository.full_name", required=False)
    if event != "push":
        return PushEvent(NAME, event, delivery_id(headers), repository=repository)
    return commits_push(NAME, delivery_id(headers), payload, repository="repository.full_name",
                        with_paths=with_paths, max_commits=MAX_COMMITS)
