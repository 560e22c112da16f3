"""What each sync did: a change set per sync, kept in Redis and written to the log.

Why it exists: operators need to answer "what did the push at 10:02 change,
and why did it fail?" without reading worker logs.  Each sync gets a record
(``pullbridge.keys.sync_record``) with its commit, timing per phase, every
object's fate (created / configured / unchanged / deleted / skipped) and its
error; a capped list per repo (``keys.history``) keeps the newest summaries;
the repo's state hash (``keys.state``) keeps the last result and the applied
commit.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from redis import Redis

from pullbridge import keys

log = logging.getLogger("pullbridge.sync")

ACTIONS = ("created", "configured", "unchanged", "deleted", "skipped")
RECORD_TTL = 7 * 86400
DEFAULT_LIMIT = 50


def new_sync_id(repo_name: str) -> str:
    return f"{repo_name}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


@dataclass
class SyncRecord:
    repo: str
    reason: str
    delivery: str | None = None
    job_id: str | None = None
    id: str = ""
    sha: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    result: str = "running"  # success | failure | retrying | skipped
    error: str | None = None
    error_in_full: str | None = None  # when ``error`` names only some of the failing objects
    dry_run: bool = False
    phases: dict[str, float] = field(default_factory=dict)
    changes: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _phase_start: float = field(default_factory=time.monotonic, repr=False)

    def __post_init__(self):
        self.id = self.id or new_sync_id(self.repo)

    def phase(self, name: str) -> None:
        """Close the running phase's timer under ``name``."""
        now = time.monotonic()
        self.phases[name] = round(now - self._phase_start, 4)
        self._phase_start = now

    def add(self, changes) -> None:
        self.changes.extend(c.as_dict() if hasattr(c, "as_dict") else c for c in changes)

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(c["action"] for c in self.changes)
        return {a: counted.get(a, 0) for a in ACTIONS}

    def summary(self) -> dict:
        return {
            "id": self.id, "repo": self.repo, "sha": self.sha, "reason": self.reason,
            "delivery": self.delivery, "job_id": self.job_id, "result": self.result,
            "error": self.error, "dry_run": self.dry_run, "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": round(self.finished_at - self.started_at, 4) if self.finished_at else None,
            "phases": self.phases, "counts": self.counts, "notes": self.notes,
        }

    def full(self) -> dict:
        """The record as its page reads it: the summary, the change set, the error in full."""
        extra = {"error_in_full": self.error_in_full} if self.error_in_full else {}
        return {**self.summary(), "changes": self.changes, **extra}


def save(conn: Redis, record: SyncRecord, *, limit: int = DEFAULT_LIMIT,
         applied_sha: str | None = None) -> None:
    """Store the record, push its summary on the repo's capped history, update the state hash
    and the trail of the record's job (``keys.sync_job_trail``)."""
    record.finished_at = record.finished_at or time.time()
    summary = record.summary()
    state = {"last_sync_id": record.id, "last_result": record.result,
             "last_error": record.error or "", "last_sync_at": str(record.finished_at)}
    if applied_sha:
        state.update(applied_sha=applied_sha, applied_at=str(record.finished_at))
    with conn.pipeline() as pipe:
        pipe.set(keys.sync_record(record.id), json.dumps(record.full()), ex=RECORD_TTL)
        pipe.lpush(keys.history(record.repo), json.dumps(summary))
        pipe.ltrim(keys.history(record.repo), 0, limit - 1)
        pipe.hset(keys.state(record.repo), mapping=state)
        if record.job_id:
            pipe.hset(keys.sync_job_trail(record.job_id), "sync_id", record.id)
            pipe.expire(keys.sync_job_trail(record.job_id), RECORD_TTL)
        pipe.execute()
    log_record(record)


def save_handover(conn: Redis, job_id: str, next_job_id: str) -> None:
    """Keep, as long as a sync record, that sync job ``job_id`` found the repo locked and handed
    its commits to ``next_job_id``: its /syncs link leads on after RQ dropped both jobs."""
    with conn.pipeline() as pipe:
        pipe.hset(keys.sync_job_trail(job_id), "next_job_id", next_job_id)
        pipe.expire(keys.sync_job_trail(job_id), RECORD_TTL)
        pipe.execute()


def log_record(record: SyncRecord) -> None:
    counts = " ".join(f"{k}={v}" for k, v in record.counts.items())
    sha = (record.sha or "-")[:12]
    timing = " ".join(f"{k}={v:.3f}s" for k, v in record.phases.items())
    level = logging.INFO if record.result in ("success", "skipped") else logging.WARNING
    # the job and the delivery: a delivery's id (the receiver's line) finds its sync's outcome
    origin = "".join(f" {name}={value}" for name, value in (("job", record.job_id), ("delivery", record.delivery))
                     if value)
    log.log(level, "sync %s repo=%s sha=%s reason=%s%s result=%s %s %s%s", record.id, record.repo, sha,
            record.reason, origin, record.result, counts, timing, f" error={record.error}" if record.error else "")
    for change in record.changes:
        if change["action"] != "unchanged":
            log.info("  %s %s %s", change["action"], change["object"], change.get("source", ""))


def history(conn: Redis, repo_name: str, count: int = DEFAULT_LIMIT) -> list[dict]:
    return [json.loads(x) for x in conn.lrange(keys.history(repo_name), 0, count - 1)]


def get_record(conn: Redis, sync_id: str) -> dict | None:
    raw = conn.get(keys.sync_record(sync_id))
    return json.loads(raw) if raw else None


def repo_state(conn: Redis, repo_name: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in conn.hgetall(keys.state(repo_name)).items()}
