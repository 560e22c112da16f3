"""``POST /hooks/<name>`` end to end through Flask, against a real Redis.

Each provider is driven with payloads shaped like its documented push
event; the answers follow the table of issue 3.
"""

from __future__ import annotations

import io
import json
import re

import pytest
from rq import Queue

from pullbridge import keys
from tests.webhook import payloads as P
from tests.webhook.conftest import SECRETS, secret
from tests.webhook.helpers import PROVIDER_CASES, post, sync_jobs

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

    monkeypatch.setattr(webhook.intake, "decode_json", no_json)
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


def test_each_configured_repo_has_a_static_rule_and_other_names_the_variable_one(app, config):
    """A configured name is matched without werkzeug's converter (the cheaper match a flood of
    forged deliveries gets: webhook.hooks); any other name still reaches the view, for its 404."""
    adapter = app.url_map.bind("localhost")
    for name in config.repos_by_name:
        rule, args = adapter.match(f"/hooks/{name}", "POST", return_rule=True)
        assert (rule.rule, rule.endpoint, args) == (f"/hooks/{name}", "hooks_receive", {"name": name})
    rule, args = adapter.match("/hooks/nope", "POST", return_rule=True)
    assert (rule.rule, args) == ("/hooks/<name>", {"name": "nope"})


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


def _rolled_back(payload: dict, total_key: str | None) -> dict:
    """``payload`` as a force push of the branch back to an older commit: no commit listed."""
    payload["before"], payload["after"] = P.sha("newer head"), P.sha("older commit")
    payload["commits"] = []
    if "head_commit" in payload:  # GitHub's and Gitea's
        payload["head_commit"] = None
    if total_key:
        payload[total_key] = 0
    return payload


@pytest.mark.parametrize("name,provider,secret_env,payload,total_key", [
    ("gl-paths", "gitlab", "PB_TEST_GITLAB_TOKEN", P.gitlab_push(), "total_commits_count"),
    ("gitea-paths", "gitea", "PB_TEST_GITEA_SECRET", P.gitea_push(), "total_commits"),
    ("gh-paths", "github", "PB_TEST_GITHUB_SECRET", P.github_push(), None),
])
def test_path_filter_lets_a_branch_moved_without_listed_commits_through(client, redis_conn, name, provider,
                                                                       secret_env, payload, total_key):
    # GitLab and Gitea send no `forced` flag: a force push back to an older commit lists no commit,
    # so which files it changed is unknown, and the push is not filtered out.
    response = post(client, name, _rolled_back(payload, total_key), provider=provider, secret_env=secret_env)
    assert response.status_code == 202, response.json
    assert response.json["sha"] == P.sha("older commit")
    assert len(sync_jobs(redis_conn)) == 1


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


def test_a_signed_gitlab_delivery_replayed_under_another_idempotency_key_is_a_duplicate(client, redis_conn):
    body = json.dumps(P.gitlab_push()).encode()
    headers = P.signed_headers("gitlab", secret("PB_TEST_GITLAB_SIGNING"), body)
    first = client.post("/hooks/gl-signed", data=body, headers=headers)
    replay = client.post("/hooks/gl-signed", data=body, headers={**headers, "Idempotency-Key": "anything-else"})
    assert first.status_code == 202 and replay.status_code == 200
    assert replay.json["status"] == "duplicate" and replay.json["delivery"] == headers["webhook-id"]
    assert len(sync_jobs(redis_conn)) == 1


@pytest.mark.parametrize("name", ["gh", "gl"])
def test_a_secret_in_the_environment_is_read_without_surrounding_whitespace(client, monkeypatch, redis_conn, name):
    """As a secret file is: a Kubernetes Secret made with --from-file, or a value set with
    `echo`, ends in a newline that the git host's secret does not have."""
    env = PROVIDER_CASES[name][1]
    monkeypatch.setenv(env, SECRETS[env] + "\n")
    response = post(client, name, PROVIDER_CASES[name][2](after=P.sha("env-newline")))
    assert response.status_code == 202, response.json


def test_a_gitlab_signing_secret_whose_key_is_not_base64_is_misconfigured(client, monkeypatch, capfd):
    """Not a 401 per delivery, although GitLab signs each correctly: the key is ours to fix, so
    the answer is 500 misconfigured (GitLab retries later), naming neither secret nor key; the
    log line says where the secret is kept, as for one that cannot be read."""
    body = json.dumps(P.gitlab_push()).encode()
    headers = P.signed_headers("gitlab", secret("PB_TEST_GITLAB_SIGNING"), body)
    monkeypatch.setenv("PB_TEST_GITLAB_SIGNING", "whsec_not!base64")
    capfd.readouterr()
    response = client.post("/hooks/gl-signed", data=body, headers=headers)
    assert response.status_code == 500 and response.json["error"] == "misconfigured"
    assert response.json["message"] == ("the webhook secret of gl-signed is a GitLab signing secret (whsec_...) "
                                        "whose key is not valid base64")
    [line] = [json.loads(l) for l in capfd.readouterr().err.splitlines() if l.startswith("{")]
    assert line["outcome"] == "misconfigured" and "PB_TEST_GITLAB_SIGNING" in line["error"], line
    assert "not!base64" not in json.dumps(line)


def test_repository_must_match_configuration(client, config, redis_conn):
    response = post(client, "gh", P.github_push(full_name="evil/other"))
    assert response.status_code == 403 and response.json["error"] == "repository_mismatch"
    same_but_case = post(client, "gh", P.github_push(full_name="Octo-Org/Deploy"))
    assert same_but_case.status_code == 202
    response = post(client, "gl", P.gitlab_push(path="other/project"))
    assert response.status_code == 403
    # no repository configured: the one the URL names (github.com/octo-org/deploy.git), checked all the same
    assert config.repo("gh-from-url").repository == "octo-org/deploy"
    response = post(client, "gh-from-url", P.github_push(full_name="any/thing"), provider="github",
                    secret_env="PB_TEST_GITHUB_SECRET")
    assert response.status_code == 403 and response.json["error"] == "repository_mismatch"
    assert post(client, "gh-from-url", P.github_push(full_name="Octo-Org/deploy"), provider="github",
                secret_env="PB_TEST_GITHUB_SECRET").status_code == 202


def test_a_gitlab_under_a_relative_url_root_matches_the_repository_derived_from_its_url(client, config):
    """https://git.example.com/gitlab/group/deploy.git derives gitlab/group/deploy, and GitLab's
    payloads say group/deploy: a derived GitLab name matches the path it ends with (after a
    "/"), still case-insensitively; a repository: given in the configuration stays exact."""
    def push(name, path):
        return post(client, name, P.gitlab_push(path=path), provider="gitlab", secret_env="PB_TEST_GITLAB_TOKEN")

    assert config.repo("gl-root").repository == config.repo("gl-root-given").repository == "gitlab/group/deploy"
    assert push("gl-root", "group/deploy").status_code == 202
    assert push("gl-root", "Group/Deploy").status_code == 202
    assert push("gl-root", "gitlab/group/deploy").status_code == 202
    for other in ("other/deploy", "roup/deploy", "gitlab/other/deploy", "group/deploy/more"):
        response = push("gl-root", other)
        assert response.status_code == 403 and response.json["error"] == "repository_mismatch", other
    assert push("gl-root-given", "group/deploy").status_code == 403
    assert push("gl-root-given", "GitLab/group/deploy").status_code == 202


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


def test_health_ready_and_metrics(client):
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ok", "redis": "ok"}
    post(client, "gh", P.github_push())
    post(client, "gh", P.github_push(after="b" * 40))  # coalesced: through the group commit
    client.post("/hooks/gh", data=b"{}", headers={"X-GitHub-Event": "push"})
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(r"^pullbridge_webhook_queue_batch_size_count [1-9]", text, re.M)
    assert 'pullbridge_webhook_deliveries_total{outcome="queued",provider="github"}' in text
    assert 'pullbridge_webhook_deliveries_total{outcome="unauthorized",provider="github"}' in text
    assert "pullbridge_webhook_intake_seconds_bucket" in text
    assert "pullbridge_metrics_redis_up 1.0" in text  # the workers' Redis-backed metrics follow


def test_logs_are_json_with_the_delivery_id_and_no_secrets(client, capfd):
    import webhook.noise

    webhook.noise.forget()
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


def test_a_verified_delivery_refused_400_is_logged_with_its_delivery_id(client, capfd):
    capfd.readouterr()
    assert post(client, "gh", {**P.github_push(), "after": "not-a-sha"}, delivery="traced-400").status_code == 400
    assert post(client, "gh", P.github_push(), delivery="bad id").status_code == 400  # the id itself is bad
    lines = [json.loads(l) for l in capfd.readouterr().err.splitlines() if l.startswith("{")]
    assert [(line["status"], line.get("delivery")) for line in lines] == [(400, "traced-400"), (400, None)]


def test_create_app_reads_the_configuration_named_in_the_environment(tmp_path, monkeypatch, redis_conn):
    from webhook import create_app

    path = tmp_path / "pullbridge.yaml"
    path.write_text("repos:\n  - {name: from-env, url: 'file:///srv/git/x.git', provider: generic,"
                    " secret_env: PB_TEST_GENERIC_SECRET}\n")
    kwargs = redis_conn.connection_pool.connection_kwargs
    monkeypatch.setenv("PULLBRIDGE_CONFIG", str(path))
    monkeypatch.setenv("REDIS_URL", f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}")
    app = create_app()
    response = post(app.test_client(), "from-env", P.generic_push(repository=None), provider="generic",
                    secret_env="PB_TEST_GENERIC_SECRET")
    assert response.status_code == 202
    assert sync_jobs(redis_conn) == [response.json["job_id"]]


def test_unexpected_methods_answer_json(client):
    response = client.get("/hooks/gh")
    assert response.status_code == 405 and response.json["error"]


class Trickle(io.RawIOBase):
    """A request body the server hands over a few bytes per read."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step, self.reads = data, step, 0

    def readable(self):
        return True

    def read(self, size=-1):
        self.reads += 1
        piece, self.data = self.data[:min(size, self.step)], self.data[min(size, self.step):]
        return piece


def test_a_body_the_server_gives_in_pieces_is_read_whole():
    from webhook.intake import read_body

    stream = Trickle(b"x" * 1000, step=300)
    assert read_body({"wsgi.input": stream}, 4096, 1000) == b"x" * 1000
    assert stream.reads == 4


def test_a_body_shorter_than_its_content_length_is_what_arrived():
    from webhook.intake import read_body

    assert read_body({"wsgi.input": io.BytesIO(b"abc")}, 4096, 10) == b"abc"
    assert read_body({"wsgi.input": io.BytesIO(b"")}, 4096, 10) == b""
    assert read_body({"wsgi.input": io.BytesIO(b"abc")}, 4096, 0) == b""


@pytest.mark.parametrize("raw, expected", [(None, None), ("", None), ("  ", None), ("12", 12),
                                           (" 12 ", 12), ("4096", 4096), ("0" * 5000 + "12", 12),
                                           ("0", 0), ("0" * 16 + "12", 12), ("0" * 17 + "12", 12)])
def test_declared_length(raw, expected):
    from webhook.intake import declared_length

    environ = {} if raw is None else {"CONTENT_LENGTH": raw}
    assert declared_length(environ, 4096) == expected


@pytest.mark.parametrize("raw, error", [("4097", "PayloadTooLarge"), ("9" * 5000, "PayloadTooLarge"),
                                        ("9" * 18, "PayloadTooLarge"), ("9" * 19, "PayloadTooLarge"),
                                        ("10000", "PayloadTooLarge"), ("-1", "BadPayload"),
                                        ("12abc", "BadPayload"), ("1e3", "BadPayload"),
                                        ("\u00b2", "BadPayload"), ("\u0663", "BadPayload")])
def test_declared_length_refuses_before_reading(raw, error):
    from webhook import errors
    from webhook.intake import declared_length

    with pytest.raises(getattr(errors, error)):
        declared_length({"CONTENT_LENGTH": raw}, 4096)
