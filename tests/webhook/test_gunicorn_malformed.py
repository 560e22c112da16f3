"""Malformed requests against the Procfile's real ``web`` server.

Chunked bodies: only gunicorn's own chunked reader shows this: it raises from
``wsgi.input.read()`` (InvalidChunkSize, ChunkMissingTerminator,
NoMoreData), before the signature could be checked, so any sender could
turn it into a 500 and an ERROR traceback in the log.  Bad input is never a
5xx: the answer is a 400 naming the body, and the connection closes (the
rest of the body was never read, so the next request on it is not taken).

Request lines and headers gunicorn refuses itself, before the app sees them
(``webhook.gunicorn_errors``): the answer is JSON like the receiver's, with
gunicorn's status, and neither it nor the log quotes what was sent (a token
in the query or in a header line).
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.webhook import payloads as P
from tests.webhook.conftest import GENEROUS, running_web, secret
from tests.webhook.test_gunicorn import HEALTHZ, _head, _read_until_closed

BODY = json.dumps(P.github_push(after=P.sha("malformed"))).encode()
MALFORMED = {
    "bad-chunk-size": b"zz\r\n" + BODY + b"\r\n0\r\n\r\n",
    "no-crlf-after-a-chunk": b"%x\r\n" % len(BODY) + BODY + b"XX0\r\n\r\n",
    "cut-off-then-eof": b"%x\r\n" % (len(BODY) + 50) + BODY,
}


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    with running_web(tmp_path_factory.mktemp("web"), workers=1) as (_, port, log):
        yield {"port": port, "log": log, "refused": 0}  # refused: the 400s answered so far


def _send(port: int, case: str, delivery: str) -> tuple[bytes, str]:
    headers = {**P.signed_headers("github", secret("PB_TEST_GITHUB_SECRET"), BODY, delivery=delivery),
               "Transfer-Encoding": "chunked"}
    head = (b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\n"
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) as sock:
        if case == "cut-off-then-eof":
            sock.sendall(head + MALFORMED[case])
            sock.shutdown(socket.SHUT_WR)  # the sender is gone mid-chunk
        else:
            sock.sendall(head + MALFORMED[case] + HEALTHZ)  # and a next request on the same connection
        return _read_until_closed(sock)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_chunked_body_is_a_400_naming_the_body_and_closes_the_connection(web, case):
    data, ended = _send(web["port"], case, f"malformed-{case}")
    head = _head(data)
    assert head[0].startswith(b"HTTP/1.1 400"), data[:300]
    web["refused"] += 1
    answer = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert answer["error"] == "bad_payload" and answer["field"] == "body", answer
    assert b"Connection: close" in head, head
    assert data.count(b"HTTP/1.1 ") == 1, f"the next request was answered: {data[-200:]!r}"
    assert ended in ("eof", "reset")
    # the log: warning lines, no traceback.  The body was refused before the signature check
    # (anyone can send one), so its lines are rate-limited like 401s: the first is written.
    deadline = time.monotonic() + GENEROUS  # the worker's log writer writes a moment after the answer
    while _bad_payload_lines(web["log"]) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    text = web["log"].read_text()
    assert 1 <= _bad_payload_lines(web["log"]) <= web["refused"], text[-2000:]
    assert "Traceback" not in text and "unexpected error" not in text, text[-2000:]


def _bad_payload_lines(log) -> int:
    lines = [json.loads(l) for l in log.read_text().splitlines() if l.startswith("{")]
    return sum(1 for l in lines if l.get("status") == 400 and l.get("outcome") == "bad_payload")


@pytest.mark.parametrize("failure", [OSError("Invalid chunk header"), TimeoutError("timed out"),
                                     ValueError("invalid literal for int() with base 16")],
                         ids=["werkzeug-chunk-header", "socket-timeout", "value-error"])
def test_any_servers_unreadable_body_is_bad_payload_naming_the_body(failure):
    # Other servers' readers (werkzeug's dev server raises OSError for a bad chunk) and
    # socket errors alike: never a 500, and the reader's words are not passed on.
    from webhook import errors
    from webhook.intake import read_body

    class Stream:
        def read(self, size=-1):
            raise failure

    with pytest.raises(errors.BadPayload) as refused:
        read_body({"wsgi.input": Stream(), "wsgi.input_terminated": True}, 4096, None)
    assert refused.value.status == 400 and refused.value.details == {"field": "body"}
    assert str(failure) not in refused.value.message


TOKEN = "tok-3f9a1c7e"  # a secret the client put where gunicorn cannot parse it


def request(line: str, *headers: str) -> bytes:
    return "\r\n".join([line, "Host: x", *headers, "", ""]).encode()


REFUSED = {  # request, status, error, what gunicorn raised
    # a registry hook's token in the query (Docker Hub's way), on a line with a control character
    "request-line": (request(f"POST /hooks/registry/hub?token={TOKEN}\x01 HTTP/1.1"),
                     400, "bad_request", "InvalidRequestLine"),
    "request-line-too-long": (request(f"POST /hooks/registry/hub?token={TOKEN}&pad={'p' * 5000} HTTP/1.1"),
                              414, "uri_too_long", "LimitRequestLine"),
    "header-without-colon": (request("POST /hooks/gl HTTP/1.1", f"X-Gitlab-Token {TOKEN}"),
                             400, "bad_request", "InvalidHeader"),
    "header-too-large": (request("POST /hooks/gl HTTP/1.1", f"X-Gitlab-Token: {TOKEN}{'t' * 9000}"),
                         431, "request_header_fields_too_large", "LimitRequestHeaders"),
    "transfer-coding": (request("POST /hooks/gl HTTP/1.1", f"Transfer-Encoding: {TOKEN}, chunked"),
                        501, "not_implemented", "UnsupportedTransferCoding"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_request_gunicorn_refuses_itself_gets_json_and_is_logged_without_what_it_sent(web, case):
    sending, status, error, kind = REFUSED[case]
    with socket.create_connection(("127.0.0.1", web["port"]), timeout=GENEROUS) as sock:
        sock.sendall(sending)
        data, ended = _read_until_closed(sock)
    head = _head(data)
    assert head[0].startswith(b"HTTP/1.1 %d " % status), data[:300]
    assert b"Connection: close" in head and b"Content-Type: application/json" in head, head
    answer = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert answer["error"] == error and answer["message"], answer
    assert TOKEN.encode() not in data
    text = web["log"].read_text()  # the line is written before the answer
    assert f"Invalid request from ip=127.0.0.1: {status}, {answer['message']} ({kind}); 0 like it left out" in text, \
        text[-2000:]
    assert TOKEN not in text and "Traceback" not in text, text[-2000:]


def test_a_flood_of_requests_gunicorn_refuses_is_logged_about_once_a_second(web):
    """Anyone can send malformed requests: each is answered, but their log lines are rate-limited."""
    sent, started = 40, time.monotonic()
    for _ in range(sent):
        with socket.create_connection(("127.0.0.1", web["port"]), timeout=GENEROUS) as sock:
            sock.sendall(request("POST /hooks/gl HTTP/1.1", "Transfer-Encoding: bogus, chunked"))
            data, _ = _read_until_closed(sock)
        assert data.startswith(b"HTTP/1.1 501 "), data[:200]
    seconds = time.monotonic() - started
    # gunicorn writes its own lines itself (not through the receiver's log writer), before the answer
    lines = [line for line in web["log"].read_text().splitlines() if "(UnsupportedTransferCoding)" in line]
    # the parametrized case above may have written one line for this class before
    assert 1 <= len(lines) <= 2 + int(seconds), (seconds, lines)
