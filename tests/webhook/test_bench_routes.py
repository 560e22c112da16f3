"""The routes ``bench/intake`` measures against: absent unless asked for; the
floor checks the signature before anything and records a signed push
durably, with the receiver's own ``request_sync``."""

from __future__ import annotations

import json

import pytest

from pullbridge import keys
from tests.webhook import payloads as P
from tests.webhook.conftest import secret
from tests.webhook.helpers import sync_jobs


@pytest.fixture
def bench_client(config, redis_conn):
    from webhook import create_app

    url = redis_conn.connection_pool.connection_kwargs
    app = create_app(config, redis_url=f"redis://{url['host']}:{url['port']}/{url['db']}", bench_noop=True)
    yield app.test_client()
    app.extensions["pullbridge"].conn.close()


def test_bench_routes_are_absent_unless_asked_for(client):
    assert client.post("/bench/noop").status_code == 404
    assert client.post("/bench/floor/gh", data=b"{}").status_code == 404


def test_noop_does_nothing(bench_client, redis_conn):
    assert bench_client.post("/bench/noop", data=b"anything").status_code == 204
    assert redis_conn.dbsize() == 0


def test_floor_rejects_a_wrong_signature_without_touching_redis(bench_client, redis_conn):
    body = json.dumps(P.github_push()).encode()
    headers = P.signed_headers("github", b"not-the-secret", body)
    answer = bench_client.post("/bench/floor/gh", data=body, headers=headers)
    assert answer.status_code == 401
    assert redis_conn.dbsize() == 0


def test_floor_records_a_signed_push_like_the_receiver(bench_client, redis_conn):
    payload = P.github_push(after=P.sha(7))
    body = json.dumps(payload).encode()
    headers = P.signed_headers("github", secret("PB_TEST_GITHUB_SECRET"), body)
    answer = bench_client.post("/bench/floor/gh", data=body, headers=headers)
    assert answer.status_code == 202
    job_id = answer.get_json()["job_id"]
    assert sync_jobs(redis_conn) == [job_id]
    assert redis_conn.zscore(keys.wanted("gh"), P.sha(7)) is not None
    delivery = headers["X-GitHub-Delivery"]
    assert redis_conn.get(keys.delivery("gh", delivery)) == job_id.encode()
