"""Property tests: whatever arrives, the receiver never answers 5xx and never
queues anything without a valid signature."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq import Queue

from pullbridge import keys
from tests.webhook import payloads as P
from tests.webhook.conftest import secret

REPOS = ["gh", "gl", "gl-signed", "gitea", "bbs", "generic"]
PROVIDER = {"gh": "github", "gl": "gitlab", "gl-signed": "gitlab", "gitea": "gitea",
            "bbs": "bitbucket-server", "generic": "generic"}
SECRET_ENV = {"gh": "PB_TEST_GITHUB_SECRET", "gl": "PB_TEST_GITLAB_TOKEN",
              "gl-signed": "PB_TEST_GITLAB_SIGNING", "gitea": "PB_TEST_GITEA_SECRET",
              "bbs": "PB_TEST_BBS_SECRET", "generic": "PB_TEST_GENERIC_SECRET"}

HEADER_NAMES = [
    "X-Hub-Signature-256", "X-Hub-Signature", "X-GitHub-Event", "X-GitHub-Delivery", "X-Gitlab-Token",
    "X-Gitlab-Event", "Idempotency-Key", "webhook-id", "webhook-timestamp", "webhook-signature",
    "X-Gitea-Signature", "X-Gitea-Event", "X-Event-Key", "X-Request-Id", "X-Signature", "X-Event",
    "X-Delivery", "Content-Type",
]
header_value = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=80),
    st.builds(lambda h: "sha256=" + h, st.text("0123456789abcdef", min_size=64, max_size=64)),
    st.builds(lambda h: "v1," + h, st.text("ABCDEFabcdef0123456789+/=", max_size=60)),
    st.sampled_from(["push", "Push Hook", "ping", "repo:refs_changed", "1800000000"]),
)
headers_strategy = st.dictionaries(
    st.one_of(st.sampled_from(HEADER_NAMES), st.from_regex(r"X-[A-Za-z]{1,12}", fullmatch=True)),
    header_value, max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20)
bodies = st.one_of(
    st.binary(max_size=2048),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([json.dumps(P.github_push()).encode(), json.dumps(P.gitlab_push()).encode(),
                     json.dumps(P.bitbucket_push()).encode(), json.dumps(P.generic_push()).encode()]),
)

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def nothing_queued(conn) -> bool:
    return (Queue(keys.SYNC_QUEUE, connection=conn).count == 0
            and not any(conn.exists(keys.wanted(r)) for r in REPOS))


@SETTINGS
@given(repo=st.sampled_from(REPOS), headers=headers_strategy, body=bodies)
def test_unsigned_requests_never_5xx_and_never_enqueue(client, redis_conn, repo, headers, body):
    response = client.post(f"/hooks/{repo}", data=body, headers=headers)
    assert response.status_code < 500
    assert response.status_code == 401, (response.status_code, response.json)
    assert response.is_json
    assert nothing_queued(redis_conn)


push_like = st.fixed_dictionaries({}, optional={
    "ref": st.one_of(st.sampled_from(["refs/heads/main", "refs/tags/v1", "refs/heads/x"]), json_values),
    "after": st.one_of(st.sampled_from([P.sha(1), P.ZERO, "abc"]), json_values),
    "before": st.one_of(st.just(P.sha(2)), json_values),
    "repository": st.one_of(st.just({"full_name": "octo-org/deploy"}), json_values),
    "project": st.one_of(st.just({"path_with_namespace": "group/deploy"}), json_values),
    "commits": st.one_of(st.just([{"added": ["deploy/a"]}]), json_values),
    "changes": json_values,
    "deleted": json_values,
    "paths": json_values,
})


@SETTINGS
@given(repo=st.sampled_from(REPOS), payload=st.one_of(push_like, json_values),
       extra=headers_strategy, event=st.sampled_from([None, "push", "Push Hook", "ping", "other"]))
def test_signed_garbage_never_5xx(client, redis_conn, repo, payload, extra, event):
    body = json.dumps(payload).encode()
    signed = P.signed_headers(PROVIDER[repo], secret(SECRET_ENV[repo]), body, event=event)
    extra = {k: v for k, v in extra.items() if k.lower() not in {h.lower() for h in signed}
             and not k.lower().startswith("webhook-")}
    response = client.post(f"/hooks/{repo}", data=body, headers={**extra, **signed})
    assert response.status_code < 500, response.json
    assert response.status_code in (200, 202, 400, 403)
    if response.status_code != 202:
        assert response.json.get("status") != "queued"
