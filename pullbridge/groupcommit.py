"""Group commit: concurrent callers' Redis script calls share one round trip.

Why it exists: the receiver answers a push only once Redis has it on disk,
and with ``appendfsync always`` every write costs Redis an fsync and the
caller a round trip.  Under a burst, many threads of one web process want
the same small script run at the same moment.  Sent one by one, each pays a
round trip, a pool checkout and (on Redis' side) its own fsync; sent
together as one pipeline, they pay for one of each: Redis runs the scripts
in order, fsyncs once, and answers them all.

How: leader and followers, no extra thread.  A caller queues its command;
if no batch is in flight it becomes the leader, sends everything queued (its
own command included) in one write, reads the replies, and hands each
caller its own.  Callers that arrived meanwhile wait; when the leader is
done it wakes the first of them as the next leader.  Alone, a caller is its
own leader at once: a quiet receiver pays no extra latency.

Each script call stays atomic on its own (scripts are not merged), and a
caller gets its reply only after Redis answered it, i.e. after the fsync:
the durability argument of ``pullbridge.queueing`` is unchanged.  A failed
round trip fails every caller of that batch (they answer 503 and the host
retries; a command Redis ran before the connection broke is found again by
the delivery key).

Every call has a deadline (``pullbridge.deadline``: the web receiver's
``server.queue_timeout`` after the push's body was read): a caller waiting for its
batch gives up at its own, and the leader waits for Redis no longer than
until its own (it arrived first, so it has the least time left): its
connection's timeouts are set to what is left before each round trip.  A
call that gave up before it was sent never reaches Redis; one that gave up
in a batch in flight may have run (its caller answered 503, and the host's
redelivery is then a duplicate), and the followers of a batch in flight
share its leader's fate.  When a leader takes its batch, a call whose
deadline has passed (its caller was not scheduled in time to give up) is
left out and fails alone, never sent; a leader whose own deadline has passed
sends nothing and hands the lead to the first call with time left, as a
leader does once its round trip is done, instead of failing the others.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from collections import deque

from redis import Redis
from redis.exceptions import ConnectionError, NoScriptError, RedisError, ResponseError

from pullbridge.deadline import DeadlineExceeded, remaining

MAX_BATCH = 128  # commands per round trip; more wait for the next one
_PENDING = object()  # a call's reply before Redis answered it


def _bulk(part) -> bytes:
    data = part if isinstance(part, bytes) else str(part).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def pack(*parts) -> bytes:
    """One command in RESP (what redis-py's packer makes, for str, int and bytes only)."""
    return b"*%d\r\n" % len(parts) + b"".join(map(_bulk, parts))


class _Call:
    __slots__ = ("script", "keys", "args", "deadline", "reply", "error", "lead", "_gate")

    def __init__(self, script: "Script", keys, args, deadline: float):
        self.script, self.keys, self.args, self.deadline = script, keys, args, deadline
        self.reply, self.error = _PENDING, None
        self.lead = False
        self._gate = threading.Lock()
        self._gate.acquire()

    def wake(self) -> None:
        self._gate.release()

    def wait(self) -> bool:
        """Woken (True) or the deadline passed (False)."""
        return self._gate.acquire(timeout=max(0.0, self.deadline - time.monotonic()))

    def command(self, use_sha: bool) -> bytes:
        head = ("EVALSHA", self.script.sha) if use_sha else ("EVAL", self.script.text)
        return pack(*head, len(self.keys), *self.keys, *self.args)


class Script:
    """A Lua script run through a GroupCommit (EVALSHA, loaded on NOSCRIPT)."""

    def __init__(self, text: str):
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


class GroupCommit:
    """Runs scripts for many threads of one process, batching those that overlap."""

    def __init__(self, conn: Redis, wait_limit: float = 30.0, on_batch=None):
        self.conn = conn
        self.wait_limit = wait_limit  # a call's deadline when its caller gives none
        self.on_batch = on_batch  # called with each round trip's size (metrics)
        self._lock = threading.Lock()
        self._queue: deque[_Call] = deque()
        self._busy = False
        self._pid = os.getpid()
        self._connection = None
        self._connection_pid = None
        self._timeouts: tuple[float, float] = (math.inf, math.inf)  # the client's own: socket, connect
        self.batches = 0  # round trips made; with ``calls``, shows how much was shared
        self.calls = 0

    def run(self, script: Script, keys: list, args: list, deadline: float | None = None):
        """``EVALSHA script`` with these keys and args; its reply, or the RedisError.

        ``deadline`` (``time.monotonic()``; default ``wait_limit`` from now):
        the reply by then, or DeadlineExceeded, or the leader's redis-py
        TimeoutError (``pullbridge.deadline``)."""
        if deadline is None:
            deadline = time.monotonic() + self.wait_limit
        call = _Call(script, keys, args, deadline)
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's queue means nothing here
                self._queue, self._busy, self._pid = deque(), False, os.getpid()
            self._queue.append(call)
            lead = not self._busy
            self._busy = True
        if not lead:
            if not call.wait() and not self._give_up(call):
                raise DeadlineExceeded("no answer from Redis in time (waiting for a shared round trip)")
            lead = call.lead
        if lead:
            self._lead(call)
        if call.error is not None:
            raise call.error
        return call.reply

    def _give_up(self, call: _Call) -> bool:
        """After a timed-out wait: False (give up) unless leadership came just now."""
        with self._lock:
            if call.lead:
                return True
            try:
                self._queue.remove(call)  # never sent: nothing of it reaches Redis
            except ValueError:
                pass  # in a batch in flight: its reply, when it comes, is dropped
            return False

    def _take_batch(self, leader: _Call) -> list[_Call]:
        """The calls ``leader`` sends, from the head of the queue (``leader`` first).

        Those whose deadline has passed are taken out too and failed here,
        never sent.  With ``leader``'s own deadline passed, nothing is sent:
        only the late calls at the head are taken, and the first call with
        time left is then the head, which ``_lead`` makes the next leader."""
        batch: list[_Call] = []
        late: list[_Call] = []
        with self._lock:
            now = time.monotonic()
            leads = leader.deadline > now
            while self._queue and len(batch) < MAX_BATCH:
                if self._queue[0].deadline <= now:
                    late.append(self._queue.popleft())
                elif not leads:
                    break
                else:
                    batch.append(self._queue.popleft())
        for call in late:
            call.error = DeadlineExceeded("no answer from Redis in time (its deadline passed "
                                          "before its shared round trip; not sent)")
            if call is not leader:
                call.wake()
        return batch

    def _lead(self, leader: _Call) -> None:
        batch = self._take_batch(leader)
        failure: BaseException | None = None
        try:
            if batch:
                self._round_trip(batch, leader.deadline)
        except Exception as exc:  # noqa: BLE001 -- every caller of the batch gets it
            failure = exc
        finally:
            for call in batch:  # none is left without an answer, whatever stopped the round trip
                if call.reply is _PENDING and call.error is None:
                    call.error = failure or RedisError("the round trip to Redis was interrupted")
            if self.on_batch is not None and batch:
                try:
                    self.on_batch(len(batch))
                except Exception:  # noqa: BLE001 -- a metric never fails a push
                    pass
            with self._lock:
                if batch:
                    self.batches += 1
                    self.calls += len(batch)
                nxt = self._queue[0] if self._queue else None
                if nxt is None:
                    self._busy = False
                else:
                    nxt.lead = True
            for call in batch:
                if not call.lead:
                    call.wake()
            # The leader's own call is in the batch (or failed late): it simply returns.
            # The next leader is woken last, after everyone answered here.
            if nxt is not None:
                nxt.wake()

    def _round_trip(self, batch: list[_Call], deadline: float) -> None:
        # Only the leader talks to Redis, so one connection of its own is enough
        # (made by the client's pool, so a Sentinel URL finds the master as usual).
        if self._connection is None or self._connection_pid != os.getpid():
            self._connection = self.conn.connection_pool.make_connection()
            self._connection_pid = os.getpid()
            self._timeouts = (self._connection.socket_timeout or math.inf,
                              self._connection.socket_connect_timeout or math.inf)
        connection = self._connection
        try:
            try:
                missing = self._send(connection, batch, use_sha=True, deadline=deadline)
            except ConnectionError:
                if any(call.reply is not _PENDING or call.error is not None for call in batch):
                    raise
                # Nothing answered: most likely a connection that Redis closed (restart,
                # idle timeout).  Once more on a fresh one, as redis-py's retry would.
                connection.disconnect()
                missing = self._send(connection, batch, use_sha=True, deadline=deadline)
            if missing:  # Redis restarted or SCRIPT FLUSH: send those again with the text
                self._send(connection, missing, use_sha=False, deadline=deadline)
        except BaseException:
            connection.disconnect()
            raise

    def _wait_no_longer_than(self, connection, deadline: float) -> None:
        """Let the next send and reads on ``connection`` (and a connect, if it needs one)
        wait at most until ``deadline``, and no longer than the client's own timeouts;
        DeadlineExceeded, with nothing sent, when it has passed."""
        socket_timeout, connect_timeout = self._timeouts
        timeout = min(remaining(deadline), socket_timeout)
        # What the next (re)connect gives its new socket, so its handshake waits no longer either.
        connection.socket_timeout = timeout
        connection.socket_connect_timeout = min(timeout, connect_timeout)
        if connection._sock is not None:
            # A socket already open keeps the timeout it was given: redis-py has no per-call
            # timeout for sends and reads (read_response(timeout=) only from 8.0), so set it there.
            connection._sock.settimeout(timeout)

    def _send(self, connection, batch: list[_Call], use_sha: bool, deadline: float) -> list[_Call]:
        self._wait_no_longer_than(connection, deadline)
        connection.send_packed_command([b"".join(call.command(use_sha) for call in batch)])
        missing = []
        for call in batch:
            try:
                call.reply = connection.read_response()
            except NoScriptError:
                missing.append(call)
            except ResponseError as exc:  # this call's own error; the stream is still in step
                call.error = exc
        return missing
