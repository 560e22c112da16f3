"""The sync applies ``*.json`` manifests as well as YAML ones, and the items of a ``kind: List``
(as ``kubectl get -o yaml`` writes them), so an automated workload written either way is
scanned and its image moved in place like any other, not silently passed over (real
docker-registry, real bare repo, the stack's Redis)."""

from __future__ import annotations

import json

from tests.images.helpers import automated_workload, bare_git, day, make_config
from worker.images.scan import scan


def scan_after_v2(repo, registry, image_name, redis_conn):
    """v1 and then v2 pushed to the registry, the repo scanned: shop/api (only) moved to v2."""
    registry.push_image(image_name, "v1", day(1))
    registry.push_image(image_name, "v2", day(2))
    config = make_config(repo, registry)
    result = scan(redis_conn, config, config.repos[0])
    assert [c.describe() for c in result.changes] == ["shop:deployment/api container app: v1 -> v2"]
    assert result.skipped == [] and result.errors == []
    return result


def test_an_automated_workload_in_a_json_file_has_its_image_moved_in_place(git_repo, registry, image_name,
                                                                            redis_conn):
    repo = git_repo("images-json")
    image = f"{registry.host}/{image_name}"
    workload = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "api", "namespace": "shop",
                             "annotations": {"fluxcd.io/automated": "true", "fluxcd.io/tag.app": "glob:v*"}},
                "spec": {"template": {"spec": {"containers": [{"name": "app", "image": f"{image}:v1"}]}}}}
    text = json.dumps(workload, indent=2) + "\n"
    repo.commit_and_push("a JSON workload", {"deploy/api.json": text})

    result = scan_after_v2(repo, registry, image_name, redis_conn)

    assert result.sha == bare_git(repo, "rev-parse", "main").strip()
    assert bare_git(repo, "show", "main:deploy/api.json") == text.replace(f"{image}:v1", f"{image}:v2")


def test_an_automated_workload_among_the_items_of_a_list_has_its_image_moved_in_place(git_repo, registry, image_name,
                                                                                       redis_conn):
    repo = git_repo("images-list")
    image = f"{registry.host}/{image_name}"
    items = [automated_workload("api", f"{image}:v1", "glob:v*"),
             automated_workload("pinned", f"{image}:v1", "glob:v*").replace('automated: "true"', 'automated: "false"')]
    text = "apiVersion: v1\nkind: List\nitems:\n" + "".join(
        "  - " + "\n    ".join(item.splitlines()) + "\n" for item in items)
    repo.commit_and_push("a List of workloads", {"deploy/exported.yaml": text})

    scan_after_v2(repo, registry, image_name, redis_conn)

    assert bare_git(repo, "show", "main:deploy/exported.yaml") == text.replace(f"{image}:v1", f"{image}:v2", 1)
