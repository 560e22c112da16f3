"""A registry that takes connections and never answers (a hung process, a dropped route)
costs the scan one timeout, not one per image it holds: its other reads in that scan fail
at once with the reason, and the images of the other registries are still written back
within the job's time (real docker-registry, real bare repo, the stack's Redis)."""

from __future__ import annotations

import socket
import threading

from pullbridge.config import parse_config
from tests.images.helpers import NEW, OLD, automated_workload, bare_git, day
from worker.images import registry as registry_module
from worker.images.scan import scan


class SilentRegistry:
    """Accepts TCP connections on loopback, holds them open and never sends a byte."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_a_registry_that_never_answers_is_waited_for_once_per_scan(demo, registry, image_name, redis_conn,
                                                                   monkeypatch):
    monkeypatch.setattr(registry_module, "TIMEOUT", 0.5)  # the real 30 s, shortened: what counts is how often
    silent = SilentRegistry()
    try:
        repo, image, files = demo
        repo.commit_and_push("three images on a silent registry", {
            f"silent-{n}.yaml": automated_workload(f"silent-{n}", f"{silent.host}/team/app-{n}:v1", "glob:v*")
            for n in range(3)})
        registry.push_image(image_name, NEW, day(5))
        config = parse_config({
            "repos": [{"name": "images-demo", "url": repo.file_url, "branch": repo.branch, "provider": "generic",
                       "secret_env": "PB_TEST_UNUSED_SECRET", "images": {"enabled": True}}],
            "images": {"registries": [{"host": registry.host, "insecure": True},
                                      {"host": silent.host, "insecure": True}]}})

        result = scan(redis_conn, config, config.repos[0])

        assert len(silent.accepted) == 1
        first = f"ReadTimeout reading http://{silent.host}/v2/team/app-0/tags/list"
        assert result.errors == [f"shop:deployment/silent-0 container app: {silent.host}: {first}"] + [
            f"shop:deployment/silent-{n} container app: {silent.host}: not read, it did not answer earlier ({first})"
            for n in (1, 2)]
        assert [c.describe() for c in result.changes] == [f"my-demo:deployment/fluxdemo container flask: {OLD} -> {NEW}"]
        assert f"{image}:{NEW}" in bare_git(repo, "show", "main:fluxdemo.yaml")
    finally:
        silent.close()
