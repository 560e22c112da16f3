"""Two workloads running one image under different policies: each image line follows its own
workload's filter, and a kustomization entry that sets the tag of both moves only when the
policies agree (real registry, bare repo, the stack's Redis)."""

from __future__ import annotations

from tests.images.helpers import automated_workload, bare_git, day, make_config
from worker.images.scan import scan


def _repo(git_repo, registry, image_name, files):
    repo = git_repo("images-shared")
    repo.commit_and_push("two workloads, one image", files)
    for tag, when in (("v1.0.0", 1), ("v1.1.0", 2), ("v2.0.0", 3)):
        registry.push_image(image_name, tag, day(when))
    return repo


def test_each_image_line_follows_its_own_workload_policy(git_repo, registry, image_name, redis_conn):
    image = f"{registry.host}/{image_name}"
    text = (automated_workload("stable", f"{image}:v1.0.0", "semver:~1") + "---\n"
            + automated_workload("edge", f"{image}:v1.0.0", "glob:v*"))
    repo = _repo(git_repo, registry, image_name, {"shop.yaml": text})
    config = make_config(repo, registry)

    result = scan(redis_conn, config, config.repos[0])

    assert [c.describe() for c in result.changes] == ["shop:deployment/stable container app: v1.0.0 -> v1.1.0",
                                                      "shop:deployment/edge container app: v1.0.0 -> v2.0.0"]
    first, second = text.split("---\n")
    assert bare_git(repo, "show", "main:shop.yaml") == (first.replace(":v1.0.0", ":v1.1.0") + "---\n"
                                                        + second.replace(":v1.0.0", ":v2.0.0"))
    body = bare_git(repo, "show", "-s", "--format=%B", result.sha)
    assert f"shop.yaml: {image}:v1.0.0 -> {image}:v1.1.0" in body and f"{image}:v1.0.0 -> {image}:v2.0.0" in body


def test_one_kustomization_entry_for_both_is_left_when_their_policies_disagree(git_repo, registry, image_name,
                                                                               redis_conn):
    image = f"{registry.host}/{image_name}"
    kustomization = f"resources: [stable.yaml, edge.yaml]\nimages:\n  - name: {image}\n    newTag: v1.0.0\n"
    repo = _repo(git_repo, registry, image_name, {
        "kustomization.yaml": kustomization,
        "stable.yaml": automated_workload("stable", f"{image}:v0", "semver:~1"),
        "edge.yaml": automated_workload("edge", f"{image}:v0", "glob:v*")})
    config = make_config(repo, registry)
    head = bare_git(repo, "rev-parse", "main").strip()

    result = scan(redis_conn, config, config.repos[0])

    assert result.changes == [] and result.sha is None
    setter = f"its tag is set by kustomization.yaml (images: {image}, newTag: v1.0.0)"
    assert result.skipped == [f"shop:deployment/{name} container app: {setter}; the policies of the containers "
                              "it sets pick different tags (v1.1.0, v2.0.0)" for name in ("edge", "stable")]
    assert bare_git(repo, "rev-parse", "main").strip() == head
