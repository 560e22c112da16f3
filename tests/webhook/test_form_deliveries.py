"""Deliveries sent as a form (``payload=<URL-encoded JSON>``), as GitHub's API creates
hooks unless told otherwise and as GitHub's and Gitea's settings offer, end to end
through Flask against the real Redis.

GitHub signs the form as sent; Gitea (and Forgejo) sign the JSON inside it.
"""

from __future__ import annotations

import json
from urllib.parse import quote_plus, urlencode

import pytest

from tests.webhook import payloads as P
from tests.webhook.conftest import secret
from tests.webhook.helpers import sync_jobs

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def as_form(payload: dict, **more) -> bytes:
    return urlencode({"payload": json.dumps(payload), **more}).encode()


def github_form(client, body: bytes, signed: bytes | None = None, **kw):
    headers = P.signed_headers("github", secret("PB_TEST_GITHUB_SECRET"), body if signed is None else signed, **kw)
    return client.post("/hooks/gh", data=body, headers={**headers, **FORM})


def gitea_form(client, body: bytes, signed: bytes):
    headers = P.signed_headers("gitea", secret("PB_TEST_GITEA_SECRET"), signed)
    return client.post("/hooks/gitea", data=body, headers={**headers, **FORM})


def test_a_github_form_delivery_signed_over_the_form_is_queued(client, redis_conn):
    after = P.sha("form")
    payload = P.github_push(after=after)
    payload["head_commit"]["message"] = "déploie: a+b & c=d %20"  # every character the encoding escapes
    response = github_form(client, as_form(payload))
    assert response.status_code == 202, response.json
    assert response.json["sha"] == after and sync_jobs(redis_conn) == [response.json["job_id"]]


def test_a_github_form_is_verified_on_the_form_before_anything_is_parsed(client, redis_conn, monkeypatch):
    import webhook.intake

    def no_json(*a, **k):
        raise AssertionError("JSON parsed before the signature was checked")

    monkeypatch.setattr(webhook.intake, "decode_json", no_json)
    payload = P.github_push()
    body = as_form(payload)
    for signed in (json.dumps(payload).encode(), body + b"&x=1"):  # the JSON inside, or another form
        assert github_form(client, body, signed=signed).status_code == 401
    assert sync_jobs(redis_conn) == []


@pytest.mark.parametrize("body, problem", [
    (b"hook=1&zen=x", "missing"),
    (b"", "missing"),
    (as_form(P.github_push(), zen="x") + b"&payload=%7B%7D", "more than once"),
])
def test_a_signed_form_without_one_payload_field_is_400_naming_it(client, capfd, body, problem):
    response = github_form(client, body, delivery="form-400")
    assert response.status_code == 400
    assert response.json["field"] == "payload" and problem in response.json["message"]
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    assert lines[-1]["delivery"] == "form-400"  # verified: its line names the delivery


def test_a_github_form_whose_payload_is_not_json_is_400(client):
    response = github_form(client, urlencode({"payload": "not json"}).encode())
    assert response.status_code == 400 and response.json["field"] == "body"


def test_a_gitea_form_delivery_signed_over_its_json_is_queued(client, redis_conn):
    after = P.sha("gitea-form")
    document = json.dumps(P.gitea_push(after=after)).encode()
    body = b"payload=" + quote_plus(document).encode()  # as Go's url.Values.Encode writes it
    response = gitea_form(client, body, signed=document)
    assert response.status_code == 202, response.json
    assert response.json["sha"] == after and sync_jobs(redis_conn) == [response.json["job_id"]]
    assert gitea_form(client, body, signed=body).status_code == 401  # Gitea never signs the form


def test_a_gitea_form_without_a_payload_is_400_before_the_signature_check(client, redis_conn):
    response = gitea_form(client, b"zen=x", signed=b"zen=x")
    assert response.status_code == 400 and response.json["field"] == "payload"
    assert sync_jobs(redis_conn) == []


def test_json_only_hosts_ignore_a_form_content_type(client, redis_conn):
    """``curl -d @push.json`` says form; the generic provider (and GitLab, Bitbucket
    Server, which send JSON only) read the body as JSON whatever the header says."""
    body = json.dumps(P.generic_push()).encode()
    headers = P.signed_headers("generic", secret("PB_TEST_GENERIC_SECRET"), body)
    response = client.post("/hooks/generic", data=body, headers={**headers, **FORM})
    assert response.status_code == 202, response.json


@pytest.mark.parametrize("content_type, form", [
    ("application/x-www-form-urlencoded", True), ("Application/X-WWW-Form-Urlencoded; charset=utf-8", True),
    ("application/json", False), ("", False), (None, False), ("multipart/form-data; boundary=x", False),
])
def test_is_form(content_type, form):
    from webhook.decoding import is_form

    assert is_form(content_type) is form


def test_form_payload_decodes_the_field_to_the_exact_bytes_sent():
    from webhook.decoding import form_payload

    document = '{"m": "a+b & c=d %20 \\u00e9", "x": "é"}'.encode()
    assert form_payload(b"zen=1&payload=" + quote_plus(document).encode() + b"&hook=2") == document
    assert form_payload(b"pay%6Coad=%7B%7D") == b"{}"  # the name may be escaped too
