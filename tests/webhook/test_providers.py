"""Pure tests of the provider modules: signature checks and payload parsing."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone

import pytest
from standardwebhooks import Webhook

from tests.webhook import payloads as P
from webhook.events import PayloadError
from webhook.providers import PROVIDERS, bitbucket_server, generic, gitea, github, gitlab

GITHUB_VECTOR_SECRET = b"It's a Secret to Everybody"
GITHUB_VECTOR_BODY = b"Hello, World!"
GITHUB_VECTOR_SIG = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_documented_test_vector():
    assert P.hex_hmac(GITHUB_VECTOR_SECRET, GITHUB_VECTOR_BODY) == GITHUB_VECTOR_SIG
    headers = {"X-Hub-Signature-256": "sha256=" + GITHUB_VECTOR_SIG}
    assert github.verify(headers, GITHUB_VECTOR_BODY, GITHUB_VECTOR_SECRET)
    assert github.verify({"x-hub-signature-256": "sha256=" + GITHUB_VECTOR_SIG.upper()},
                         GITHUB_VECTOR_BODY, GITHUB_VECTOR_SECRET)
    assert not github.verify(headers, GITHUB_VECTOR_BODY + b" ", GITHUB_VECTOR_SECRET)
    assert not github.verify(headers, GITHUB_VECTOR_BODY, b"It's a secret to everybody")


BODY = b'{"ref": "refs/heads/main"}'
SECRET = b"s3cret"
HEX = P.hex_hmac(SECRET, BODY)

VERIFY_CASES = [
    # (provider module, headers, expected)
    (github, {"X-Hub-Signature-256": "sha256=" + HEX}, True),
    (github, {"X-Hub-Signature-256": HEX}, False),  # prefix required
    (github, {"X-Hub-Signature": "sha1=" + HEX}, False),  # the legacy SHA-1 header is not enough
    (github, {"X-Hub-Signature-256": "sha256=" + HEX[:-1] + "0"}, HEX.endswith("0")),
    (github, {}, False),
    (github, {"X-Hub-Signature-256": "sha256=\u00e9\u00e9"}, False),
    (gitea, {"X-Gitea-Signature": HEX}, True),
    (gitea, {"X-Forgejo-Signature": HEX}, True),
    (gitea, {"X-Gitea-Signature": "sha256=" + HEX}, False),
    (gitea, {}, False),
    (bitbucket_server, {"X-Hub-Signature": "sha256=" + HEX}, True),
    (bitbucket_server, {"X-Hub-Signature": "sha1=" + HEX}, False),
    (bitbucket_server, {"X-Hub-Signature-256": "sha256=" + HEX}, False),
    (generic, {"X-Signature": "sha256=" + HEX}, True),
    (generic, {"X-Signature": "sha512=" + HEX}, False),
    (generic, {"X-Signature": ""}, False),
    (gitlab, {"X-Gitlab-Token": "s3cret"}, True),
    (gitlab, {"X-Gitlab-Token": "s3cre"}, False),
    (gitlab, {"X-Gitlab-Token": "s3cret "}, False),
    (gitlab, {}, False),
]


@pytest.mark.parametrize("module,headers,expected", VERIFY_CASES,
                         ids=[f"{m.NAME}-{i}" for i, (m, _, _) in enumerate(VERIFY_CASES)])
def test_verify_table(module, headers, expected):
    assert module.verify(headers, BODY, SECRET) is expected


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_empty_secret_never_verifies(name):
    module = PROVIDERS[name]
    headers = P.signed_headers(name, b"x", BODY)
    assert module.verify(headers, BODY, b"x")
    assert not module.verify(headers, BODY, b"")


# --- GitLab signed webhooks (Standard Webhooks) -----------------------------------

SIGNING = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _std_headers(msg_id: str, stamp: int, body: bytes) -> dict:
    """Signed by the standardwebhooks library, independently of our implementation."""
    signer = Webhook(SIGNING.decode())
    sig = signer.sign(msg_id, datetime.fromtimestamp(stamp, tz=timezone.utc), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": sig}


def test_gitlab_signed_matches_standardwebhooks_library():
    now = int(time.time())
    headers = _std_headers("msg_1", now, BODY)
    assert gitlab.verify(headers, BODY, SIGNING)
    assert headers["webhook-signature"] == gitlab.sign(SIGNING, "msg_1", now, BODY)
    # and the library accepts what we sign
    Webhook(SIGNING.decode()).verify(BODY, {**headers, "webhook-signature": gitlab.sign(SIGNING, "msg_1", now, BODY)})


def test_gitlab_signed_rejects_tampering_and_replays():
    now = 1_800_000_000
    good = _std_headers("msg_1", now, BODY)
    assert gitlab.verify(good, BODY, SIGNING, now=now)
    assert not gitlab.verify(good, BODY + b" ", SIGNING, now=now)
    assert not gitlab.verify({**good, "webhook-id": "msg_2"}, BODY, SIGNING, now=now)
    # timestamp tolerance (server.signature_tolerance)
    assert gitlab.verify(good, BODY, SIGNING, now=now + 299, tolerance=300)
    assert not gitlab.verify(good, BODY, SIGNING, now=now + 301, tolerance=300)
    assert not gitlab.verify(good, BODY, SIGNING, now=now - 301, tolerance=300)
    assert gitlab.verify(good, BODY, SIGNING, now=now + 3000, tolerance=3600)
    # a token header does not stand in for a signature when the secret is a signing key
    assert not gitlab.verify({"X-Gitlab-Token": SIGNING.decode()}, BODY, SIGNING, now=now)


@pytest.mark.parametrize("signature", [
    "", "v1", "v1,", "v1,!!notbase64!!", "v2," + base64.b64encode(b"x" * 32).decode(), "garbage",
    "v1,a v1,b", ",,,",
])
def test_gitlab_signed_malformed_headers_are_just_false(signature):
    now = int(time.time())
    headers = {"webhook-id": "m", "webhook-timestamp": str(now), "webhook-signature": signature}
    assert gitlab.verify(headers, BODY, SIGNING) is False


def test_gitlab_signed_accepts_any_of_several_signatures():
    now = int(time.time())
    good = _std_headers("m", now, BODY)["webhook-signature"]
    other = "v1," + base64.b64encode(b"\0" * 32).decode()
    headers = {"webhook-id": "m", "webhook-timestamp": str(now), "webhook-signature": f"{other} {good}"}
    assert gitlab.verify(headers, BODY, SIGNING)


@pytest.mark.parametrize("stamp", ["abc", "-5", "1e9", "", "99999999999999999999"])
def test_gitlab_signed_bad_timestamps(stamp):
    headers = {**_std_headers("m", int(time.time()), BODY), "webhook-timestamp": stamp}
    assert not gitlab.verify(headers, BODY, SIGNING)


# --- parsing: one common shape ----------------------------------------------------

A, B = P.sha("a"), P.sha("b")

PARSE_CASES = [
    # id, module, headers, payload, expected attributes
    ("github-push", github, {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d1"},
     P.github_push(before=A, after=B),
     dict(event="push", delivery="d1", ref="refs/heads/main", branch="main", before=A, after=B,
          deleted=False, is_tag_push=False, repository="octo-org/deploy",
          paths=frozenset({"deploy/app.yaml"}))),
    ("github-tag", github, {"X-GitHub-Event": "push"}, P.github_push(ref="refs/tags/v1"),
     dict(is_tag_push=True, tag="v1", branch=None)),
    ("github-delete", github, {"X-GitHub-Event": "push"}, P.github_push(deleted=True),
     dict(deleted=True, after=P.ZERO)),
    ("github-forced-paths-unknown", github, {"X-GitHub-Event": "push"}, P.github_push(forced=True),
     dict(paths=None)),
    ("github-new-branch-paths-unknown", github, {"X-GitHub-Event": "push"}, P.github_push(before=P.ZERO),
     dict(paths=None)),
    ("github-ping", github, {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "p"},
     {"zen": "Keep it simple.", "hook_id": 1, "repository": {"full_name": "octo-org/deploy"}},
     dict(event="ping", ref=None, repository="octo-org/deploy")),
    ("gitlab-push", gitlab, {"X-Gitlab-Event": "Push Hook", "Idempotency-Key": "k1"},
     P.gitlab_push(before=A, after=B),
     dict(event="push", delivery="k1", branch="main", before=A, after=B, deleted=False,
          repository="group/deploy", paths=frozenset({"deploy/app.yaml"}))),
    ("gitlab-tag", gitlab, {"X-Gitlab-Event": "Tag Push Hook"},
     P.gitlab_push(ref="refs/tags/v2", tag=True), dict(event="push", is_tag_push=True)),
    ("gitlab-delete", gitlab, {"X-Gitlab-Event": "Push Hook"}, P.gitlab_push(deleted=True),
     dict(deleted=True)),
    ("gitlab-truncated-commits", gitlab, {"X-Gitlab-Event": "Push Hook"}, P.gitlab_push(total=25),
     dict(paths=None)),
    ("gitlab-webhook-id", gitlab, {"X-Gitlab-Event": "Push Hook", "webhook-id": "w1",
                                   "X-Gitlab-Event-UUID": "u1"}, P.gitlab_push(), dict(delivery="w1")),
    ("gitlab-signed-id-first", gitlab, {"X-Gitlab-Event": "Push Hook", "Idempotency-Key": "unsigned",
                                        "webhook-id": "signed"}, P.gitlab_push(), dict(delivery="signed")),
    ("gitlab-issue", gitlab, {"X-Gitlab-Event": "Issue Hook"}, {"object_kind": "issue"},
     dict(event="issue hook")),
    ("gitea-push", gitea, {"X-Gitea-Event": "push", "X-Gitea-Delivery": "g1"},
     P.gitea_push(after=B), dict(event="push", delivery="g1", after=B, repository="gitea/deploy",
                                 paths=frozenset({"deploy/app.yaml"}))),
    ("forgejo-push", gitea, {"X-Forgejo-Event": "push", "X-Forgejo-Delivery": "f1"},
     P.gitea_push(), dict(event="push", delivery="f1")),
    ("bbs-push", bitbucket_server, {"X-Event-Key": "repo:refs_changed", "X-Request-Id": "r1"},
     P.bitbucket_push(before=A, after=B),
     dict(event="push", delivery="r1", branch="main", before=A, after=B, repository="PROJ/deploy",
          paths=None, deleted=False)),
    ("bbs-delete", bitbucket_server, {"X-Event-Key": "repo:refs_changed"},
     P.bitbucket_push(change_type="DELETE"), dict(deleted=True)),
    ("bbs-tag", bitbucket_server, {"X-Event-Key": "repo:refs_changed"},
     P.bitbucket_push(ref="refs/tags/v1", ref_type="TAG"), dict(is_tag_push=True)),
    ("bbs-ping", bitbucket_server, {"X-Event-Key": "diagnostics:ping"}, {"test": True},
     dict(event="ping")),
    ("generic-push", generic, {"X-Delivery": "x1"}, P.generic_push(after=B, paths=["a.yaml"]),
     dict(event="push", delivery="x1", after=B, repository="team/deploy", paths=frozenset({"a.yaml"}))),
    ("generic-no-paths", generic, {}, P.generic_push(), dict(paths=None, delivery=None)),
]


@pytest.mark.parametrize("module,headers,payload,expected",
                         [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_parse_table(module, headers, payload, expected):
    event = module.parse(headers, json.loads(json.dumps(payload)), branch="main")
    for attribute, value in expected.items():
        assert getattr(event, attribute) == value, attribute


def test_bitbucket_picks_the_tracked_branch_among_changes():
    other = {"ref": {"id": "refs/heads/dev", "type": "BRANCH"}, "refId": "refs/heads/dev",
             "fromHash": A, "toHash": A, "type": "UPDATE"}
    payload = P.bitbucket_push(after=B, extra_changes=[other])
    assert bitbucket_server.parse({"X-Event-Key": "repo:refs_changed"}, payload, branch="main").after == B
    assert bitbucket_server.parse({"X-Event-Key": "repo:refs_changed"}, payload, branch="dev").after == A


BAD_PAYLOADS = [
    (github, {"X-GitHub-Event": "push"}, {"ref": "refs/heads/main", "before": A}, "after"),
    (github, {"X-GitHub-Event": "push"}, {**P.github_push(), "after": "xyz"}, "after"),
    (github, {"X-GitHub-Event": "push"}, {**P.github_push(), "ref": 5}, "ref"),
    (github, {"X-GitHub-Event": "push"}, {**P.github_push(), "repository": {}}, "repository.full_name"),
    (github, {"X-GitHub-Event": "push"}, {**P.github_push(), "commits": "no"}, "commits"),
    (github, {"X-GitHub-Event": "push"}, {**P.github_push(), "commits": [{"added": [1]}]},
     "commits[0].added"),
    (github, {"X-GitHub-Event": "push"}, [1, 2], "body"),
    (github, {}, P.github_push(), "X-GitHub-Event"),
    (gitlab, {"X-Gitlab-Event": "Push Hook"}, {**P.gitlab_push(), "project": None},
     "project.path_with_namespace"),
    (bitbucket_server, {"X-Event-Key": "repo:refs_changed"}, {**P.bitbucket_push(), "changes": []},
     "changes"),
    (bitbucket_server, {"X-Event-Key": "repo:refs_changed"},
     {**P.bitbucket_push(), "changes": [{"refId": "refs/heads/main"}]}, "changes[0].toHash"),
    (bitbucket_server, {"X-Event-Key": "repo:refs_changed"},
     {**P.bitbucket_push(), "changes": [{"refId": 5, "toHash": A}]}, "changes[0].refId"),
    (bitbucket_server, {"X-Event-Key": "repo:refs_changed"},
     {**P.bitbucket_push(), "changes": [{"refId": "refs/heads/main", "toHash": A, "ref": {"type": 1}}]},
     "changes[0].ref.type"),
    # "$" would also match before a final newline: a sha read from `git rev-parse` unstripped
    (github, {"X-GitHub-Event": "push"}, {**P.github_push(), "after": A + "\n"}, "after"),
    (generic, {}, {**P.generic_push(), "after": A + "\n"}, "after"),
    (generic, {}, {"ref": "refs/heads/main"}, "after"),
    (generic, {}, {**P.generic_push(), "paths": "deploy"}, "paths"),
]


@pytest.mark.parametrize("module,headers,payload,field", BAD_PAYLOADS,
                         ids=[f"{m.NAME}-{f}" for m, _, _, f in BAD_PAYLOADS])
def test_parse_names_the_bad_field(module, headers, payload, field):
    with pytest.raises(PayloadError) as info:
        module.parse(headers, payload, branch="main")
    assert info.value.field == field


def test_wsgi_headers_read_the_environ_as_werkzeug_does():
    from werkzeug.datastructures import EnvironHeaders

    from webhook.events import WsgiHeaders, header

    environ = {"HTTP_X_HUB_SIGNATURE_256": "sha256=ab", "HTTP_X_GITHUB_EVENT": "push",
               "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "12", "HTTP_WEBHOOK_ID": "msg_1"}
    ours, theirs = WsgiHeaders(environ), EnvironHeaders(environ)
    for name in ("X-Hub-Signature-256", "x-hub-signature-256", "X-GitHub-Event", "Content-Type",
                 "content-length", "webhook-id", "Webhook-Id", "X-Gitlab-Token", "Content-MD5"):
        assert ours.get(name) == theirs.get(name) == header(ours, name), name
    assert ours.get("X-Missing", "default") == "default"


def test_answers_with_a_lone_surrogate_are_still_json():
    from webhook.errors import UnknownRepo, error_response

    response = error_response(UnknownRepo("no repository named '\udcff' is configured"))
    assert response.status_code == 404 and response.get_json()["error"] == "unknown_repo"
