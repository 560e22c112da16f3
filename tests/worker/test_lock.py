"""The per-repo lock on the real Redis: exclusive, token-checked, expiring, kept alive."""

from __future__ import annotations

import time

from worker.lock import RepoLock


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
