"""The per-repo lock on the real Redis: exclusive, token-checked, expiring, kept alive, and not
trusted once Redis has been away for a TTL."""

from __future__ import annotations

import time

import pytest
from redis import Redis

from tests.webhook.conftest import RedisServer
from worker.lock import LockLost, RepoLock


def test_exclusive_and_token_checked(redis_conn):
    a, b = RepoLock(redis_conn, "r", ttl=5), RepoLock(redis_conn, "r", ttl=5)
    assert a.try_acquire()
    assert not b.try_acquire()
    b.release()  # not held: must not free a's lock
    assert redis_conn.get(a.key).decode() == a.token
    a.release()
    assert b.try_acquire()
    b.release()
    assert redis_conn.get(b.key) is None


def test_expires_when_the_holder_dies(redis_conn):
    dead = RepoLock(redis_conn, "r", ttl=0.3)
    assert dead.try_acquire()
    dead._stop.set()  # the holder's process is gone: nobody extends the lock
    other = RepoLock(redis_conn, "r", ttl=5)
    assert other.acquire(wait=30, poll=0.05)
    assert not dead.extend() and dead.lost.is_set()
    other.release()


def test_kept_alive_while_working(redis_conn):
    lock = RepoLock(redis_conn, "r", ttl=1.5)
    assert lock.try_acquire()
    time.sleep(4.5)  # three TTLs: only the keepalive thread keeps it
    assert redis_conn.get(lock.key).decode() == lock.token
    lock.check()
    lock.release()


def test_not_trusted_once_unrenewed_for_a_ttl():
    """Redis gone (a private redis-server, killed): the keepalive's extensions fail, and once a TTL has
    passed since the last one, the lock may have expired there and another worker hold it."""
    server = RedisServer()
    lock = RepoLock(Redis.from_url(server.url), "r", ttl=0.6)
    try:
        assert lock.try_acquire()
        lock.check()
        server.stop()
        time.sleep(0.6)  # the outage outlasts the TTL
        with pytest.raises(LockLost, match=r"not renewed for 0\.6s"):
            lock.check()
    finally:
        lock._stop.set()  # nothing to release: that Redis is gone
        server.stop()
