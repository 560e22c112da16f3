"""The operator token: who may change things on the pages, and CSRF safety.

Why it exists: retrying or deleting a job from a browser must be limited to
operators and must not be triggerable by another site the operator happens
to visit.  The rules:

* The token is read from the environment variable named by
  ``server.operator_token_env`` on every request (a rotated token applies at
  once) and compared with ``hmac.compare_digest``.  No token configured:
  nothing can be changed from the pages (and protected pages stay closed).
* A script sends ``Authorization: Bearer <token>`` (a header a foreign page
  cannot make a browser send, so it needs no CSRF token).
* A browser logs in once with a form; it gets a cookie (HttpOnly,
  SameSite=Strict) holding an expiry and an HMAC of it keyed by the token,
  never the token itself.  Every POST made with that cookie must also carry
  a form field ``csrf_token`` derived from the cookie with the token, and a
  POST whose ``Origin`` is another site (neither the request's nor ``server.public_url``'s) is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
import unicodedata
from urllib.parse import urlsplit

from flask import Request

from pullbridge.config import Config

COOKIE = "pb_operator"
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf_token"


def operator_token(config: Config) -> bytes | None:
    env = config.server.operator_token_env
    value = os.environ.get(env, "") if env else ""
    return value.encode() if value else None


def _mac(token: bytes, purpose: str, value: str) -> str:
    return hmac.new(token, f"pullbridge-{purpose}|{value}".encode(), hashlib.sha256).hexdigest()


def token_matches(config: Config, offered: str | None) -> bool:
    token = operator_token(config)
    if token is None or not offered:
        return False
    return hmac.compare_digest(offered.encode(), token)


def new_session(config: Config, now: float | None = None) -> str:
    token = operator_token(config)
    if token is None:
        raise ValueError("no operator token configured")
    expires = str(int((now or time.time()) + SESSION_SECONDS))
    return f"{expires}.{_mac(token, 'session', expires)}"


def session_valid(config: Config, cookie: str | None, now: float | None = None) -> bool:
    token = operator_token(config)
    if token is None or not cookie or "." not in cookie:
        return False
    expires, _, mac = cookie.partition(".")
    if not expires.isdigit() or int(expires) < (now or time.time()):
        return False
    return hmac.compare_digest(mac.encode(), _mac(token, "session", expires).encode())


def csrf_token(config: Config, cookie: str | None) -> str:
    token = operator_token(config)
    if token is None or not cookie:
        return ""
    return _mac(token, "csrf", cookie)


def bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def is_operator(config: Config, request: Request) -> bool:
    """Logged in with the cookie, or presenting the token in the Authorization header."""
    offered = bearer(request)
    if offered is not None:
        return token_matches(config, offered)
    return session_valid(config, request.cookies.get(COOKIE))


def same_origin(config: Config, request: Request) -> bool:
    """A POST from a page of another site is refused (browsers send Origin on POST).

    This site is the address the request came to, and ``server.public_url``: a proxy that
    ends TLS passes an ``https://`` page's POST on as ``http://``."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin is None
    public = urlsplit(config.server.public_url)
    return origin.rstrip("/").lower() in (request.host_url.rstrip("/").lower(),
                                          f"{public.scheme}://{public.netloc}".lower())


def may_change(config: Config, request: Request) -> tuple[bool, str]:
    """May this POST change something?  (allowed, reason shown when not)."""
    if operator_token(config) is None:
        return False, "No operator token is configured (server.operator_token_env), so nothing can be changed here."
    offered = bearer(request)
    if offered is not None:
        return (True, "") if token_matches(config, offered) else (False, "The operator token is wrong.")
    if not same_origin(config, request):
        return False, "The request came from another site."
    cookie = request.cookies.get(COOKIE)
    if not session_valid(config, cookie):
        return False, "Log in with the operator token first (or your session expired)."
    sent = request.form.get(CSRF_FIELD, "")
    if not hmac.compare_digest(sent.encode(), csrf_token(config, cookie).encode()):
        return False, "The form is stale or was not sent by this site; reload the page and try again."
    return True, ""


def safe_next(target: str | None) -> str:
    """Only a path on this site is followed after login.

    Control characters are refused before anything else: browsers drop a tab
    or newline inside a URL, so ``next=/%09/evil.example`` would become the
    protocol-relative ``//evil.example`` (and a newline cannot go into a
    Location header at all).  What is left must parse as a bare path.
    """
    if not target or any(unicodedata.category(c) == "Cc" for c in target):
        return "/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target
