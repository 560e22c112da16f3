"""Image scans of a workload file reached through a symlink, as the sync reads it (once, links
followed within the repository): a real repository on the stack's git host, a real registry."""

from __future__ import annotations

from tests.images.helpers import automated_workload, bare_git, day, make_config
from worker.images.scan import scan


def test_a_workload_linked_from_the_path_is_changed_in_its_real_file_once(git_repo, registry, image_name,
                                                                          redis_conn):
    """The edit was written through the link but the link was committed: an empty write-back
    commit on every scan, the tag never moved.  A second link listed the workload twice."""
    repo = git_repo("images-link")
    image = f"{registry.host}/{image_name}"
    workload = automated_workload("linked", f"{image}:1.0.0", "semver:~1")
    repo.write(".shared/app.yaml", workload)
    (repo.work / "app.yaml").symlink_to(".shared/app.yaml")
    (repo.work / "same.yaml").symlink_to("app.yaml")
    repo.commit_and_push("a workload kept in a hidden folder, linked")
    registry.push_image(image_name, "1.0.0", day(1))
    registry.push_image(image_name, "1.1.0", day(2))
    config = make_config(repo, registry)
    before = bare_git(repo, "rev-parse", "main").strip()

    result = scan(redis_conn, config, config.repos[0])

    assert result.errors == [] and result.skipped == []
    assert [(c.path, c.new_tag) for c in result.changes] == [("app.yaml", "1.1.0")]
    assert bare_git(repo, "diff", "--name-only", before, result.sha).split() == [".shared/app.yaml"]
    assert bare_git(repo, "show", "main:.shared/app.yaml") == workload.replace("1.0.0", "1.1.0")
    assert bare_git(repo, "show", "main:app.yaml") == ".shared/app.yaml"  # still the link
    again = scan(redis_conn, config, config.repos[0])
    assert again.sha is None and again.changes == []
