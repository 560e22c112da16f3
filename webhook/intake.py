"""``POST /hooks/<name>``: from raw request to a durably queued sync, or a clear no.

Why it exists: this is the receiver's one hot path, and its order is the
security and durability argument, so it reads top to bottom:

1. the repository is looked up by the name in the URL (404), so every
   later answer is counted and logged under its provider;
2. a ``Content-Length`` over ``server.max_body_bytes`` is answered 413
   (one that is not a number, 400) before reading anything; a body
   without one (chunked) is read only up to the cap plus one byte;
3. the signature or token is checked on the raw bytes (401: no JSON
   parsing, no Redis call).  A form delivery (GitHub's and Gitea's ``form``
   content type, ``payload=<JSON>``) is checked as its host signs it:
   GitHub's on the form as sent, Gitea's on the JSON in ``payload``, which
   is therefore taken out of the form first (400 naming the field when
   there is none);
4. only then is the JSON parsed (out of a GitHub form, first) and turned
   into a ``PushEvent`` (400 naming the field);
5. ping, untracked events, tags, branch deletions, other branches and pushes
   that touch no filtered path are answered 200 with the reason;
6. the delivery id is claimed and the sha recorded and the sync queued in
   *one* Redis transaction (``pullbridge.queueing.request_sync``): if Redis
   fails, nothing was claimed, the answer is 503 with Retry-After and the
   host's retry is taken as new;
7. once queued, a ``pending`` commit status is enqueued as a separate,
   best-effort step: the sync is already durable, so a failure there is
   logged and reported in the answer (``"status": "not queued"``) but never
   turns the 202 into an error that would make the host redeliver.

Every wait on Redis in 6 and 7 ends by one deadline, ``server.queue_timeout``
after the body was read (``pullbridge.deadline``), so the host has its answer
before it stops waiting (10 s at GitHub and GitLab): past it, a push not
known to be queued is answered 503 with Retry-After (if it was queued after
all, the host's redelivery is answered ``duplicate``), and a pending status
not yet confirmed is reported so (``"not confirmed in time"``).  The clock
starts once the body is in (and verified, microseconds later), not when the
request began: the deadline is Redis' time, and a body that came slowly must
not leave a push no time to be queued (it was answered 503 without Redis
being asked).  The host's own wait runs from its request, so a slow upload
eats into its 10 s (docs/webhooks.md: the read itself is bounded by neither
this code nor gunicorn's gevent worker).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field

from gunicorn.http.errors import ParseException
from redis import Redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pullbridge import keys
from pullbridge.config import Config, ConfigError, RepoConfig
from pullbridge.config_types import SecretUnusable
from pullbridge.deadline import DeadlineExceeded, within
from pullbridge.groupcommit import GroupCommit
from pullbridge.pathfilter import touches
from pullbridge.queueing import request_sync
from webhook import errors
from webhook.decoding import form_payload, is_form
from webhook.events import DELIVERY_RE, PayloadError, PushEvent, same_repository
from webhook.metrics import observe_batch
from webhook.providers import PROVIDERS, provider as provider_module

SECRET_CACHE_SECONDS = 30.0  # a rotated secret_file is picked up within this
READ_CHUNK = 64 * 1024
# What a server's body stream raises for a body it cannot read: gunicorn's
# parse errors (InvalidChunkSize, ChunkMissingTerminator, ...), NoMoreData and
# socket errors (OSError, as werkzeug's reader raises too), and ValueError.
UNREADABLE_BODY: tuple[type[Exception], ...] = (OSError, ValueError, ParseException)


def decode_json(host, body: bytes, with_paths: bool):
    """The provider's decoder (``webhook.decoding``); one name, so a test can
    prove it is not reached before verification."""
    return host.decode(body, with_paths=with_paths)


@dataclass
class Answer:
    status: int
    body: dict
    outcome: str
    log: dict = field(default_factory=dict)
    encoded: bytes | None = None  # the body's JSON, when it is the same for every request


# The answer to every forged delivery, built once: returned, not raised (a flood of them is the hot path).
UNAUTHORIZED = Answer(401, errors.Unauthorized().body(), errors.Unauthorized.code,
                      encoded=errors.Unauthorized.ENCODED)


def declared_length(environ, cap: int) -> int | None:
    """The body's ``Content-Length``, None when the request gives none (chunked, or no body).

    Over ``cap`` is PayloadTooLarge (413) and a value that is not a number
    (ASCII digits only) is BadPayload (400), both before a byte of the body
    is read.  A number of more digits than the cap has is over it without
    being converted: ``int()`` refuses strings of more than 4300 digits."""
    raw = environ.get("CONTENT_LENGTH")
    if not raw or len(raw) > 18 or not (raw.isascii() and raw.isdecimal()):  # all but a plain number
        raw = (raw or "").strip()
        if not raw:
            return None
        if not (raw.isascii() and raw.isdecimal()):
            raise errors.BadPayload("Content-Length is not a number", field="Content-Length")
        raw = raw.lstrip("0") or "0"
        if len(raw) > len(str(cap)):
            raise errors.PayloadTooLarge(f"body is over the {cap} byte limit", limit=cap)
    length = int(raw)
    if length > cap:
        raise errors.PayloadTooLarge(f"body is over the {cap} byte limit", limit=cap)
    return length


def read_body(environ, cap: int, length: int | None) -> bytes:
    """The request body, never more than ``cap`` bytes read; PayloadTooLarge past it.

    ``length`` is ``declared_length``'s answer: with one, the body is read in
    one call (the common case) and the reading goes on only if the server
    gave less; without one, a chunked body is read up to one byte past the
    cap, to know it is over.  A body the server cannot read (a malformed
    chunk size or chunk end, a chunked body cut off, a socket error) is
    BadPayload naming the ``body`` (400), before any signature check: it is
    the sender's fault, not the receiver's, and the error answer closes the
    connection (``webhook.gunicorn_worker``: the body was left unread)."""
    try:
        return _read_body(environ["wsgi.input"], environ, cap, length)
    except UNREADABLE_BODY as exc:
        raise errors.BadPayload("request body is malformed or incomplete", field="body") from exc


def _read_body(stream, environ, cap: int, length: int | None) -> bytes:
    if length is not None:
        body = stream.read(length)
        if len(body) >= length or not body:
            return body
        chunks, got, limit = [body], len(body), length
    elif environ.get("wsgi.input_terminated"):
        chunks, got, limit = [], 0, cap + 1
    else:
        return b""
    while got < limit:
        chunk = stream.read(min(READ_CHUNK, limit - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    if got > cap:
        raise errors.PayloadTooLarge(f"body is over the {cap} byte limit", limit=cap)
    return b"".join(chunks)


def form_json(body: bytes) -> bytes:
    """The JSON a form delivery carries in its ``payload`` field; BadPayload naming it otherwise."""
    try:
        return form_payload(body)
    except PayloadError as exc:
        raise errors.BadPayload(str(exc), field=exc.field) from None


def claimed_delivery(provider: str, headers) -> str | None:
    """The delivery id an unverified request claims, when well-formed (for its log line only).

    For a repository name nobody configured (provider ``unknown``), the id
    of the first provider whose header the request carries: a hook pointed
    at a misspelt URL is then found in the host's delivery log.  Looked up
    only for the lines that are written: most of a flood of unauthenticated
    requests is counted, not logged (``webhook.hooks``)."""
    hosts = [PROVIDERS[provider]] if provider in PROVIDERS else PROVIDERS.values()
    for host in hosts:
        claimed = host.delivery_id(headers)
        if claimed:
            return claimed if DELIVERY_RE.match(claimed) else None
    return None


class Intake:
    """The receiver's state: configuration, one Redis client (pooled) and a secret cache."""

    def __init__(self, config: Config, conn: Redis, logger: logging.Logger):
        self.config = config
        self.conn = conn
        self.committer = GroupCommit(conn, on_batch=observe_batch)  # concurrent pushes share round trips
        self.logger = logger
        self._secrets: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def secret(self, repo: RepoConfig) -> bytes:
        now = time.monotonic()
        cached = self._secrets.get(repo.name)
        if cached and now - cached[1] < SECRET_CACHE_SECONDS:
            return cached[0]
        try:  # where the secret lives is for the log, not for any caller
            value = repo.secret.usable_value(repo.secret_problem)
        except SecretUnusable as exc:
            raise errors.Misconfigured(f"the webhook secret of {repo.name} {exc.problem}",
                                       log_detail=f"secret {exc}") from exc
        except ConfigError as exc:
            raise errors.Misconfigured(f"the webhook secret of {repo.name} cannot be read; "
                                       "the receiver's log says why", log_detail=str(exc)) from exc
        with self._lock:
            self._secrets[repo.name] = (value, now)
        return value

    def receive(self, name: str, environ, headers, log: dict) -> Answer:
        repo = self.config.repo(name)
        if repo is None:
            raise errors.UnknownRepo(f"no repository named {name!r} is configured")
        log["repo"] = repo.name
        log["provider"] = repo.provider
        cap = self.config.server.max_body_bytes
        body = read_body(environ, cap, declared_length(environ, cap))
        host = provider_module(repo.provider)
        form = host.FORM if is_form(headers.get("Content-Type")) else None
        signed = form_json(body) if form == "payload" else body
        if not host.verify(headers, signed, self.secret(repo),
                           tolerance=self.config.server.signature_tolerance):
            return UNAUTHORIZED
        deadline = time.monotonic() + self.config.server.queue_timeout  # the time for Redis: see the docstring
        try:
            document = form_json(body) if form == "body" else signed
            event = self._parse(host, headers, document, repo)
            delivery = self._delivery(event, body)
        except errors.BadPayload:  # verified, so its line names the delivery when the id is well-formed
            log["delivery"] = claimed_delivery(repo.provider, headers)
            raise
        log.update(delivery=delivery, event=event.event, ref=event.ref, sha=event.after)

        ignored = self._why_ignored(repo, event)
        if ignored:
            outcome, reason = ignored
            return Answer(200, {"status": "ignored", "reason": reason, "repo": repo.name,
                                "delivery": delivery}, outcome, {"reason": reason})
        try:
            request = request_sync(self.conn, self.config, repo, event.after, reason="push",
                                   delivery=delivery, dedup_key=keys.delivery(repo.name, delivery),
                                   dedup_ttl=self.config.server.dedup_ttl, committer=self.committer,
                                   deadline=deadline)
        except RedisTimeoutError as exc:
            log["error"] = type(exc).__name__
            raise errors.Unavailable(
                f"Redis did not answer in time for this delivery (server.queue_timeout "
                f"{self.config.server.queue_timeout:g}s); retry later (if it took this delivery "
                "after all, the retry is answered duplicate)", retry_after=5) from exc
        except RedisError as exc:
            log["error"] = type(exc).__name__
            raise errors.Unavailable("the queue is unreachable; nothing was accepted, retry later",
                                     retry_after=5) from exc
        log["job_id"] = request.job_id
        body_out = {"repo": repo.name, "ref": event.ref, "sha": event.after,
                    "delivery": delivery, "job_id": request.job_id}
        if request.duplicate:
            return Answer(200, {"status": "duplicate", **body_out}, "duplicate")
        body_out["status"] = "queued"
        body_out["coalesced"] = not request.new_job
        body_out["commit_status"] = self._pending_status(repo, event.after, request.job_id, log, deadline)
        return Answer(202, body_out, "coalesced" if not request.new_job else "queued")

    def _parse(self, host, headers, body: bytes, repo: RepoConfig) -> PushEvent:
        try:
            payload = decode_json(host, body, bool(repo.paths))
        except (ValueError, RecursionError):
            raise errors.BadPayload("body is not valid JSON", field="body") from None
        try:
            return host.parse(headers, payload, branch=repo.branch, with_paths=bool(repo.paths))
        except PayloadError as exc:
            raise errors.BadPayload(str(exc), field=exc.field) from None
        except RecursionError:
            raise errors.BadPayload("body is nested too deeply", field="body") from None

    @staticmethod
    def _delivery(event: PushEvent, body: bytes) -> str:
        if event.delivery is None:
            # No id from the host: the body itself identifies a redelivery.
            return "body-" + hashlib.sha256(body).hexdigest()[:32]
        if not DELIVERY_RE.match(event.delivery):
            raise errors.BadPayload("delivery id header is malformed", field="delivery")
        return event.delivery

    @staticmethod
    def _why_ignored(repo: RepoConfig, event: PushEvent) -> tuple[str, str] | None:
        # a push must name it (only the generic format may leave it out: then only where none is configured)
        if (event.repository is not None or event.event == "push") and not same_repository(
                event.repository, repo.repository, repo.repository_may_have_url_root):
            about = "names no repository" if event.repository is None else f"is about {event.repository!r}"
            raise errors.RepositoryMismatch(f"payload {about}, this hook serves {repo.repository!r}",
                                            field="repository")
        if event.event == "ping":
            return "ping", "ping: the hook is reachable and the signature is valid"
        if event.event not in repo.events:
            return "ignored", f"event {event.event!r} is not tracked"
        if event.is_tag_push:
            return "ignored", f"tag push ({event.tag}): only branch {repo.branch!r} is tracked"
        if event.branch != repo.branch:
            return "ignored", f"ref {event.ref!r} is not the tracked branch {repo.branch!r}"
        if event.deleted:
            return "ignored", f"branch {repo.branch!r} was deleted; nothing to sync"
        if not touches(event.paths, repo.paths):
            return "ignored", "no changed file matches the repository's path filters"
        return None

    def _pending_status(self, repo: RepoConfig, sha: str, job_id: str, log: dict, deadline: float) -> str:
        if not repo.status or not repo.status.enabled:
            return "not configured"
        from worker.status import enqueue_status  # the worker package is optional at import time
        try:
            queued = within(deadline, enqueue_status, self.conn, self.config, repo, sha, "pending",
                            "sync queued", sync_id=job_id, sync_job=job_id, deadline=deadline, keep_result=True)
        except DeadlineExceeded:  # the answer is due; the status may still be queued after it
            self.logger.warning("pending commit status not confirmed in time", extra={
                **log, "error": "DeadlineExceeded"})
            return "not confirmed in time"
        except Exception as exc:  # the sync is durable; never turn that into a retry
            self.logger.warning("pending commit status not queued", extra={
                **log, "error": type(exc).__name__})
            return "not queued"
        return "pending queued" if queued else "not queued"  # None: Redis refused it (logged there)
