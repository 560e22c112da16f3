"""One sync per repository at a time: a Redis lock that dies with its worker.

Why it exists: two workers applying the same repo at once would race each
other's writes and prune.  The lock is a key with a TTL, held under a random
token; a background thread extends it while the sync runs, so a worker that
dies (or hangs past the TTL with its thread dead) lets go on its own.
Release and extension are token-checked so a worker never frees or extends a
lock another worker took over.

``check()`` says, without asking Redis, whether the lock is still surely
ours: not when an extension found it taken, nor once a TTL has passed since
the last one Redis confirmed (Redis unreachable, or this process stalled):
by then it may have expired and another worker may hold it.  It is cheap
enough to call before every write.
"""

from __future__ import annotations

import secrets
import threading
import time

from redis import Redis

from pullbridge import keys

DEFAULT_TTL = 30.0

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class LockLost(Exception):
    """The lock expired or was taken over while we worked."""


def token_owner(token: str) -> str:
    """The ``owner`` a lock token was made for (``<owner>:<random>``), the token itself without one."""
    return token.rpartition(":")[0] or token


class RepoLock:
    def __init__(self, conn: Redis, repo_name: str, ttl: float = DEFAULT_TTL, owner: str = ""):
        self.conn = conn
        self.key = keys.lock(repo_name)
        self.ttl_ms = int(ttl * 1000)
        self.token = f"{owner}:{secrets.token_hex(8)}" if owner else secrets.token_hex(8)
        self.held = False
        self.lost = threading.Event()
        self.sure_until = 0.0  # time.monotonic() when the TTL Redis last set for us may run out
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def try_acquire(self) -> bool:
        asked = time.monotonic()
        if self.conn.set(self.key, self.token, nx=True, px=self.ttl_ms):
            self.held = True
            self.sure_until = asked + self.ttl_ms / 1000
            self.lost.clear()
            self._start_keepalive()
        return self.held

    def acquire(self, wait: float, poll: float = 0.2) -> bool:
        """Try for up to ``wait`` seconds; True when held."""
        deadline = time.monotonic() + wait
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True

    def holder(self) -> str | None:
        value = self.conn.get(self.key)
        return value.decode() if value else None

    def extend(self) -> bool:
        asked = time.monotonic()  # the new TTL runs from no earlier than this
        ok = bool(self.conn.eval(_EXTEND, 1, self.key, self.token, self.ttl_ms))
        if ok:
            self.sure_until = asked + self.ttl_ms / 1000
        else:
            self.lost.set()
        return ok

    def check(self) -> None:
        """Raise LockLost when the lock is no longer surely ours (call before writing; no Redis request)."""
        if not self.held:
            raise LockLost(f"the lock {self.key} is not held")
        if self.lost.is_set():
            raise LockLost(f"lost the lock {self.key}: it expired or another worker took it over")
        if time.monotonic() >= self.sure_until:
            raise LockLost(f"lost the lock {self.key}: not renewed for {self.ttl_ms / 1000:g}s "
                           "(Redis unreachable, or this worker stalled), so another worker may hold it")

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.held:
            try:
                self.conn.eval(_RELEASE, 1, self.key, self.token)
            finally:
                self.held = False

    def _start_keepalive(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._keepalive, name=f"lock {self.key}", daemon=True)
        self._thread.start()

    def _keepalive(self) -> None:
        interval = self.ttl_ms / 3000
        while not self._stop.wait(interval):
            try:
                if not self.extend():
                    return
            except Exception:  # noqa: BLE001 - Redis blip: the TTL still covers us for a while
                continue

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
