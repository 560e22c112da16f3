"""gunicorn's own error answers, in the receiver's JSON, logged without what the client sent.

Why it exists: gunicorn answers by itself when it cannot parse a request (a
malformed request line or header, header fields too large, a transfer coding
it does not know) and when the app raises instead of answering
(``Worker.handle_error``).  Its answer is an HTML page quoting the offending
line, and its log line quotes the same.  Against the Procfile's server, a
request line with a control character in it was logged as ``Invalid request
from ip=127.0.0.1: Invalid HTTP request line: 'POST /hooks/gh?token=<the
token>\\x01 HTTP/1.1'`` (Docker Hub's registry hooks carry their secret in
the query) and a header line missing its colon as ``Invalid HTTP Header:
'X-Gitlab-Token <the token>'``; an app's error was logged with the request's
whole URI, query and all.

Here the status is gunicorn's (400; 414 for a request line too long, 431 for
header fields too large or too many, 501 for a transfer coding it does not
know, 417 for an ``Expect`` it cannot meet, 403 for a PROXY line from a host
not allowed or a TLS error, 500 when the fault is ours: an app that raised,
a header the app set that HTTP forbids, a ``SCRIPT_NAME`` the path does not
start with), and the answer is the receiver's JSON error, ``{"error": ...,
"message": ...}`` with ``Connection: close``, saying which part of the
request is wrong without quoting it.  A refusal is logged as a warning with
the client's address, the status, that message and the exception's class,
at most once a second for each class (``webhook.noise``: anyone can send
them); our fault as an error with its traceback, the method and the path (not the
query).  The access log, when one is configured, gets its line as from
gunicorn.  None of it runs for a request the app answers.
"""

from __future__ import annotations

import datetime
import json
from http import HTTPStatus
from ssl import SSLError

from gunicorn import util
from gunicorn.http import errors
from gunicorn.http.wsgi import Response, default_environ

from webhook.noise import noise_to_log

OUR_FAULT = (errors.InvalidResponseHeader, errors.InvalidResponseHeaderName, errors.ConfigurationProblem)
# What gunicorn refuses a request for, its status, the answer's error and message; the first match
# wins (InvalidResponseHeader is an InvalidHeader, but it is the app's: OUR_FAULT is looked at first).
REFUSALS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str, str], ...] = (
    (errors.LimitRequestLine, 414, "uri_too_long", "the request line is too long"),
    (errors.LimitRequestHeaders, 431, "request_header_fields_too_large",
     "the header fields are too large or too many"),
    (errors.UnsupportedTransferCoding, 501, "not_implemented", "the transfer coding is not supported"),
    (errors.ExpectationFailed, 417, "expectation_failed", "the Expect header cannot be met"),
    ((errors.ForbiddenProxyRequest, SSLError), 403, "forbidden", "the connection is not allowed"),
    ((errors.InvalidRequestLine, errors.InvalidRequestMethod, errors.InvalidHTTPVersion),
     400, "bad_request", "the request line is malformed"),
    ((errors.InvalidHeader, errors.InvalidHeaderName, errors.ObsoleteFolding, errors.InvalidSchemeHeaders),
     400, "bad_request", "a header field is malformed"),
    ((errors.InvalidChunkSize, errors.ChunkMissingTerminator, errors.InvalidChunkExtension),
     400, "bad_request", "the chunked body is malformed"),
    (errors.ParseException, 400, "bad_request", "the request is malformed"),  # PROXY lines, what comes next
)
INTERNAL = (500, "internal", "internal error; it was logged")  # as the app's own 500 says


def refusal(exc: BaseException) -> tuple[int, str, str] | None:
    """The status, error and message of gunicorn's refusal of a request ``exc``
    finds malformed; None when the fault is ours (``OUR_FAULT``, or anything else raised)."""
    if isinstance(exc, OUR_FAULT):
        return None
    return next(((status, error, message) for kinds, status, error, message in REFUSALS
                 if isinstance(exc, kinds)), None)


def answer_error(worker, req, client, addr, exc: BaseException) -> None:
    """What gunicorn's ``Worker.handle_error`` does, in JSON and without quoting the client (see above)."""
    addr = addr or ("", -1)  # a unix socket has no address
    refused = refusal(exc)
    if refused is not None:
        status, error, message = refused
        left_out = noise_to_log(f"gunicorn refused: {type(exc).__name__}")  # anyone can send these
        if left_out is not None:
            worker.log.warning("Invalid request from ip=%s: %d, %s (%s); %d like it left out since the last line",
                               addr[0], status, message, type(exc).__name__, left_out)
    else:
        status, error, message = INTERNAL
        if req is None:
            worker.log.exception("Error handling request (no request read)")
        else:
            worker.log.exception("Error handling request %s %s", req.method, req.path)
    body = json.dumps({"error": error, "message": message}).encode()
    reason = HTTPStatus(status).phrase
    if req is not None:
        environ = default_environ(req, client, worker.cfg)
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
        response = Response(req, client, worker.cfg)
        response.status, response.response_length = f"{status} {reason}", len(body)
        worker.log.access(response, req, environ, datetime.timedelta())
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    try:
        util.write_nonblock(client, head + body)
    except Exception:  # the client is gone: nothing to tell it
        worker.log.debug("Failed to send error message.")
