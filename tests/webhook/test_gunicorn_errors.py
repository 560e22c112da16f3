"""``webhook.gunicorn_errors.refusal``: which of gunicorn's exceptions are the
client's (a refusal, with gunicorn's status) and which are ours (500).  What
the answers say and log is shown against the real server in
``test_gunicorn_malformed`` and ``test_gunicorn_closing``."""

from __future__ import annotations

import ssl

import pytest
from gunicorn.http import errors

from webhook.gunicorn_errors import refusal


@pytest.mark.parametrize("exc, status, error", [
    (errors.InvalidRequestLine("GET /\x01 HTTP/1.1"), 400, "bad_request"),
    (errors.InvalidHeader("X-Token secret"), 400, "bad_request"),
    (errors.LimitRequestLine(5000, 4094), 414, "uri_too_long"),
    (errors.LimitRequestHeaders("limit request headers fields size"), 431, "request_header_fields_too_large"),
    (errors.UnsupportedTransferCoding("gzip"), 501, "not_implemented"),
    (errors.ExpectationFailed("200-ok"), 417, "expectation_failed"),
    (errors.ForbiddenProxyRequest("10.0.0.1"), 403, "forbidden"),
    (ssl.SSLError(1, "handshake failure"), 403, "forbidden"),
    (errors.InvalidChunkSize(b"zz"), 400, "bad_request"),
    (errors.InvalidProxyHeader("unsupported version 3"), 400, "bad_request"),  # no entry: any ParseException
], ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None)
def test_what_the_client_sent_wrong_is_refused_with_gunicorns_status(exc, status, error):
    assert refusal(exc)[:2] == (status, error)


@pytest.mark.parametrize("exc", [
    errors.InvalidResponseHeader("X-Bad\r\n"),  # an InvalidHeader, but the app set it
    errors.InvalidResponseHeaderName("X Bad"),
    errors.ConfigurationProblem("SCRIPT_NAME"),
    RuntimeError("the app failed"),
], ids=lambda exc: type(exc).__name__)
def test_our_own_faults_are_not_refusals(exc):
    assert refusal(exc) is None
