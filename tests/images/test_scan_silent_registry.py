"""A registry (or its token service) that takes connections and never answers (a hung
process, a dropped route) costs the scan one timeout, not one per image it holds: its other
reads in that scan fail at once with the reason, and the images of the other registries are
still written back within the job's time (real docker-registry, real bare repo, the stack's
Redis)."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pullbridge.image_config import RegistryConfig
from tests.images.helpers import automated_workload, scan_beside_another_registry
from tests.images.registry_harness import Registry, TokenServer
from worker.images import registry as registry_module
from worker.images.registry import RegistryClient, RegistryError


class SilentRegistry:
    """Listens on loopback and never accepts: the kernel completes each connection into the
    backlog, where the client waits for an answer that never comes."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def connections(self) -> int:
        """How many connections were made to it (taken out of the backlog, which they all wait in)."""
        self.sock.setblocking(False)
        made = 0
        while True:
            try:
                self.sock.accept()[0].close()
            except BlockingIOError:
                return made
            made += 1

    def close(self):
        self.sock.close()


def _scan_with_images_on(host: str, demo, registry, image_name, redis_conn):
    """Three automated workloads run images on ``host``."""
    return scan_beside_another_registry(host, {
        f"silent-{n}.yaml": automated_workload(f"silent-{n}", f"{host}/team/app-{n}:v1", "glob:v*")
        for n in range(3)}, demo, registry, image_name, redis_conn)


def _errors(host: str, first: str) -> list[str]:
    return [f"shop:deployment/silent-0 container app: {host}: {first}"] + [
        f"shop:deployment/silent-{n} container app: {host}: not read, it did not answer earlier ({first})"
        for n in (1, 2)]


def test_a_registry_that_never_answers_is_waited_for_once_per_scan(demo, registry, image_name, redis_conn,
                                                                   monkeypatch):
    monkeypatch.setattr(registry_module, "TIMEOUT", 0.5)  # the real 30 s, shortened: what counts is how often
    silent = SilentRegistry()
    try:
        result = _scan_with_images_on(silent.host, demo, registry, image_name, redis_conn)
        assert silent.connections() == 1
        assert result.errors == _errors(silent.host, f"ReadTimeout reading http://{silent.host}/v2/team/app-0/tags/list")
    finally:
        silent.close()


def test_a_token_service_that_never_answers_is_waited_for_once_per_scan(demo, registry, image_name, redis_conn,
                                                                        monkeypatch, tmp_path):
    monkeypatch.setattr(registry_module, "TIMEOUT", 0.5)
    silent = SilentRegistry()
    tokens = TokenServer(tmp_path, service="pullbridge-test-registry", username="puller", password=uuid.uuid4().hex)
    tokens.realm = f"http://{silent.host}/token"  # the registry sends clients there, and it never answers
    guarded = Registry(tmp_path, token=tokens)
    try:
        result = _scan_with_images_on(guarded.host, demo, registry, image_name, redis_conn)
        assert silent.connections() == 1
        assert result.errors == _errors(guarded.host, "token request failed: ReadTimeout")
    finally:
        guarded.stop()
        tokens.stop()
        silent.close()


def test_a_next_page_on_a_host_that_does_not_answer_fails_that_list_only():
    """A registry whose ``Link`` for one image names another host (a proxy's inner name) still
    answers for its other images: only the host a read was sent to counts as silent."""
    closed = SilentRegistry()
    closed.close()  # nothing listens there now: connections are refused

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            name = self.path.split("/")[2]
            body = json.dumps({"name": name, "tags": ["v1"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if name == "paged":
                self.send_header("Link", f'<http://{closed.host}/v2/paged/tags/list?n=1&last=v1>; rel="next"')
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        client = RegistryClient(host, RegistryConfig(host=host, insecure=True))
        with pytest.raises(RegistryError, match=f"ConnectionError reading http://{closed.host}/v2/paged/tags/list"):
            client.list_tags("paged")
        assert client.list_tags("single") == ["v1"]
    finally:
        server.shutdown()
        server.server_close()
