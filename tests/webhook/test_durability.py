"""Deduplication, coalescing and the Redis-down path, against a real Redis.

The delivery id is claimed in the same transaction that records the sha and
queues the sync: these tests show a delivery is accepted exactly once, a
burst leaves one job wanting every sha, and a Redis failure claims nothing,
so the host's retry is taken.
"""

from __future__ import annotations

import json

import pytest
from rq import Queue

from pullbridge import keys
from tests.webhook import payloads as P
from tests.webhook.conftest import secret
from tests.webhook.helpers import post, sync_jobs


def test_same_delivery_twice_gives_one_job(client, redis_conn):
    payload = P.github_push(after=P.sha("dup"))
    first = post(client, "gh", payload, delivery="delivery-1")
    second = post(client, "gh", payload, delivery="delivery-1")
    assert first.status_code == 202
    assert second.status_code == 200 and second.json["status"] == "duplicate"
    assert second.json["job_id"] == first.json["job_id"]
    assert sync_jobs(redis_conn) == [first.json["job_id"]]
    ttl = redis_conn.pttl(keys.delivery("gh", "delivery-1"))
    assert 0 < ttl <= 3600 * 1000


def test_deliveries_without_an_id_dedup_on_the_body(client, redis_conn):
    body = json.dumps(P.generic_push()).encode()
    headers = P.signed_headers("generic", secret("PB_TEST_GENERIC_SECRET"), body)
    del headers["X-Delivery"]
    first = client.post("/hooks/generic", data=body, headers=headers)
    second = client.post("/hooks/generic", data=body, headers=headers)
    assert first.status_code == 202 and second.json["status"] == "duplicate"


def test_burst_of_pushes_coalesces_into_one_queued_job(client, redis_conn):
    shas = [P.sha(f"burst-{i}") for i in range(25)]
    answers = [post(client, "gh", P.github_push(after=s)) for s in shas]
    assert all(a.status_code == 202 for a in answers)
    job_ids = {a.json["job_id"] for a in answers}
    assert len(job_ids) == 1
    assert [a.json["coalesced"] for a in answers] == [False] + [True] * 24
    assert sync_jobs(redis_conn) == list(job_ids)
    wanted = {m.decode() for m in redis_conn.zrange(keys.wanted("gh"), 0, -1)}
    assert wanted == set(shas)


def test_a_job_waiting_for_hours_still_takes_every_later_push(client, redis_conn):
    """The queued marker never expires while its job waits (an hour's expiry queued a
    second sync every hour the workers were down); the periodic job frees a dead one."""
    from pullbridge.queueing import release_dead_marker

    first = post(client, "gh", P.github_push(after=P.sha("early"))).json["job_id"]
    assert redis_conn.pttl(keys.queued("gh")) == -1
    assert release_dead_marker(redis_conn, "gh", 10) is None  # waiting in its queue: alive
    later = post(client, "gh", P.github_push(after=P.sha("hours later"))).json
    assert later["job_id"] == first and later["coalesced"] is True
    assert sync_jobs(redis_conn) == [first]


def test_after_the_worker_takes_the_job_a_new_push_queues_again(client, redis_conn):
    from pullbridge.queueing import take_wanted

    first = post(client, "gh", P.github_push(after=P.sha(1))).json["job_id"]
    taken = take_wanted(redis_conn, "gh", first)
    assert [s for s, _ in taken] == [P.sha(1)]
    second = post(client, "gh", P.github_push(after=P.sha(2))).json
    assert second["job_id"] != first and second["coalesced"] is False


def test_redis_failure_inside_the_transaction_claims_nothing(client, redis_conn, monkeypatch):
    """Dedup key and job are one transaction: a failure leaves no key, so the retry is taken."""
    import redis as redis_lib

    def broken(self, *a, **k):
        raise redis_lib.ConnectionError("connection lost while queueing")

    monkeypatch.setattr(Queue, "enqueue_call", broken)
    payload = P.github_push(after=P.sha("retry"))
    failed = post(client, "gh", payload, delivery="retry-me")
    assert failed.status_code == 503 and failed.headers["Retry-After"]
    assert redis_conn.exists(keys.delivery("gh", "retry-me")) == 0
    assert redis_conn.zcard(keys.wanted("gh")) == 0
    monkeypatch.undo()
    retried = post(client, "gh", payload, delivery="retry-me")
    assert retried.status_code == 202 and sync_jobs(redis_conn) == [retried.json["job_id"]]


def test_redis_down_is_503_with_retry_after_and_nothing_acknowledged(config, throwaway_redis):
    from webhook import create_app

    app = create_app(config, redis_url=throwaway_redis.url)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    throwaway_redis.stop()
    body = json.dumps(P.github_push()).encode()
    response = client.post("/hooks/gh", data=body, headers=P.signed_headers(
        "github", secret("PB_TEST_GITHUB_SECRET"), body, delivery="while-down"))
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.json["error"] == "unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"]


def test_redis_back_after_503_takes_the_retry(config, throwaway_redis):
    from tests.webhook.conftest import RedisServer
    from webhook import create_app

    port = throwaway_redis.port
    app = create_app(config, redis_url=throwaway_redis.url)
    client = app.test_client()
    body = json.dumps(P.github_push()).encode()
    headers = P.signed_headers("github", secret("PB_TEST_GITHUB_SECRET"), body, delivery="d-503")
    throwaway_redis.stop()
    assert client.post("/hooks/gh", data=body, headers=headers).status_code == 503
    revived = RedisServer(port=port)
    try:
        response = client.post("/hooks/gh", data=body, headers=headers)
        assert response.status_code == 202
    finally:
        revived.stop()


def test_concurrent_redeliveries_and_pushes_stay_one_job(app, redis_conn):
    """Threads racing on an empty queue: one job, one acceptance per delivery id."""
    from concurrent.futures import ThreadPoolExecutor

    shas = [P.sha(f"race-{i}") for i in range(8)]

    def deliver(i):
        client = app.test_client()
        return post(client, "gh", P.github_push(after=shas[i % 8]), delivery=f"race-{i % 8}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(deliver, range(32)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(202) == 8 and statuses.count(200) == 24  # 8 ids, each accepted once
    assert len({a.json["job_id"] for a in answers}) == 1
    assert sync_jobs(redis_conn) == [answers[0].json["job_id"]]
    assert {m.decode() for m in redis_conn.zrange(keys.wanted("gh"), 0, -1)} == set(shas)


@pytest.mark.parametrize("refusal, error", [
    (("REPLICAOF", "127.0.0.1", "1"), "ReadOnlyError"),  # demoted: a replica (of nothing here)
    (("CONFIG", "SET", "min-replicas-to-write", "1"), "ResponseError"),  # NOREPLICAS
])
def test_readyz_is_503_while_redis_answers_but_refuses_writes(config, throwaway_redis, refusal, error):
    """A Redis that answers PING but takes no write makes every push a 503: not ready."""
    from redis import Redis

    from webhook import create_app

    app = create_app(config, redis_url=throwaway_redis.url)
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json == {"status": "ok", "redis": "ok"}
    admin = Redis.from_url(throwaway_redis.url)
    admin.execute_command(*refusal)
    assert admin.ping()  # it still answers
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json == {"status": "unavailable", "redis": error}
    assert int(ready.headers["Retry-After"]) > 0
    body = json.dumps(P.github_push()).encode()
    push = client.post("/hooks/gh", data=body, headers=P.signed_headers(
        "github", secret("PB_TEST_GITHUB_SECRET"), body))
    assert push.status_code == 503  # what readiness now predicts

