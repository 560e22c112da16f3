"""A registry that cannot be read, or answers in another shape than the distribution API's,
fails only the containers whose images it holds: the scan still writes back what the other
registries allow, and the CLI reports it as a note, never a traceback (real registries, real
bare repo, the stack's Redis; a small stand-in for a misshapen registry)."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pullbridge.config import parse_config
from tests.images.helpers import NEW, OLD, automated_workload, bare_git, day, scan_beside_another_registry
from worker.images.scan import scan

PRIVATE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: private
  namespace: my-demo
  annotations: {{fluxcd.io/automated: "true"}}
spec:
  template:
    spec:
      containers:
        - name: app
          image: {image}:v1
"""


def _config(repo, registry, basic_registry):
    return parse_config({
        "repos": [{"name": "images-demo", "url": repo.file_url, "branch": repo.branch, "provider": "generic",
                   "secret_env": "PB_TEST_UNUSED_SECRET", "images": {"enabled": True}}],
        "images": {"registries": [
            {"host": registry.host, "insecure": True},
            {"host": basic_registry.host, "insecure": True, "username_env": "PB_TEST_UNSET_REG_USER",
             "password_env": "PB_TEST_UNSET_REG_PASSWORD"}]},
    })


def test_an_unset_credential_fails_its_registry_only(demo, registry, basic_registry, image_name, redis_conn,
                                                      monkeypatch, tmp_path, capsys, caplog):
    from pullbridge.cli import main

    monkeypatch.delenv("PB_TEST_UNSET_REG_USER", raising=False)
    monkeypatch.delenv("PB_TEST_UNSET_REG_PASSWORD", raising=False)
    repo, image, files = demo
    basic_registry.push_image(image_name, "v1", day(1))
    basic_registry.push_image(image_name, "v2", day(2))
    private = PRIVATE.format(image=f"{basic_registry.host}/{image_name}")
    repo.commit_and_push("a private image", {"private.yaml": private})
    registry.push_image(image_name, NEW, day(5))
    config = _config(repo, registry, basic_registry)
    why = (f"my-demo:deployment/private container app: {basic_registry.host}: credentials: "
           "environment variable PB_TEST_UNSET_REG_USER is not set")

    config_file = tmp_path / "pullbridge.yaml"
    config_file.write_text(json.dumps(config.model_dump(mode="json", exclude_defaults=True)))
    assert main(["images", "scan", "images-demo", "--dry-run", "--config", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert f"would change: my-demo:deployment/fluxdemo container flask: {OLD} -> {NEW}" in out
    assert f"note: {why}" in out

    with caplog.at_level(logging.INFO, logger="pullbridge.images"):
        result = scan(redis_conn, config, config.repos[0])
    assert result.errors == [why]
    assert f"image scan images-demo: {why}" in caplog.messages  # the worker's log shows it
    assert [c.describe() for c in result.changes] == [f"my-demo:deployment/fluxdemo container flask: {OLD} -> {NEW}"]
    assert result.sha == bare_git(repo, "rev-parse", "main").strip()
    assert f"{image}:{NEW}" in bare_git(repo, "show", "main:fluxdemo.yaml")


INDEX = "application/vnd.oci.image.index.v1+json"
AMD64 = {"os": "linux", "architecture": "amd64"}


@pytest.mark.parametrize("tags, manifest, why", [
    ({"tags": ["v1", None, "v2"]}, None, "tag list of team/app is not a list of tags"),
    ({"tags": ["v1", "v2"]}, ["not", "an", "object"], "manifest team/app:v1 is not a JSON object"),
    ({"tags": ["v1", "v2"]}, {"mediaType": INDEX, "manifests": ["sha256:" + "a" * 64]},
     "index team/app:v1 lists no image manifest"),
    # a registry (or a proxy before it) that answers every manifest request with the same index
    ({"tags": ["v1", "v2"]}, {"mediaType": INDEX, "manifests": [{"digest": "sha256:" + "b" * 64, "platform": AMD64}]},
     f"index team/app:sha256:{'b' * 64} lists no image manifest"),
])
def test_an_answer_not_of_the_documented_shape_fails_its_containers_only(demo, registry, image_name, redis_conn,
                                                                         tags, manifest, why):
    """A registry answering JSON of another shape (a bug, a proxy's page) is reported for the
    containers whose images it holds; it no longer raises out of the scan, losing the others."""

    class Misshapen(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = json.dumps(tags if self.path.startswith("/v2/team/app/tags/list") else manifest).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Misshapen)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        result = scan_beside_another_registry(host, {
            "misshapen.yaml": automated_workload("misshapen", f"{host}/team/app:v1", "glob:v*")},
            demo, registry, image_name, redis_conn)
        assert result.errors == [f"shop:deployment/misshapen container app: {host}: {why}"]
    finally:
        server.shutdown()
        server.server_close()
