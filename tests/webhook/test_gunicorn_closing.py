"""Every connection the Procfile's ``web`` server closes while the client is still
sending its body closes gracefully: the client sends all of it and reads the whole answer.

Closing a socket with unread data makes the kernel reset the connection: a
client that sends its whole body before it reads (GitHub's, most HTTP
clients) gets ``ECONNRESET`` on its send, and loses the answer.  The worker
lingers (``webhook.gunicorn_worker``) on every such close, not only after the
receiver's own 404 and 413 (``test_gunicorn``): after gunicorn's own error
answers (a request line or header it rejects, an app that raised) and after
an answer that closes because the client asked for it (``Connection: close``,
HTTP/1.0) before reading the body.  (What gunicorn's own refusals say and log
is ``test_gunicorn_malformed``'s; the 500's is checked here, where a test app
raises.)
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.webhook.conftest import GENEROUS, running_web
from tests.webhook.test_gunicorn import _head, _read_until_closed

BODY_BYTES = 16 * 1024 * 1024  # far more than the kernel buffers of both ends hold: it is sent only if read
PIECE = b"x" * 65536


# Both servers linger far longer than the 2 s a real client has: the verdict must not depend on
# this machine sending 16 MiB within 2 s (tests/webhook/lingering_apps.py).
@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    with running_web(tmp_path_factory.mktemp("web"), workers=1, extra_env={"PULLBRIDGE_BENCH_NOOP": "1"},
                     app="tests.webhook.lingering_apps:create_app()") as (_, port, log):
        yield port, log


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    with running_web(tmp_path_factory.mktemp("failing"), workers=1,
                     app="tests.webhook.lingering_apps:failing") as (_, port, log):
        yield port, log


def send_body_then_read(port: int, head: bytes) -> tuple[bytes, str, int]:
    """As GitHub's client does: the head and a ``BODY_BYTES`` body, all sent before reading.
    The answer's bytes, how the connection ended ("eof" or "reset") and how many body bytes went."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) as sock:
        try:
            sock.sendall(head)
            while sent < BODY_BYTES:
                sock.sendall(PIECE)
                sent += len(PIECE)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, ended = _read_until_closed(sock)
    return data, ended, sent


def assert_answered_in_full(data: bytes, ended: str, sent: int, status: bytes) -> list[bytes]:
    head = _head(data)
    assert head[0].startswith(status), data[:300]
    assert b"Connection: close" in head, head
    length = next((int(l.split(b":", 1)[1]) for l in head if l.lower().startswith(b"content-length:")), 0)
    assert len(data.split(b"\r\n\r\n", 1)[1]) == length, data[-300:]
    assert ended == "eof" and sent == BODY_BYTES, f"reset after {sent} of {BODY_BYTES} body bytes"
    return head


LENGTH = b"Content-Length: %d\r\n\r\n" % BODY_BYTES


@pytest.mark.parametrize("head, status", [
    (b"POST /hooks/gh\x01 HTTP/1.1\r\nHost: x\r\n" + LENGTH, b"HTTP/1.1 400"),
    (b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token no-colon\r\n" + LENGTH, b"HTTP/1.1 400"),
    (b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nX-Large: " + b"a" * 9000 + b"\r\n" + LENGTH, b"HTTP/1.1 431"),
], ids=["malformed-request-line", "malformed-header", "header-too-large"])
def test_gunicorns_own_refusal_lets_the_client_send_its_body_and_read_the_answer(receiver, head, status):
    port, _ = receiver
    data, ended, sent = send_body_then_read(port, head)
    assert_answered_in_full(data, ended, sent, status)


def test_gunicorns_500_for_an_app_that_raised_lets_the_client_send_its_body_and_read_it(failing):
    port, log = failing
    token = "tok-3f9a1c7e"  # a registry hook's token in the query (Docker Hub's way)
    request = f"POST /fail?token={token} HTTP/1.1\r\nHost: x\r\n".encode() + LENGTH
    data, ended, sent = send_body_then_read(port, request)
    head = assert_answered_in_full(data, ended, sent, b"HTTP/1.1 500")
    # the answer is the receiver's JSON 500; the log has the traceback and the path, not the query
    assert b"Content-Type: application/json" in head, head
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"] == "internal"
    text = log.read_text()
    assert "Error handling request POST /fail\n" in text, text[-2000:]
    assert "RuntimeError: failed before reading the body" in text and token not in text, text[-2000:]


@pytest.mark.parametrize("head, status", [
    (b"POST /bench/noop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + LENGTH, b"HTTP/1.1 204"),
    (b"GET /healthz HTTP/1.0\r\nHost: x\r\n" + LENGTH, b"HTTP/1.0 200"),
], ids=["connection-close", "http-1.0"])
def test_a_success_closed_at_the_clients_word_lets_it_send_the_unread_body_and_read_the_answer(
        receiver, head, status):
    # The no-op answers without reading its body, and so does /healthz: the connection
    # closes because the client said so, with the body still coming.
    port, _ = receiver
    data, ended, sent = send_body_then_read(port, head)
    assert_answered_in_full(data, ended, sent, status)
