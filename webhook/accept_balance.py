"""Connections spread evenly over the web workers.

Why it exists: gunicorn's gevent workers share one listening socket and race
to accept each new connection, and the worker that wins keeps it for as long
as the client keeps it alive.  Nothing evens that out: ``bench/intake``'s 64
keep-alive connections were held from 19/45 to 43/21 by the two workers, so
at "70% load" one worker could carry two thirds of it, near its limit, while
the other idled.  A proxy in front, keeping a few connections alive to each
pod, is skewed the same way.  Measured on 2026-11-27, 13 runs of
``bench/intake`` each way, interleaved (39 paced runs each): with the split
kept even (31/33 to 33/31) the paced p99 was 9.3-15.9 ms (mean 11.5, sd 1.5;
one run over 15 ms) against 9.8-19.3 ms (mean 12.2, sd 2.3; five runs over
15 ms; the two most uneven splits, 43/21 and 41/23, gave 15.0 and 16.0 ms)
left to the kernel;
the bench's verdict (the median of three) met 15 ms in 13 of 13 runs against
11 of 13, and the saturated push run's p99 went from 29.0 to 26.9 ms
(medians).  Throughput did not move (push 69.1% of the no-op against 68.9%).

How: each worker counts its open connections (from its accept to gevent's
close of the socket once the connection's handler returns) in a slot of an array in shared
memory, which the master makes before it forks (``install``) and hands out
slot by slot (``assign_slot`` in gunicorn's ``pre_fork``; ``release_slot``
in ``child_exit`` empties a dead worker's; a stopping worker leaves its slot
as soon as it stops accepting, so the others do not wait for it while it
finishes its last requests).  A worker accepts only while it
holds at most ``SLACK`` more connections than the worker holding the fewest
(``ConnectionShare.may_accept``, a read of a few integers).  When it holds
more, ``BalancedStreamServer`` stops accepting for ``RECHECK_SECONDS``
(gevent's own pause, as after an accept error) and the worker holding fewer
takes the connection: it was woken by the same readable socket.  A worker
defers for ``MAX_DEFER_SECONDS`` at most: if the others leave a connection
waiting that long (busy, or stuck until gunicorn's timeout kills them), it
accepts it anyway (deferrals less than that apart count as one wait).

Each slot has one writer (its worker) and plain reads elsewhere: a count read
while it changes is one connection off, which ``SLACK`` absorbs.  Without the
shared array (a worker made outside gunicorn's master, a test) or beyond
``SLOTS`` workers, a worker accepts as gevent always did.
"""

from __future__ import annotations

import mmap
import os
import time
from ctypes import c_int

from gevent.server import StreamServer

SLOTS = 64  # workers balanced at once (WEB_CONCURRENCY, plus replacements of exited ones)
SLACK = 1  # connections a worker may hold above the fewest any worker holds and still accept
RECHECK_SECONDS = 0.002  # a worker holding more looks again after this long
MAX_DEFER_SECONDS = 0.05  # a connection left waiting this long is accepted by whoever sees it

_counts = None  # open connections per slot (shared)
_pids = None  # each slot's worker pid, 0 when free (shared)
_taken: dict[int, object] = {}  # the master's: slot -> its worker


def install() -> None:
    """In the master, before any worker is forked: the shared arrays."""
    global _counts, _pids
    shared = mmap.mmap(-1, 2 * SLOTS * 4)  # anonymous and MAP_SHARED: the forked workers see one memory
    _counts, _pids = (c_int * SLOTS).from_buffer(shared), (c_int * SLOTS).from_buffer(shared, SLOTS * 4)
    _taken.clear()


def assign_slot(worker) -> None:
    """In the master, before ``worker`` is forked (``pre_fork``): its slot, or None when all are taken."""
    worker.balance_slot = next((slot for slot in range(SLOTS) if slot not in _taken), None) \
        if _counts is not None else None
    if worker.balance_slot is not None:
        _taken[worker.balance_slot] = worker


def release_slot(worker) -> None:
    """In the master, once ``worker`` has exited (``child_exit``): its slot is free and counts nothing."""
    slot = getattr(worker, "balance_slot", None)
    if slot is None or _counts is None:
        return
    _pids[slot] = 0
    _counts[slot] = 0
    _taken.pop(slot, None)


class ConnectionShare:
    """One worker's view of the shared counts: its own slot, written only by it."""

    def __init__(self, slot: int):
        self.slot = slot
        _counts[slot] = 0
        _pids[slot] = os.getpid()

    def opened(self) -> None:
        _counts[self.slot] += 1

    def closed(self) -> None:
        _counts[self.slot] -= 1

    def leave(self) -> None:
        """This worker accepts no more (it is stopping): the others no longer wait for it."""
        _pids[self.slot] = 0

    def may_accept(self) -> bool:
        mine = _counts[self.slot]
        others = [_counts[slot] for slot in range(SLOTS) if slot != self.slot and _pids[slot]]
        return not others or mine <= min(others) + SLACK


def share_for(worker) -> ConnectionShare | None:
    """In a worker: its ConnectionShare, or None when it is not balanced (see the module docstring)."""
    slot = getattr(worker, "balance_slot", None)
    return ConnectionShare(slot) if slot is not None and _counts is not None else None


class BalancedStreamServer(StreamServer):
    """gevent's StreamServer that leaves a new connection to a worker holding fewer (``share``)."""

    def __init__(self, *args, share: ConnectionShare | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.share = share
        self._waiting_since = self._last_deferral = -MAX_DEFER_SECONDS

    def _do_read(self):
        if self.share is not None and not self.share.may_accept():
            now = time.monotonic()
            if now - self._last_deferral > MAX_DEFER_SECONDS:  # not a connection this worker deferred just now
                self._waiting_since = now
            if now - self._waiting_since < MAX_DEFER_SECONDS:
                self._last_deferral = now
                self.stop_accepting()
                self._timer = self.loop.timer(RECHECK_SECONDS)
                self._timer.start(self._start_accepting_if_started)
                return
        super()._do_read()

    def close(self):  # the worker stops accepting for good (gunicorn's shutdown, a graceful restart)
        if self.share is not None:
            self.share.leave()
        super().close()

    def do_handle(self, *args):  # an accepted connection, counted until gevent closes it (do_close)
        if self.share is not None:
            self.share.opened()
        super().do_handle(*args)

    def do_close(self, *args):
        try:
            super().do_close(*args)
        finally:
            if self.share is not None:
                self.share.closed()
