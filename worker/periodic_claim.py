"""The periodic reconcile's claim on its interval (``keys.periodic_guard``).

Why it exists: every scheduler queues every tick, so each run of
``worker.periodic.reconcile`` first claims its interval with ``SET NX PX``
and duplicates return at once.  The claim lasts as long as the run may (the
job timeout, when RQ ends the job): a run that outlives its interval (a git
host that accepts the connection and never answers) is not joined by the next
intervals' runs, each taking a worker from the other repositories.  When the
run ends the claim is cut to ``guard_ms`` from its start, so the next tick is
never blocked.
"""

from __future__ import annotations

import time

from redis import Redis

from pullbridge import keys
from pullbridge.config import RepoConfig


def guard_ms(interval: float) -> int:
    """How long one run holds its interval: most of it, so the next tick is never blocked."""
    return max(1000, int(interval * 1000 * 0.8))


def claim_interval(conn: Redis, repo: RepoConfig, running_ms: int) -> str | None:
    """Claim this interval for as long as the run may take (``running_ms``: the job timeout, when
    RQ ends the job), so a run slower than its interval (a git host that hangs) is not joined by
    the next intervals' runs on other workers; -> the claim's token (its start time), None if taken."""
    token = str(time.time())
    ttl = max(guard_ms(repo.interval), running_ms)
    return token if conn.set(keys.periodic_guard(repo.name), token, nx=True, px=ttl) else None


# Once the run is over, keep our own claim only for the rest of its interval (ARGV[2] ms).
_END_RUN = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('DEL', KEYS[1])
"""


def end_run(conn: Redis, repo: RepoConfig, token: str) -> None:
    """The run is over: its claim lasts until ``guard_ms`` after its start, so the next tick is free."""
    left = guard_ms(repo.interval) - int((time.time() - float(token)) * 1000)
    conn.eval(_END_RUN, 1, keys.periodic_guard(repo.name), token, left)


def overrun(conn: Redis, repo: RepoConfig) -> float | None:
    """The interval is taken: None for a duplicate tick (another scheduler's), else how many
    seconds ago the run that holds it started (it has outlived its interval)."""
    started = conn.get(keys.periodic_guard(repo.name))
    try:
        since = time.time() - float(started)
    except (TypeError, ValueError):
        return None
    return since if since * 1000 >= guard_ms(repo.interval) else None
