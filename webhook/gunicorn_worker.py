"""gunicorn's gevent worker, taking keep-alive connections in turn and
sending each answer's header block with its first body bytes.

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
"""

from __future__ import annotations

import time

import gevent
from gunicorn.workers.ggevent import GeventWorker

TURN_BUDGET = 0.001  # seconds a worker may go on answering before it polls its sockets again


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
    """``GeventWorker`` whose connections take turns and whose answers leave
    in one send (see the module docstring)."""

    _turn = (-1, 0.0)  # (the loop's turn, when this worker first answered in it)

    def handle_request(self, listener_name, req, sock, addr):
        out = HeldHeaders(sock)
        try:
            super().handle_request(listener_name, req, out, addr)
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
