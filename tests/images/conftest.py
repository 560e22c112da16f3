"""Fixtures for image automation: real docker-registry processes on loopback."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

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
