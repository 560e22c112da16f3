"""Fetching into the bare mirror and choosing what to apply, on real git repositories."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from pullbridge.config import parse_config
from worker.errors import PermanentError, TemporaryError
from worker.fetch import STALE_REF_LOCK_AGE, Mirror


def git(*args, cwd=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


class Upstream:
    def __init__(self, tmp_path):
        self.bare = tmp_path / "up.git"
        self.work = tmp_path / "work"
        git("init", "-q", "--bare", "-b", "main", str(self.bare))
        git("init", "-q", "-b", "main", str(self.work))

    def force_push(self, sha: str, branch: str = "main") -> None:
        """Move ``branch`` to ``sha``, as ``git push --force`` does; later commits build on it."""
        git("reset", "-q", "--hard", sha, cwd=self.work)
        git("push", "-q", "--force", str(self.bare), f"{sha}:refs/heads/{branch}", cwd=self.work)

    def commit(self, name: str, branch: str = "main") -> str:
        (self.work / f"{name}.yaml").write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n")
        git("add", "-A", cwd=self.work)
        git("-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "-m", name, cwd=self.work)
        sha = git("rev-parse", "HEAD", cwd=self.work)
        git("push", "-q", str(self.bare), f"HEAD:refs/heads/{branch}", cwd=self.work)
        return sha


def repo_config(url: str, branch: str = "main"):
    return parse_config({"repos": [{"name": "r", "url": url, "branch": branch, "provider": "generic",
                                    "secret_env": "UNUSED"}]}).repos[0]


@pytest.fixture
def upstream(tmp_path):
    return Upstream(tmp_path)


@pytest.fixture
def mirror(upstream, tmp_path):
    return Mirror(repo_config(f"file://{upstream.bare}"), root=tmp_path / "cache")


def test_fetch_is_incremental_and_tracks_only_the_branch(upstream, mirror):
    c1 = upstream.commit("a")
    assert mirror.fetch() == c1
    c2 = upstream.commit("b")
    other = upstream.commit("c", branch="feature")
    assert mirror.fetch() == c2
    refs = git("--git-dir", str(mirror.path), "for-each-ref", "--format=%(refname)")
    assert refs.split() == ["refs/heads/main"]
    assert not mirror.has_commit(other)


def test_newest_wanted_wins_whatever_the_arrival_order(upstream, mirror):
    c1, c2, c3 = upstream.commit("a"), upstream.commit("b"), upstream.commit("c")
    head = mirror.fetch()
    target = mirror.choose(head, [c2, c3, c1], applied=None)
    assert target.sha == c3 and sorted(target.superseded) == sorted([c1, c2])


def test_forward_only_unless_rollback(upstream, mirror):
    c1, c2 = upstream.commit("a"), upstream.commit("b")
    head = mirror.fetch()
    skipped = mirror.choose(head, [c1], applied=c2)
    assert skipped.sha is None and skipped.older_than_applied == [c1]
    assert mirror.choose(head, [c1], applied=c2, rollback=True).sha == c1
    assert mirror.choose(head, [c2], applied=c2).sha == c2  # the same commit again: reconcile drift
    assert mirror.choose(head, [], applied=c1).sha == c2  # nothing wanted: branch head


def test_a_force_push_back_to_an_older_commit_is_applied(upstream, mirror):
    c1, c2 = upstream.commit("a"), upstream.commit("b")
    mirror.fetch()
    upstream.force_push(c1)  # c2, the applied commit, is no longer on the branch
    head = mirror.fetch()
    assert head == c1
    target = mirror.choose(head, [c1], applied=c2)
    assert (target.sha, target.older_than_applied) == (c1, [])
    assert target.off_branch == c2  # the sync's record says why it goes back


def test_once_the_applied_commit_left_the_branch_the_head_wins(upstream, mirror):
    c1, c2 = upstream.commit("a"), upstream.commit("b")
    mirror.fetch()
    upstream.force_push(c1)
    c3 = upstream.commit("c")  # main is now c1 - c3; c2 is gone
    head = mirror.fetch()
    # The webhook of the force push (c1) is taken after c3 was pushed: c3, the head, is applied.
    target = mirror.choose(head, [c1], applied=c2)
    assert (target.sha, target.superseded) == (c3, [c1])
    assert target.off_branch == c2


def test_a_late_webhook_never_undoes_a_newer_commit_still_on_the_branch(upstream, mirror):
    c1, c2 = upstream.commit("a"), upstream.commit("b")
    mirror.fetch()
    upstream.force_push(c2)  # a force push that keeps the applied commit (a no-op rewrite)
    c3 = upstream.commit("c")
    head = mirror.fetch()
    target = mirror.choose(head, [c1], applied=c2)  # c1's webhook, redelivered late
    assert (target.sha, target.older_than_applied) == (None, [c1])
    assert mirror.choose(head, [c1, c3], applied=c2).sha == c3


def test_changed_paths_is_the_content_diff_with_both_names_of_a_rename(upstream, mirror):
    c1 = upstream.commit("a")
    git("mv", "a.yaml", "moved.yaml", cwd=upstream.work)
    c2 = upstream.commit("b")  # a.yaml renamed, b.yaml added
    mirror.fetch()
    assert mirror.changed_paths(c1, c2) == {"a.yaml", "moved.yaml", "b.yaml"}
    upstream.force_push(c1)
    c3 = upstream.commit("c")  # c2 is gone: its files count as changed back
    mirror.fetch()
    assert mirror.changed_paths(c2, c3) == {"a.yaml", "moved.yaml", "b.yaml", "c.yaml"}
    assert mirror.changed_paths(c3, c3) == set()


def test_held_commit_pins(upstream, mirror):
    c1, _ = upstream.commit("a"), upstream.commit("b")
    head = mirror.fetch()
    assert mirror.choose(head, [head], applied=head, held=c1).sha == c1


def test_a_held_commit_a_force_push_removed_says_how_to_release_it(upstream, mirror):
    c1, c2 = upstream.commit("a"), upstream.commit("b")
    upstream.force_push(c1)
    head = mirror.fetch()
    with pytest.raises(PermanentError, match=rf"held commit {c2[:12]} is not on branch main .*"
                                             r"`pullbridge resume r` to follow the branch, or "
                                             r"`pullbridge rollback r SHA` to hold another commit"):
        mirror.choose(head, [], applied=c2, held=c2)


def test_commits_not_on_the_branch_are_not_applied(upstream, mirror):
    c1 = upstream.commit("a")
    other = upstream.commit("x", branch="feature")
    head = mirror.fetch()
    target = mirror.choose(head, [other, "not-a-sha", "f" * 40], applied=None)
    assert target.sha == c1 and sorted(target.unreachable) == sorted([other, "not-a-sha", "f" * 40])


def test_checkout_holds_the_commit_tree(upstream, mirror):
    c1, c2 = upstream.commit("a"), upstream.commit("b")
    mirror.fetch()
    assert sorted(p.name for p in mirror.checkout(c1).iterdir()) == ["a.yaml"]
    assert sorted(p.name for p in mirror.checkout(c2).iterdir()) == ["a.yaml", "b.yaml"]


def test_checkout_of_a_commit_that_deleted_every_file_is_an_empty_tree(upstream, mirror):
    upstream.commit("a")
    git("rm", "-q", "a.yaml", cwd=upstream.work)
    git("-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "-m", "empty", cwd=upstream.work)
    git("push", "-q", str(upstream.bare), "HEAD:refs/heads/main", cwd=upstream.work)
    empty = mirror.fetch()
    assert list(mirror.checkout(empty).iterdir()) == []


EXPORT_ATTRIBUTES = {
    ".gitattributes": "[attr]hidden export-ignore\n"
                      "deploy/a.yaml export-ignore\ndeploy/b.yaml export-subst\n"
                      "deploy/c.yaml ident\ndeploy/d.yaml text eol=crlf\ndeploy/e.yaml hidden\n",
    "deploy/a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    "deploy/b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  commit: \"$Format:%h$\"\n",
    "deploy/c.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  id: \"$Id$\"\n",
    "deploy/d.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n",
    "deploy/e.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\n",
    "deploy/sub/.gitattributes": "f.yaml export-ignore\n",
    "deploy/sub/f.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: f\n",
}


def assert_checkout_is_the_commit(upstream, checkout, sha):
    committed = git("ls-tree", "-r", "--name-only", sha, cwd=upstream.work).split("\n")
    on_disk = sorted(p.relative_to(checkout).as_posix() for p in checkout.rglob("*") if p.is_file())
    assert on_disk == sorted(committed)
    for path in committed:
        blob = subprocess.run(["git", "cat-file", "blob", f"{sha}:{path}"], cwd=upstream.work,
                              check=True, capture_output=True).stdout
        assert (checkout / path).read_bytes() == blob, path


def test_checkout_is_the_commit_whatever_its_gitattributes_say(upstream, mirror, tmp_path):
    from worker.render import render
    for path, text in EXPORT_ATTRIBUTES.items():
        (upstream.work / path).parent.mkdir(parents=True, exist_ok=True)
        (upstream.work / path).write_text(text)
    sha = upstream.commit("attrs")
    mirror.fetch()
    checkout = mirror.checkout(sha)
    assert_checkout_is_the_commit(upstream, checkout, sha)
    objects = {m.name: m.obj.get("data") for m in render(checkout, "deploy")}
    assert objects == {"a": None, "b": {"commit": "$Format:%h$"}, "c": {"id": "$Id$"}, "d": None,
                       "e": None, "f": None}

    # A mirror made before the mirror kept trees exact gets its attributes on the next job.
    (mirror.path / "info" / "attributes").unlink()
    later = upstream.commit("more")
    again = Mirror(mirror.repo, root=tmp_path / "cache")
    again.fetch()
    assert_checkout_is_the_commit(upstream, again.checkout(later), later)


def test_unreachable_host_is_temporary(tmp_path):
    mirror = Mirror(repo_config("http://127.0.0.1:9/nothing.git"), root=tmp_path)
    with pytest.raises(TemporaryError, match="git host unreachable"):
        mirror.fetch()


def test_missing_branch_or_repo_is_permanent(upstream, tmp_path):
    upstream.commit("a")
    with pytest.raises(PermanentError, match="branch 'nope' does not exist"):
        Mirror(repo_config(f"file://{upstream.bare}", branch="nope"), root=tmp_path / "c1").fetch()
    with pytest.raises(PermanentError, match="git fetch failed"):
        Mirror(repo_config(f"file://{tmp_path}/missing.git"), root=tmp_path / "c2").fetch()


def test_credentials_in_urls_never_reach_error_messages(tmp_path):
    from worker.fetch import redact
    assert redact("fatal: unable to access 'https://bot:s3cret@git.example.com/x.git/'") == \
        "fatal: unable to access 'https://***@git.example.com/x.git/'"
    mirror = Mirror(repo_config("http://bot:s3cret@127.0.0.1:9/x.git"), root=tmp_path)
    with pytest.raises(TemporaryError) as info:
        mirror.fetch()
    assert "s3cret" not in str(info.value)


def test_a_ref_lock_left_by_a_killed_git_does_not_fail_every_later_fetch(upstream, mirror):
    upstream.commit("a")
    mirror.fetch()
    head = upstream.commit("b")
    ref_lock = mirror.path / "refs" / "heads" / "main.lock"
    ref_lock.write_text("")  # git was killed while it moved the branch
    with pytest.raises(TemporaryError, match="mirror of r is being updated by another git process"):
        mirror.fetch()  # a live git may still hold it: retry later
    left = ref_lock.stat().st_mtime - STALE_REF_LOCK_AGE - 1
    os.utime(ref_lock, (left, left))
    assert mirror.fetch() == head
    assert not ref_lock.exists()


def test_fetches_of_one_mirror_at_once_all_succeed_while_the_branch_moves(upstream, tmp_path):
    """A sync, the periodic check and `pullbridge diff` may fetch the same mirror at the same time."""
    upstream.commit("a")
    failures, pushing = [], True

    def fetch_until_pushed():
        while pushing:
            mirror = Mirror(repo_config(f"file://{upstream.bare}"), root=tmp_path / "cache")
            try:
                mirror.fetch()
            except (PermanentError, TemporaryError) as exc:
                failures.append(str(exc))
            finally:
                mirror.close()

    fetchers = [threading.Thread(target=fetch_until_pushed) for _ in range(3)]
    for thread in fetchers:
        thread.start()
    try:
        for n in range(20):
            head = upstream.commit(f"c{n}")
    finally:
        pushing = False
        for thread in fetchers:
            thread.join()
    assert failures == []
    assert Mirror(repo_config(f"file://{upstream.bare}"), root=tmp_path / "cache").fetch() == head


def _empty_objects(mirror):
    for path in (mirror.path / "objects").glob("??/*"):
        os.chmod(path, 0o644)
        path.write_bytes(b"")


@pytest.mark.parametrize("damage", [
    _empty_objects,
    lambda mirror: (mirror.path / "refs" / "heads" / "main").write_text(""),
    lambda mirror: (mirror.path / "HEAD").write_text(""),
], ids=["empty objects", "empty ref", "empty HEAD"])
def test_a_mirror_a_crash_left_damaged_is_fetched_again(upstream, mirror, tmp_path, damage):
    """A machine that crashed mid-write leaves empty files (delayed allocation); the mirror is a
    cache: the next fetch makes a new one instead of failing every sync until someone deletes it."""
    first = upstream.commit("a")
    mirror.fetch()
    mirror.close()
    damage(mirror)
    head = upstream.commit("b")
    again = Mirror(mirror.repo, root=tmp_path / "cache")
    assert again.fetch() == head
    assert sorted(p.name for p in again.checkout(first).iterdir()) == ["a.yaml"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["r.checkouts", "r.fetch-lock", "r.git"]
