"""Fetch the wanted commit: a bare mirror per repo, and the choice of what to apply.

Why it exists: a sync must apply exactly the commit a push announced, or a
newer one on the same branch, never an older one (unless a force push took
the applied commit off the branch) and never one from elsewhere.  The worker
keeps a bare mirror per repository under a cache dir
($PULLBRIDGE_CACHE_DIR, default ~/.cache/pullbridge/mirrors) and fetches
into it only the tracked branch from only the configured URL (a mirror a crash
damaged is only a cache: it is fetched again from scratch).  Wanted shas
are ordered with git ancestry, not with webhook arrival order.  A checkout
is the commit's tree byte for byte: a commit's .gitattributes must not drop
files (export-ignore, which prune would then delete) or rewrite them; it is
streamed to disk, and refused when its files total more than a bound.

Transport settings (deploy key, pinned host keys for SSH URLs) come from
``git_env(repo, config)``, which defers to worker.ssh.  A failed fetch becomes
``fetch_failure``: temporary when a retry can help, else permanent, saying
what the operator must do when ssh refused a key.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import git

from pullbridge.config import Config, RepoConfig
from worker import ssh
from worker.errors import PermanentError, TemporaryError, cut
from worker.render import MIB

log = logging.getLogger("pullbridge.fetch")

CACHE_ENV = "PULLBRIDGE_CACHE_DIR"
SHA_RE = re.compile(r"^[0-9a-f]{40}\Z")
KEEP_CHECKOUTS = 3
MAX_CHECKOUT_ENV = "PULLBRIDGE_MAX_CHECKOUT_MIB"
DEFAULT_MAX_CHECKOUT_MIB = 512
# In the mirror's info/attributes, which outranks every .gitattributes of a commit:
# `git archive` then writes each file as committed (no export-ignore dropping it, no
# $Format$/$Id$ expansion, no end-of-line, encoding or filter conversion).
EXACT_TREE_ATTRIBUTES = "* -export-ignore -export-subst -ident -text -filter -working-tree-encoding\n"
FETCH_TIMEOUT = 120
# git holds a ref's lock file for the moment it takes to move the ref: an older one was left by a
# git that was killed (with its worker), and would fail every later fetch until removed.
STALE_REF_LOCK_AGE = 10.0
# A temporary directory among the checkouts this old (seconds) was left by a killed worker.
STALE_TEMP_AGE = 3600.0

_UNREACHABLE = re.compile(
    r"could not resolve host|connection refused|connection timed out|timed out|"
    r"failed to connect|unable to access|network is unreachable|connection reset|"
    r"the remote end hung up|early eof|http 5\d\d|returned error: 5\d\d|"
    r"could not read from remote repository", re.I)

# The repository is not there, or not for these credentials: git's words, and the hosts' over SSH
# (GitLab "could not be found or you don't have permission", Gitea/Forgejo "Cannot find repository"
# and "either does not exist or you are not authorized"), which git follows with "Could not read
# from remote repository", an _UNREACHABLE phrase.
_MISSING = re.compile(r"does not appear to be a git repository|repository .* not found|not found|"
                      r"could not be found|cannot find repository|does not exist|"
                      r"authentication failed|permission denied|http 40[134]|returned error: 40[134]", re.I)


# The mirror's own files are damaged (a crash left an empty object or ref file): it is only a cache.
_DAMAGED = re.compile(r"object file .* is empty|loose object .* is corrupt|bad object|unable to unpack|"
                      r"inflate: data stream error|did not send all necessary objects", re.I)

# Another git moved, or is moving, the mirror's branch ref (a retry finds it done or unlocked).
_REF_BUSY = re.compile(r"cannot lock ref .*(?:file exists|but expected)", re.I)

_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


def redact(text: str) -> str:
    """Hide credentials written into URLs (``https://user:token@host``) in git's messages."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def git_stderr(exc: git.GitCommandError) -> str:
    """What git wrote to stderr, without GitPython's ``stderr: '...'`` wrapping (else the whole error)."""
    text = (exc.stderr or "").strip()
    if text.startswith("stderr: '") and text.endswith("'"):
        return text[len("stderr: '"):-1]
    return text or str(exc)


def fetch_failure(exc: git.GitCommandError, repo: RepoConfig, config: Config | None = None
                  ) -> PermanentError | TemporaryError:
    """The error for a failed fetch of ``repo``: temporary when a retry can help, saying what to
    do when the operator must act; never a credential written in the URL."""
    text = redact(git_stderr(exc))
    detail = cut(text, 300)
    refused = ssh.refusal(repo, config, text)
    if refused:
        return PermanentError(refused)
    if "couldn't find remote ref" in text.lower():
        return PermanentError(f"branch {repo.branch!r} does not exist at the configured URL")
    if _REF_BUSY.search(text):
        return TemporaryError(f"the mirror of {repo.name} is being updated by another git process: {detail}")
    if _MISSING.search(text):
        return PermanentError(f"git fetch failed: {detail}")
    if _UNREACHABLE.search(text) or exc.status in (-9, -15) or exc.status is None:
        return TemporaryError(f"git host unreachable: {detail}")
    return PermanentError(f"git fetch failed: {detail}")


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pullbridge" / "mirrors")


def git_env(repo: RepoConfig, config: Config | None = None) -> dict[str, str]:
    """Environment for git talking to ``repo``'s host: never prompt; SSH via worker.ssh.

    A missing deploy key or unpinned host key is an operator's fix: permanent.
    """
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    try:
        env.update(ssh.git_env(repo, config))
    except ssh.SshSetupError as exc:
        raise PermanentError(f"git over SSH is not set up: {exc}") from None
    return env


class _Damaged(Exception):
    """The mirror's files are damaged; ``Mirror.fetch`` replaces it once."""


@dataclass
class Target:
    """What a sync applies: ``sha``, and what happened to each other wanted sha."""

    sha: str | None
    superseded: list[str] = field(default_factory=list)  # contained in (older than) the target
    unreachable: list[str] = field(default_factory=list)  # not on the tracked branch
    older_than_applied: list[str] = field(default_factory=list)
    reason: str = ""
    off_branch: str | None = None  # the applied commit, when a force push took it off the branch


class Mirror:
    """A bare mirror of one repository's tracked branch."""

    def __init__(self, repo: RepoConfig, root: Path | None = None, config: Config | None = None):
        self.repo = repo
        self.config = config
        self.root = root or cache_dir()
        self.path = self.root / f"{repo.name}.git"
        self.checkouts = self.root / f"{repo.name}.checkouts"
        self._git: git.Repo | None = None

    def close(self) -> None:
        """Let go of git processes and handles held for this job."""
        if self._git is not None:
            self._git.close()
            self._git = None

    @property
    def ref(self) -> str:
        return f"refs/heads/{self.repo.branch}"

    def _open(self) -> git.Repo:
        if self._git is None:
            if not (self.path / "HEAD").exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=f".{self.repo.name}-", dir=self.path.parent))
                git.Repo.init(tmp, bare=True)
                try:
                    tmp.rename(self.path)
                except OSError:  # another process made it first
                    shutil.rmtree(tmp, ignore_errors=True)
            self._keep_tree_exact()
            self._git = git.Repo(self.path)
        return self._git

    def _keep_tree_exact(self) -> None:
        """Write EXACT_TREE_ATTRIBUTES into the mirror (again into one made before it existed)."""
        attributes = self.path / "info" / "attributes"
        try:
            if attributes.read_text() == EXACT_TREE_ATTRIBUTES:
                return
        except OSError:
            pass
        attributes.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".attributes-", dir=attributes.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(EXACT_TREE_ATTRIBUTES)
        os.replace(tmp, attributes)

    def fetch(self) -> str:
        """Fetch the tracked branch from the configured URL; return its head sha.

        One fetch of the mirror at a time (a sync, the periodic check and an operator's
        ``pullbridge diff`` share it): the next waits for the lock instead of failing on the ref
        the first one moved.  The lock is an flock, which the kernel releases when its holder dies.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{self.repo.name}.fetch-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return self._fetch_locked(repair=True)
            except _Damaged as damage:
                log.warning("the mirror of %s is damaged (%s): fetching it again from scratch",
                            self.repo.name, damage)
                self._discard()
                return self._fetch_locked(repair=False)

    def _fetch_locked(self, repair: bool) -> str:
        """``fetch`` under its lock.  ``repair``: raise _Damaged when the mirror's own files are
        damaged (a crash left empty objects or refs), for ``fetch`` to make a new one."""
        try:
            repo = self._open()
        except git.InvalidGitRepositoryError:
            if repair:
                raise _Damaged("not a git repository") from None
            raise
        self._remove_stale_ref_lock()
        try:
            repo.git.fetch(self.repo.url, f"+{self.ref}:{self.ref}", "--no-tags", "--quiet",
                           env=git_env(self.repo, self.config), kill_after_timeout=FETCH_TIMEOUT)
        except git.GitCommandError as exc:
            if repair and _DAMAGED.search(git_stderr(exc)):
                raise _Damaged(cut(redact(git_stderr(exc)), 200)) from None
            raise fetch_failure(exc, self.repo, self.config) from None
        return self.head()

    def _discard(self) -> None:
        """Delete the mirror (moved away first, so no half-deleted mirror is ever opened)."""
        self.close()
        trash = Path(tempfile.mkdtemp(prefix=f".{self.repo.name}-damaged-", dir=self.root))
        try:
            self.path.rename(trash / self.path.name)
        finally:
            shutil.rmtree(trash, ignore_errors=True)

    def _remove_stale_ref_lock(self) -> None:
        """Remove the branch ref's lock file when a killed git left it (STALE_REF_LOCK_AGE)."""
        ref_lock = self.path / f"{self.ref}.lock"
        try:
            if time.time() - ref_lock.stat().st_mtime > STALE_REF_LOCK_AGE:
                ref_lock.unlink()
        except FileNotFoundError:
            pass

    def head(self) -> str:
        return self._open().git.rev_parse("--verify", f"{self.ref}^{{commit}}")

    def has_commit(self, sha: str) -> bool:
        try:
            self._open().git.cat_file("-e", f"{sha}^{{commit}}")
            return True
        except git.GitCommandError:
            return False

    def is_ancestor(self, older: str, newer: str) -> bool:
        """True when ``older`` is ``newer`` or one of its ancestors."""
        try:
            self._open().git.merge_base("--is-ancestor", older, newer)
            return True
        except git.GitCommandError as exc:
            if exc.status == 1:
                return False
            raise

    def changed_paths(self, older: str, newer: str) -> set[str]:
        """Every file whose content differs between the two commits' trees (both names of a
        rename), whatever their ancestry: after a force push, what it reverted counts too."""
        out = self._open().git.diff("--name-only", "--no-renames", "-z", older, newer, "--")
        return {path for path in out.split("\0") if path}

    def choose(self, head: str, wanted: list[str], applied: str | None, *,
               held: str | None = None, rollback: bool = False) -> Target:
        """Pick the newest wanted sha reachable from ``head`` (head when none is wanted).

        Forward-only: a target older than ``applied`` is not applied unless
        ``rollback`` (the wanted sha is applied as asked) or ``held`` (a pinned sha),
        as long as ``applied`` is on the branch: a late webhook for an older commit
        never undoes a newer one.  Once a force push took ``applied`` off the
        branch, the branch head is applied instead.
        """
        if held:
            if not self.has_commit(held) or not self.is_ancestor(held, head):
                raise PermanentError(
                    f"held commit {held[:12]} is not on branch {self.repo.branch} (a force push removed it?); "
                    f"`pullbridge resume {self.repo.name}` to follow the branch, or `pullbridge rollback "
                    f"{self.repo.name} SHA` to hold another commit")
            return Target(held, superseded=[s for s in wanted if s != held], reason="held")
        reachable, unreachable = [], []
        for sha in dict.fromkeys(wanted):
            if SHA_RE.match(sha) and self.has_commit(sha) and self.is_ancestor(sha, head):
                reachable.append(sha)
            else:
                unreachable.append(sha)
        if not reachable:
            if rollback and wanted:
                return Target(None, unreachable=unreachable, reason="rollback commit not on branch")
            candidate, reason = head, "branch head"
        else:
            candidate = newest(reachable, self.is_ancestor) or head
            reason = "wanted" if candidate in reachable else "branch head (wanted commits diverge)"
        off_branch = None
        if applied and not rollback and candidate != applied and self.has_commit(applied) \
                and self.is_ancestor(candidate, applied):
            if self.is_ancestor(applied, head):
                return Target(None, superseded=[s for s in reachable if s != candidate], unreachable=unreachable,
                              older_than_applied=[candidate], reason=f"older than applied {applied[:12]}")
            candidate, reason, off_branch = head, "branch head (the applied commit left the branch)", applied
        superseded = [s for s in reachable if s != candidate]
        return Target(candidate, superseded=superseded, unreachable=unreachable, reason=reason,
                      off_branch=off_branch)

    def checkout(self, sha: str) -> Path:
        """The tree of ``sha`` as plain files, byte for byte (cached per sha, a few kept)."""
        dest = self.checkouts / sha
        if dest.is_dir():
            os.utime(dest)
            return dest
        self.checkouts.mkdir(parents=True, exist_ok=True)
        check_checkout_size(self._open(), sha)
        tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=self.checkouts))
        try:  # streamed: a commit's files are not held in memory
            archive = self._open().git.archive("--format=tar", sha, as_process=True)
            try:
                with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
                    tar.extractall(tmp, filter="tar")
            except tarfile.ReadError:  # tarfile refuses an archive of no file (its one header is git's)
                if self._open().git.ls_tree(sha):  # not the empty tree (every file deleted): a real error
                    raise
            archive.wait()
            tmp.rename(dest)
        except BaseException:  # a full disk, the job's timeout: no partial tree left behind
            remove_tree(tmp)
            if not dest.is_dir():  # else another process made it first: use theirs
                raise
        self._trim_checkouts()
        return dest

    def _trim_checkouts(self) -> None:
        """Keep the KEEP_CHECKOUTS newest checkouts.  An older one is renamed away before it is
        deleted, so a worker killed meanwhile never leaves part of a tree under a commit's name;
        what a killed worker left (dot names) goes once older than STALE_TEMP_AGE."""
        entries = []
        for path in self.checkouts.iterdir():
            try:
                entries.append((path.stat().st_mtime, path))
            except FileNotFoundError:  # removed by another process meanwhile
                pass
        entries.sort(reverse=True)
        checkouts = [path for _, path in entries if not path.name.startswith(".")]
        for old in checkouts[KEEP_CHECKOUTS:]:
            trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=self.checkouts))
            try:
                old.rename(trash / old.name)
            except OSError:  # another process trimmed it
                pass
            remove_tree(trash)
        stale = time.time() - STALE_TEMP_AGE
        for mtime, path in entries:
            if path.name.startswith(".") and mtime < stale:
                remove_tree(path)


def check_checkout_size(repo: git.Repo, sha: str) -> None:
    """Refuse a commit of ``repo`` whose files would not fit: git stores a GiB of repeated bytes in
    a few KB, and a checkout lies next to the mirror (a volume with a size limit, in a pod)."""
    limit = int(os.environ.get(MAX_CHECKOUT_ENV) or DEFAULT_MAX_CHECKOUT_MIB) * MIB
    listing = repo.git.ls_tree("-r", "-l", "-z", sha, stdout_as_string=False)
    total = sum(int(meta[3]) for entry in listing.split(b"\0")
                if len(meta := entry.partition(b"\t")[0].split()) == 4 and meta[1] == b"blob")
    if total > limit:
        raise PermanentError(f"commit {sha[:12]}: its files total {total // MIB} MiB, more than the "
                             f"{limit // MIB} MiB a checkout may hold (${MAX_CHECKOUT_ENV})")


def remove_tree(path: Path) -> None:
    """Remove a checkout, whatever fails, as ``rm -rf``: Python 3.11's ``shutil.rmtree`` calls itself
    per folder level, and a commit may nest folders deeper than the recursion limit (its checkout
    then failed every later checkout of the repository, which trims it)."""
    subprocess.run(["rm", "-rf", "--", str(path)], capture_output=True, check=False)


def newest(shas: list[str], is_ancestor) -> str | None:
    """The sha every other one is an ancestor of; None when some are unrelated (diverged)."""
    best = shas[0]
    for sha in shas[1:]:
        if is_ancestor(best, sha):
            best = sha
        elif not is_ancestor(sha, best):
            return None
    return best
