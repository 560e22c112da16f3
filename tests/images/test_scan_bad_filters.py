"""Tag filters an operator gets wrong: each is reported naming the workload, the container and
the file, and that workload is left as it is while the others still move (real registry, bare
repo, the stack's Redis)."""

from __future__ import annotations

import logging

import pytest

from tests.images.helpers import automated_workload, bare_git, day, make_config
from worker.images.scan import scan


def _setup(git_repo, registry, image_name, container: str, tag_filter: str):
    """``apps/bad.yaml`` with the filter under test, ``apps/good.yaml`` with a sound one."""
    repo = git_repo("images-filters")
    image = f"{registry.host}/{image_name}"
    files = {"apps/bad.yaml": automated_workload("bad", f"{image}:v1.0.0", tag_filter, container),
             "apps/good.yaml": automated_workload("good", f"{image}:v1.0.0", "semver:~1")}
    repo.commit_and_push("two workloads", files)
    for tag, when in (("v1.0.0", 1), ("v1.1.0", 2), ("master-9f1c", 3)):
        registry.push_image(image_name, tag, day(when))
    return repo, image, files


@pytest.mark.parametrize("container, tag_filter, why", [
    ("ap", "glob:v1.*", "tag.ap names no container (its containers: app)"),
    ("app", "'glob:'", "tag.app: empty glob pattern"),
    ("app", "'regex:'", "tag.app: empty regex pattern"),
    ("app", "semver:banana", "tag.app: 'banana' is not a version"),
])
def test_a_bad_filter_is_reported_by_file_and_its_workload_not_moved(git_repo, registry, image_name, redis_conn,
                                                                      container, tag_filter, why, caplog):
    repo, image, files = _setup(git_repo, registry, image_name, container, tag_filter)
    config = make_config(repo, registry)

    with caplog.at_level(logging.INFO, logger="pullbridge.images"):
        result = scan(redis_conn, config, config.repos[0])

    problem = f"shop:deployment/bad container app: bad tag filter: apps/bad.yaml: {why}"
    assert result.skipped == [problem]
    assert f"image scan images-demo left alone: {problem}" in caplog.messages  # where the worker shows it
    assert [c.describe() for c in result.changes] == ["shop:deployment/good container app: v1.0.0 -> v1.1.0"]
    assert bare_git(repo, "show", "main:apps/bad.yaml") == files["apps/bad.yaml"]


def test_a_filter_that_matches_no_tag_names_the_file_and_the_image(git_repo, registry, image_name, redis_conn):
    repo, image, files = _setup(git_repo, registry, image_name, "app", "glob:release-*")
    config = make_config(repo, registry)

    result = scan(redis_conn, config, config.repos[0])

    assert result.skipped == [f"shop:deployment/bad container app: apps/bad.yaml: no tag of {image} "
                              "matches glob:release-*"]
    assert bare_git(repo, "show", "main:apps/bad.yaml") == files["apps/bad.yaml"]
