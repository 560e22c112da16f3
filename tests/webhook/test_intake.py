"""``POST /hooks/<name>`` end to end through Flask, against a real Redis.

Each provider is driven with payloads shaped like its documented push
event; the answers follow the table of issue 3.
"""

from __future__ import annotations

import io
import json

import pytest
from rq import Queue

from pullbridge import keys
from tests.webhook import payloads as P
from tests.webhook.conftest import secret

PROVIDER_CASES = {
    # repo name: (provider, secret env, payload factory)
    "gh": ("github", "PB_TEST_GITHUB_SECRET", P.github_push),
    "gl": ("gitlab", "PB_TEST_GITLAB_TOKEN", P.gitlab_push),
    "gl-signed": ("gitlab", "PB_TEST_GITLAB_SIGNING", P.gitlab_push),
    "gitea": ("gitea", "PB_TEST_GITEA_SECRET", P.gitea_push),
    "bbs": ("bitbucket-server", "PB_TEST_BBS_SECRET", P.bitbucket_push),
    "generic": ("generic", "PB_TEST_GENERIC_SECRET", P.generic_push),
}


def post(client, name, payload, *, provider=None, secret_env=None, body=None, headers=None, **kw):
    provider = provider or PROVIDER_CASES[name][0]
    secret_env = secret_env or PROVIDER_CASES[name][1]
    body = body if body is not None else json.dumps(payload).encode()
    signed = P.signed_headers(provider, secret(secret_env), body, **kw)
    signed.update(headers or {})
    return client.post(f"/hooks/{name}", data=body, headers=signed)


def sync_jobs(conn):
    return Queue(keys.SYNC_QUEUE, connection=conn).get_job_ids()


@pytest.mark.parametrize("name", sorted(PROVIDER_CASES))
def test_verified_push_is_queued(client, redis_conn, name):
    after = P.sha(f"push-{name}")
    response = post(client, name, PROVIDER_CASES[name][2](after=after))
    assert response.status_code == 202, response.json
    body = response.json
    assert body["status"] == "queued" and body["repo"] == name
    assert body["ref"] == "refs/heads/main" and body["sha"] == after
    assert sync_jobs(redis_conn) == [body["job_id"]]
    job = Queue(keys.SYNC_QUEUE, connection=redis_conn).fetch_job(body["job_id"])
    assert job.func_name == keys.SYNC_JOB and job.args == (name,)
    assert job.kwargs == {"reason": "push", "delivery": body["delivery"]}
    assert [m.decode() for m in redis_conn.zrange(keys.wanted(name), 0, -1)] == [after]


@pytest.mark.parametrize("name", sorted(PROVIDER_CASES))
def test_wrong_or_missing_signature_is_401_without_redis(client, redis_conn, name, monkeypatch):
    provider, env, factory = PROVIDER_CASES[name]
    body = json.dumps(factory()).encode()
    good = P.signed_headers(provider, secret(env), body)
    wrong = P.signed_headers(provider, b"not-the-secret", body)
    if name == "gl-signed":
        wrong = P.signed_headers(provider, b"whsec_" + b"QUJD" * 8, body)
    unsigned = {k: v for k, v in good.items()
                if k.lower() not in ("x-hub-signature-256", "x-hub-signature", "x-gitlab-token",
                                     "x-gitea-signature", "x-signature", "webhook-signature")}
    import webhook.intake

    def no_json(*a, **k):
        raise AssertionError("JSON parsed before the signature was checked")

    def no_redis(*a, **k):
        raise AssertionError("Redis called before the signature was checked")

    monkeypatch.setattr(webhook.intake, "json_loads", no_json)
    monkeypatch.setattr(webhook.intake, "request_sync", no_redis)
    for headers in (wrong, unsigned):
        response = client.post(f"/hooks/{name}", data=body, headers=headers)
        assert response.status_code == 401
        assert response.json["error"] == "unauthorized"
    if name != "gl":  # a GitLab token does not sign the body; everything else does
        response = client.post(f"/hooks/{name}", data=body + b" ", headers=good)  # tampered body
        assert response.status_code == 401
    assert sync_jobs(redis_conn) == []


def test_401_needs_no_redis_at_all(config):
    from webhook import create_app

    app = create_app(config, redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    body = json.dumps(P.github_push()).encode()
    response = app.test_client().post("/hooks/gh", data=body, headers=P.signed_headers(
        "github", b"wrong", body))
    assert response.status_code == 401


def test_unknown_repo_is_404(client):
    response = client.post("/hooks/nope", data=b"{}")
    assert response.status_code == 404 and response.json["error"] == "unknown_repo"


IGNORED = [
    ("gh", dict(event="ping"), {"zen": "hi", "hook_id": 1, "repository": {"full_name": "octo-org/deploy"}},
     "ping"),
    ("gh", {}, P.github_push(ref="refs/tags/v1.0.0"), "tag push"),
    ("gh", {}, P.github_push(deleted=True), "was deleted"),
    ("gh", {}, P.github_push(ref="refs/heads/feature"), "not the tracked branch"),
    ("gh", dict(event="issues"), {"action": "opened", "repository": {"full_name": "octo-org/deploy"}},
     "not tracked"),
    ("gh-paths", {}, P.github_push(modified=["src/main.py", "README.md"]), "path filters"),
    ("gl", dict(event="Tag Push Hook"), P.gitlab_push(ref="refs/tags/v1", tag=True), "tag push"),
    ("gl", {}, P.gitlab_push(deleted=True), "was deleted"),
    ("gl", {}, P.gitlab_push(ref="refs/heads/dev"), "not the tracked branch"),
    ("bbs", dict(event="diagnostics:ping"), {"test": True}, "ping"),
    ("bbs", {}, P.bitbucket_push(change_type="DELETE"), "was deleted"),
    ("generic", dict(event="ping"), {}, "ping"),
]


@pytest.mark.parametrize("name,kw,payload,reason", IGNORED,
                         ids=[f"{c[0]}-{c[3].split()[0]}-{i}" for i, c in enumerate(IGNORED)])
def test_untracked_deliveries_say_why(client, redis_conn, name, kw, payload, reason):
    provider = {"gh-paths": "github"}.get(name, PROVIDER_CASES.get(name, ("github",))[0])
    env = PROVIDER_CASES.get(name, (None, "PB_TEST_GITHUB_SECRET"))[1]
    response = post(client, name, payload, provider=provider, secret_env=env, **kw)
    assert response.status_code == 200, response.json
    assert response.json["status"] == "ignored"
    assert reason in response.json["reason"]
    assert sync_jobs(redis_conn) == []


def test_path_filter_lets_matching_and_unknown_pushes_through(client, redis_conn):
    ok = post(client, "gh-paths", P.github_push(modified=["deploy/x.yaml"]),
              provider="github", secret_env="PB_TEST_GITHUB_SECRET")
    assert ok.status_code == 202
    forced = post(client, "gh-paths", P.github_push(modified=["src/x"], forced=True),
                  provider="github", secret_env="PB_TEST_GITHUB_SECRET")
    assert forced.status_code == 202  # a force push does not list every changed file


@pytest.mark.parametrize("name,payload,field", [
    ("gh", {"ref": "refs/heads/main", "repository": {"full_name": "octo-org/deploy"}}, "after"),
    ("gh", {**P.github_push(), "after": "not-a-sha"}, "after"),
    ("gl", {**P.gitlab_push(), "project": {}}, "project.path_with_namespace"),
    ("bbs", {**P.bitbucket_push(), "changes": "x"}, "changes"),
    ("generic", {"after": P.sha(1)}, "ref"),
])
def test_missing_fields_are_400_naming_the_field(client, redis_conn, name, payload, field):
    response = post(client, name, payload)
    assert response.status_code == 400
    assert response.json["field"] == field and field in response.json["message"]
    assert sync_jobs(redis_conn) == []


def test_signed_non_json_is_400(client):
    response = post(client, "gh", None, body=b"\xff not json")
    assert response.status_code == 400 and response.json["field"] == "body"


def test_malformed_delivery_id_is_400(client):
    for bad in ("a b", "x" * 201, "<script>"):
        response = post(client, "gh", P.github_push(), delivery=bad)
        assert response.status_code == 400 and response.json["field"] == "delivery"


def test_repository_must_match_configuration(client, redis_conn):
    response = post(client, "gh", P.github_push(full_name="evil/other"))
    assert response.status_code == 403 and response.json["error"] == "repository_mismatch"
    same_but_case = post(client, "gh", P.github_push(full_name="Octo-Org/Deploy"))
    assert same_but_case.status_code == 202
    response = post(client, "gl", P.gitlab_push(path="other/project"))
    assert response.status_code == 403
    # no repository configured: anything goes
    assert post(client, "gh-open", P.github_push(full_name="any/thing"), provider="github",
                secret_env="PB_TEST_GITHUB_SECRET").status_code == 202


def test_body_over_the_cap_is_413(client, config):
    cap = config.server.max_body_bytes
    payload = P.github_push(pad_to=cap + 1000)
    response = post(client, "gh", payload)
    assert response.status_code == 413 and response.json["limit"] == cap


def test_chunked_body_over_the_cap_is_413_without_reading_the_rest(app, config):
    cap = config.server.max_body_bytes

    class Endless(io.RawIOBase):
        served = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            n = len(buffer)
            buffer[:n] = b"x" * n
            Endless.served += n
            return n

    environ = {"wsgi.input": Endless(), "wsgi.input_terminated": True, "CONTENT_LENGTH": ""}
    response = app.test_client().post("/hooks/gh", environ_overrides=environ,
                                      headers={"Transfer-Encoding": "chunked"})
    assert response.status_code == 413
    assert Endless.served <= cap + 64 * 1024


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


def test_after_the_worker_takes_the_job_a_new_push_queues_again(client, redis_conn):
    from pullbridge.queueing import take_wanted

    first = post(client, "gh", P.github_push(after=P.sha(1))).json["job_id"]
    taken = take_wanted(redis_conn, "gh", first)
    assert [s for s, _ in taken] == [P.sha(1)]
    second = post(client, "gh", P.github_push(after=P.sha(2))).json
    assert second["job_id"] != first and second["coalesced"] is False


def test_pending_status_is_queued_with_the_sync(client, redis_conn):
    response = post(client, "gh-status", P.github_push(after=P.sha("st")), provider="github",
                    secret_env="PB_TEST_GITHUB_SECRET")
    assert response.status_code == 202 and response.json["commit_status"] == "pending queued"
    status_jobs = Queue(keys.STATUS_QUEUE, connection=redis_conn).jobs
    assert [j.args[:3] for j in status_jobs] == [("gh-status", P.sha("st"), "pending")]
    assert status_jobs[0].args[4] == response.json["job_id"]


def test_pending_status_failure_never_turns_a_queued_sync_into_an_error(client, redis_conn, monkeypatch):
    import redis as redis_lib
    import worker.status

    def broken(*a, **k):
        raise redis_lib.ConnectionError("gone")

    monkeypatch.setattr(worker.status, "enqueue_status", broken)
    response = post(client, "gh-status", P.github_push(), provider="github",
                    secret_env="PB_TEST_GITHUB_SECRET")
    assert response.status_code == 202 and response.json["commit_status"] == "not queued"
    assert len(sync_jobs(redis_conn)) == 1


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


def test_health_ready_and_metrics(client):
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ok", "redis": "ok"}
    post(client, "gh", P.github_push())
    client.post("/hooks/gh", data=b"{}", headers={"X-GitHub-Event": "push"})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'pullbridge_webhook_deliveries_total{outcome="queued",provider="github"}' in text
    assert 'pullbridge_webhook_deliveries_total{outcome="unauthorized",provider="github"}' in text
    assert "pullbridge_webhook_intake_seconds_bucket" in text
    assert "pullbridge_metrics_redis_up 1.0" in text  # the workers' Redis-backed metrics follow


def test_logs_are_json_with_the_delivery_id_and_no_secrets(client, capfd):
    post(client, "gl", P.gitlab_push(), delivery="log-me")
    body = json.dumps(P.gitlab_push()).encode()
    client.post("/hooks/gl", data=body, headers={"X-Gitlab-Event": "Push Hook",
                                                 "X-Gitlab-Token": "guess-" + "x" * 10})
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    delivered = [entry for entry in lines if entry.get("delivery") == "log-me"]
    assert delivered and delivered[0]["outcome"] == "queued" and delivered[0]["repo"] == "gl"
    assert any(entry.get("outcome") == "unauthorized" for entry in lines)
    assert "gl-token" not in err and "guess-" not in err


def test_unexpected_methods_answer_json(client):
    response = client.get("/hooks/gh")
    assert response.status_code == 405 and response.json["error"]
