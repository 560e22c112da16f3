"""Bad input at the receiver, against the real gunicorn ``web`` process and the
Flask test client alike: never a 5xx, never a job without a valid signature.

What tests/webhook already proves is not repeated (hypothesis fuzzing of
unsigned and signed garbage, 413 on announced and chunked bodies, missing
fields naming the field).  This adds the hostile shapes issue 9 names --
truncated JSON, wrong content types, missing and duplicated headers, a wrong
signature of the right length, a valid signature over another body, the
payload shapes behind Argo CD's CVE-2025-59531/59537/59538 (null repository,
empty or null commit lists, no ``after``), unicode branch names and refs with
``..`` -- all sent over a real socket to gunicorn, duplicated headers included.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
from urllib.parse import quote_from_bytes

import pytest

from tests.faults.conftest import sync_jobs
from pullbridge import keys

pytestmark = pytest.mark.stack

SHA = "a" * 40
OTHER = "b" * 40


def payload(**changes) -> dict:
    base = {"ref": "refs/heads/main", "before": OTHER, "after": SHA, "created": False, "deleted": False,
            "forced": False, "repository": {"full_name": "pullbridge/faults", "name": "faults"},
            "commits": [{"id": SHA, "added": [], "removed": [], "modified": ["deploy/a.yaml"]}],
            "head_commit": {"id": SHA, "added": [], "removed": [], "modified": ["deploy/a.yaml"]}}
    for key, value in changes.items():
        if value is ...:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def base_headers(secret: str, body: bytes, delivery: str) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", delivery), ("X-Hub-Signature-256", sign(secret, body))]


def without(headers, name):
    return [(k, v) for k, v in headers if k.lower() != name.lower()]


def replaced(headers, name, value):
    return without(headers, name) + [(name, value)]


# Each case: (id, build(secret, delivery) -> (headers, body), signed_and_valid)
def _body(p) -> bytes:
    return json.dumps(p).encode()


def _case_truncated(secret, d):
    body = _body(payload())[:-17]
    return base_headers(secret, body, d), body


def _case_form(secret, d):  # GitHub's form content type, signed as sent: accepted
    body = b"payload=" + quote_from_bytes(_body(payload()), safe="").encode()
    return replaced(base_headers(secret, body, d), "Content-Type", "application/x-www-form-urlencoded"), body


def _case_form_two_payloads(secret, d):
    body = b"payload=" + _body(payload()) + b"&payload=%7B%7D"  # two payload fields: which one is meant?
    return replaced(base_headers(secret, body, d), "Content-Type", "application/x-www-form-urlencoded"), body


def _case_text(secret, d):
    body = _body(payload())
    return replaced(base_headers(secret, body, d), "Content-Type", "text/plain; charset=utf-16"), body


def _case_no_content_type(secret, d):
    body = _body(payload())
    return without(base_headers(secret, body, d), "Content-Type"), body


def _case_no_event(secret, d):
    body = _body(payload())
    return without(base_headers(secret, body, d), "X-GitHub-Event"), body


def _case_no_signature(secret, d):
    body = _body(payload())
    return without(base_headers(secret, body, d), "X-Hub-Signature-256"), body


def _case_wrong_sig_right_length(secret, d):
    body = _body(payload())
    good = sign(secret, body)
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    return replaced(base_headers(secret, body, d), "X-Hub-Signature-256", bad), body


def _case_sig_other_body(secret, d):
    body = _body(payload())
    other = _body(payload(after=OTHER))
    return replaced(base_headers(secret, body, d), "X-Hub-Signature-256", sign(secret, other)), body


def _case_dup_sig_bad_first(secret, d):
    body = _body(payload())
    return base_headers(secret, body, d)[:3] + [("X-Hub-Signature-256", "sha256=" + "0" * 64),
                                                 ("X-Hub-Signature-256", sign(secret, body))], body


def _case_dup_sig_good_first(secret, d):
    body = _body(payload())
    return base_headers(secret, body, d) + [("X-Hub-Signature-256", "sha256=" + "0" * 64)], body


def _case_dup_event(secret, d):
    body = _body(payload())
    return base_headers(secret, body, d) + [("X-GitHub-Event", "ping")], body


def _case_dup_delivery(secret, d):
    body = _body(payload())
    return base_headers(secret, body, d) + [("X-GitHub-Delivery", d + "-other")], body


def _signed(p):
    def build(secret, d):
        body = _body(p) if not isinstance(p, bytes) else p
        return base_headers(secret, body, d), body
    return build


UNSIGNED = [
    ("form-urlencoded-unsigned", lambda s, d: ([("Content-Type", "application/x-www-form-urlencoded"),
                                                ("X-GitHub-Event", "push")], b"payload=%7B%7D")),
    ("no-signature", _case_no_signature),
    ("wrong-signature-right-length", _case_wrong_sig_right_length),
    ("valid-signature-over-another-body", _case_sig_other_body),
    ("signature-sha1-only", lambda s, d: (without(base_headers(s, b"{}", d), "X-Hub-Signature-256")
                                          + [("X-Hub-Signature", "sha1=" + "0" * 40)], b"{}")),
    ("signature-empty", lambda s, d: (replaced(base_headers(s, b"{}", d), "X-Hub-Signature-256", ""), b"{}")),
    ("signature-non-hex", lambda s, d: (replaced(base_headers(s, b"{}", d), "X-Hub-Signature-256",
                                                 "sha256=" + "zz" * 32), b"{}")),
    ("signature-unicode", lambda s, d: (replaced(base_headers(s, b"{}", d), "X-Hub-Signature-256",
                                                 "sha256=" + "\u00e9" * 64), b"{}")),
]

SIGNED_REJECTED = [
    ("truncated-json", _case_truncated),
    ("form-urlencoded-two-payloads", _case_form_two_payloads),
    ("null-repository", _signed(payload(repository=None))),           # CVE-2025-59531 shape
    ("repository-not-an-object", _signed(payload(repository="x"))),
    ("missing-after", _signed(payload(after=...))),                    # CVE-2025-59538 shape
    ("null-after", _signed(payload(after=None))),
    ("after-not-a-sha", _signed(payload(after="../../etc/passwd"))),
    ("null-ref", _signed(payload(ref=None))),
    ("json-array", _signed(b"[1, 2, 3]")),
    ("json-null", _signed(b"null")),
    ("json-deeply-nested", _signed(b"[" * 100000 + b"]" * 100000)),
    ("body-not-utf8", _signed(b"\xff\xfe{\x00}")),
]

SIGNED_NOT_SYNCED = [
    ("unicode-branch", _signed(payload(ref="refs/heads/m\u00e4in-\U0001f680"))),
    ("ref-with-dotdot", _signed(payload(ref="refs/heads/../heads/main"))),
    ("ref-dotdot-prefix", _signed(payload(ref="refs/heads/main/../../tags/v1"))),
    ("ref-main-suffix", _signed(payload(ref="refs/heads/main\x00"))),
    ("ping-as-push", _case_dup_event),
]

# Accepted is fine for these -- the signature over the body is good -- as long as
# there is at most one job and it is for the signed sha.
SIGNED_AMBIGUOUS = [
    ("empty-commit-list", _signed(payload(commits=[], head_commit=None))),
    ("null-commits", _signed(payload(commits=None, head_commit=None))),  # CVE-2025-59537 shape
    ("form-urlencoded-signed", _case_form),
    ("text-plain", _case_text),
    ("no-content-type", _case_no_content_type),
    ("no-event-header", _case_no_event),
    ("duplicated-signature-bad-first", _case_dup_sig_bad_first),
    ("duplicated-signature-good-first", _case_dup_sig_good_first),
    ("duplicated-delivery", _case_dup_delivery),
]

ALL = UNSIGNED + SIGNED_REJECTED + SIGNED_NOT_SYNCED + SIGNED_AMBIGUOUS


def send_gunicorn(port: int, path: str, headers, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value.encode("utf-8"))
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        return conn.getresponse().status
    finally:
        conn.close()


def jobs_and_wanted(conn, name: str) -> tuple[list[str], list[str]]:
    return sync_jobs(conn), [s.decode() for s in conn.zrange(keys.wanted(name), 0, -1)]


def check(kind: str, status: int, conn, name: str, case: str) -> None:
    assert status < 500, f"{case}: {status}"
    jobs, wanted = jobs_and_wanted(conn, name)
    if kind in ("unsigned", "rejected", "not-synced"):
        assert 400 <= status < 500 or kind == "not-synced", f"{case}: {status}"
        assert not jobs and not wanted, f"{case}: {status} queued {jobs} {wanted}"
    else:
        assert len(jobs) <= 1 and set(wanted) <= {SHA}, f"{case}: {status} queued {jobs} {wanted}"
    if kind == "unsigned":
        assert status in (400, 401), f"{case}: {status}"


def kind_of(case: str) -> str:
    for kind, table in (("unsigned", UNSIGNED), ("rejected", SIGNED_REJECTED),
                        ("not-synced", SIGNED_NOT_SYNCED)):
        if any(c == case for c, _ in table):
            return kind
    return "ambiguous"


@pytest.fixture
def web(deployment):
    run = deployment(name="faults", full_name="pullbridge/faults")
    run.write_config()
    run.start("web")
    return run


def test_hostile_requests_against_gunicorn(web, redis_conn, figure):
    answers = {}
    for i, (case, build) in enumerate(ALL):
        redis_conn.flushdb()
        headers, body = build(web.secret, f"d-{i:04d}-{case}")
        status = send_gunicorn(web.port, f"/hooks/{web.name}", headers, body)
        check(kind_of(case), status, redis_conn, web.name, case)
        answers[case] = status
    assert web.procs["web"].poll() is None
    figure(f"bad input via gunicorn: {len(answers)} hostile requests, 0 5xx, 0 unsigned jobs; "
           + ", ".join(f"{c}={s}" for c, s in answers.items()))


def test_hostile_requests_against_the_test_client(web, redis_conn, monkeypatch):
    from pullbridge.config import load_config
    from webhook import create_app

    monkeypatch.setenv("PULLBRIDGE_WEBHOOK_SECRET", web.secret)
    app = create_app(load_config(web.env["PULLBRIDGE_CONFIG"]), redis_url=web.redis_url)
    client = app.test_client()
    for i, (case, build) in enumerate(ALL):
        redis_conn.flushdb()
        headers, body = build(web.secret, f"t-{i:04d}-{case}")
        status = client.post(f"/hooks/{web.name}", data=body, headers=headers).status_code
        check(kind_of(case), status, redis_conn, web.name, case)


def test_oversized_body_through_a_raw_socket_is_413_before_it_is_sent(web, redis_conn):
    """Announce 100 MB, send only the headers: the answer comes without the body being read."""
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as s:
        s.sendall(f"POST /hooks/{web.name} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"X-GitHub-Event: push\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n".encode())
        s.sendall(b"{" * 4096)  # a little of it; the rest never comes
        answer = s.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert sync_jobs(redis_conn) == []
