"""gunicorn's gevent worker, accepting a new connection only while it holds
no more than its share of them (``webhook.accept_balance``), taking keep-alive connections in turn, sending
each answer's header block with its first body bytes, closing a connection
whose error answer left the request body unread, lingering before it closes
any connection whose request body still has bytes to come, and answering
gunicorn's own errors in JSON (``webhook.gunicorn_errors``).

Why it exists: a gevent worker switches greenlets only when one waits.  A
request that never waits (a 401 for a forged signature, ``/healthz``) goes
from reading to answering without a switch, and on a keep-alive connection
whose client has the next request ready (a proxy in front, a pipelining
client, a flood of forged deliveries) the same greenlet reads that one too:
one connection can keep the worker for as long as it keeps sending, while
the requests on the worker's other connections wait, unread.  Under
``bench/intake``'s no-op load one connection got 3,405 answers in 5 s while
others got one; the p99 latency of the no-op and rejected runs was about a
second, with wrk timeouts.

So once a request is answered, if the worker has not looked at its sockets
for longer than ``TURN_BUDGET`` (the event loop has not turned: libev counts
its turns), the greenlet waits until the loop is idle (``gevent.idle``):
every request that arrived meanwhile is read and answered before this
connection reads its next one.  A request that waited for something (a push
waits for Redis) let the loop turn and costs nothing more.

Measured with the same load: every connection got 268 to 626 answers (the
spread is between the two workers, which hold different numbers of
connections), the p99 of the no-op and rejected runs fell to 20-55 ms, and
the no-op route's peak throughput went down about 9% (connections take turns
instead of one running hot). A budget of 5 ms cost as much and left a p99 of
40-250 ms.

Headers and body in one send: gunicorn writes a response's header block with
one ``sendall`` and each piece of the body with another, so a small JSON
answer (every 202, 401 and 400 of the receiver) left as two TCP segments,
and gevent's ``sendall`` asks the kernel for the socket's buffer size before
each: four system calls where one does (counted with strace: 2 ``sendto``
and 2 ``getsockopt`` per 401).  ``HeldHeaders`` holds the header block until
the first body bytes, or until the answer ends without any, and sends them
together: one ``sendto``, one segment.  Measured with ``bench/intake``'s load
on 2 cores (3 rounds of 5 s each way, same server otherwise): forged
deliveries 5,028-5,148 -> 5,287-5,562 answers/s (about 83% -> 86-90% of the
no-op), pushes 3,529-3,569 -> 3,758-3,841/s; the no-op's one header-only
send is unchanged.  A streamed answer's headers wait for its first chunk,
never longer.

An error that left its body unread closes the connection, after a linger.
The receiver refuses a body over ``server.max_body_bytes`` (413) without
reading the rest of it, and one for an unknown repository (404) without
reading any of it.  gunicorn drops every hop-by-hop header an app sets (the
413's ``Connection: close`` too) and answers keep-alive; its keep-alive loop
then reads and discards the rest of the body before it parses the next
request.  Measured against the Procfile's server (one worker, a 4 KiB cap):
a client sending a 20 MiB body, then a next request, had all 20,971,520
bytes read after the 413 and its next request answered; a chunked body that
never ends (a chunk every 50 ms) was read after its 404 or 413 until the
keepalive timeout, 15.0 s (300 chunks).

So an answer whose status is 400 or more, to a request whose body still has
bytes to come from the socket (gunicorn 27's ``LengthReader.length > 0``, or
a ``ChunkedReader`` whose ``parser`` is not None yet: ``body_left_unread``),
closes the connection.  The worker wraps whatever app it is given
(``close_after_unread_errors``) so that the app's ``start_response``, which
comes before any header is written, tells gunicorn's ``Response`` (the
``__self__`` of the ``start_response`` gunicorn passes) to ``force_close()``:
gunicorn itself then writes ``Connection: close`` and ends its keep-alive
loop without reading on.  Decided by status and body, not by the app's
``Connection`` header: the 404 has none, every error is covered, and an
error that read its body keeps the connection (every 401 reads it to check
the signature).  A success that left its body unread is not touched:
gunicorn reads the rest and keeps the connection, as before
(``bench/intake``'s no-op answers 204 without reading its 8 KB, on
keep-alive connections).  The wrapper's cost did not show above the noise
of a micro-benchmark (3.6-5.0 us per ``Response`` and ``start_response``,
with it or without).

Closing a socket that still has unread data makes Linux send a reset, and a
client that sends its whole body before it reads (most HTTP clients,
GitHub's among them) can lose the answer waiting for it: a trial fix that
closed at once after any unread body lost even the no-op's 204 (the client's
first read got ``ECONNRESET``, 4 runs of 4).  Not only those errors close
with the body unread: gunicorn also closes after any answer when the client
said ``Connection: close`` or spoke HTTP/1.0, or when the worker is to
restart, and the no-op's 204 or ``/healthz`` do not read a body; and
gunicorn's own error answers (``handle_error``: a request line or header it
refuses, 400, 414, 431 or 501, before the app sees it, or the 500 for an app
that raised) close at once.  Against the Procfile's server, a client sending
a 4 MiB body had its send reset after 64 KiB to 2.9 MB, 3 runs of 3 of each:
to the no-op with ``Connection: close``, with a malformed request line, with
a header line without a colon, with a 9,000-byte header.  So whenever the
connection ends while the body has bytes to come (``body_left_unread``; a
keep-alive answer never looks), or after gunicorn's own error answer to a
request it could not parse, as nginx's lingering close does, once the answer
is out the write side is shut (the client sees the answer end), and what the
client still sends is read and dropped, ``LINGER_CHUNK`` bytes at a time,
until it closes or for ``LINGER_SECONDS`` at most.  The waits use the
socket's own timeout, under gevent a cooperative wait: the worker serves its
other connections meanwhile, and a client that drips bytes forever holds a
greenlet ``LINGER_SECONDS``, no longer.  (gunicorn's ``util.close_graceful``,
which its sync and gthread workers use, stops after 64 KiB: a client still
sending a 20 MiB body would be reset.)  Measured the same way: the 20 MiB
client sent its whole body, got the 413 with ``Connection: close`` and then
the end of the connection 0.01 s after its first byte, and its next request
was not answered; the never-ending chunked bodies were given up 2.06 s after
the 404 or 413 (41 chunks); each 4 MiB client above sent its whole body and
read its whole answer (3 runs of 3 of each).
"""

from __future__ import annotations

import contextlib
import functools
import socket
import time

import gevent
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.wsgi import Response
from gunicorn.workers import ggevent
from gunicorn.workers.ggevent import GeventWorker

from webhook import accept_balance
from webhook.gunicorn_errors import answer_error

TURN_BUDGET = 0.001  # seconds a worker may go on answering before it polls its sockets again
LINGER_SECONDS = 2.0  # at most this long reading what a refused client still sends, before closing
LINGER_CHUNK = 65536  # bytes read (and dropped) at a time while lingering


def body_left_unread(req) -> bool:
    """Whether gunicorn's reader of ``req``'s body still has bytes to take from the socket."""
    reader = getattr(getattr(req, "body", None), "reader", None)
    if isinstance(reader, LengthReader):
        return reader.length > 0
    if isinstance(reader, ChunkedReader):
        return reader.parser is not None  # None once the last chunk and the trailers are read
    return False


def close_after_unread_errors(app):
    """``app``, whose error answers close the connection when they left the body unread.

    Decided when the app calls ``start_response``, before gunicorn writes the
    header block: its ``Response`` is told to close (``Connection: close``, no
    reading of the rest to keep the connection); the worker lingers before it
    closes (``FairGeventWorker.handle_request``).  A ``start_response`` that
    is not gunicorn's passes through untouched."""

    def closing_app(environ, start_response):
        def answer(status, headers, exc_info=None):
            write = start_response(status, headers, exc_info)  # gunicorn checks the status first
            response = getattr(start_response, "__self__", None)
            if (isinstance(response, Response) and (response.status_code or 0) >= 400
                    and body_left_unread(response.req)):
                response.force_close()
            return write

        return app(environ, answer)

    closing_app.__wrapped__ = app
    return closing_app


def linger(sock) -> None:
    """Shut ``sock``'s write side, then read and drop what the peer still sends,
    until it closes or for ``LINGER_SECONDS`` at most (see the module docstring)."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:  # the peer is gone already, or gunicorn closed the socket (an app failed mid-answer)
        return
    scratch = bytearray(LINGER_CHUNK)
    deadline = time.monotonic() + LINGER_SECONDS
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv_into(scratch):
                return
    except OSError:  # the time is up (socket.timeout is an OSError), or the peer reset
        return


class HeldHeaders:
    """A connection's socket for one answer: the first ``sendall`` (gunicorn's
    header block, or a whole error page) is held and sent with the next one,
    or by ``flush`` when the answer is over.  Everything else is the socket's."""

    __slots__ = ("sock", "held", "started")

    def __init__(self, sock):
        self.sock = sock
        self.held: bytes | None = None
        self.started = False

    def sendall(self, data) -> None:
        if not self.started:
            self.started = True
            self.held = bytes(data)
            return
        if self.held is not None:
            data, self.held = self.held + data, None
        self.sock.sendall(data)

    def sendfile(self, *args, **kwargs):
        self.flush()
        return self.sock.sendfile(*args, **kwargs)

    def flush(self) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            self.sock.sendall(held)

    def shutdown(self, how) -> None:  # gunicorn gives up on the connection: drop what is held
        self.held = None
        self.sock.shutdown(how)

    def close(self) -> None:
        self.held = None
        self.sock.close()

    def __getattr__(self, name):
        return getattr(self.sock, name)


class FairGeventWorker(GeventWorker):
    """``GeventWorker`` whose connections take turns, whose answers leave in
    one send, whose error answers that left the body unread close the
    connection, which lingers before closing a connection whose body has more
    to come, and whose own error answers are JSON (see the module docstring)."""

    _turn = (-1, 0.0)  # (the loop's turn, when this worker first answered in it)
    _wsgi = None

    def run(self):
        """gunicorn's, its servers leaving new connections to a worker holding fewer
        (``webhook.accept_balance``): gunicorn builds them from its module's ``StreamServer``."""
        share = accept_balance.share_for(self)
        ggevent.StreamServer = functools.partial(accept_balance.BalancedStreamServer, share=share)
        super().run()

    @property
    def wsgi(self):
        return self._wsgi

    @wsgi.setter
    def wsgi(self, app) -> None:  # gunicorn's load_wsgi sets it, so does a test: always wrapped
        self._wsgi = None if app is None else close_after_unread_errors(app)

    def handle_error(self, req, client, addr, exc):
        """gunicorn's own error answer (a request it could not parse, an app that
        raised), in JSON and logged without quoting the client
        (``webhook.gunicorn_errors``), then a linger when the client may still be
        sending: the request did not parse (``req`` is None: what follows its
        head is unread) or its body was left unread.  Not for a worker that is
        stopping (``GreenletExit``)."""
        answer_error(self, req, client, addr, exc)
        if isinstance(exc, Exception) and (req is None or body_left_unread(req)):
            with contextlib.suppress(gevent.GreenletExit):
                linger(client)

    def handle_request(self, listener_name, req, sock, addr):
        out = HeldHeaders(sock)
        try:
            super().handle_request(listener_name, req, out, addr)
        except StopIteration:  # gunicorn closes the connection: linger if the body has more to come
            if body_left_unread(req):
                out.flush()
                with contextlib.suppress(gevent.GreenletExit):  # the worker is stopping: close now
                    linger(sock)
            raise
        finally:
            out.flush()
        loop = gevent.get_hub().loop
        turn, now = getattr(loop, "iteration", None), time.monotonic()
        if turn is None:  # a loop that does not count its turns: yield after every request
            gevent.idle()
        elif turn != self._turn[0]:
            self._turn = (turn, now)
        elif now - self._turn[1] > TURN_BUDGET:
            gevent.idle()
