"""The write-back commit names the workload where the sync deploys it (the repo's
``namespace:`` when the manifest names none) and an untagged old image as such, not
'None' (real registry, bare repo, the stack's Redis)."""

from __future__ import annotations

from pullbridge.config import parse_config
from tests.images.helpers import bare_git, day
from worker.images.scan import scan

UNTAGGED = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: a
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/tag.app: glob:v*
spec:
  template:
    spec:
      containers:
        - name: app
          image: {image}   # no tag: docker runs latest
"""


def test_commit_names_the_repo_namespace_and_an_untagged_image(git_repo, registry, image_name, redis_conn):
    repo = git_repo("images-ns")
    image = f"{registry.host}/{image_name}"
    repo.commit_and_push("untagged", {"a.yaml": UNTAGGED.format(image=image)})
    registry.push_image(image_name, "latest", day(2))
    registry.push_image(image_name, "v2", day(2))
    config = parse_config({
        "repos": [{"name": "images-ns", "url": repo.file_url, "branch": repo.branch, "provider": "generic",
                   "secret_env": "PB_TEST_UNUSED_SECRET", "namespace": "my-demo", "images": {"enabled": True}}],
        "images": {"registries": [{"host": registry.host, "insecure": True}]},
    })

    result = scan(redis_conn, config, config.repos[0])

    assert [c.describe() for c in result.changes] == ["my-demo:deployment/a container app: untagged -> v2"]
    assert result.changes[0].as_dict()["old_tag"] is None
    assert bare_git(repo, "show", "-s", "--format=%B", result.sha).strip() == (
        "Update image of my-demo:deployment/a container app: untagged -> v2\n\n"
        f"a.yaml: {image} -> {image}:v2")
    assert bare_git(repo, "show", "main:a.yaml") == UNTAGGED.format(image=f"{image}:v2")
