"""What the operator verbs share: the config, the named repo, Redis, waiting for a sync.

Why it exists: every verb must fail the same clear way (exit 2 through
``CommandError``) when the config is bad, the repo is unknown or Redis is
unreachable, naming the Redis URL without its password.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import time

from pullbridge.cli import CommandError
from pullbridge.config import CONFIG_ENV, Config, ConfigError, RepoConfig, load_config
from pullbridge.redis_url import redact

REDIS_ENV = "REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
ABBREV_RE = re.compile(r"^[0-9a-f]{4,40}\Z")


def help_text(doc: str) -> dict:
    """Parser keywords showing a command module's docstring as its --help description."""
    import argparse

    return {"description": doc.replace("``", "`"), "formatter_class": argparse.RawDescriptionHelpFormatter}


def add_config_option(parser) -> None:
    parser.add_argument("--config", metavar="FILE", help=f"configuration file (default: ${CONFIG_ENV})")


def add_redis_option(parser, *, under_verb: bool = False) -> None:
    """``--redis-url``.  ``under_verb``: the option is also on the verb's parent parser
    (``queue --redis-url URL purge``); argparse would let the subcommand's default None
    overwrite the parent's value, and the verb would quietly act on ``$REDIS_URL``."""
    default = argparse.SUPPRESS if under_verb else None
    parser.add_argument("--redis-url", metavar="URL", default=default, help=f"Redis URL (default: ${REDIS_ENV})")


def load(args) -> Config:
    path = getattr(args, "config", None) or os.environ.get(CONFIG_ENV)
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CommandError(f"configuration: {exc}") from None


def repo_named(config: Config, name: str) -> RepoConfig:
    repo = config.repo(name)
    if repo is None:
        known = ", ".join(r.name for r in config.repos) or "none"
        raise CommandError(f"unknown repository {name!r} (configured: {known})")
    return repo


def redis_url(args) -> str:
    return getattr(args, "redis_url", None) or os.environ.get(REDIS_ENV) or DEFAULT_REDIS_URL


def connect(args):
    """A Redis client that answered a PING; CommandError naming the URL (no password) otherwise."""
    from pullbridge.redis_url import RedisUnusable, connect_checked

    try:
        return connect_checked(redis_url(args), socket_connect_timeout=5, socket_timeout=30)
    except RedisUnusable as exc:
        raise CommandError(str(exc)) from None


def _short(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redis_errors(func):
    """Turn a Redis failure in the middle of a verb into a clear exit-2 error."""
    @functools.wraps(func)
    def wrapper(args):
        from redis.exceptions import RedisError

        try:
            return func(args)
        except RedisError as exc:
            raise CommandError(f"Redis at {redact(redis_url(args))} failed: {_short(exc)}") from None
    return wrapper


def sync_errors(what: str):
    """Turn a sync-engine error (git, render, Kubernetes) into a clear exit-2 error."""
    def decorate(func):
        @functools.wraps(func)
        def wrapper(*a, **kw):
            from worker.errors import SyncError, cut
            from worker.kube import ApiError

            try:
                return func(*a, **kw)
            except SyncError as exc:
                raise CommandError(f"{what}: {exc}") from None
            except ApiError as exc:  # e.g. API discovery refused
                raise CommandError(f"{what}: {exc.method} {exc.path}: HTTP {exc.status}: {cut(exc.message)}") from None
        return wrapper
    return decorate


def resolve_on_branch(mirror, sha: str, head: str) -> str:
    """The full sha of ``sha`` (may be abbreviated), which must be on the tracked branch."""
    import git

    from worker.errors import PermanentError

    value = sha.strip().lower()
    if not ABBREV_RE.match(value):
        raise CommandError(f"not a commit sha: {sha!r}")
    try:
        full = git.Repo(mirror.path).git.rev_parse("--verify", "--quiet", f"{value}^{{commit}}")
    except git.GitCommandError:
        raise PermanentError(f"commit {value} is not on branch {mirror.repo.branch} "
                             f"(unknown or ambiguous in the fetched history)") from None
    if not mirror.is_ancestor(full, head):
        raise PermanentError(f"commit {full[:12]} is not on branch {mirror.repo.branch}")
    return full


def commit_on_branch(config, repo, sha: str, what: str) -> str:
    """Fetch ``repo``'s branch with the worker's ``Mirror`` (its ssh: section, not only
    $PULLBRIDGE_CONFIG's) and return the full sha of ``sha``, which must be on the branch;
    a clear CommandError (prefixed ``what``) otherwise, before anything is held or queued."""
    @sync_errors(what)
    def resolve() -> str:
        from worker.fetch import Mirror

        mirror = Mirror(repo, config=config)
        try:
            return resolve_on_branch(mirror, sha, mirror.fetch())
        finally:
            mirror.close()
    return resolve()


# -- following a sync job to its record ---------------------------------------------
class WaitTimeout(CommandError):
    pass


def wait_for_sync(conn, job_id: str, repo_name: str, timeout: float | None, poll: float = 0.25) -> dict:
    """Wait until job ``job_id`` (or the job it re-queued itself as) ends; return its history record.

    The returned record is the full one (with ``changes``) when Redis still
    has it.  A job that failed for good returns the record of its last try.
    """
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    from pullbridge.queueing import handed_to
    from worker import history

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            job = Job.fetch(job_id, connection=conn)
            status = job.get_status()
        except NoSuchJobError:
            raise CommandError(f"sync job {job_id} no longer exists (purged?)") from None
        if status == JobStatus.FINISHED:
            value = job.return_value()
            if (next_job := handed_to(value)) is not None:
                job_id = next_job  # the repo was locked: follow the job it handed over to
                continue
            if isinstance(value, dict) and value.get("id"):
                return history.get_record(conn, value["id"]) or value
            raise CommandError(f"sync job {job_id} finished without a sync record: {value!r}")
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            record = last_record_of_job(conn, repo_name, job_id)
            if record:
                return record
            latest = job.latest_result()
            trace = ((latest.exc_string if latest else "") or "").strip().splitlines()
            error = trace[-1:] or [str(getattr(status, "value", status))]
            return {"id": None, "repo": repo_name, "job_id": job_id, "result": "failure",
                    "error": _short(Exception(error[0]), 300), "counts": {}, "notes": [], "changes": []}
        if deadline is not None and time.monotonic() > deadline:
            raise WaitTimeout(f"sync job {job_id} has not finished after {timeout:g}s "
                              f"(status {getattr(status, 'value', status)}); "
                              f"it keeps running: see `pullbridge history {repo_name}`")
        time.sleep(poll)


def last_record_of_job(conn, repo_name: str, job_id: str) -> dict | None:
    from worker import history

    for summary in history.history(conn, repo_name):
        if summary.get("job_id") == job_id:
            return history.get_record(conn, summary["id"]) or summary
    return None


# -- printing ---------------------------------------------------------------------------
def counts_text(counts: dict) -> str:
    order = ("created", "configured", "deleted", "unchanged", "skipped")
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in order)


def print_record(record: dict, out) -> None:
    """A sync's result and change set, in words."""
    sha = (record.get("sha") or "-")[:12]
    print(f"sync {record.get('id') or '-'} of {record.get('repo')} at {sha}: {record.get('result')}"
          f"{' (dry run: report mode)' if record.get('dry_run') else ''}", file=out)
    for note in record.get("notes") or []:
        print(f"  note: {note}", file=out)
    if record.get("error"):
        print(f"  error: {record['error']}", file=out)
    for change in record.get("changes") or []:
        if change.get("action") == "unchanged":
            continue
        extra = ", ".join(x for x in (change.get("source"), change.get("detail")) if x)
        print(f"  {change['action']:<10} {change['object']}{f'  ({extra})' if extra else ''}", file=out)
    if record.get("counts"):
        print(f"  {counts_text(record['counts'])}", file=out)


def dumps(data) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
