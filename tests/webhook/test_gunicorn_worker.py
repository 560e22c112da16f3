"""``webhook.gunicorn_worker``: each answer leaves in one send.

The worker's ``handle_request`` is driven as gunicorn drives it: a request
written into a real socket pair, parsed by gunicorn's own parser, answered by
a WSGI app through gunicorn's own ``Response``.  The server's end of the pair
records each ``sendall`` before making it, so the tests see how an answer was
cut, and the client's end reads what arrived.  (The keep-alive turn-taking of
the same worker is shown against a real gunicorn in ``test_gunicorn``.)
"""

from __future__ import annotations

import contextlib
import socket

import pytest
from gunicorn import http
from gunicorn.config import Config
from gunicorn.glogging import Logger

from webhook.gunicorn_worker import FairGeventWorker, HeldHeaders


class Recording:
    """A real socket whose ``sendall`` calls are kept, in order."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sent: list[bytes] = []

    def sendall(self, data) -> None:
        self.sent.append(bytes(data))
        self.sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def json_app(environ, start_response):
    start_response("401 UNAUTHORIZED", [("Content-Type", "application/json"), ("Content-Length", "25")])
    return [b'{"error": "unauthorized"}']


def empty_app(environ, start_response):
    start_response("204 NO CONTENT", [])
    return [b""]


def streamed_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])  # no length: chunked
    return iter([b"one", b"two", b"three"])


def failing_app(environ, start_response):
    raise RuntimeError("boom")


def failing_after_headers_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"partial"
    raise RuntimeError("boom")


def serve_one(app, request: bytes = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"):
    """Answer one request on a socket pair; the server's sends and the bytes the client got."""
    cfg = Config()
    worker = FairGeventWorker(0, 0, [], None, 30, cfg, Logger(cfg))
    worker.wsgi = app
    server, client = socket.socketpair()
    with server, client:
        client.sendall(request)
        recording = Recording(server)
        req = next(http.get_parser(cfg, server, ("127.0.0.1", 1)))
        try:
            worker.handle_request("127.0.0.1:8080", req, recording, ("127.0.0.1", 1))
        except StopIteration:  # gunicorn's "close this connection"
            pass
        except Exception as exc:  # what gunicorn's handle() does with it
            worker.handle_error(req, server, ("127.0.0.1", 1), exc)
        with contextlib.suppress(OSError):  # unless gunicorn closed it already
            server.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    return recording.sent, received


def test_a_small_answer_leaves_in_one_send():
    sent, received = serve_one(json_app)
    assert len(sent) == 1, sent
    assert sent[0].startswith(b"HTTP/1.1 401 UNAUTHORIZED\r\n")
    assert sent[0].endswith(b'\r\n\r\n{"error": "unauthorized"}')
    assert received == sent[0]


def test_an_answer_without_a_body_is_sent_when_it_ends():
    sent, received = serve_one(empty_app)
    assert len(sent) == 1
    assert received.startswith(b"HTTP/1.1 204 NO CONTENT\r\n") and received.endswith(b"\r\n\r\n")


def test_a_streamed_answer_sends_its_headers_with_the_first_chunk_then_each_chunk():
    sent, received = serve_one(streamed_app)
    assert len(sent) == 4, sent  # headers + "one", "two", "three", the last chunk
    assert sent[0].startswith(b"HTTP/1.1 200 OK\r\n") and sent[0].endswith(b"\r\n\r\n3\r\none\r\n")
    assert sent[1:] == [b"3\r\ntwo\r\n", b"5\r\nthree\r\n", b"0\r\n\r\n"]
    assert received == b"".join(sent)


def test_an_app_that_fails_before_answering_gets_gunicorns_error_page():
    sent, received = serve_one(failing_app)
    assert sent == []  # nothing was held: the page goes out on the connection itself
    assert received.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")


def test_an_app_that_fails_mid_answer_gets_its_connection_closed_without_an_error():
    sent, received = serve_one(failing_after_headers_app)
    # the headers went out with the first chunk; gunicorn then gives up on the connection
    assert len(sent) == 1 and sent[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert received == sent[0]


def test_held_headers_are_dropped_when_gunicorn_closes_the_connection():
    server, client = socket.socketpair()
    with client:
        recording = Recording(server)
        out = HeldHeaders(recording)
        out.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        out.close()
        out.flush()  # nothing to send any more, and no error from the closed socket
        assert recording.sent == []
        assert client.recv(100) == b""


def test_held_headers_go_out_before_a_sendfile(tmp_path):
    page = tmp_path / "page.txt"
    page.write_bytes(b"from a file")
    server, client = socket.socketpair()
    with server, client, page.open("rb") as f:
        out = HeldHeaders(server)
        out.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n")
        out.sendfile(f)
        server.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    assert received == b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nfrom a file"


@pytest.mark.parametrize("pieces", [[b"a"], [b"a", b"b"], [b"a", b"b", b"c", b"d"]])
def test_held_headers_keep_the_order_and_the_bytes(pieces):
    server, client = socket.socketpair()
    with server, client:
        recording = Recording(server)
        out = HeldHeaders(recording)
        for piece in pieces:
            out.sendall(piece)
        out.flush()
        out.flush()
        assert b"".join(recording.sent) == b"".join(pieces)
        assert len(recording.sent) == max(1, len(pieces) - 1)
