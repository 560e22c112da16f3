"""The image scan job: newest allowed tags -> write-back commit -> sync request.

Why it exists: this is the loop that makes a new registry tag reach the
cluster through Git.  For one repository it reads the tracked branch, finds
every automated container the sync deploys (Flux v1 annotations) and the one
value in Git that sets its tag (``worker.images.deployed``), asks the
registries (through the Redis cache) which tag each policy wants, commits the
changed values and pushes them, then calls ``request_sync`` so the ordinary
sync path deploys the new commit.  A locked or ignored workload is never
touched; a suspended repository is not scanned; a dry run only reports.

``scan_repo(repo_name)`` is the RQ job (the scheduler runs it every
``images.interval``; a registry webhook queues it at once through
``request_scan``, which keeps at most one scan queued per repository).
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from redis import Redis, WatchError
from rq import Queue

from pullbridge import keys, repostate
from pullbridge.config import Config, RepoConfig, load_config
from pullbridge.queueing import request_sync
from worker.images.cache import CachedRegistries
from worker.images.deployed import Source, deployed_containers
from worker.images.kustomize import TagOverride
from worker.images.manifests import ContainerImage
from worker.images.policy import TagCandidate, pick_tag
from worker.images.registry import ImageRef, RegistryError
from worker.images.writeback import ImageChange, WriteBack, WriteBackError, editable_changes

log = logging.getLogger("pullbridge.images")

SCAN_QUEUE = keys.IMAGES_QUEUE
SCAN_MARKER_TTL = 3600
WAITING = ("queued", "deferred", "scheduled")
UNEDITABLE = ("its tag is set by nothing the automation can change (an inline or JSON patch, a replacement "
              "or a value spread over lines)")


def default_git_env(repo: RepoConfig, config: Config) -> dict[str, str]:
    """Git transport settings for ``repo``: never prompt; for SSH URLs the deploy key and the
    pinned known_hosts of ``worker.ssh`` (a missing key or host key is a permanent error)."""
    from worker.ssh import SshSetupError, git_env

    try:
        return {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", **git_env(repo, config)}
    except SshSetupError as exc:
        raise WriteBackError(str(exc), temporary=False) from None


@dataclass
class ScanResult:
    repo: str
    sha: str | None = None               # the pushed write-back commit
    changes: list[ImageChange] = field(default_factory=list)
    dry_run: bool = False
    skipped: list[str] = field(default_factory=list)   # why containers were left alone
    errors: list[str] = field(default_factory=list)    # registry reads that failed
    sync_job: str | None = None
    attempts: int = 0

    def as_dict(self) -> dict:
        return {"repo": self.repo, "sha": self.sha, "dry_run": self.dry_run,
                "changes": [c.as_dict() for c in self.changes], "skipped": self.skipped,
                "errors": self.errors, "sync_job": self.sync_job, "attempts": self.attempts}


def make_plan(repo: RepoConfig, registries: CachedRegistries, result: ScanResult,
              default_namespace: str = "default") -> Callable[[Path], list[ImageChange]]:
    """The plan the write-back runs on each head it tries: what to change in that tree.

    ``default_namespace``: where the sync puts a workload that names no
    namespace (the repo's ``namespace:``), so reports and commits name it there.
    """

    def plan(root: Path) -> list[ImageChange]:
        result.skipped.clear()
        result.errors.clear()
        deployed, problems = deployed_containers(root, repo.path, default_namespace)
        result.skipped.extend(f"{path}: {why}" for path, why in problems.files)
        setters: dict[int, tuple[Source | None, list[ContainerImage]]] = {}  # the source -> the containers it sets
        for d in deployed:
            setters.setdefault(id(d) if d.source is None else id(d.source), (d.source, []))[1].append(d.container)
        inside = (root / repo.path).resolve()
        changes: list[ImageChange] = []
        for source, covered in setters.values():
            if source is None:
                refuse = UNEDITABLE
            elif not (root / source.real_path).resolve().is_relative_to(inside):
                refuse = f"that file is outside the repository path {repo.path}, and other paths may build it too"
            else:
                refuse = None
            change = _change(source, covered, registries, result, refuse)
            if change is not None:
                changes.append(change)
        changes, refused = editable_changes(root, changes)
        result.skipped.extend(f"{c.workload} container {c.container}: cannot be changed in place: {why}"
                              for c, why in refused)
        return changes

    return plan


def _best_tag(registries: CachedRegistries, ref: ImageRef, container: ContainerImage, result: ScanResult
              ) -> str | None:
    """The tag the filter of ``container`` picks among the registry's tags of ``ref`` (None, with the
    reason recorded)."""
    try:
        best = pick_tag(container.filter, registries.tags(ref), lambda tag: registries.created(ref, tag))
        undated = _undated(registries, ref, container, best) if best is not None else None
    except RegistryError as exc:
        result.errors.append(f"{container.label}: {exc}")
        return None
    if best is None:
        result.skipped.append(f"{container.label}: {container.path}: no tag of {ref.repository} matches "
                              f"{container.filter!r}")
        return None
    if undated:
        result.skipped.append(f"{container.label}: {container.path}: {undated}; a semver: filter orders by "
                              "version instead")
        return None
    return best.tag


def _undated(registries: CachedRegistries, ref: ImageRef, container: ContainerImage, best: TagCandidate
             ) -> str | None:
    """Why ``best`` must not be taken, or None: a glob or regex filter orders by build time, and
    an image it needs does not say when it was built.

    As in Flux v1, nothing moves then: an unknown time counts as the oldest, so
    the pick would be a guess among undated tags, or, when the running tag is
    the undated one (a build tool that writes no time), a move to an older image.
    A running tag the registry no longer has is not asked about.
    """
    if not container.filter.needs_created:
        return None
    if best.created is None:  # then no matching tag says
        return (f"no tag of {ref.repository} matching {container.filter!r} says when its image was built "
                "(config created), so the newest cannot be told")
    if best.tag != ref.tag and ref.tag in registries.tags(ref) and registries.created(ref, ref.tag) is None:
        return (f"the running tag {ref.tag} of {ref.repository} does not say when its image was built (config "
                f"created), so whether {best.tag} is newer cannot be told")
    return None


def _change(source: Source | None, covered: list[ContainerImage], registries: CachedRegistries,
            result: ScanResult, refuse: str | None) -> ImageChange | None:
    """Move the value ``source`` (an image line or an ``images:`` entry's newTag) that sets the
    tag of every container in ``covered``, as deployed, when they all agree.

    It moves only when all of them are automated, none is locked, and their
    policies pick the same tag; otherwise each automated one is reported,
    not changed.  ``refuse``: why ``source`` must not be edited (there is
    none, or it lies outside the repository path), reported when a new tag
    is wanted.
    """
    locked = [c for c in covered if c.policy.automated and c.policy.frozen]
    result.skipped.extend(f"{c.label}: locked" for c in locked)
    automated = [c for c in covered if c.policy.automated and not c.policy.frozen]
    if not automated:
        return None
    if isinstance(source, TagOverride):
        setter = f"its tag is set by {source.path} (images: {source.name}, {source.value}); "
    elif source is not None and covered != [source]:
        setter = f"its tag is set by {source.path} line {source.line + 1} ({source.image}); "
    else:
        setter = ""

    def skip(why: str) -> None:
        result.skipped.extend(f"{c.label}: {setter}{why}" for c in automated)

    held = [c for c in covered if c not in automated]
    if held:
        return skip("it also sets the tag of " + ", ".join(c.label for c in held)
                    + ", which is locked or not automated")
    if any(c.filter is None for c in automated):
        return skip("bad tag filter: " + next(c.filter_error for c in automated if c.filter is None))
    try:
        refs = [ImageRef.parse(c.image) for c in automated]
        line = ImageRef.parse(source.image) if isinstance(source, ContainerImage) else None
    except ValueError as exc:
        return skip(str(exc))
    if any(ref.digest for ref in refs):
        return skip("pinned by digest")
    picks = {_best_tag(registries, ref, c, result) for ref, c in zip(refs, automated)}
    if None in picks:
        return None  # the reason is recorded
    if len(picks) > 1:
        return skip("the policies of the containers it sets pick different tags (" + ", ".join(sorted(picks)) + ")")
    (best,) = picks
    first, ref = automated[0], refs[0]
    if best == ref.tag:
        return None
    if refuse is not None:
        return skip(f"{best} is wanted, but {refuse}")
    # an image line moves as written there; a kustomization entry moves the tag it sets
    base, old_image = (line, source.image) if line is not None else (ref, first.image)
    return ImageChange(path=source.path, workload=first.workload, container=first.container,
                       old_image=old_image, new_image=base.with_tag(best), old_tag=base.tag, new_tag=best,
                       target=source)


def scan(conn: Redis | None, config: Config, repo: RepoConfig, *,
         registries: CachedRegistries | None = None, dry_run: bool | None = None,
         git_env: Callable[[RepoConfig, Config], dict[str, str]] = default_git_env,
         before_push: Callable[[int], None] | None = None, fresh: bool = False) -> ScanResult:
    """Scan one repository and write back what changed; then ask for a sync of that commit.

    ``fresh``: bypass cached tag lists and tag digests (kept: digest -> created).
    ``conn`` may be None for a dry run only (nothing cached, suspension not
    checked); a write-back without Redis is refused.
    """
    settings = repo.images
    dry = settings.dry_run if dry_run is None else dry_run
    result = ScanResult(repo=repo.name, dry_run=dry)
    if conn is None and not dry:
        raise WriteBackError(f"{repo.name}: image write-back needs Redis, to check that the repository is not "
                             "suspended and to request the sync", temporary=False)
    if conn is not None and repostate.suspended_now(conn, repo.name):
        result.skipped.append("repository is suspended")
        return result
    registries = registries or CachedRegistries(conn, config.images, fresh=fresh)
    writer = WriteBack(repo.url, repo.branch, author_name=settings.author_name,
                       author_email=settings.author_email, attempts=settings.push_attempts,
                       git_env=git_env(repo, config))
    plan = make_plan(repo, registries, result, repo.namespace or config.worker.default_namespace)
    outcome = writer.run(plan, dry_run=dry, before_push=before_push)
    result.changes, result.sha, result.attempts = outcome.changes, outcome.sha, outcome.attempts
    for change in result.changes:
        log.info("image %s %s: %s", "would change" if dry else "changed", repo.name, change.describe())
    # the worker's log is where an operator sees a bad filter or an unreadable registry
    for note in result.skipped:
        log.info("image scan %s left alone: %s", repo.name, note)
    for error in result.errors:
        log.warning("image scan %s: %s", repo.name, error)
    if result.sha:
        result.sync_job = request_sync(conn, config, repo, result.sha, reason="image-update").job_id
    return result


def scan_repo(repo_name: str, reason: str = "interval") -> dict:
    """RQ job: scan ``repo_name`` with the configuration and Redis from the environment."""
    from rq import get_current_job

    config = load_config()
    repo = config.repo(repo_name)
    if repo is None:
        raise WriteBackError(f"no repository named {repo_name!r} in the configuration", temporary=False)
    job = get_current_job()
    conn = job.connection if job is not None else Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    if job is not None:  # from now on a new request queues a fresh scan
        marker = keys.image_scan_queued(repo_name)
        if conn.get(marker) == job.id.encode():
            conn.delete(marker)
    # read after the marker is gone: a hook that joined this job set the flag while the marker stood
    joined = conn.getdel(keys.image_scan_fresh(repo_name)) is not None
    if not repo.images.enabled:
        return ScanResult(repo=repo_name, skipped=["image automation is not enabled"]).as_dict()
    fresh = reason != "interval" or joined
    log.info("image scan %s (%s%s)", repo_name, reason, ", joined by a registry hook" if joined else "")
    return scan(conn, config, repo, fresh=fresh).as_dict()


def request_due_scans(conn: Redis, config: Config, now: float | None = None) -> dict[str, str]:
    """For the scheduler (call it every few seconds): queue scans whose ``images.interval`` has passed.

    The last request time per repository is kept in Redis, so several
    scheduler processes or restarts do not scan more often than the interval.
    """
    import time

    now = time.time() if now is None else now
    queued: dict[str, str] = {}
    for repo in config.repos:
        if not repo.images.enabled:
            continue
        key = keys.image_scan_last(repo.name)
        # SET NX with a TTL of the interval: only the first caller per interval wins
        if conn.set(key, str(now), nx=True, ex=max(1, int(repo.images.interval))):
            job_id = request_scan(conn, config, repo, reason="interval")
            if job_id:
                queued[repo.name] = job_id
    return queued


def request_scan(conn: Redis, config: Config, repo: RepoConfig, *, reason: str) -> str | None:
    """Queue ``scan_repo`` for ``repo`` unless one is already waiting; returns the job id.

    One transaction, like ``request_sync``: the marker and the job are written
    together.  A marker whose job no longer waits (a worker died before
    clearing it) is replaced instead of blocking scans until it expires.  A
    request other than the interval's that joins a waiting job sets the
    ``image_scan_fresh`` flag in the same transaction, so that job bypasses
    the registry cache as a job of its own would (the registry may have
    reported another host name than the one the manifests use, whose cached
    tag list ``forget`` did not drop).
    """
    if not repo.images.enabled:
        return None
    marker = keys.image_scan_queued(repo.name)
    queue = Queue(SCAN_QUEUE, connection=conn)
    with conn.pipeline() as pipe:
        while True:
            try:
                pipe.watch(marker)
                existing = pipe.get(marker)
                if existing:
                    job = queue.fetch_job(existing.decode())
                    if job is not None and job.get_status() in WAITING:
                        if reason == "interval":
                            pipe.unwatch()
                        else:  # fails with WatchError if the job took the marker away meanwhile
                            pipe.multi()
                            pipe.set(keys.image_scan_fresh(repo.name), existing, ex=SCAN_MARKER_TTL)
                            pipe.execute()
                        return existing.decode()
                job_id = f"imagescan-{repo.name}-{uuid.uuid4().hex[:12]}"
                pipe.multi()
                queue.enqueue_call(
                    keys.IMAGE_SCAN_JOB, args=(repo.name,), kwargs={"reason": reason}, job_id=job_id,
                    timeout=int(config.repo_jobs(repo).job_timeout),
                    description=f"image scan {repo.name} ({reason})", meta={"repo": repo.name, "reason": reason},
                    result_ttl=86400, failure_ttl=7 * 86400, pipeline=pipe)
                pipe.set(marker, job_id, ex=SCAN_MARKER_TTL)
                pipe.execute()
                return job_id
            except WatchError:
                continue
