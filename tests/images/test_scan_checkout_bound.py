"""The write-back's clone keeps within the sync's checkout bound ($PULLBRIDGE_MAX_CHECKOUT_MIB):
git stores a GiB of repeated bytes in a few KB, and the scan wrote every file of the head on the
worker's disk (a kustomize path once more, copied).  A real repository on the stack's git host,
a real registry."""

from __future__ import annotations

import pytest

from tests.images.helpers import NEW, bare_git, day, make_config
from worker.fetch import MAX_CHECKOUT_ENV, MIB
from worker.images.scan import scan
from worker.images.writeback import WriteBackError


def test_a_head_larger_than_a_checkout_may_hold_is_refused_before_it_is_written(
        demo, registry, image_name, redis_conn, monkeypatch):
    repo, _, _ = demo
    monkeypatch.setenv(MAX_CHECKOUT_ENV, "1")
    (repo.work / "big.bin").write_bytes(bytes(2 * MIB))
    head = repo.commit_and_push("two MiB of zeros")
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)

    with pytest.raises(WriteBackError) as info:
        scan(redis_conn, config, config.repos[0])

    assert str(info.value) == (f"commit {head[:12]}: its files total 2 MiB, more than the 1 MiB a checkout "
                               f"may hold (${MAX_CHECKOUT_ENV})")
    assert not info.value.temporary
    assert bare_git(repo, "rev-parse", "main").strip() == head


def test_a_head_pushed_meanwhile_larger_than_a_checkout_may_hold_is_refused_before_it_is_written(
        demo, registry, image_name, redis_conn, monkeypatch):
    repo, _, _ = demo
    monkeypatch.setenv(MAX_CHECKOUT_ENV, "1")
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)
    pushed = []

    def human_pushes_a_large_file(attempt: int) -> None:
        (repo.work / "big.bin").write_bytes(bytes(2 * MIB))
        pushed.append(repo.commit_and_push("two MiB of zeros"))

    with pytest.raises(WriteBackError) as info:
        scan(redis_conn, config, config.repos[0], before_push=human_pushes_a_large_file)

    assert str(info.value).startswith(f"commit {pushed[0][:12]}: its files total 2 MiB")
    assert bare_git(repo, "rev-parse", "main").strip() == pushed[0]


def test_a_head_with_folders_nested_deeper_than_the_recursion_limit_is_written_back(
        demo, registry, image_name, redis_conn, nested_folders):
    """The write-back's clone is removed afterwards as a sync's checkout is: shutil.rmtree calls
    itself per folder level, and raised over the successful write-back's result."""
    repo, _, _ = demo
    (nested_folders(repo.work, 1100) / "leaf.txt").write_text("deep\n")
    repo.commit_and_push("folders 1100 deep")
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)

    result = scan(redis_conn, config, config.repos[0])

    assert result.sha and result.sha == bare_git(repo, "rev-parse", "main").strip(), result
    assert NEW in bare_git(repo, "show", "main:fluxdemo.yaml")
