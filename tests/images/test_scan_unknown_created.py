"""glob: and regex: order tags by when their images were built; an image that does not say
(no ``created``, or the 1970 / year-1 stand-ins of reproducible builds) gives the scan nothing
to order by.  When the tag it would pick, or the running one, is such an image, the container
is left alone with the reason, not moved to the lowest tag name or to any dated image (both
downgraded it), and the other workloads are still written back (real docker-registry, real
bare repo, the stack's Redis)."""

from __future__ import annotations

import pytest

from tests.images.helpers import automated_workload, bare_git, day, make_config
from worker.images.scan import scan


@pytest.mark.parametrize("created", [None, "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z",
                                     "0001-01-01T00:00:00+02:00"])
def test_tags_whose_images_say_no_build_time_are_not_moved(git_repo, registry, image_name, redis_conn, created):
    repo = git_repo("images-unknown-created")
    image, dated = f"{registry.host}/{image_name}", f"{registry.host}/{image_name}-dated"
    repo.commit_and_push("two workloads", {
        "timeless.yaml": automated_workload("timeless", f"{image}:develop-v1.9.0", "glob:develop-v*"),
        "dated.yaml": automated_workload("dated", f"{dated}:develop-v1", "glob:develop-v*")})
    for tag in ("develop-v1.8.0", "develop-v1.9.0"):
        registry.push_image(image_name, tag, created)
    registry.push_image(f"{image_name}-dated", "develop-v1", day(1))
    registry.push_image(f"{image_name}-dated", "develop-v2", day(2))
    config = make_config(repo, registry)

    result = scan(redis_conn, config, config.repos[0])

    assert [c.describe() for c in result.changes] == ["shop:deployment/dated container app: develop-v1 -> develop-v2"]
    assert result.skipped == [
        f"shop:deployment/timeless container app: timeless.yaml: no tag of {image} matching glob:develop-v* says "
        "when its image was built (config created), so the newest cannot be told; a semver: filter orders by "
        "version instead"]
    assert result.errors == []
    assert f"{image}:develop-v1.9.0" in bare_git(repo, "show", "main:timeless.yaml")
    assert f"{dated}:develop-v2" in bare_git(repo, "show", "main:dated.yaml")


def test_a_running_tag_whose_image_says_no_build_time_is_not_moved_to_an_older_dated_one(
        git_repo, registry, image_name, redis_conn):
    repo = git_repo("images-undated-running")
    image = f"{registry.host}/{image_name}"
    repo.commit_and_push("a workload on an undated build", {
        "app.yaml": automated_workload("app", f"{image}:develop-v9", "glob:develop-v*")})
    registry.push_image(image_name, "develop-v1", day(1))   # built before the switch to a reproducible build
    registry.push_image(image_name, "develop-v9", "1970-01-01T00:00:00Z")
    config = make_config(repo, registry)

    result = scan(redis_conn, config, config.repos[0])

    assert result.changes == [] and result.sha is None and result.errors == []
    assert result.skipped == [
        f"shop:deployment/app container app: app.yaml: the running tag develop-v9 of {image} does not say when its "
        "image was built (config created), so whether develop-v1 is newer cannot be told; a semver: filter orders "
        "by version instead"]
    assert f"{image}:develop-v9" in bare_git(repo, "show", "main:app.yaml")
