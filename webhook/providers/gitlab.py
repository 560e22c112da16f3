"""GitLab webhooks: a secret token, or GitLab's signed webhooks (Standard Webhooks).

Which one is decided by the configured secret:

- a secret of the form ``whsec_<base64 key>`` means signed webhooks: the
  request must carry ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``
  (several space-separated signatures are allowed, as during a key
  rotation), and the timestamp must be within ``tolerance`` seconds of now
  (replay protection; ``server.signature_tolerance`` in the configuration);
  the key is decoded by ``pullbridge.config_types.signing_key``, which
  ``config check`` and the receiver (500 misconfigured) use to refuse a key
  that is not base64;
- any other secret is compared, in constant time, with ``X-Gitlab-Token``.

The ``standardwebhooks`` package implements the same scheme but is not used
on the hot path: its tolerance is fixed at five minutes and it raises
assorted exceptions on malformed headers and non-UTF-8 bodies; the tests use
it as an independent signer to prove the two agree.

Events: ``X-Gitlab-Event: Push Hook`` / ``Tag Push Hook``; the payload has
``object_kind``, ``ref``, ``before``, ``after``, ``checkout_sha`` (null when a
branch is deleted), ``commits[]`` (at most 20, with ``added``/``modified``/
``removed``), ``total_commits_count`` and ``project.path_with_namespace``.
Delivery id: ``webhook-id`` (the one a signed webhook's signature covers), else
``Idempotency-Key`` (stable across retries), else ``X-Gitlab-Event-UUID``; see
``delivery_id`` for why in that order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from pullbridge.config_types import SIGNING_SECRET_PREFIX, signing_key
from webhook import decoding
from webhook.events import PayloadError, PushEvent, commits_push, field, header

NAME = "gitlab"
decode = decoding.commits_push  # the body's JSON, as much of it as parse reads
FORM = None  # JSON only: the body is JSON whatever its Content-Type says
TOKEN_HEADER = "X-Gitlab-Token"
EVENT_HEADER = "X-Gitlab-Event"
MAX_SIGNATURE_HEADER = 4096
EVENTS = {"push hook": "push", "tag push hook": "push", "system hook": "system"}


def verify(headers, body: bytes, secret: bytes, *, tolerance: float = 300.0, now: float | None = None) -> bool:
    if not secret:
        return False
    if secret.startswith(SIGNING_SECRET_PREFIX):
        return verify_signed(headers, body, secret, tolerance=tolerance, now=now)
    token = header(headers, TOKEN_HEADER)
    if token is None:
        return False
    try:
        return hmac.compare_digest(token.encode("latin-1"), secret)
    except UnicodeEncodeError:
        return False


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for a delivery (used by tests and the bench)."""
    key = signing_key(secret)
    if key is None:
        raise ValueError("a signing secret looks like whsec_<base64>")
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_signed(headers, body: bytes, secret: bytes, *, tolerance: float = 300.0,
                  now: float | None = None) -> bool:
    msg_id = header(headers, "webhook-id")
    stamp = header(headers, "webhook-timestamp")
    signatures = header(headers, "webhook-signature")
    if not msg_id or not stamp or not signatures or len(signatures) > MAX_SIGNATURE_HEADER:
        return False
    stamp = stamp.strip()
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        return False
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > tolerance:
        return False
    key = signing_key(secret)
    if key is None:
        return False
    try:
        signed = f"{msg_id}.{stamp}.".encode()
    except UnicodeEncodeError:
        return False
    expected = hmac.new(key, signed + body, hashlib.sha256).digest()
    ok = False
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version != "v1" or not value:
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        # No early exit: every candidate costs the same.
        ok |= hmac.compare_digest(given, expected)
    return ok


def delivery_id(headers) -> str | None:
    """The delivery's id for deduplication: ``webhook-id`` first, as it is the one
    a signed webhook's signature covers (GitLab sends the same value as
    ``Idempotency-Key``); an unsigned header that came first would let a signed
    delivery be replayed, within the timestamp tolerance, as a new one."""
    for name in ("webhook-id", "Idempotency-Key", "X-Gitlab-Event-UUID"):
        value = header(headers, name)
        if value:
            return value
    return None


def parse(headers, payload, *, branch: str | None = None, with_paths: bool = True) -> PushEvent:
    raw_event = (header(headers, EVENT_HEADER) or "").strip()
    if not raw_event:
        raise PayloadError(EVENT_HEADER, "header is missing")
    if not isinstance(payload, dict):
        raise PayloadError("body", "must be a JSON object")
    event = EVENTS.get(raw_event.lower(), raw_event.lower())
    if event == "system":  # a system hook relays the push payload; object_kind tells
        event = "push" if payload.get("object_kind") in ("push", "tag_push") else "system"
    repository = field(payload, "project.path_with_namespace", required=False)
    if event != "push":
        return PushEvent(NAME, event, delivery_id(headers), repository=repository)
    return commits_push(NAME, delivery_id(headers), payload, repository="project.path_with_namespace",
                        with_paths=with_paths, total_key="total_commits_count")
