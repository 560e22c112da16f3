"""Fixtures for the receiver's tests: a throwaway redis-server, a configuration
with one repository per provider, and the Flask ``app`` / ``client``.

Redis is the shared stack's (``redis_conn`` from tests/conftest.py: the DB
numbered ``PULLBRIDGE_TEST_REDIS_DB``, flushed before each test);
``throwaway_redis`` starts a private redis-server a test may kill (the 503
path) and the gunicorn tests run against one of their own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import redis

from pullbridge.config import parse_config

SECRETS = {
    "PB_TEST_GITHUB_SECRET": "gh-secret-\u00e9",
    "PB_TEST_GITLAB_TOKEN": "gl-token",
    "PB_TEST_GITLAB_SIGNING": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "PB_TEST_GITEA_SECRET": "gitea-secret",
    "PB_TEST_BBS_SECRET": "bbs-secret",
    "PB_TEST_GENERIC_SECRET": "generic-secret",
    "PB_TEST_STATUS_TOKEN": "status-token",
}


def secret(env: str) -> bytes:
    return SECRETS[env].encode()  # as pullbridge.config.Secret.value() reads it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server on a free loopback port; ``stop()`` kills it."""

    def __init__(self, port: int | None = None, extra: tuple[str, ...] = ()):
        if not shutil.which("redis-server"):
            pytest.skip("redis-server is not installed")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="pb-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/{os.environ.get('PULLBRIDGE_TEST_REDIS_DB', '1')}"
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.025)
        else:
            self.stop()
            raise RuntimeError("redis-server did not start")
        client.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def throwaway_redis():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _secrets():
    old = {k: os.environ.get(k) for k in SECRETS}
    os.environ.update(SECRETS)
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def repo(name, provider, secret_env, **extra):
    return {"name": name, "url": f"https://git.example.com/{name}.git", "provider": provider,
            "secret_env": secret_env, "branch": "main", "path": "deploy", **extra}


CONFIG = {
    "server": {"max_body_bytes": 64 * 1024, "dedup_ttl": "1h", "signature_tolerance": "5m"},
    "repos": [
        repo("gh", "github", "PB_TEST_GITHUB_SECRET", repository="octo-org/deploy"),
        repo("gh-from-url", "github", "PB_TEST_GITHUB_SECRET", url="https://github.com/octo-org/deploy.git"),
        repo("gh-paths", "github", "PB_TEST_GITHUB_SECRET", repository="octo-org/deploy",
             paths=["deploy/", "*.kustomization"]),
        repo("gh-status", "github", "PB_TEST_GITHUB_SECRET", repository="octo-org/deploy",
             status={"api_url": "https://api.github.com", "token_env": "PB_TEST_STATUS_TOKEN"}),
        repo("gl", "gitlab", "PB_TEST_GITLAB_TOKEN", repository="group/deploy"),
        repo("gl-paths", "gitlab", "PB_TEST_GITLAB_TOKEN", repository="group/deploy", paths=["deploy/"]),
        repo("gl-signed", "gitlab", "PB_TEST_GITLAB_SIGNING", repository="group/deploy"),
        # a GitLab served under a relative URL root: repository derived from url, or given
        repo("gl-root", "gitlab", "PB_TEST_GITLAB_TOKEN", url="https://git.example.com/gitlab/group/deploy.git"),
        repo("gl-root-given", "gitlab", "PB_TEST_GITLAB_TOKEN", url="https://git.example.com/gitlab/group/deploy.git",
             repository="gitlab/group/deploy"),
        repo("gitea", "gitea", "PB_TEST_GITEA_SECRET", repository="gitea/deploy"),
        repo("gitea-paths", "gitea", "PB_TEST_GITEA_SECRET", repository="gitea/deploy", paths=["deploy/"]),
        repo("bbs", "bitbucket-server", "PB_TEST_BBS_SECRET", repository="PROJ/deploy"),
        repo("generic", "generic", "PB_TEST_GENERIC_SECRET", repository="team/deploy"),
    ],
}


@pytest.fixture
def config():
    return parse_config(CONFIG)


@pytest.fixture
def app(config, redis_conn):
    from webhook import create_app

    url = redis_conn.connection_pool.connection_kwargs
    app = create_app(config, redis_url=f"redis://{url['host']}:{url['port']}/{url['db']}")
    app.testing = True
    yield app
    app.extensions["pullbridge"].conn.close()


@pytest.fixture
def client(app):
    return app.test_client()
