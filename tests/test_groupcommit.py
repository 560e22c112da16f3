"""pullbridge.groupcommit against the real Redis: replies reach their own callers,
overlapping calls share a round trip, and no failure leaves a caller waiting.

Redis is held still with ``CLIENT PAUSE ... WRITE`` (scripts that write wait),
so which calls overlap is decided by the test, not by timing luck.
"""

from __future__ import annotations

import threading
import time

import pytest
from redis import Redis
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from pullbridge.deadline import DeadlineExceeded
from pullbridge.groupcommit import GroupCommit, Script

COUNT = Script("""
if ARGV[1] == 'bad' then return redis.error_reply('bad argument') end
local n = redis.call('INCR', KEYS[1])
return {ARGV[1], n}
""")


def wait_until(check, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.005)
    return False


class Caller(threading.Thread):
    def __init__(self, committer: GroupCommit, arg: str, deadline: float | None = None):
        super().__init__(daemon=True)
        self.committer, self.arg, self.deadline = committer, arg, deadline
        self.reply = self.error = None

    def run(self):
        try:
            self.reply = self.committer.run(COUNT, ["gc:n"], [self.arg], deadline=self.deadline)
        except Exception as exc:  # noqa: BLE001
            self.error = exc


@pytest.fixture
def private_redis(stack):
    """A redis-server of this test's own, to hold still without holding the shared one."""
    from tests.webhook.conftest import RedisServer

    server = RedisServer()
    conn = Redis.from_url(server.url)
    yield conn
    conn.close()
    server.stop()


@pytest.fixture
def paused(redis_conn):
    """A function that pauses Redis' writers until the returned function is called."""
    admin = Redis(connection_pool=redis_conn.connection_pool)

    def pause():
        admin.execute_command("CLIENT", "PAUSE", 10000, "WRITE")
        return lambda: admin.execute_command("CLIENT", "UNPAUSE")

    yield pause
    admin.execute_command("CLIENT", "UNPAUSE")


def test_each_caller_gets_its_own_reply_under_concurrency(redis_conn):
    committer = GroupCommit(redis_conn)
    callers = [Caller(committer, f"c{i}") for i in range(200)]
    for c in callers:
        c.start()
    for c in callers:
        c.join(30)
    assert all(c.error is None for c in callers), [c.error for c in callers if c.error][:3]
    assert sorted(c.reply[0].decode() for c in callers) == sorted(f"c{i}" for i in range(200))
    assert sorted(c.reply[1] for c in callers) == list(range(1, 201))  # every INCR ran once
    assert committer.calls == 200


def test_calls_that_arrive_during_a_round_trip_share_the_next_one(redis_conn, paused):
    committer = GroupCommit(redis_conn)
    unpause = paused()
    first = Caller(committer, "first")
    first.start()
    assert wait_until(lambda: committer._busy)  # the leader's batch is in Redis, held
    followers = [Caller(committer, f"f{i}") for i in range(10)]
    for c in followers:
        c.start()
    assert wait_until(lambda: len(committer._queue) == 10)
    unpause()
    for c in [first, *followers]:
        c.join(30)
    assert first.reply[0] == b"first" and all(c.error is None for c in followers)
    assert (committer.batches, committer.calls) == (2, 11)  # ten callers, one round trip


def test_a_script_error_fails_only_its_own_caller(redis_conn, paused):
    committer = GroupCommit(redis_conn)
    unpause = paused()
    first = Caller(committer, "first")
    first.start()
    assert wait_until(lambda: committer._busy)
    good, bad, after = Caller(committer, "good"), Caller(committer, "bad"), Caller(committer, "after")
    for queued, c in enumerate((good, bad, after), 1):
        c.start()
        assert wait_until(lambda n=queued: len(committer._queue) == n)  # queued in this order
    unpause()
    for c in (first, good, bad, after):
        c.join(30)
    assert isinstance(bad.error, ResponseError) and "bad argument" in str(bad.error)
    assert good.reply[0] == b"good" and after.reply[0] == b"after"
    assert committer.batches == 2


def test_a_flushed_script_cache_is_reloaded(redis_conn):
    committer = GroupCommit(redis_conn)
    assert committer.run(COUNT, ["gc:n"], ["a"])[1] == 1
    redis_conn.script_flush()
    assert committer.run(COUNT, ["gc:n"], ["b"])[1] == 2
    assert redis_conn.script_exists(COUNT.sha) == [True]


def test_unreachable_redis_fails_every_caller_and_the_next_call_tries_again(stack):
    committer = GroupCommit(Redis(port=1, socket_connect_timeout=1))  # nothing listens on port 1
    callers = [Caller(committer, f"x{i}") for i in range(5)]
    for c in callers:
        c.start()
    for c in callers:
        c.join(30)
    assert all(isinstance(c.error, ConnectionError) for c in callers)
    assert not committer._busy and not committer._queue  # nobody is left waiting
    with pytest.raises(ConnectionError):
        committer.run(COUNT, ["gc:n"], ["again"])


def test_a_caller_that_gives_up_is_never_sent_and_nothing_stalls(redis_conn, paused):
    committer = GroupCommit(redis_conn, wait_limit=0.3)  # the quitter's deadline
    unpause = paused()
    first = Caller(committer, "first", deadline=time.monotonic() + 60)
    first.start()
    assert wait_until(lambda: committer._busy)
    quitter = Caller(committer, "quitter")
    quitter.start()
    quitter.join(10)
    assert isinstance(quitter.error, DeadlineExceeded) and not committer._queue
    unpause()
    first.join(30)
    assert first.reply == [b"first", 1]
    assert committer.run(COUNT, ["gc:n"], ["later"]) == [b"later", 2]  # the quitter's INCR never ran


def test_a_leader_stops_waiting_for_redis_at_its_deadline_and_so_does_its_batch(private_redis):
    """Redis held (writes paused for a minute): the leader's round trip ends at the leader's
    deadline, long before Redis would answer, and fails its whole batch; a follower with
    less time than that gives up on its own.  Once Redis answers again, so does the next call."""
    committer = GroupCommit(private_redis)
    private_redis.execute_command("CLIENT", "PAUSE", 60000, "WRITE")
    now = time.monotonic()
    leader = Caller(committer, "leader", deadline=now + 0.5)
    leader.start()
    assert wait_until(lambda: committer._busy)
    follower = Caller(committer, "follower", deadline=now + 1)  # sent in the leader's next batch
    follower.start()
    leader.join(30)
    follower.join(30)
    assert isinstance(leader.error, TimeoutError) and isinstance(follower.error, TimeoutError)
    assert private_redis.get("gc:n") is None  # ...while Redis is still held: nothing ran yet
    private_redis.execute_command("CLIENT", "UNPAUSE")
    assert committer.run(COUNT, ["gc:n"], ["after"], deadline=time.monotonic() + 30)[0] == b"after"


@pytest.fixture
def unscheduled(monkeypatch):
    """Callers whose argument starts with ``unscheduled`` wait until they are woken, past
    their deadline: as a thread or greenlet does that is not scheduled in time to give up
    (a loaded machine).  Every other caller waits as usual."""
    from pullbridge import groupcommit

    wait = groupcommit._Call.wait

    def wait_unscheduled(call):
        if call.args[0].startswith("unscheduled"):
            return call._gate.acquire()
        return wait(call)

    monkeypatch.setattr(groupcommit._Call, "wait", wait_unscheduled)


def hold_a_round_trip_then_queue(redis: Redis, committer: GroupCommit, *callers: Caller) -> Caller:
    """Redis' writes paused and a first call in flight, ``callers`` queued behind it in this order."""
    redis.execute_command("CLIENT", "PAUSE", 60000, "WRITE")
    first = Caller(committer, "first", deadline=time.monotonic() + 60)
    first.start()
    assert wait_until(lambda: committer._busy)
    for queued, c in enumerate(callers, 1):
        c.start()
        assert wait_until(lambda n=queued: len(committer._queue) == n)
    return first


def test_a_next_leader_whose_deadline_passed_hands_the_lead_on_and_sends_nothing(private_redis, unscheduled):
    """The next leader's deadline passed while the round trip before it was held: it fails
    alone, never sent, and the call behind it, with time left, leads instead of failing too."""
    committer = GroupCommit(private_redis)
    late = Caller(committer, "unscheduled", deadline=time.monotonic() + 0.2)
    patient = Caller(committer, "patient", deadline=time.monotonic() + 60)
    first = hold_a_round_trip_then_queue(private_redis, committer, late, patient)
    assert wait_until(lambda: time.monotonic() > late.deadline)
    private_redis.execute_command("CLIENT", "UNPAUSE")
    for c in (first, late, patient):
        c.join(30)
    assert first.reply == [b"first", 1]
    assert patient.error is None and patient.reply == [b"patient", 2]  # the late call's INCR never ran
    assert isinstance(late.error, DeadlineExceeded) and "not sent" in str(late.error)
    assert (committer.batches, committer.calls) == (2, 2)
    assert not committer._busy and not committer._queue


def test_a_follower_whose_deadline_passed_before_its_batch_was_taken_is_left_out(private_redis, unscheduled):
    committer = GroupCommit(private_redis)
    callers = (Caller(committer, "leader", deadline=time.monotonic() + 60),
               Caller(committer, "unscheduled", deadline=time.monotonic() + 0.2),
               Caller(committer, "follower", deadline=time.monotonic() + 60))
    first = hold_a_round_trip_then_queue(private_redis, committer, *callers)
    assert wait_until(lambda: time.monotonic() > callers[1].deadline)
    private_redis.execute_command("CLIENT", "UNPAUSE")
    for c in (first, *callers):
        c.join(30)
    leader, late, follower = callers
    assert isinstance(late.error, DeadlineExceeded) and late.reply is None
    assert leader.reply == [b"leader", 2] and follower.reply == [b"follower", 3]
    assert int(private_redis.get("gc:n")) == 3  # the late call was never sent
    assert (committer.batches, committer.calls) == (2, 3)


def test_a_call_whose_deadline_passed_before_it_was_sent_never_reaches_redis(redis_conn):
    committer = GroupCommit(redis_conn)
    with pytest.raises(DeadlineExceeded):
        committer.run(COUNT, ["gc:n"], ["late"], deadline=time.monotonic() - 1)
    assert redis_conn.get("gc:n") is None and not committer._busy and not committer._queue
    assert committer.run(COUNT, ["gc:n"], ["next"])[1] == 1


@pytest.mark.parametrize("shared", [False, True])
def test_coalescing_works_after_a_script_flush_with_and_without_a_committer(redis_conn, shared):
    """The worker and the CLI call request_sync without a committer; both paths must
    survive a Redis that forgot its scripts (a restart, SCRIPT FLUSH)."""
    from pullbridge import queueing

    committer = GroupCommit(redis_conn) if shared else None
    redis_conn.set("gc:queued", "sync-gc-1")
    redis_conn.script_flush()
    answer = queueing._coalesce(redis_conn, committer, "gc:wanted", "gc:queued", "gc:dedup", "a" * 40, 60000)
    assert (answer.job_id, answer.new_job, answer.duplicate) == ("sync-gc-1", False, False)
    again = queueing._coalesce(redis_conn, committer, "gc:wanted", "gc:queued", "gc:dedup", "a" * 40, 60000)
    assert again.duplicate and redis_conn.zscore("gc:wanted", "a" * 40) is not None
