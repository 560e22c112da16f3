"""Fixtures for the receiver's tests: a throwaway redis-server, a configuration
with one repository per provider, and the Flask ``app`` / ``client``.

Redis is the shared stack's (``redis_conn`` from tests/conftest.py: the DB
numbered ``PULLBRIDGE_TEST_REDIS_DB``, flushed before each test);
``throwaway_redis`` starts a private redis-server a test may kill (the 503
path); ``running_web`` starts the Procfile's real web server, which the
gunicorn tests run against (with a Redis of its own, or the test's).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis
import requests

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


ROOT = Path(__file__).resolve().parents[2]
CAP = 4096  # the web server's server.max_body_bytes, unless a test gives server settings of its own
GENEROUS = 60  # seconds: only so a broken server cannot hang the suite


def procfile_web(app: str | None = None) -> list[str]:
    """The Procfile's web command; serving ``app`` (a gunicorn app spec) instead of its own, if given."""
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    argv = shlex.split(line[len("web:"):])
    if app is not None:
        argv[-1] = app
    # the same command, with this interpreter's gunicorn whatever PATH says
    return [sys.executable, "-m", "gunicorn", *argv[1:]] if argv[0] == "gunicorn" else argv


@contextlib.contextmanager
def running_web(tmp: Path, workers: int, extra_env: dict[str, str] | None = None,
                app: str | None = None, server: dict | None = None, redis_url: str | None = None,
                images: dict | None = None):
    """The Procfile's web command with ``workers`` processes, on a free port, for repo "gh" with the
    ``server`` settings (``max_body_bytes`` CAP if not given) and the ``images`` section (registry
    hooks), if given, with the Redis at ``redis_url`` or one of
    its own (and ``extra_env`` added to its environment; serving ``app`` instead of the receiver, if
    given); yields its base URL, port and log file, and stops it (and its own Redis) afterwards."""
    own_redis = RedisServer() if redis_url is None else None
    config = tmp / "pullbridge.yaml"
    config.write_text(
        f"server: {json.dumps(server or {'max_body_bytes': CAP})}\n"
        "repos:\n"
        "  - {name: gh, url: 'https://github.com/octo-org/deploy.git', provider: github,\n"
        "     repository: octo-org/deploy, secret_env: PB_TEST_GITHUB_SECRET}\n"
        + (f"images: {json.dumps(images)}\n" if images else ""))
    port = free_port()
    env = {**os.environ, **SECRETS, "PORT": str(port), "WEB_HOST": "127.0.0.1", "PULLBRIDGE_CONFIG": str(config),
           "REDIS_URL": redis_url or own_redis.url, "WEB_CONCURRENCY": str(workers), "GUNICORN_THREADS": "2",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"), **(extra_env or {})}
    log = open(tmp / "web.log", "w")
    proc = subprocess.Popen(procfile_web(app), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if requests.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still booting
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not come up:\n" + (tmp / "web.log").read_text()[-2000:])
        if proc.poll() is not None:
            pytest.fail("gunicorn exited:\n" + (tmp / "web.log").read_text()[-2000:])
        yield base, port, tmp / "web.log"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=GENEROUS)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if own_redis is not None:
            own_redis.stop()


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
