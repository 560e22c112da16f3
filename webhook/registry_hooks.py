"""Registry push notifications: a new tag triggers an image scan at once.

Why it exists: the periodic scan finds new tags within ``images.interval``;
a registry that can notify (distribution's notifications, Docker Hub and
Harbor webhooks) makes that immediate.  ``POST /hooks/registry/<name>`` is
verified against the hook's shared secret like the git webhooks, always with
constant-time comparisons, in whichever form the sender can produce:

- ``Authorization: Bearer <secret>`` or ``Authorization: <secret>``
  (distribution's endpoint ``headers``, Harbor's "auth header");
- ``X-Pullbridge-Signature: sha256=<hex HMAC-SHA256 of the raw body>``
  (or ``X-Hub-Signature-256``) for senders that sign;
- ``?token=<secret>`` for Docker Hub, which can only be given a URL.

The body names pushed images; their cached tag lists are dropped and a scan
is queued for every repository with image automation (at most one queued
per repository).  That scan re-lists tags and re-checks digests itself, also
when the request joins a scan the interval had already queued, so a registry
known under another host name than the one it reports still counts.  The
scan, not the payload, decides what changes:
a forged or stale notification can at worst cause one extra scan.

Each notification taken, and each answer that is our fault (500: the
hook's secret is unusable, said where it is kept; 503: Redis), is a line
of the receiver's JSON log (``webhook.logs``); refusals anyone can cause
(401, 404, 413, 400) are not logged.

``register(app, config=None, conn=None)`` mounts the blueprint; without
arguments it uses the intake's configuration and Redis client
(``app.extensions["pullbridge"]``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from urllib.parse import urlparse

from flask import Blueprint, Flask, current_app, jsonify, request
from redis.exceptions import RedisError

from pullbridge.config import Config, ConfigError
from pullbridge.config_types import SecretUnusable
from webhook.errors import BadPayload, PayloadTooLarge
from webhook.intake import declared_length, read_body
from worker.images.cache import forget
from worker.images.registry import DOCKER_HUB, ImageRef

DISTRIBUTION_EVENTS = "application/vnd.docker.distribution.events.v1+json"
MANIFEST_TYPES = ("manifest", "image.index", "manifest.list")
EXTENSION = "pullbridge_registry_hooks"

bp = Blueprint("registry_hooks", __name__)
log = logging.getLogger("pullbridge.webhook.registry_hooks")  # the receiver's JSON lines (webhook.logs)


def register(app: Flask, config: Config | None = None, conn=None) -> None:
    """Mount ``POST /hooks/registry/<name>`` on ``app``."""
    app.extensions[EXTENSION] = {"config": config, "conn": conn}
    app.register_blueprint(bp)


def _state() -> tuple[Config, object]:
    own = current_app.extensions.get(EXTENSION) or {}
    intake = current_app.extensions.get("pullbridge")
    config = own.get("config") or getattr(intake, "config", None)
    conn = own.get("conn") or getattr(intake, "conn", None)
    if config is None or conn is None:
        raise RuntimeError("registry hooks are mounted without a configuration or Redis client")
    return config, conn


def _error(status: int, error: str, message: str):
    response = jsonify(error=error, message=message)
    response.status_code = status
    return response


def verify(secret: bytes, body: bytes, headers, args) -> bool:
    """True when any supported form of the shared secret checks out (constant time)."""
    ok = False
    auth = headers.get("Authorization", "")
    if auth:
        value = auth[7:] if auth[:7].lower() == "bearer " else auth
        ok |= hmac.compare_digest(value.strip().encode(), secret)
    for header in ("X-Pullbridge-Signature", "X-Hub-Signature-256"):
        sig = headers.get(header, "")
        if sig.startswith("sha256="):
            expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
            ok |= hmac.compare_digest(sig.encode(), expected.encode())
    token = args.get("token")
    if token:
        ok |= hmac.compare_digest(token.encode(), secret)
    return ok


def _obj(value) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def pushed_images(payload: dict) -> list[tuple[str, str | None]]:
    """``[(host/name, tag)]`` pushed according to a distribution, Docker Hub or Harbor payload.

    A part that does not have the documented shape (an event that is not an
    object, a tag that is not a string...) is skipped, never an error: a
    registry retries a notification it sees refused, and this one would
    never be taken."""
    found: list[tuple[str, str | None]] = []
    if isinstance(payload.get("events"), list):  # distribution notifications envelope
        for event in map(_obj, payload["events"]):
            target = _obj(event.get("target"))
            repository, media = _text(target.get("repository")), _text(target.get("mediaType")) or ""
            if event.get("action") != "push" or not repository:
                continue
            if media and not any(t in media for t in MANIFEST_TYPES):
                continue  # a layer or config blob upload
            host = urlparse(_text(target.get("url")) or "").netloc or _text(_obj(event.get("request")).get("host"))
            if host:
                found.append((f"{host.lower()}/{repository}", _text(target.get("tag"))))
    elif isinstance(payload.get("push_data"), dict):  # Docker Hub
        name = _text(_obj(payload.get("repository")).get("repo_name"))
        if name:
            try:
                ref = ImageRef.parse(f"{DOCKER_HUB}/{name}")
            except ValueError:
                return found
            found.append((ref.repository, _text(payload["push_data"].get("tag"))))
    elif isinstance(payload.get("event_data"), dict):  # Harbor
        if str(payload.get("type", "")).upper() in ("PUSH_ARTIFACT", "PUSHARTIFACT", "PUSH"):
            resources = payload["event_data"].get("resources")
            for res in map(_obj, resources if isinstance(resources, list) else []):
                url = _text(res.get("resource_url"))
                if url:
                    try:
                        ref = ImageRef.parse(url)
                    except ValueError:
                        continue
                    found.append((ref.repository, _text(res.get("tag")) or ref.tag))
    return found


@bp.post("/hooks/registry/<name>")
def receive(name: str):
    from worker.images.scan import request_scan

    config, conn = _state()
    hook = config.images.hook(name)
    if hook is None:
        return _error(404, "unknown_hook", f"no registry hook named {name!r}")
    cap = config.server.max_body_bytes
    try:  # as the push receiver reads: never more than the cap, even from a chunked body
        body = read_body(request.environ, cap, declared_length(request.environ, cap))
    except PayloadTooLarge:
        return _error(413, "too_large", "the body is larger than server.max_body_bytes")
    except BadPayload as exc:
        return _error(400, "bad_payload", str(exc))
    try:  # an empty secret is our mistake (500), not every sender's (401)
        secret = hook.secret.usable_value()
    except ConfigError as exc:  # where the secret is kept is said in the log line only
        log.warning("registry hook %s: its secret is unusable", name, extra={"status": 500, "error": str(exc)})
        problem = exc.problem if isinstance(exc, SecretUnusable) else "cannot be read"
        return _error(500, "misconfigured", f"the secret of registry hook {name} {problem}")
    if not verify(secret, body, request.headers, request.args):
        return _error(401, "unauthorized", "missing or wrong shared secret")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _error(400, "bad_payload", "the body is not JSON")
    if not isinstance(payload, dict):
        return _error(400, "bad_payload", "the body is not a JSON object")
    images = pushed_images(payload)
    if not images:
        return jsonify(accepted=False, reason="no pushed image tags in this notification"), 200
    try:
        for repository in sorted({repo for repo, _ in images}):
            forget(conn, repository)
        scans = {repo.name: request_scan(conn, config, repo, reason=f"registry hook {name}")
                 for repo in config.repos if repo.images.enabled}
    except RedisError as exc:
        log.warning("registry hook %s: Redis unavailable", name, extra={"status": 503, "error": type(exc).__name__})
        return _error(503, "unavailable", "the queue is unavailable; retry later")
    log.info("registry hook %s: %d image(s) pushed, %d scan(s) requested", name, len(images), len(scans),
             extra={"status": 202})
    return jsonify(accepted=True, images=[{"repository": r, "tag": t} for r, t in images],
                   scans=scans), 202
