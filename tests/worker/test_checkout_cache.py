"""The checkouts and rendered objects next to a mirror: a full disk, a killed worker or a job's
timeout never leave a partial tree under a commit's name, nor temporary trees or files that pile up."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from worker import fetch, rendercache
from worker.errors import PermanentError
from worker.fetch import KEEP_CHECKOUTS, MAX_CHECKOUT_ENV, MIB, STALE_TEMP_AGE, Mirror, remove_tree

from tests.tree_support import write
from tests.worker.test_fetch import mirror, repo_config, upstream  # noqa: F401 (fixtures)


def _files(tree) -> list[str]:
    return sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())


def test_a_worker_killed_while_trimming_leaves_no_part_of_a_tree_under_a_commits_name(
        upstream, mirror, monkeypatch):
    shas = [upstream.commit(f"c{n}") for n in range(KEEP_CHECKOUTS + 1)]
    mirror.fetch()
    for sha in shas[:KEEP_CHECKOUTS]:
        mirror.checkout(sha)
    oldest = mirror.checkouts / shas[0]
    os.utime(oldest, (1, 1))

    def killed_halfway(path):
        """The removal stopped by the kill after it deleted one file."""
        next(p for p in sorted(path.rglob("*.yaml"))).unlink()
        raise SystemExit("killed")

    monkeypatch.setattr(fetch, "remove_tree", killed_halfway)
    with pytest.raises(SystemExit):
        mirror.checkout(shas[-1])  # trims the oldest checkout
    monkeypatch.undo()
    # The commit is needed again (a rollback, a drift check): its whole tree, not what was left.
    assert _files(mirror.checkout(shas[0])) == ["c0.yaml"]


def test_temporary_trees_left_by_killed_workers_are_removed_once_old(upstream, mirror):
    first = upstream.commit("a")
    mirror.fetch()
    mirror.checkout(first)
    left = [mirror.checkouts / ".0123456789ab-killed", mirror.checkouts / ".trash-killed"]
    for path in left:
        (path / "deploy").mkdir(parents=True)
        (path / "deploy" / "a.yaml").write_text("kind: ConfigMap\n")
        os.utime(path, (1, 1))
    in_use = mirror.checkouts / ".fedcba987654-extracting"  # another worker's checkout, being written
    in_use.mkdir()
    old_enough = in_use.stat().st_mtime - STALE_TEMP_AGE + 60
    os.utime(in_use, (old_enough, old_enough))
    second = upstream.commit("b")
    mirror.fetch()
    mirror.checkout(second)
    assert sorted(p.name for p in mirror.checkouts.iterdir()) == sorted([first, second, in_use.name])


def test_a_checkout_nesting_folders_deeper_than_pythons_recursion_limit_is_trimmed(upstream, mirror,
                                                                                 nested_folders):
    """Python 3.11's rmtree calls itself per level: such a checkout, once trimmed, failed every later
    checkout of the repository."""
    write(nested_folders(upstream.work, 1100), {"deep.yaml": "kind: ConfigMap\n"})
    deep = upstream.commit("deep")
    remove_tree(upstream.work / "a")  # in that commit only
    shas = [upstream.commit(f"c{n}") for n in range(KEEP_CHECKOUTS)]
    mirror.fetch()
    try:
        for sha in [deep, *shas]:
            os.utime(mirror.checkout(sha))
        assert sorted(p.name for p in mirror.checkouts.iterdir()) == sorted(shas)
    finally:  # left, pytest's own cleanup would fail on it
        remove_tree(mirror.checkouts / deep)


def test_rendered_objects_half_written_by_killed_workers_are_removed_once_old(upstream, mirror):
    first = upstream.commit("a")
    mirror.fetch()
    [cached_first] = [m.name for m in rendercache.rendered(mirror, first)]
    cache = mirror.root / "r.rendered"
    killed, in_use = cache / ".tmp-killed", cache / ".tmp-being-written"  # in_use: another worker's
    for partial, age in ((killed, STALE_TEMP_AGE + 60), (in_use, STALE_TEMP_AGE - 60)):
        partial.write_text('[{"obj": {"apiVersion": "v1", "ki')
        os.utime(partial, (partial.stat().st_mtime - age,) * 2)
    second = upstream.commit("b")
    mirror.fetch()
    assert sorted(m.name for m in rendercache.rendered(mirror, second)) == [cached_first, "b"]
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [".tmp-being-written", *(rendercache._cache_file(mirror, sha, ".").name for sha in (first, second))])


def test_a_commit_larger_than_a_checkout_may_hold_is_refused_before_it_is_written(upstream, mirror, monkeypatch):
    """git stores a GiB of repeated bytes in a few KB: its checkout was held in memory whole, then
    written next to the mirror, a volume with a size limit in a pod."""
    monkeypatch.setenv(MAX_CHECKOUT_ENV, "1")
    (upstream.work / "big.bin").write_bytes(bytes(2 * MIB))
    sha = upstream.commit("big")
    mirror.fetch()
    with pytest.raises(PermanentError) as info:
        mirror.checkout(sha)
    assert str(info.value) == (f"commit {sha[:12]}: its files total 2 MiB, more than the 1 MiB a checkout may "
                               f"hold (${MAX_CHECKOUT_ENV})")
    assert list(mirror.checkouts.iterdir()) == []
    monkeypatch.setenv(MAX_CHECKOUT_ENV, "3")
    assert (mirror.checkout(sha) / "big.bin").read_bytes() == bytes(2 * MIB)


def test_paths_alike_as_file_names_have_rendered_objects_of_their_own(upstream, tmp_path):
    """The cache file of 'deploy/prod' was the one of 'deploy-prod' at the same commit: once a
    repository's path changed so, its drift scan took the other path's objects for the applied ones."""
    write(upstream.work, {"deploy/prod/a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
                          "deploy-prod/b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"})
    sha = upstream.commit("two paths")
    repo = repo_config(f"file://{upstream.bare}")
    for path, name in (("deploy/prod", "a"), ("deploy-prod", "b")):
        mirror = Mirror(repo.model_copy(update={"path": path}), root=tmp_path / "cache")
        mirror.fetch()
        rendercache._rendered.clear()  # another worker process: only the file is shared
        assert [m.name for m in rendercache.rendered(mirror, sha)] == [name]


def test_a_checkout_cut_short_by_a_full_disk_leaves_nothing_behind(upstream, mirror, tmp_path):
    upstream.commit("a")
    (upstream.work / "big.bin").write_bytes(os.urandom(512 * 1024))
    sha = upstream.commit("b")
    mirror.fetch()
    mirror.checkouts.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mirror.checkouts)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a small tmpfs is needed for a full disk (run as root): {mounted.stderr.strip()}")
    try:
        with pytest.raises(OSError) as full:
            mirror.checkout(sha)
        assert full.value.errno == errno.ENOSPC
        assert list(mirror.checkouts.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mirror.checkouts)], check=True)
