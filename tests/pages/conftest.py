"""Fixtures for the page tests: an app on the stack's Redis with an operator
token, real sync records (``worker.history.save``) and real failed RQ jobs."""

from __future__ import annotations

import os

import pytest
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry

from pullbridge import keys
from pullbridge.config import parse_config
from worker import history

OPERATOR_ENV = "PB_TEST_OPERATOR_TOKEN"
OPERATOR_TOKEN = "op-token-9f2c41e7d0"
WEBHOOK_SECRET = "hook-secret-7d1e0a"


def redis_url(conn) -> str:
    kw = conn.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/{kw['db']}"


def base_config(**server) -> dict:
    return {
        "server": {"operator_token_env": OPERATOR_ENV, **server},
        "repos": [
            {"name": "shop", "url": "https://github.com/acme/shop-deploy.git", "provider": "github",
             "secret_env": "PB_TEST_PAGES_SECRET", "branch": "main"},
            {"name": "infra", "url": "git@gitlab.example.com:ops/infra.git", "provider": "gitlab",
             "secret_env": "PB_TEST_PAGES_SECRET"},
        ],
    }


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv(OPERATOR_ENV, OPERATOR_TOKEN)
    monkeypatch.setenv("PB_TEST_PAGES_SECRET", WEBHOOK_SECRET)


@pytest.fixture
def make_app(redis_conn):
    made = []

    def make(data: dict | None = None):
        from webhook import create_app

        app = create_app(parse_config(data or base_config()), redis_url=redis_url(redis_conn))
        app.testing = True
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["pullbridge"].conn.close()


@pytest.fixture
def client(make_app):
    return make_app().test_client()


def save_record(conn, repo: str = "shop", result: str = "success", sha: str = "ab" * 20, **fields):
    record = history.SyncRecord(repo, fields.pop("reason", "push"), fields.pop("delivery", "d-1"), sha=sha)
    record.add(fields.pop("changes", []))
    for phase in fields.pop("phases", ("fetch", "render", "apply", "prune")):
        record.phase(phase)
    record.result = result
    for name, value in fields.items():
        setattr(record, name, value)
    history.save(conn, record, applied_sha=sha if result == "success" else None)
    return record


def failed_job(conn, message: str, queue_name: str = keys.STATUS_QUEUE, description: str = "status test"):
    """A real failed RQ job: enqueued, run by an RQ worker, raised."""
    queue = Queue(queue_name, connection=conn)
    job = queue.enqueue("tests.pages.jobs.boom", message, description=description)
    SimpleWorker([queue], connection=conn).work(burst=True)
    assert job.id in FailedJobRegistry(queue=queue)
    return job


def login(client, **request) -> str:
    """Log the test client in (``request``: more arguments of its requests, as ``headers``);
    returns the CSRF token the queue page carries."""
    answer = client.post("/login", data={"token": OPERATOR_TOKEN, "next": "/queue"}, **request)
    assert answer.status_code == 303, answer.data
    page = client.get("/queue", **request).data.decode()
    marker = 'name="csrf_token" value="'
    start = page.index(marker) + len(marker)
    return page[start:page.index('"', start)]


@pytest.fixture
def no_operator_token(monkeypatch):
    monkeypatch.delenv(OPERATOR_ENV, raising=False)
    yield
    os.environ[OPERATOR_ENV] = OPERATOR_TOKEN


@pytest.fixture
def throwaway_redis():
    from tests.webhook.conftest import RedisServer

    server = RedisServer()
    yield server
    server.stop()
