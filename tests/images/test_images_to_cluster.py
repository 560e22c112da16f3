"""Image automation's whole path: a new tag in the registry -> a write-back commit in Git ->
the normal sync job -> the new image in the API server (Git stays the source of truth)."""

from __future__ import annotations

import json

from kubernetes import client
from rq import Queue, SimpleWorker

from pullbridge import keys
from pullbridge.config import load_config
from pullbridge.queueing import request_sync
from tests.images.helpers import DEMO, NEW, OLD, bare_git, day, demo_manifest
from worker import history
from worker.images.scan import scan


def flask_image(kube, namespace: str) -> str:
    dep = client.AppsV1Api(kube).read_namespaced_deployment("fluxdemo", namespace)
    return next(c.image for c in dep.spec.template.spec.containers if c.name == "flask")


def test_a_new_tag_is_committed_to_git_and_then_applied_to_the_cluster(
        git_repo, registry, image_name, redis_conn, namespace, kube, tmp_path, monkeypatch):
    repo = git_repo("images-e2e")
    image = f"{registry.host}/{image_name}"
    in_ns = lambda text: text.replace("namespace: my-demo", f"namespace: {namespace}")  # noqa: E731
    repo.commit_and_push("demo", {
        "fluxdemo.yaml": in_ns(demo_manifest(f"{image}:{OLD}", f"{image}-nginx:1.27",
                                             {"flux.weave.works/automated": "'true'",
                                              "flux.weave.works/tag.flask": "glob:develop-v*"})),
        "nginx-conf.yaml": in_ns((DEMO / "nginx-conf.yaml").read_text()),
    })
    registry.push_image(image_name, OLD, day(1))
    registry.push_image(f"{image_name}-nginx", "1.27", day(1))
    path = tmp_path / "pullbridge.yaml"
    path.write_text(json.dumps({
        "worker": {"inventory_namespace": namespace},
        "repos": [{"name": "images-demo", "url": repo.file_url, "branch": repo.branch, "provider": "generic",
                   "secret_env": "PB_TEST_UNUSED_SECRET",
                   "images": {"enabled": True, "author_name": "Image Bot",
                              "author_email": "bot@pullbridge.invalid"}}],
        "images": {"registries": [{"host": registry.host, "insecure": True}]},
    }))
    monkeypatch.setenv("PULLBRIDGE_CONFIG", str(path))
    monkeypatch.setenv("PULLBRIDGE_CACHE_DIR", str(tmp_path / "mirrors"))
    config = load_config(path)
    repo_config = config.repos[0]
    worker = SimpleWorker([Queue(keys.SYNC_QUEUE, connection=redis_conn)], connection=redis_conn)

    request_sync(redis_conn, config, repo_config, None, reason="push")
    worker.work(burst=True)
    assert flask_image(kube, namespace) == f"{image}:{OLD}"

    registry.push_image(image_name, NEW, day(5))
    result = scan(redis_conn, config, repo_config)
    assert result.sha == bare_git(repo, "rev-parse", "main").strip()
    worker.work(burst=True)

    assert flask_image(kube, namespace) == f"{image}:{NEW}"
    assert history.repo_state(redis_conn, "images-demo")["applied_sha"] == result.sha
