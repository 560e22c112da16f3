"""A repository's operator-set state: held by a rollback, suspended.

Why it exists: the CLI (``rollback``, ``resume``, ``history``, ``sync``),
the worker and any status page read and write the same fields of the repo
state hash (``pullbridge.keys.state``), and every one of them must say the
same plain thing about them.  The worker writes the sync fields
(``applied_sha``, ``last_result`` ...; see ``worker.history``); this module
owns the operator's fields:

* ``held_sha`` (with ``held_at``, ``held_by``): set by ``pullbridge rollback``.
  ``worker.fetch.Mirror.choose(held=...)`` then applies that commit on every
  sync, whatever is pushed, until ``clear_hold`` removes it.  ``pullbridge
  resume NAME`` must call ``clear_hold`` (and then request a sync so the
  branch head is applied again).
* ``suspended`` (``"1"`` while suspended, ``"0"`` after resume;
  ``suspended_at``, ``suspended_by``, ``resumed_at``, ``resumed_by``): set by
  ``pullbridge suspend`` / ``resume`` (``suspend``, ``resume`` here).  A
  suspended repo's sync job records "skipped: suspended" and keeps its wanted
  commits; its periodic job only records the check.
"""

from __future__ import annotations

import getpass
import time
from datetime import datetime, timezone

from redis import Redis

from pullbridge import keys

HELD_SHA, HELD_AT, HELD_BY = "held_sha", "held_at", "held_by"
SUSPENDED, SUSPENDED_AT, SUSPENDED_BY = "suspended", "suspended_at", "suspended_by"
_TRUE = ("1", "true", "yes", "on")


def read(conn: Redis, repo_name: str) -> dict[str, str]:
    """The whole state hash as text ({} for a repo never synced)."""
    return {k.decode(): v.decode() for k, v in conn.hgetall(keys.state(repo_name)).items()}


def hold(conn: Redis, repo_name: str, sha: str, by: str = "rollback") -> None:
    """Pin the repo at ``sha``: syncs apply it until ``clear_hold``."""
    conn.hset(keys.state(repo_name), mapping={HELD_SHA: sha, HELD_AT: str(time.time()), HELD_BY: by})


def clear_hold(conn: Redis, repo_name: str) -> str | None:
    """Remove a hold; returns the sha that was held (None when there was none).

    Callers (``pullbridge resume``) should then request a sync, so the
    branch head is applied again.
    """
    key = keys.state(repo_name)
    with conn.pipeline() as pipe:
        pipe.hget(key, HELD_SHA)
        pipe.hdel(key, HELD_SHA, HELD_AT, HELD_BY)
        held, _ = pipe.execute()
    return held.decode() if held else None


def suspended_now(conn: Redis, repo_name: str) -> bool:
    """Read the flag now (one HGET), as the sync and periodic jobs do before touching anything."""
    value = conn.hget(keys.state(repo_name), SUSPENDED)
    return is_suspended({SUSPENDED: value.decode() if isinstance(value, bytes) else (value or "")})


def suspend(conn: Redis, repo_name: str, by: str | None = None) -> bool:
    """Mark the repo suspended; False when it already was."""
    was = suspended_now(conn, repo_name)
    conn.hset(keys.state(repo_name), mapping={
        SUSPENDED: "1", SUSPENDED_AT: str(time.time()), SUSPENDED_BY: by or _who()})
    return not was


def resume(conn: Redis, repo_name: str, by: str | None = None) -> bool:
    """Clear the flag; False when the repo was not suspended."""
    was = suspended_now(conn, repo_name)
    conn.hset(keys.state(repo_name), mapping={
        SUSPENDED: "0", "resumed_at": str(time.time()), "resumed_by": by or _who()})
    return was


def waiting_commits(conn: Redis, repo_name: str) -> int:
    """Commits a webhook asked for that no sync has applied or skipped yet."""
    return int(conn.zcard(keys.wanted(repo_name)))


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


def held_sha(state: dict[str, str]) -> str | None:
    return state.get(HELD_SHA) or None


def is_suspended(state: dict[str, str]) -> bool:
    return (state.get(SUSPENDED) or "").strip().lower() in _TRUE


def when(timestamp: str | float | None) -> str:
    """A unix time as ``2026-11-26 08:43:20Z`` ('' when unknown)."""
    try:
        value = float(timestamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def hold_line(repo_name: str, state: dict[str, str]) -> str | None:
    """The plain sentence shown wherever a held repo's state shows."""
    sha = held_sha(state)
    if not sha:
        return None
    by = state.get(HELD_BY) or "rollback"
    since = when(state.get(HELD_AT))
    return (f"HELD: {repo_name} is held at {sha[:12]} by a {by}{' since ' + since if since else ''}; "
            f"pushes are not applied until `pullbridge resume {repo_name}`")


def suspended_line(repo_name: str, state: dict[str, str]) -> str | None:
    if not is_suspended(state):
        return None
    since = when(state.get(SUSPENDED_AT))
    by = state.get(SUSPENDED_BY)
    return (f"SUSPENDED: {repo_name} is suspended{' by ' + by if by else ''}{' since ' + since if since else ''}; "
            f"`pullbridge resume {repo_name}` resumes it")


def state_lines(repo_name: str, state: dict[str, str]) -> list[str]:
    """Every operator-set condition of the repo, one plain sentence each."""
    return [line for line in (suspended_line(repo_name, state), hold_line(repo_name, state)) if line]


def public(state: dict[str, str]) -> dict:
    """The state for JSON output, with the operator fields spelled out."""
    return {**state, "held_sha": held_sha(state), "suspended": is_suspended(state)}
