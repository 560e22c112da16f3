"""Commit image updates to the tracked branch and push them, without losing anyone's work.

Why it exists: Git stays the source of truth, so an image update is a commit
like any other.  The write-back clones the tracked branch, asks a *plan*
what to change on that exact tree, edits only those image lines, commits as
the configured author and pushes.  If someone pushed meanwhile (the push is
rejected as non-fast-forward), it fetches, resets onto the new head, asks the
plan again there, and retries a bounded number of times: a human commit is
never overwritten, and an update the human already made (or a lock they
added) is simply not repeated.  Nothing is committed when the plan is empty.
A push refused while the branch did not move (a hook, a protected branch) is
no race: it fails at once with the server's reason.

Git runs through GitPython with ``git_env`` as the seam for transport
settings (SSH keys come from the deploy keys work).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import git
from git import Actor

from worker.errors import PermanentError
from worker.fetch import check_checkout_size, remove_tree
from worker.images.kustomize import TagOverride, replace_tag
from worker.images.manifests import ContainerImage, EditError, read_text, replace_image, write_text

REJECTED_MARKERS = ("[rejected]", "non-fast-forward", "fetch first", "[remote rejected]",
                    "stale info", "failed to update ref", "cannot lock ref")
MAX_DETAIL = 300
# Only the head's tree is edited; the server has the history.  Depth 1 also keeps a
# rewound branch rewound: a push onto an older head than our base is refused ("fetch first",
# the client lacks that head), where a deeper clone would fast-forward the dropped commits back.
CLONE_DEPTH = 1


class WriteBackError(Exception):
    """Write-back failed; ``temporary`` says whether the next scan may succeed."""

    def __init__(self, message: str, temporary: bool = True):
        super().__init__(message)
        self.temporary = temporary


@dataclass(frozen=True)
class ImageChange:
    """One container moving from one image reference to another: its image in
    the workload (``target`` a ContainerImage), or the ``newTag`` of the
    kustomization entry that sets its tag (``target`` a TagOverride, ``path``
    that kustomization)."""

    path: str
    workload: str
    container: str
    old_image: str
    new_image: str
    old_tag: str | None
    new_tag: str
    target: ContainerImage | TagOverride = field(compare=False, repr=False)

    @property
    def old_tag_text(self) -> str:
        """The old tag for people: an image written without a tag says so, not 'None'."""
        return self.old_tag if self.old_tag is not None else "untagged"

    def describe(self) -> str:
        where = f" ({self.path} images: {self.target.name})" if isinstance(self.target, TagOverride) else ""
        return f"{self.workload} container {self.container}: {self.old_tag_text} -> {self.new_tag}{where}"

    def as_dict(self) -> dict:
        return {"path": self.path, "workload": self.workload, "container": self.container,
                "old_image": self.old_image, "new_image": self.new_image,
                "old_tag": self.old_tag, "new_tag": self.new_tag}


@dataclass
class WriteBackResult:
    sha: str | None                 # the pushed commit, None when nothing changed
    changes: list[ImageChange]
    attempts: int
    base: str | None = None         # the head the final commit was made on


Plan = Callable[[Path], list[ImageChange]]


def commit_message(changes: list[ImageChange]) -> str:
    if len(changes) == 1:
        c = changes[0]
        return (f"Update image of {c.workload} container {c.container}: {c.old_tag_text} -> {c.new_tag}\n\n"
                f"{c.path}: {c.old_image} -> {c.new_image}\n")
    body = "\n".join(f"- {c.describe()} ({c.path}: {c.old_image} -> {c.new_image})" for c in changes)
    return f"Update images of {len(changes)} containers\n\n{body}\n"


def _edit(text: str, change: ImageChange) -> str:
    if isinstance(change.target, TagOverride):
        return replace_tag(text, change.target, change.new_tag)
    return replace_image(text, change.target, change.new_image)


def _edited(root: Path, changes: list[ImageChange], refused: list | None = None) -> dict[str, str]:
    """Each file ``changes`` edit under ``root`` (its path as the file system has it) -> its text
    with every change made in turn.

    A change whose line cannot be edited raises EditError; given ``refused``,
    it is recorded there with the reason instead and left out."""
    texts: dict[str, str] = {}
    for change in changes:
        path = change.target.real_path
        text = texts.get(path)
        if text is None:
            text = read_text(root / path)
        try:
            texts[path] = _edit(text, change)
        except EditError as exc:
            if refused is None:
                raise
            refused.append((change, str(exc)))
    return texts


def editable_changes(root: Path, changes: list[ImageChange]
                     ) -> tuple[list[ImageChange], list[tuple[ImageChange, str]]]:
    """Split ``changes`` into those whose line can be edited in place under ``root`` and the
    others with the reason (a flow-style, block or multi-line scalar...).  Nothing is written.

    The plan asks this on every head it tries, so one image line that can
    never be edited is reported and the others still get committed, and a dry
    run lists only what a write-back would really commit.
    """
    refused: list[tuple[ImageChange, str]] = []
    _edited(root, changes, refused)
    left_out = {id(change) for change, _ in refused}
    return [change for change in changes if id(change) not in left_out], refused


def apply_changes(root: Path, changes: list[ImageChange]) -> list[str]:
    """Edit the files under ``root``; returns the paths touched. All or nothing per call."""
    texts = _edited(root, changes)
    for path, text in texts.items():
        write_text(root / path, text)
    return sorted(texts)


def _cut(text: str) -> str:
    """One line, at most MAX_DETAIL characters, credentials in URLs masked."""
    text = re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", " ".join(str(text).split()))
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL - 3] + "..."


def _is_rejection(exc: git.GitCommandError) -> bool:
    detail = f"{exc.stderr or ''} {exc.stdout or ''}".lower()
    return any(marker in detail for marker in REJECTED_MARKERS)


class WriteBack:
    """Clone, edit, commit and push one repository's tracked branch."""

    def __init__(self, url: str, branch: str, *, author_name: str, author_email: str,
                 attempts: int = 5, git_env: dict[str, str] | None = None, workdir: Path | None = None):
        self.url = url
        self.branch = branch
        self.author = Actor(author_name, author_email)
        self.attempts = attempts
        self.env = {"GIT_TERMINAL_PROMPT": "0", **(git_env or {})}
        self.workdir = workdir

    def run(self, plan: Plan, *, dry_run: bool = False,
            before_push: Callable[[int], None] | None = None) -> WriteBackResult:
        """Apply ``plan`` on the branch head and push; redo it on a newer head when rejected.

        ``before_push(attempt)`` runs between the commit and the push (tests use
        it to race a human commit against the write-back).
        """
        tmp = Path(tempfile.mkdtemp(prefix="pb-images-", dir=self.workdir))
        try:
            return self._run(tmp / "checkout", plan, dry_run, before_push)
        finally:
            remove_tree(tmp)  # shutil.rmtree recurses per folder level: a deep tree would raise here

    def _commit(self, repo: git.Repo, paths: list[str], message: str) -> None:
        """Commit ``paths`` as the configured author, with git itself: GitPython's index reader
        fails on a file name that is not UTF-8 (Git allows any bytes), anywhere in the tree."""
        repo.git.add("--", *paths)
        who = {"NAME": self.author.name, "EMAIL": self.author.email}
        repo.git.commit("--quiet", f"--message={message}", env={
            f"GIT_{role}_{key}": value for role in ("AUTHOR", "COMMITTER") for key, value in who.items()})

    @staticmethod
    def _check_out(repo: git.Repo, rev: str) -> None:
        """Make the work tree ``rev``'s files, once they are known to fit within the sync's
        checkout bound (git stores a GiB of repeated bytes in a few KB; the clone lies on the
        worker's disk, and a kustomize path is copied once more)."""
        try:
            check_checkout_size(repo, rev)
            repo.git.reset("--hard", rev)
        except PermanentError as exc:
            raise WriteBackError(str(exc), temporary=False) from None
        except git.GitCommandError as exc:
            raise WriteBackError(f"cannot check out {rev}: {_cut(exc.stderr)}") from None

    def _run(self, path: Path, plan: Plan, dry_run: bool,
             before_push: Callable[[int], None] | None) -> WriteBackResult:
        try:
            repo = git.Repo.clone_from(self.url, path, branch=self.branch, env=self.env,
                                       single_branch=True, depth=CLONE_DEPTH, no_checkout=True)
        except git.GitCommandError as exc:
            raise WriteBackError(f"cannot clone branch {self.branch}: {_cut(exc.stderr)}") from None
        repo.git.update_environment(**self.env)
        with repo:
            self._check_out(repo, repo.head.commit.hexsha)
            for attempt in range(1, self.attempts + 1):
                base = repo.head.commit.hexsha
                changes = plan(path)
                if not changes or dry_run:
                    return WriteBackResult(sha=None, changes=changes, attempts=attempt, base=base)
                try:
                    touched = apply_changes(path, changes)
                except EditError as exc:
                    raise WriteBackError(str(exc), temporary=False) from None
                self._commit(repo, touched, commit_message(changes))
                commit = repo.head.commit
                if before_push is not None:
                    before_push(attempt)
                try:
                    repo.git.push("origin", f"{commit.hexsha}:refs/heads/{self.branch}")
                    return WriteBackResult(sha=commit.hexsha, changes=changes, attempts=attempt, base=base)
                except git.GitCommandError as exc:
                    if not _is_rejection(exc):
                        raise WriteBackError(f"push to {self.branch} failed: {_cut(exc.stderr)}") from None
                    refusal = _cut(exc.stderr)
                try:
                    repo.git.fetch(f"--depth={CLONE_DEPTH}", "origin",
                                   f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}")
                    head = repo.git.rev_parse(f"origin/{self.branch}")
                except git.GitCommandError as exc:
                    raise WriteBackError(f"fetch after a rejected push failed: {_cut(exc.stderr)}") from None
                self._check_out(repo, head)
                if head == base:  # no one pushed meanwhile: the server refuses this push (a hook, a protected branch)
                    raise WriteBackError(f"push to {self.branch} refused, and the branch has not moved: {refusal}")
        raise WriteBackError(f"push to {self.branch} still rejected after {self.attempts} attempts")
