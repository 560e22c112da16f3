"""A slow Redis: every push is answered within ``server.queue_timeout`` after its body
was read, before the git host stops waiting (10 s at GitHub and GitLab), and no answer
claims what Redis did not do.

Redis is made slow for real: a private redis-server stopped with SIGSTOP (it answers
no one, as under a stalled disk) until the test wakes it with SIGCONT, only once it has
the answer it waits for.  So no clock decides a verdict: an answer that came at all came
while Redis was asleep.  The receiver's own socket timeout is an hour here, so nothing
but the push's deadline can answer it while Redis sleeps.  What Redis did once it woke
up is checked after.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from redis import Redis
from rq import Queue

from pullbridge import keys
from pullbridge.config import parse_config
from tests.webhook import payloads as P
from tests.webhook.conftest import CONFIG, GENEROUS, RedisServer, running_web, secret
from tests.webhook.helpers import sync_jobs

BUDGET_SECONDS = 2  # server.queue_timeout here: the pushes meant to be queued have that long
BUDGET = f"{BUDGET_SECONDS}s"
SOCKET_TIMEOUT = "?socket_timeout=3600"  # the receiver's Redis client: only the deadline ends a wait


class Sleeper:
    """Stops a private redis-server (SIGSTOP) until ``wake()`` (SIGCONT)."""

    def __init__(self, server: RedisServer):
        self.pid = server.proc.pid

    def fall_asleep(self) -> "Sleeper":
        os.kill(self.pid, signal.SIGSTOP)
        stat = Path(f"/proc/{self.pid}/stat")
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "T":  # stopped: it answers no one now
            time.sleep(0.001)
        return self

    def wake(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def after(self, call):
        """``call``, made to put Redis to sleep once it has returned."""
        def then_sleep(*args, **kwargs):
            answer = call(*args, **kwargs)
            self.fall_asleep()
            return answer
        return then_sleep


def telling(finished: threading.Event, call):
    """``call``, made to set ``finished`` once it has returned or raised."""
    def and_tell(*args, **kwargs):
        try:
            return call(*args, **kwargs)
        finally:
            finished.set()
    return and_tell


def push(client, after: str, delivery: str, name: str = "gh-status"):
    body = json.dumps(P.github_push(after=after)).encode()
    return client.post(f"/hooks/{name}", data=body, headers=P.signed_headers(
        "github", secret("PB_TEST_GITHUB_SECRET"), body, delivery=delivery))


@pytest.fixture
def client(throwaway_redis):
    from webhook import create_app

    app = create_app(parse_config({**CONFIG, "server": {**CONFIG["server"], "queue_timeout": BUDGET}}),
                     redis_url=throwaway_redis.url + SOCKET_TIMEOUT)
    yield app.test_client()
    app.extensions["pullbridge"].conn.close()


def test_a_push_waiting_behind_a_sleeping_redis_is_503_in_time_and_its_retry_is_one_job(client, throwaway_redis):
    """The common case (a sync already queued, so the group commit's script): the answer
    comes at the budget; the script, already sent, may run once Redis wakes, and then the
    host's redelivery is a duplicate: one job, one recorded sha, whichever happened."""
    conn = Redis.from_url(throwaway_redis.url)
    first = push(client, P.sha(1), "before-sleep")
    assert first.status_code == 202
    sleeper = Sleeper(throwaway_redis).fall_asleep()
    late = push(client, P.sha(2), "while-asleep")  # answered while Redis sleeps
    assert late.status_code == 503 and int(late.headers["Retry-After"]) > 0
    assert late.json["error"] == "unavailable"
    assert late.json["message"].startswith(
        f"Redis did not answer in time for this delivery (server.queue_timeout {BUDGET})")
    sleeper.wake()
    again = push(client, P.sha(2), "while-asleep")
    assert again.status_code in (200, 202), again.json
    assert again.json["job_id"] == first.json["job_id"] and sync_jobs(conn) == [first.json["job_id"]]
    assert conn.zscore(keys.wanted("gh-status"), P.sha(2)) is not None


def test_a_push_that_must_queue_a_new_job_is_503_in_time_and_queues_nothing_after(client, throwaway_redis,
                                                                                  monkeypatch):
    """No sync queued yet: Redis falls asleep between the coalescing script and the
    transaction that queues a job.  The answer still comes at the budget, and the
    transaction, left running on its helper thread, sends no write after it: nothing is
    recorded, so the retry is taken as new."""
    from pullbridge import queueing

    conn = Redis.from_url(throwaway_redis.url)
    coalesce = queueing._coalesce
    sleeper = Sleeper(throwaway_redis)
    finished = threading.Event()
    monkeypatch.setattr(queueing, "_coalesce", sleeper.after(coalesce))
    monkeypatch.setattr(queueing, "_enqueue", telling(finished, queueing._enqueue))
    late = push(client, P.sha(3), "new-job")  # answered while Redis sleeps
    assert late.status_code == 503 and int(late.headers["Retry-After"]) > 0
    sleeper.wake()
    assert finished.wait(GENEROUS)  # the transaction gave up once Redis answered its WATCH
    assert sync_jobs(conn) == [] and not conn.exists(keys.delivery("gh-status", "new-job"))
    monkeypatch.setattr(queueing, "_coalesce", coalesce)
    retried = push(client, P.sha(3), "new-job")
    assert retried.status_code == 202 and sync_jobs(conn) == [retried.json["job_id"]]


def test_a_queued_push_whose_pending_status_is_stuck_is_202_in_time_and_queues_no_status_after(
        client, throwaway_redis, monkeypatch):
    """The sync is durable; Redis falls asleep before the pending commit status is queued.
    The push is still answered 202 at the budget, saying the status was not confirmed.  The
    status, left running on its helper thread, queues no job once Redis wakes: its first
    write (the status' sequence number) was on its way, the second is not sent."""
    import worker.status
    from webhook import intake

    conn = Redis.from_url(throwaway_redis.url)
    sleeper = Sleeper(throwaway_redis)
    finished = threading.Event()
    monkeypatch.setattr(intake, "request_sync", sleeper.after(intake.request_sync))
    monkeypatch.setattr(worker.status, "enqueue_status", telling(finished, worker.status.enqueue_status))
    response = push(client, P.sha(4), "status-stuck")  # answered while Redis sleeps
    assert response.status_code == 202 and response.json["commit_status"] == "not confirmed in time"
    sleeper.wake()
    assert finished.wait(GENEROUS)  # the status gave up once Redis answered its first write
    assert sync_jobs(conn) == [response.json["job_id"]]
    assert Queue(keys.STATUS_QUEUE, connection=conn).count == 0


def procfile_web_with_budget(tmp_path: Path, redis_server: RedisServer):
    """The Procfile's web process (gevent, where the helper threads are greenlets), one
    worker, ``server.queue_timeout`` the BUDGET, on ``redis_server``; its base URL, port and log."""
    return running_web(tmp_path, workers=1, server={"queue_timeout": BUDGET},
                       redis_url=redis_server.url + SOCKET_TIMEOUT)


def test_under_gunicorns_gevent_worker_a_push_is_answered_in_time_too(tmp_path, throwaway_redis):
    """Under the Procfile's web process, not the test client: a push to a Redis that
    sleeps is 503 before Redis wakes."""
    with procfile_web_with_budget(tmp_path, throwaway_redis) as (base, _, _), requests.Session() as http:
        http.headers["Connection"] = "close"  # no keep-alive connection for the server's shutdown to wait out
        assert signed_post(http, base, P.sha(5)).status_code == 202
        sleeper = Sleeper(throwaway_redis).fall_asleep()
        late = signed_post(http, base, P.sha(6))  # answered while Redis sleeps
        sleeper.wake()
        assert late.status_code == 503 and late.headers["Retry-After"]


def test_a_push_whose_body_came_slowly_still_has_its_whole_budget_for_redis(tmp_path, throwaway_redis):
    """The deadline starts once the body is read: a body that comes after longer than the
    budget (the head at once, the body later) is still queued, 202, with Redis awake
    throughout.  It was 503 "Redis did not answer" without Redis being asked."""
    body = json.dumps(P.github_push(after=P.sha(7))).encode()
    headers = {"Content-Length": str(len(body)), "Connection": "close",
               **P.signed_headers("github", secret("PB_TEST_GITHUB_SECRET"), body)}
    head = "POST /hooks/gh HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with procfile_web_with_budget(tmp_path, throwaway_redis) as (_, port, _), \
            socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) as sock:
        sock.sendall(head.encode() + b"\r\n")
        time.sleep(BUDGET_SECONDS + 0.5)  # the receiver waits for the body longer than its budget
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, json_body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"202", answer
    assert sync_jobs(Redis.from_url(throwaway_redis.url)) == [json.loads(json_body)["job_id"]]


def signed_post(http: requests.Session, base: str, after: str) -> requests.Response:
    body = json.dumps(P.github_push(after=after)).encode()
    headers = P.signed_headers("github", secret("PB_TEST_GITHUB_SECRET"), body)
    return http.post(base + "/hooks/gh", data=body, headers=headers, timeout=GENEROUS)
