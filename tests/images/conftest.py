"""Fixtures for image automation: real docker-registry processes on loopback."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from tests.images.helpers import DEMO, OLD, day, demo_manifest
from tests.images.registry_harness import REGISTRY_BIN, Registry, TokenServer


def _need_registry():
    if not (shutil.which("docker-registry") or os.path.exists(REGISTRY_BIN)):
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)")


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """An open registry (no auth) shared by the session; tests use their own image names."""
    _need_registry()
    reg = Registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory):
    """A registry behind htpasswd basic auth (user 'robot')."""
    _need_registry()
    password = uuid.uuid4().hex
    reg = Registry(tmp_path_factory.mktemp("registry-basic"), htpasswd=("robot", password))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    """A registry behind token auth, with a token server that checks basic credentials."""
    _need_registry()
    tmp = tmp_path_factory.mktemp("registry-token")
    tokens = TokenServer(tmp, service="pullbridge-test-registry", username="puller", password=uuid.uuid4().hex)
    reg = Registry(tmp, token=tokens)
    yield reg
    reg.stop()
    tokens.stop()


@pytest.fixture
def image_name():
    return f"weaveworks/fluxdemo-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def demo(git_repo, registry, image_name):
    """A repo holding the demo (fluxdemo on our registry at develop-v1.8.0, glob:develop-v*)."""
    repo = git_repo("images-demo")
    image = f"{registry.host}/{image_name}"
    files = {"namespace.yaml": (DEMO / "namespace.yaml").read_text(),
             "nginx-conf.yaml": (DEMO / "nginx-conf.yaml").read_text(),
             "fluxdemo.yaml": demo_manifest(f"{image}:{OLD}", f"{image}-nginx:1.27",
                                            {"flux.weave.works/automated": "'true'",
                                             "flux.weave.works/tag.flask": "glob:develop-v*"})}
    repo.commit_and_push("demo", files)
    registry.push_image(image_name, OLD, day(1))
    registry.push_image(f"{image_name}-nginx", "1.27", day(1))
    return repo, image, files


@pytest.fixture(autouse=True)
def only_loopback_registries(monkeypatch):
    """Fail a test that would make the registry client reach beyond this machine."""
    from worker.images.registry import RegistryClient

    real_get = RegistryClient.get

    def guarded(self, path_or_url, scope, **kw):
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self.base + path_or_url
        assert url.startswith("http://127.0.0.1:"), f"test tried to reach {url.split('/')[2]}"
        return real_get(self, path_or_url, scope, **kw)

    monkeypatch.setattr(RegistryClient, "get", guarded)
