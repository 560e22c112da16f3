"""Outbound HTTP for notification jobs (commit statuses, alerts) and how failures are retried.

Why it exists: every call Pullbridge makes to an outside service must decide
the same thing after a failure: try again later (network error, 5xx, 409,
429 or a rate limit, honouring ``Retry-After``, a minute when a rate limit
names no wait) or give up at once (any other 4xx: a bad token or a bad
request will not improve by repeating it).  The decision is made here once,
as kopf-style exceptions:

* ``TemporaryError(delay)``: the RQ job raises it and RQ's ``Retry`` runs it
  again; ``delay`` (from ``Retry-After``) stretches the next retry interval.
* ``PermanentError``: the job's remaining retries are cancelled, it fails
  once and lands in the failed registry for an operator to see.

Messages carry the HTTP status and a cut-short body, never the URL (a Slack
webhook URL is a secret) nor any header.

Redirects are not followed: urllib would re-send a redirected POST as a GET
without its body but with its ``Authorization``/``PRIVATE-TOKEN`` header,
even to another host, and GitHub answers that GET (it lists the commit's
statuses) with 200, so a status that was never posted would read as posted.
A 3xx is a ``PermanentError`` saying where it pointed: the configured URL
needs fixing (typically http:// behind an https redirect).
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from pullbridge import __version__
from worker.errors import cancel_retries, stretch_next_retry

log = logging.getLogger(__name__)

USER_AGENT = f"pullbridge/{__version__}"
BODY_SHOWN = 300
MAX_DELAY = 3600
# A rate limit that says no wait (neither Retry-After nor a reset time): GitHub asks for a minute at least.
RATE_LIMIT_WAIT = 60.0
RATE_LIMIT_MESSAGE = re.compile(r"rate limit", re.IGNORECASE)


class PermanentError(Exception):
    """Repeating the call will not help; do not retry."""

    def __init__(self, message: str, status: int | None = None, body: str = ""):
        super().__init__(message)
        self.status = status
        self.body = body


class TemporaryError(Exception):
    """Try again later; ``delay`` seconds at least when the server said so."""

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.delay = delay


@dataclass
class Response:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def cut(text: str, limit: int = BODY_SHOWN) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand a 3xx back as an HTTPError instead of following it (see the module docstring)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def send_json(url: str, payload: dict, headers: dict[str, str], timeout: float) -> Response:
    """POST ``payload`` as JSON; any HTTP status, a 3xx too, comes back as a Response.

    A relative ``Location`` is resolved against ``url``.  Raises TemporaryError
    when no answer arrived (refused, reset, timeout, DNS).
    """
    data = json.dumps(payload).encode()
    all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    request = urllib.request.Request(url, data=data, headers=all_headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout) as reply:
            return Response(reply.status, reply.read(64 * 1024).decode("utf-8", "replace"),
                            {k.lower(): v for k, v in reply.headers.items()})
    except urllib.error.HTTPError as exc:
        body = exc.read(64 * 1024).decode("utf-8", "replace") if exc.fp else ""
        response_headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        if 300 <= exc.code < 400 and response_headers.get("location"):
            response_headers["location"] = urljoin(url, response_headers["location"])
        return Response(exc.code, body, response_headers)
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TemporaryError(f"no answer: {type(reason).__name__}: {cut(str(reason), 120)}") from None


def retry_after(response: Response, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or GitHub's rate-limit reset."""
    now = time.time() if now is None else now
    value = response.header("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(min(int(value), MAX_DELAY))
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
            return max(0.0, min(when - now, MAX_DELAY))
        except (TypeError, ValueError):
            return None
    if response.header("x-ratelimit-remaining") == "0":
        reset = response.header("x-ratelimit-reset") or ""
        if reset.isdigit():
            return max(0.0, min(int(reset) - now, MAX_DELAY))
    return None


def redirect_target(location: str | None, with_path: bool) -> str:
    """Where a redirect pointed, never with credentials; the path only when it holds no secret."""
    parts = urlsplit(location or "")
    if not parts.scheme or not parts.hostname:
        return "an address not shown"
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    return origin + parts.path if with_path else origin + "/… (path not shown)"


def check(response: Response, what: str, *, fix: str = "fix the configured URL",
          location_path: bool = False) -> Response:
    """Return a 2xx response; raise TemporaryError or PermanentError for the rest.

    A 3xx (not followed, see above) is permanent; its message says where it
    pointed, with the path only when ``location_path`` (an alert URL's path is
    its secret), and ``fix`` says what to change.
    """
    status = response.status
    if 200 <= status < 300:
        return response
    if 300 <= status < 400:
        where = redirect_target(response.header("location"), location_path)
        raise PermanentError(f"{what}: HTTP {status}: redirected to {where}, not followed: {fix}",
                             status, cut(response.body))
    message = f"{what}: HTTP {status}: {cut(response.body) or '(empty body)'}"
    if status >= 500 or status in (408, 409):
        raise TemporaryError(message, retry_after(response))
    if status == 429 or (status == 403 and rate_limited(response)):
        delay = retry_after(response)
        raise TemporaryError(message, RATE_LIMIT_WAIT if delay is None else delay)
    raise PermanentError(message, status, cut(response.body))


def rate_limited(response: Response) -> bool:
    """Is this 403 one of GitHub's rate limits rather than a lack of permission?  A primary limit
    sets ``x-ratelimit-remaining: 0``; a secondary one says so in its message, with or without
    ``retry-after``."""
    return bool(response.header("retry-after") or response.header("x-ratelimit-remaining") == "0"
                or RATE_LIMIT_MESSAGE.search(response.body))


def job_config():
    """The configuration, read afresh for a notification job; unreadable now is worth a retry."""
    from pullbridge.config import ConfigError, load_config

    try:
        return load_config()
    except ConfigError as exc:
        raise TemporaryError(f"configuration unreadable: {exc}") from None


def run_job(what: str, call):
    """Run ``call()`` inside an RQ job, applying the retry policy above.

    A TemporaryError whose server asked for a delay stretches the job's next
    RQ retry interval, or is logged as giving up when no retry is left; a
    PermanentError cancels the remaining retries.  Both are re-raised so the
    job is recorded as failed (or scheduled again).
    """
    from rq import get_current_job

    job = get_current_job()
    try:
        return call()
    except TemporaryError as exc:
        if job is None or not job.retries_left:
            log.error("%s: giving up, no retry left: %s", what, exc)
            raise
        log.warning("%s: will retry: %s", what, exc)
        if exc.delay:
            stretch_next_retry(job, exc.delay)
        raise
    except PermanentError as exc:
        log.error("%s: giving up (no retry): %s", what, exc)
        cancel_retries(job)
        raise
