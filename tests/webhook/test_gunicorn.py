"""The Procfile's ``web`` process for real: gunicorn with several workers.

Proves what only a real server shows: metrics add up across worker
processes (prometheus multiprocess mode), an oversized body, announced or
chunked, is refused without the server waiting for the rest of it, nor
reading it afterwards to keep the connection (an error answer that left the
body unread closes it, after a short linger so the client still gets the
answer), while answers that succeed or read their body keep it, and one
keep-alive connection with requests ready cannot keep a worker from the
others.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.webhook import payloads as P
from tests.webhook.conftest import CAP, GENEROUS, ROOT, running_web, secret


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    # with bench/intake's no-op route: the keep-alive baseline that must stay keep-alive
    with running_web(tmp_path_factory.mktemp("web"), workers=3,
                     extra_env={"PULLBRIDGE_BENCH_NOOP": "1"}) as running:
        yield running


def deliveries(text: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for outcome, value in re.findall(
            r'^pullbridge_webhook_deliveries_total\{outcome="([a-z_]+)",provider="github"\} ([\d.e+]+)$',
            text, re.M):
        counts[outcome] = counts.get(outcome, 0) + float(value)
    return counts


def test_metrics_add_up_across_workers(web):
    base, _, log = web
    before = deliveries(requests.get(base + "/metrics", timeout=GENEROUS).text)
    for i in range(24):
        body = json.dumps(P.github_push(after=P.sha(f"g{i}"))).encode()
        headers = {**P.signed_headers("github", secret("PB_TEST_GITHUB_SECRET"), body),
                   "Connection": "close"}
        response = requests.post(base + "/hooks/gh", data=body, headers=headers, timeout=GENEROUS)
        assert response.status_code == 202
    bad = requests.post(base + "/hooks/gh", data=b"{}", headers={"X-Hub-Signature-256": "sha256=00"},
                        timeout=GENEROUS)
    assert bad.status_code == 401
    def counted() -> tuple[float, float]:
        after = deliveries(requests.get(base + "/metrics", headers={"Connection": "close"},
                                        timeout=GENEROUS).text)
        accepted = (after.get("queued", 0) + after.get("coalesced", 0)
                    - before.get("queued", 0) - before.get("coalesced", 0))
        return accepted, after.get("unauthorized", 0) - before.get("unauthorized", 0)

    deadline = time.monotonic() + GENEROUS  # each worker adds its tally within FLUSH_SECONDS
    while counted() != (24, 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(6):  # then every worker that answers the scrape sees the same totals
        assert counted() == (24, 1)
    # one structured line per delivery, each with its id; each worker's log writer
    # writes them a moment after the answers went out
    deadline = time.monotonic() + GENEROUS
    while True:
        lines = [json.loads(l) for l in log.read_text().splitlines() if l.startswith("{")]
        workers_logged = {l.get("delivery") for l in lines if l.get("status") == 202}
        if len(workers_logged) == 24 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(workers_logged) == 24


def _raw_request(port: int, head: bytes, body_parts: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) as sock:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        # The request is NOT finished (no terminating chunk / short body): the
        # answer must come anyway.
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_announced_oversized_body_is_refused_before_it_is_sent(web):
    _, port, _ = web
    head = (b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n")
    answer = _raw_request(port, head, [])
    assert answer.startswith(b"HTTP/1.1 413")


def test_chunked_oversized_body_is_refused_without_reading_the_rest(web):
    _, port, _ = web
    head = (b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * (CAP * 2)
    answer = _raw_request(port, head, [b"%x\r\n" % len(chunk) + chunk + b"\r\n"])
    assert answer.startswith(b"HTTP/1.1 413")


def test_chunked_body_under_the_cap_is_read(web):
    base, port, _ = web
    body = json.dumps(P.github_push(after=P.sha("chunked"))).encode()
    assert len(body) < CAP
    headers = P.signed_headers("github", secret("PB_TEST_GITHUB_SECRET"), body)

    def chunks():
        for i in range(0, len(body), 500):
            yield body[i:i + 500]

    response = requests.post(base + "/hooks/gh", data=chunks(), headers=headers, timeout=GENEROUS)
    assert response.status_code == 202, response.text


def _read_until_closed(sock: socket.socket) -> tuple[bytes, str]:
    """Everything the server sends until it closes its side: the bytes and how it ended."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, "reset"
        if not chunk:
            return data, "eof"
        data += chunk


def _head(answer: bytes) -> list[bytes]:
    return answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
REFUSED_BODY = 20 * 1024 * 1024


def test_a_refused_body_is_not_read_to_keep_the_connection_and_the_client_gets_the_refusal(web):
    # The spec: over the cap is 413 without reading the rest.  gunicorn drops the
    # app's "Connection: close" (hop-by-hop), so before the fix the 413 went out
    # keep-alive and gunicorn read the whole 20 MiB to serve the next request.
    # The client here is what GitHub and most HTTP clients are: it sends its
    # whole body (and, here, a next request) before reading anything.  It must
    # get the 413 saying "close", then the end of the connection, and its next
    # request must never be answered; and it must be able to send everything
    # (the server lingers, reading and dropping, rather than resetting a
    # connection that still has data coming, which could lose the 413).
    _, port, _ = web
    with socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) as sock:
        sock.sendall(b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % REFUSED_BODY)
        piece, sent = b"x" * 65536, 0
        try:
            while sent < REFUSED_BODY:
                sock.sendall(piece)
                sent += len(piece)
            sock.sendall(HEALTHZ)  # the next request on the same connection
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, ended = _read_until_closed(sock)
    head = _head(data)
    assert head[0].startswith(b"HTTP/1.1 413"), data[:200]
    assert b"Connection: close" in head, head
    assert data.count(b"HTTP/1.1 ") == 1, f"the next request was answered: {data[-200:]!r}"
    assert ended == "eof"
    assert sent == REFUSED_BODY, f"the connection was cut after {sent} body bytes"


DRIP = b"1\r\nx\r\n"


@pytest.mark.parametrize("path, first", [
    ("/hooks/nope", b"2\r\n{}\r\n"),  # 404 (unknown repo): the body is never read
    ("/hooks/gh", b"%x\r\n" % (2 * CAP) + b"x" * (2 * CAP) + b"\r\n"),  # 413 after cap+1 bytes
], ids=["404-unread", "413-over-the-cap"])
def test_a_refused_chunked_body_that_never_ends_is_dropped_after_a_short_linger(web, path, first):
    # A chunked body that keeps coming (a chunk every 50 ms, never the last one):
    # before the fix gunicorn read it to keep the connection until its keepalive
    # timeout (15 s).  Now the answer says "close", the server's side
    # ends right after it, and the server gives the connection up (closes it: the
    # client's sends fail) after lingering.
    _, port, _ = web
    with socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode() + first)
        dripping = {"sent": 0, "until": None, "error": None}
        stop = threading.Event()

        def drip():
            while not stop.is_set():
                try:
                    sock.sendall(DRIP)
                except OSError as exc:
                    dripping["until"], dripping["error"] = time.monotonic(), exc
                    return
                dripping["sent"] += 1
                time.sleep(0.05)

        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "closed without an answer"
            data += chunk
        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        try:
            rest, ended = _read_until_closed(sock)
            dripper.join(GENEROUS)  # the drips stop when the server has closed the connection
        finally:
            stop.set()
    head = _head(data + rest)
    assert head[0].startswith(b"HTTP/1.1 404" if path == "/hooks/nope" else b"HTTP/1.1 413"), head
    assert b"Connection: close" in head, head
    assert (data + rest).count(b"HTTP/1.1 ") == 1
    assert ended in ("eof", "reset")
    # It ended at all (GENEROUS only guards the suite): the drips never would.  How long
    # the linger lasts is test_gunicorn_worker's to check, with no clock in the way.
    assert dripping["until"] is not None, f"the server still took drips after {GENEROUS} s"


def _read_answer(sock: socket.socket, data: bytes) -> tuple[list[bytes], bytes]:
    """One answer with a Content-Length (or none, a 204) off a keep-alive connection:
    its head lines, and the bytes after it."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed: {data!r}"
        data += chunk
    raw, data = data.split(b"\r\n\r\n", 1)
    head = raw.split(b"\r\n")
    length = next((int(l.split(b":", 1)[1]) for l in head if l.lower().startswith(b"content-length:")), 0)
    while len(data) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed mid-answer"
        data += chunk
    return head, data[length:]


def test_answers_that_succeed_or_read_their_body_keep_the_connection(web):
    # Only an error answer that left its body unread closes the connection.
    # bench/intake's baseline answers 204 without reading its 8 KB body: gunicorn
    # reads it to keep the connection, as before.  A forged delivery's 401 reads
    # the body before checking the signature: nothing is left, nothing closes.
    _, port, _ = web
    noop_body = b"n" * 8192
    forged_body = json.dumps(P.github_push(after=P.sha("forged"))).encode()
    requests_ = [
        (b"POST /bench/noop HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(noop_body)
         + noop_body, b"HTTP/1.1 204"),
        (b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=" + b"0" * 64 + b"\r\n"
         b"Content-Length: %d\r\n\r\n" % len(forged_body) + forged_body, b"HTTP/1.1 401"),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) as sock:
        data = b""
        for request, status in requests_ * 2 + [(HEALTHZ, b"HTTP/1.1 200")]:
            sock.sendall(request)
            head, data = _read_answer(sock, data)
            assert head[0].startswith(status), head
            assert b"Connection: keep-alive" in head, head
        assert data == b""


def test_gunicorns_master_imports_nothing_that_gevent_must_patch_first(web):
    # The master reads webhook.gunicorn_conf; were Flask, redis or ssl imported there,
    # every gevent worker would inherit them unpatched (gevent warns, and TLS to
    # Redis could block a whole worker).
    code = ("import sys, webhook.gunicorn_conf; "
            "print(sorted({'flask', 'redis', 'ssl', 'werkzeug'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    _, _, log = web
    assert "MonkeyPatchWarning" not in log.read_text()



@pytest.mark.parametrize("host, bind", [(None, "0.0.0.0:8080"), ("127.0.0.1", "127.0.0.1:8080")])
def test_the_web_process_listens_where_web_host_says(host, bind):
    env = {k: v for k, v in os.environ.items() if k not in ("WEB_HOST", "PORT")}
    if host:
        env["WEB_HOST"] = host
    code = "import webhook.gunicorn_conf as c; print(c.bind)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == bind


def test_the_running_test_server_listens_on_loopback_only(web):
    _, port, _ = web
    listen = "0A"  # TCP_LISTEN in /proc/net/tcp
    addresses = [fields[1] for fields in (line.split() for line in open("/proc/net/tcp").readlines()[1:])
                 if fields[3] == listen and fields[1].endswith(f":{port:04X}")]
    assert addresses == [f"0100007F:{port:04X}"], addresses  # 127.0.0.1, not 0.0.0.0

PIPELINED = 400


def _answers(data: bytes) -> int:
    return data.count(b"HTTP/1.1 200 ")


def _read_answers(sock: socket.socket, count: int) -> bytes:
    data = b""
    while _answers(data) < count or not data.endswith(b"}\n"):
        chunk = sock.recv(65536)
        assert chunk, "connection closed early"
        data += chunk
    return data


def test_a_keep_alive_connection_with_requests_ready_cannot_keep_the_worker_from_others(tmp_path):
    # One worker, two keep-alive connections.  A sends 400 requests at once
    # (pipelined, as a proxy or a flood of forged deliveries can), none of which
    # waits for anything.  Once A's answers flow, B asks once: B must be answered
    # in its turn, not after the rest of A's run (gevent alone lets a greenlet
    # that never waits go on to read A's next request, and the next; see
    # webhook.gunicorn_worker).  Counted, not timed: how many of A's answers
    # arrive between B's question and B's answer.
    with running_web(tmp_path, workers=1) as (_, port, _log):
        a = socket.create_connection(("127.0.0.1", port), timeout=GENEROUS)
        b = socket.create_connection(("127.0.0.1", port), timeout=GENEROUS)
        with a, b:
            for sock in (a, b):  # both accepted and waiting for their next request
                sock.sendall(HEALTHZ)
                _read_answers(sock, 1)
            received = {"a": b""}

            def read_a():  # keeps received["a"] current, answer by answer
                while _answers(received["a"]) < PIPELINED:
                    chunk = a.recv(65536)
                    if not chunk:
                        return
                    received["a"] += chunk

            reader = threading.Thread(target=read_a, daemon=True)
            reader.start()
            a.sendall(HEALTHZ * PIPELINED)
            deadline = time.monotonic() + GENEROUS  # a guard against a hang, not a limit under test
            while _answers(received["a"]) < 2 and reader.is_alive() and time.monotonic() < deadline:
                time.sleep(0.0005)
            asked_at = _answers(received["a"])
            b.sendall(HEALTHZ)
            _read_answers(b, 1)
            meanwhile = _answers(received["a"]) - asked_at
            reader.join(GENEROUS)
            assert _answers(received["a"]) == PIPELINED
            assert asked_at < PIPELINED // 4, "A's run was over before B asked: the test proved nothing"
            assert meanwhile < PIPELINED // 2, (
                f"{meanwhile} of A's answers went out between B's question and B's answer")
