"""Suspend and resume a repository: the flag every process reads from the state hash.

Why it exists: an operator must be able to stop Pullbridge from touching a
repo's objects (an incident, a manual migration) without editing the config
and restarting processes.  The flag lives in the repo's state hash
(``keys.state``), next to what the pages already show: ``suspended`` ("1" or
"0"), ``suspended_at`` (unix time) and ``suspended_by`` (free text).  A
suspended repo's sync job records "skipped: suspended" and keeps its wanted
commits; its periodic job only records the check.  Resuming queues a sync
when commits are waiting.
"""

from __future__ import annotations

import getpass
import time

from redis import Redis

from pullbridge import keys


def is_suspended(conn: Redis, repo_name: str) -> bool:
    return conn.hget(keys.state(repo_name), "suspended") in (b"1", "1")


def suspend(conn: Redis, repo_name: str, by: str | None = None) -> bool:
    """Mark the repo suspended; False when it already was."""
    was = is_suspended(conn, repo_name)
    conn.hset(keys.state(repo_name), mapping={
        "suspended": "1", "suspended_at": str(time.time()), "suspended_by": by or _who()})
    return not was


def resume(conn: Redis, repo_name: str, by: str | None = None) -> bool:
    """Clear the flag; False when the repo was not suspended."""
    was = is_suspended(conn, repo_name)
    conn.hset(keys.state(repo_name), mapping={
        "suspended": "0", "resumed_at": str(time.time()), "resumed_by": by or _who()})
    return was


def waiting_commits(conn: Redis, repo_name: str) -> int:
    return int(conn.zcard(keys.wanted(repo_name)))


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"
