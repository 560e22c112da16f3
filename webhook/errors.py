"""Every way a request to the receiver can fail, as a typed exception with
its HTTP status, in one place.

Why: the view code raises what went wrong (``Unauthorized``,
``BadPayload("after", ...)``) and ``error_response`` turns it into a JSON
answer (used by the app's error handler, and directly by the hook view so
the hot 401 path skips Flask's exception dispatch).  Messages are written for the sender and never contain a
secret, a signature or a payload excerpt.
"""

from __future__ import annotations

import json

import orjson

from flask import Response


def json_bytes(body: dict) -> bytes:
    """An answer's JSON: orjson (a tenth of json.dumps' time on the receiver's
    small answers), json.dumps for what orjson refuses (a lone surrogate)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body).encode()


class HookError(Exception):
    """``message`` and ``details`` go to the sender; ``log_detail``, when given, only to the
    delivery's log line (its ``error`` field), for what the operator needs and a caller must
    not learn (where a secret is kept)."""

    status = 500
    code = "error"
    headers: dict[str, str] = {}

    def __init__(self, message: str, *, log_detail: str | None = None, **details):
        super().__init__(message)
        self.message = message
        self.log_detail = log_detail
        self.details = details

    def body(self) -> dict:
        return {"error": self.code, "message": self.message, **self.details}

    def encoded(self) -> bytes:
        """``body()`` as the answer's JSON."""
        return json_bytes(self.body())


class BadPayload(HookError):
    """Signature valid, but the body is not JSON or lacks a field (named in ``field``)."""

    status = 400
    code = "bad_payload"


class Unauthorized(HookError):
    """The signature or token is missing or wrong: always the same answer, encoded once
    (anyone can send forged deliveries, so this is the answer a flood gets).  The hook
    view gets it as ``webhook.intake.UNAUTHORIZED``, returned rather than raised."""

    status = 401
    code = "unauthorized"
    MESSAGE = "signature or token missing or wrong"
    ENCODED = json_bytes({"error": code, "message": MESSAGE})  # what body() gives

    def __init__(self):
        super().__init__(self.MESSAGE)

    def encoded(self) -> bytes:
        return self.ENCODED


class RepositoryMismatch(HookError):
    """Signed by our secret but about another repository: a misrouted webhook."""

    status = 403
    code = "repository_mismatch"


class UnknownRepo(HookError):
    status = 404
    code = "unknown_repo"


class PayloadTooLarge(HookError):
    """The body is over ``server.max_body_bytes``; the rest of it is not read."""

    status = 413
    code = "payload_too_large"
    headers = {"Connection": "close"}


class Misconfigured(HookError):
    """Our side is wrong (e.g. the repo's secret cannot be read); the sender should retry later."""

    status = 500
    code = "misconfigured"


class Unavailable(HookError):
    """Redis cannot take the request durably: nothing was acknowledged, retry later."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after: int = 5, **details):
        super().__init__(message, **details)
        self.headers = {"Retry-After": str(retry_after)}


def error_response(exc: HookError) -> Response:
    return Response(exc.encoded(), exc.status, headers=exc.headers or None,
                    mimetype="application/json")
