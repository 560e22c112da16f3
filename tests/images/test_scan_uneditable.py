"""An image line the write-back cannot edit in place is reported for its container only:
the other updates of the repository are still committed, and a dry run lists exactly
what a write-back would commit (real registry, real bare repo, the stack's Redis)."""

from __future__ import annotations

from tests.images.helpers import bare_git, day, make_config
from worker.images.scan import scan

BLOCK = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: a
  namespace: apps
  annotations: {{fluxcd.io/automated: "true", fluxcd.io/tag.app: "glob:v*"}}
spec:
  template:
    spec:
      containers:
        - name: app
          image: {image}:v1
"""
FLOW = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: b
  namespace: apps
  annotations: {{fluxcd.io/automated: "true", fluxcd.io/tag.app: "glob:v*"}}
spec:
  template:
    spec:
      containers: [{{name: app, image: {image}:v1}}]
"""


def test_a_flow_style_image_is_skipped_and_the_other_update_committed(git_repo, registry, image_name, redis_conn):
    repo = git_repo("images-flow")
    image = f"{registry.host}/{image_name}"
    files = {"a.yaml": BLOCK.format(image=f"{image}-a"), "b.yaml": FLOW.format(image=f"{image}-b")}
    repo.commit_and_push("two workloads", files)
    for name in (f"{image_name}-a", f"{image_name}-b"):
        registry.push_image(name, "v1", day(1))
        registry.push_image(name, "v2", day(2))
    config = make_config(repo, registry)
    before = bare_git(repo, "rev-parse", "main").strip()
    why = ("apps:deployment/b container app: cannot be changed in place: "
           "b.yaml:10: image continues past the reference")

    dry = scan(redis_conn, config, config.repos[0], dry_run=True)
    assert [c.describe() for c in dry.changes] == ["apps:deployment/a container app: v1 -> v2"]
    assert dry.skipped == [why] and dry.errors == []
    assert bare_git(repo, "rev-parse", "main").strip() == before

    result = scan(redis_conn, config, config.repos[0])
    assert [c.describe() for c in result.changes] == ["apps:deployment/a container app: v1 -> v2"]
    assert result.skipped == [why] and result.sha == bare_git(repo, "rev-parse", "main").strip()
    assert bare_git(repo, "diff", "--name-only", before, result.sha).split() == ["a.yaml"]
    assert bare_git(repo, "show", "main:a.yaml") == files["a.yaml"].replace(":v1", ":v2")
    assert bare_git(repo, "show", "main:b.yaml") == files["b.yaml"]

    again = scan(redis_conn, config, config.repos[0])  # the next scan: nothing to commit, same report
    assert again.sha is None and again.changes == [] and again.skipped == [why]
