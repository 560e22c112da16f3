"""Shared helpers for the image automation tests: the demo manifest on a local registry,
a config for it, reading the bare repo."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

from pullbridge.config import parse_config

DEMO = Path(__file__).resolve().parents[2] / "pullbridge" / "demo" / "manifests"
OLD, NEW = "develop-v1.8.0", "develop-v1.9.0"


def day(n: int) -> datetime:
    return datetime(2026, 5, n, 12, 0, tzinfo=timezone.utc)


AUTOMATED_WORKLOAD = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: shop
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/tag.{container}: {tag_filter}
spec:
  template:
    spec:
      containers:
        - name: app
          image: {image}
"""


def automated_workload(name: str, image: str, tag_filter: str, container: str = "app") -> str:
    """A Deployment ``shop/<name>`` whose one container, ``app``, runs ``image``, automated with
    ``tag.<container>: <tag_filter>`` (a ``container`` other than ``app`` names none of its own)."""
    return AUTOMATED_WORKLOAD.format(name=name, image=image, tag_filter=tag_filter, container=container)


def scan_beside_another_registry(host: str, workloads: dict[str, str], demo, registry, image_name, redis_conn):
    """The demo's image moves on ``registry``; ``workloads`` (file name -> manifest) run images on
    ``host``, a second configured registry.  Scanned: the demo's image moves whatever became of
    ``host``'s (the result says that)."""
    from worker.images.scan import scan

    repo, image, _ = demo
    repo.commit_and_push(f"images on {host}", workloads)
    registry.push_image(image_name, NEW, day(5))
    config = parse_config({
        "repos": [{"name": "images-demo", "url": repo.file_url, "branch": repo.branch, "provider": "generic",
                   "secret_env": "PB_TEST_UNUSED_SECRET", "images": {"enabled": True}}],
        "images": {"registries": [{"host": registry.host, "insecure": True}, {"host": host, "insecure": True}]}})
    result = scan(redis_conn, config, config.repos[0])
    assert [c.describe() for c in result.changes] == [f"my-demo:deployment/fluxdemo container flask: {OLD} -> {NEW}"]
    assert f"{image}:{NEW}" in bare_git(repo, "show", "main:fluxdemo.yaml")
    return result


def demo_manifest(image: str, nginx_image: str, annotations: dict[str, str]) -> str:
    """The demo's fluxdemo Deployment with both images on our registry and Flux annotations.

    Both containers move to the loopback registry: an automated workload's
    containers without a tag filter follow ``glob:*`` (as in Flux v1), and
    tests must never reach a public registry.
    """
    text = (DEMO / "fluxdemo.yaml").read_text()
    text = text.replace("docker.io/weaveworks/fluxdemo:develop-v1.8.0", image)
    text = text.replace("image: nginx:1.27", f"image: {nginx_image}")
    lines = "".join(f"    {k}: {v}\n" for k, v in annotations.items())
    return text.replace("  labels:\n    app: fluxdemo\nspec:", f"  annotations:\n{lines}  labels:\n"
                        "    app: fluxdemo\nspec:", 1)


def bare_git(repo, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo.bare), *args], check=True, capture_output=True,
                          text=True).stdout


def make_config(repo, registry, url: str | None = None, **images):
    return parse_config({
        "repos": [{"name": "images-demo", "url": url or repo.file_url, "branch": repo.branch, "provider": "generic",
                   "secret_env": "PB_TEST_UNUSED_SECRET",
                   "images": {"enabled": True, "author_name": "Image Bot",
                              "author_email": "bot@pullbridge.invalid", **images}}],
        "images": {"registries": [{"host": registry.host, "insecure": True}]},
    })
