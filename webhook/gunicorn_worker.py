"""gunicorn's gevent worker, taking keep-alive connections in turn.

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
"""

from __future__ import annotations

import time

import gevent
from gunicorn.workers.ggevent import GeventWorker

TURN_BUDGET = 0.001  # seconds a worker may go on answering before it polls its sockets again


class FairGeventWorker(GeventWorker):
    """``GeventWorker`` whose connections take turns (see the module docstring)."""

    _turn = (-1, 0.0)  # (the loop's turn, when this worker first answered in it)

    def handle_request(self, listener_name, req, sock, addr):
        super().handle_request(listener_name, req, sock, addr)
        loop = gevent.get_hub().loop
        turn, now = getattr(loop, "iteration", None), time.monotonic()
        if turn is None:  # a loop that does not count its turns: yield after every request
            gevent.idle()
        elif turn != self._turn[0]:
            self._turn = (turn, now)
        elif now - self._turn[1] > TURN_BUDGET:
            gevent.idle()
