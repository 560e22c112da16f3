"""``webhook.gunicorn_worker``: each answer leaves in one send, an error answer
that left the body unread closes the connection, and a connection closed with
body still to come (or after gunicorn's own error answer) closes after a linger.

The worker's ``handle_request`` is driven as gunicorn drives it: a request
written into a real socket pair, parsed by gunicorn's own parser, answered by
a WSGI app through gunicorn's own ``Response``.  The server's end of the pair
records each ``sendall`` before making it, so the tests see how an answer was
cut, and the client's end reads what arrived.  ``handle_request`` raising
``StopIteration`` is gunicorn's "close this connection"; returning keeps it.
(The keep-alive turn-taking of the same worker, and the closing against a
real client over TCP, are shown against a real gunicorn in ``test_gunicorn``.)
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import gevent
import gevent.socket
import pytest
from gunicorn import http
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.http.errors import InvalidRequestLine

from webhook import gunicorn_worker
from webhook.gunicorn_worker import FairGeventWorker, HeldHeaders

GENEROUS = 60  # seconds: only so a broken worker cannot hang the suite


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


def json_app(environ, start_response):  # reads its body first, as every 401 of the receiver does
    environ["wsgi.input"].read()
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
        client.shutdown(socket.SHUT_WR)  # all it sends: a server lingering on an unread body sees the end
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


def refusing_app(environ, start_response):  # as the receiver's 413 and 404: the body is not read
    start_response("413 REQUEST ENTITY TOO LARGE",
                   [("Content-Type", "application/json"), ("Content-Length", "2"), ("Connection", "close")])
    return [b"{}"]


def unread_success_app(environ, start_response):  # as bench/intake's no-op
    start_response("204 NO CONTENT", [])
    return [b""]


def make_worker(app) -> FairGeventWorker:
    cfg = Config()
    worker = FairGeventWorker(0, 0, [], None, 30, cfg, Logger(cfg))
    worker.wsgi = app
    return worker


def exchange(app, head: bytes, body: bytes = b"", drip: bytes = b""):
    """One request answered by the worker while the client, in threads, sends ``head``
    and ``body`` (and then ``drip`` every 10 ms, until a send fails) and reads what comes
    until the server's side ends, then, done sending too, closes its side.  Returns
    whether gunicorn closes the connection after the answer, how long ``handle_request``
    took, the bytes the client got and how many body bytes (drips included) it could send."""
    worker = make_worker(app)
    server, client = socket.socketpair()
    client.settimeout(GENEROUS)
    got = {"received": b"", "sent": 0}
    stop = threading.Event()

    def send():
        try:
            client.sendall(head)
            for i in range(0, len(body), 65536):
                client.sendall(body[i:i + 65536])
                got["sent"] += len(body[i:i + 65536])
            while drip and not stop.is_set():
                client.sendall(drip)
                got["sent"] += len(drip)
                time.sleep(0.01)
        except OSError:
            pass

    def receive():
        with contextlib.suppress(OSError):
            while chunk := client.recv(65536):
                got["received"] += chunk
            threads[0].join(GENEROUS)
            client.shutdown(socket.SHUT_WR)

    threads = [threading.Thread(target=send, daemon=True), threading.Thread(target=receive, daemon=True)]
    with server, client:
        threads[0].start()
        req = next(http.get_parser(worker.cfg, server, ("127.0.0.1", 1)))
        threads[1].start()
        started = time.monotonic()
        try:
            worker.handle_request("127.0.0.1:8080", req, server, ("127.0.0.1", 1))
            closed = False
        except StopIteration:
            closed = True
        took = time.monotonic() - started
        if not closed:  # a keep-alive connection: end it here, so the client's threads end
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
        server.close()
        stop.set()
        for thread in threads:
            thread.join(GENEROUS)
    return closed, took, got["received"], got["sent"]


def head_of(received: bytes) -> list[bytes]:
    return received.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


BODY = b"x" * (1024 * 1024)  # more than the socket pair holds: the client can send it only if it is read


@pytest.mark.parametrize("head, body", [
    (b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(BODY), BODY),
    (b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n"),
], ids=["content-length", "chunked"])
def test_an_error_that_left_the_body_unread_closes_the_connection_after_the_client_sent_it(head, body):
    # The client sends its whole body before reading (as GitHub does): it gets the
    # answer, saying close, then the end of the connection; the server read what came
    # only to drop it, and gunicorn closes instead of reading it to keep the connection.
    closed, _, received, sent = exchange(refusing_app, head, body)
    assert closed
    assert head_of(received)[0] == b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE"
    assert b"Connection: close" in head_of(received)
    assert received.endswith(b"\r\n\r\n{}") and received.count(b"HTTP/1.1 ") == 1
    assert sent == len(body)


@pytest.mark.parametrize("head", [
    b"POST /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(BODY),
    b"POST /x HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(BODY),
], ids=["connection-close", "http-1.0"])
def test_a_success_closed_at_the_clients_word_with_the_body_unread_lingers_too(head):
    # gunicorn closes after the answer because the client asked: the rest of the body
    # is read and dropped, not left to reset the connection under the client's send.
    closed, _, received, sent = exchange(unread_success_app, head, BODY)
    assert closed
    assert head_of(received)[0].endswith(b" 204 NO CONTENT")
    assert sent == len(BODY)


def test_a_client_that_never_stops_sending_is_dropped_after_the_linger(monkeypatch):
    monkeypatch.setattr(gunicorn_worker, "LINGER_SECONDS", 0.3)
    head = b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    closed, took, received, sent = exchange(refusing_app, head, b"4\r\nabcd\r\n", drip=b"1\r\nx\r\n")
    assert closed, "the connection was kept, for gunicorn to read the body that never ends"
    assert head_of(received)[0] == b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE"
    assert took < GENEROUS / 2  # it ended at all: the drips never did


def test_lingering_lets_the_worker_serve_its_other_connections(monkeypatch):
    # Under gevent (as the worker runs) the linger waits cooperatively: while one
    # connection drips a refused body, the other greenlets of the worker run.
    monkeypatch.setattr(gunicorn_worker, "LINGER_SECONDS", 0.3)
    worker = make_worker(refusing_app)
    server, client = gevent.socket.socketpair()
    ticks, result = [], {}

    def drip():
        with contextlib.suppress(OSError):
            client.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
            for _ in range(int(GENEROUS / 0.01)):
                client.sendall(b"1\r\nx\r\n")
                gevent.sleep(0.01)

    def serve():
        req = next(http.get_parser(worker.cfg, server, ("127.0.0.1", 1)))
        try:
            worker.handle_request("127.0.0.1:8080", req, server, ("127.0.0.1", 1))
            result["closed"] = False
        except StopIteration:
            result["closed"] = True
        result["ticks"] = len(ticks)
        server.close()

    def other_connection():
        while "closed" not in result:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)

    with server, client:
        dripper = gevent.spawn(drip)
        greenlets = [gevent.spawn(serve), gevent.spawn(other_connection)]
        gevent.joinall(greenlets, timeout=GENEROUS)
        dripper.kill()
    assert result.get("closed") is True
    assert result["ticks"] >= 5, f"the other greenlet ran {result['ticks']} times during the linger"


@pytest.mark.parametrize("app, status", [
    # bench/intake's no-op answers 204 without reading its 8 KB: gunicorn reads the
    # rest to keep the connection, as before
    (unread_success_app, b"HTTP/1.1 204 NO CONTENT"),
    # every 401 of the receiver reads the body to check its signature
    (json_app, b"HTTP/1.1 401 UNAUTHORIZED"),
], ids=["success-left-body-unread", "error-read-its-body"])
def test_answers_that_succeed_or_read_their_body_keep_the_connection(app, status):
    closed, _, received, _ = exchange(
        app, b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 8192\r\n\r\n", b"n" * 8192)
    assert not closed
    assert head_of(received)[0] == status
    assert b"Connection: keep-alive" in head_of(received)


def test_gunicorns_own_error_answer_lingers_unless_the_worker_is_stopping(monkeypatch):
    # A request gunicorn could not parse: what follows its head is unread, so the worker
    # lingers.  A worker that is stopping (GreenletExit in the waiting greenlet) closes at once.
    lingered = []
    monkeypatch.setattr(gunicorn_worker, "linger", lingered.append)
    worker = make_worker(empty_app)
    server, client = socket.socketpair()
    with server, client:
        worker.handle_error(None, server, ("127.0.0.1", 1), InvalidRequestLine("GET /\x01 HTTP/1.1"))
        assert lingered == [server]
        worker.handle_error(None, server, ("127.0.0.1", 1), gevent.GreenletExit())
        assert lingered == [server]
