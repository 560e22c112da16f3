"""Bitbucket Server / Data Center webhooks: ``X-Hub-Signature: sha256=<hex HMAC-SHA256>``.

``X-Event-Key`` names the event (``repo:refs_changed`` for a push,
``diagnostics:ping`` for the "Test connection" button) and ``X-Request-Id``
is the delivery's UUID.  A push payload lists ``changes[]``, each with
``ref.id`` (``refs/heads/main``), ``ref.type`` (``BRANCH``/``TAG``),
``fromHash``, ``toHash`` and ``type`` (``ADD``/``UPDATE``/``DELETE``); the
repository is ``repository.project.key`` + ``/`` + ``repository.slug``.
It does not say which files changed, so a path filter lets every push pass.
"""

from __future__ import annotations

from webhook import decoding
from webhook.events import PayloadError, PushEvent, field, header, is_zero_sha, sha_field
from webhook.providers._signing import hex_signature_ok

NAME = "bitbucket-server"
decode = decoding.full  # the body's JSON, as much of it as parse reads
FORM = None  # JSON only: the body is JSON whatever its Content-Type says
SIGNATURE_HEADER = "X-Hub-Signature"
EVENT_HEADER = "X-Event-Key"
DELIVERY_HEADER = "X-Request-Id"
EVENTS = {"repo:refs_changed": "push", "diagnostics:ping": "ping"}


def verify(headers, body: bytes, secret: bytes, *, tolerance: float = 300.0, now: float | None = None) -> bool:
    return hex_signature_ok(header(headers, SIGNATURE_HEADER), secret, body, prefix="sha256=")


def delivery_id(headers) -> str | None:
    return header(headers, DELIVERY_HEADER)


def _ref_id(change: dict):
    """The ref a change names: ``refId``, else ``ref.id`` (Bitbucket sends both), unchecked."""
    ref = change.get("ref")
    return change.get("refId") or (ref.get("id") if isinstance(ref, dict) else None)


def parse(headers, payload, *, branch: str | None = None, with_paths: bool = True) -> PushEvent:
    raw_event = (header(headers, EVENT_HEADER) or "").strip()
    if not raw_event:
        raise PayloadError(EVENT_HEADER, "header is missing")
    event = EVENTS.get(raw_event, raw_event)
    if not isinstance(payload, dict):
        raise PayloadError("body", "must be a JSON object")
    if event != "push":
        return PushEvent(NAME, event, delivery_id(headers))
    repository = f"{field(payload, 'repository.project.key')}/{field(payload, 'repository.slug')}"
    changes = field(payload, "changes", list)
    if not changes:
        raise PayloadError("changes", "is empty")
    wanted_ref = f"refs/heads/{branch}" if branch else None
    index, change = 0, changes[0]
    for i, candidate in enumerate(changes):
        if isinstance(candidate, dict) and wanted_ref and _ref_id(candidate) == wanted_ref:
            index, change = i, candidate
            break
    if not isinstance(change, dict):
        raise PayloadError(f"changes[{index}]", "must be an object")
    prefix = f"changes[{index}]"
    try:  # every field of the change is named with its place in the list
        ref = field(change, "refId", required=False) or field(change, "ref.id", required=False)
        if not ref:
            raise PayloadError("refId")
        after = sha_field(change, "toHash")
        before = sha_field(change, "fromHash", required=False)
        is_tag = field(change, "ref.type", required=False) == "TAG"
    except PayloadError as exc:
        raise PayloadError(f"{prefix}.{exc.field}", exc.problem) from None
    if is_tag and not ref.startswith("refs/tags/"):
        ref = "refs/tags/" + ref.rsplit("/", 1)[-1]
    return PushEvent(
        provider=NAME,
        event="push",
        delivery=delivery_id(headers),
        ref=ref,
        before=before,
        after=after,
        deleted=change.get("type") == "DELETE" or is_zero_sha(after),
        repository=repository,
        paths=None,
    )
