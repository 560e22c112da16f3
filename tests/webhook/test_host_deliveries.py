"""Deliveries shaped exactly as Gitea/Forgejo, Bitbucket Server and the generic
format send them in the cases a user meets first (the webhook page's test
button, a push of several refs at once, a payload that leaves something
out), through the real receiver and a real Redis.
"""

from __future__ import annotations

import json

import pytest

from tests.webhook import payloads as P
from tests.webhook.conftest import secret
from tests.webhook.helpers import post, sync_jobs


# --- Gitea / Forgejo: the "Test Delivery" button --------------------------------------

def _test_delivery(head: str) -> dict:
    """What the button sends (routers/web/repo/setting/webhook.go, TestWebhook): a push to the
    default branch with ``before`` = ``after`` = ``head`` and one commit, ``head`` itself."""
    payload = P.gitea_push(before=head, after=head, modified=())
    payload["compare_url"] = f"http://localhost:3000/gitea/deploy/compare/{head}...{head}"
    payload["commits"][0]["message"] = "This is a fake commit for webhook push test"
    return payload


def _forgejo_headers(body: bytes, event: str = "push") -> dict:
    signature = P.hex_hmac(secret("PB_TEST_GITEA_SECRET"), body)
    return {"Content-Type": "application/json", "X-Forgejo-Event": event, "X-Forgejo-Event-Type": event,
            "X-Forgejo-Delivery": "7b4a1e52-43b5-4a0f-9f0e-4d3b1a0f2c11", "X-Forgejo-Signature": signature,
            "X-Gitea-Event": event, "X-Gitea-Delivery": "7b4a1e52-43b5-4a0f-9f0e-4d3b1a0f2c11",
            "X-Gitea-Signature": signature, "X-Hub-Signature-256": "sha256=" + signature}


@pytest.mark.parametrize("head", [P.ZERO, "0" * 64], ids=["sha1", "sha256"])
def test_a_gitea_test_delivery_is_a_ping_not_a_branch_deletion(client, redis_conn, head):
    # Gitea sends a fake commit: the zero sha of the repository's object format
    for name in ("gitea", "gitea-paths"):
        response = post(client, name, _test_delivery(head), provider="gitea", secret_env="PB_TEST_GITEA_SECRET")
        assert response.status_code == 200, response.json
        assert response.json["status"] == "ignored" and response.json["reason"].startswith("ping"), response.json
    assert sync_jobs(redis_conn) == []


def test_a_forgejo_test_delivery_is_a_ping_not_a_push_of_the_head(client, redis_conn):
    # Forgejo sends the default branch's head as both before and after: nothing moved
    body = json.dumps(_test_delivery(P.sha("head"))).encode()
    response = client.post("/hooks/gitea", data=body, headers=_forgejo_headers(body))
    assert response.status_code == 200, response.json
    assert response.json["status"] == "ignored" and response.json["reason"].startswith("ping")
    assert response.json["delivery"] == "7b4a1e52-43b5-4a0f-9f0e-4d3b1a0f2c11"
    assert sync_jobs(redis_conn) == []


def test_a_test_delivery_from_another_repository_is_still_refused(client, redis_conn):
    payload = _test_delivery(P.ZERO)
    payload["repository"]["full_name"] = "gitea/other"
    response = post(client, "gitea", payload)
    assert response.status_code == 403 and response.json["error"] == "repository_mismatch"


def test_a_forgejo_push_is_queued_with_its_sha_and_ref(client, redis_conn):
    body = json.dumps(P.gitea_push(before=P.sha("old"), after=P.sha("new"))).encode()
    response = client.post("/hooks/gitea", data=body, headers=_forgejo_headers(body))
    assert response.status_code == 202, response.json
    assert (response.json["ref"], response.json["sha"]) == ("refs/heads/main", P.sha("new"))
    assert len(sync_jobs(redis_conn)) == 1


# --- Bitbucket Server: one repo:refs_changed delivery, several refs ------------------------

def _change(ref: str, to_hash: str, kind: str = "UPDATE", ref_type: str = "BRANCH") -> dict:
    return {"ref": {"id": ref, "displayId": ref.rsplit("/", 1)[-1], "type": ref_type}, "refId": ref,
            "fromHash": P.ZERO if kind == "ADD" else P.sha("from " + ref),
            "toHash": P.ZERO if kind == "DELETE" else to_hash, "type": kind}


def _refs_changed(*changes: dict) -> dict:
    payload = P.bitbucket_push()
    payload["changes"] = list(changes)
    return payload


TAG = _change("refs/tags/v1.2.0", P.sha("tag"), "ADD", "TAG")
DEV = _change("refs/heads/dev", P.sha("dev"))


@pytest.mark.parametrize("changes,status,answer", [
    ((TAG, DEV, _change("refs/heads/main", P.sha("main"))), 202, P.sha("main")),
    ((_change("refs/heads/main", P.sha("main")), DEV, TAG), 202, P.sha("main")),
    ((DEV, _change("refs/heads/main", P.sha("main"), "DELETE")), 200, "branch 'main' was deleted"),
    ((DEV, TAG), 200, "not the tracked branch"),
    ((TAG,), 200, "tag push (v1.2.0)"),
], ids=["main-last", "main-first", "main-deleted", "main-absent", "tag-only"])
def test_only_the_tracked_branch_of_several_refs_counts(client, redis_conn, changes, status, answer):
    response = post(client, "bbs", _refs_changed(*changes))
    assert response.status_code == status, response.json
    if status == 202:
        assert (response.json["ref"], response.json["sha"]) == ("refs/heads/main", answer)
        assert len(sync_jobs(redis_conn)) == 1
    else:
        assert answer in response.json["reason"] and sync_jobs(redis_conn) == []


def test_a_change_naming_its_ref_by_ref_id_alone_is_found_among_several(client, redis_conn):
    # parse reads a change's ref from refId, else ref.id: it must pick the tracked branch the same way
    changes = [{k: v for k, v in change.items() if k != "refId"}
               for change in (DEV, _change("refs/heads/main", P.sha("main")))]
    response = post(client, "bbs", _refs_changed(*changes))
    assert response.status_code == 202, response.json
    assert response.json["sha"] == P.sha("main")


# --- the generic format, as webhook/providers/generic.py documents it ----------------------

def test_a_generic_push_must_name_the_configured_repository(client, redis_conn):
    # README: a webhook signed with the right secret is still refused (403) unless its payload
    # names the configured repository; only a generic repository without repository: takes any
    response = post(client, "generic", {"ref": "refs/heads/main", "after": P.sha("anonymous")})
    assert response.status_code == 403 and response.json["error"] == "repository_mismatch"
    assert response.json["message"] == "payload names no repository, this hook serves 'team/deploy'"
    assert sync_jobs(redis_conn) == []
    named = post(client, "generic", {"ref": "refs/heads/main", "after": P.sha("named"), "repository": "Team/Deploy"})
    assert named.status_code == 202 and named.json["sha"] == P.sha("named")
    ping = post(client, "generic", {}, event="ping")  # a ping changes nothing and need not name it
    assert ping.status_code == 200 and ping.json["reason"].startswith("ping")


def test_a_generic_push_whose_ref_is_a_bare_branch_name_is_400_naming_ref(client, redis_conn):
    # not 200 "ref 'main' is not the tracked branch 'main'", which the sender takes for success
    response = post(client, "generic", P.generic_push(ref="main"))
    assert response.status_code == 400 and response.json["field"] == "ref", response.json
    assert "refs/heads/<branch>" in response.json["message"]
    assert sync_jobs(redis_conn) == []
