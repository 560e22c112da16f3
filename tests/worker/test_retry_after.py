"""A temporary API failure is retried no sooner than the API server asked.

Pure logic (how ``Retry-After`` becomes a ``TemporaryError``'s delay, and a
delay RQ's next retry interval) plus one sync on the real stack, through a
proxy in front of the real API server that answers the first write 429 with
``Retry-After``, as an overloaded API server (Priority and Fairness) does.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import urllib3
import yaml
from rq.registry import ScheduledJobRegistry

from pullbridge import keys
from tests.rq_support import enqueue_when_due
from tests.worker.sync_manifests import app_files
from worker import kube as kube_module
from worker.errors import PermanentError, TemporaryError, stretch_next_retry
from worker.kube import MAX_RETRY_AFTER, ApiError, Kube, load_api_client, sync_error

STATUS_429 = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": "Too many requests, please try again later.", "reason": "TooManyRequests",
              "details": {"retryAfterSeconds": 3}, "code": 429}


def test_retry_after_header_becomes_the_delay():
    exc = sync_error(ApiError(429, json.dumps(STATUS_429).encode(), "PATCH", "/x", "7"), "applying ConfigMap/ns/a")
    assert isinstance(exc, TemporaryError) and exc.delay == 7.0
    assert str(exc) == ("applying ConfigMap/ns/a: HTTP 429: Too many requests, please try again later. "
                        "(the API server asked to retry after 7s)")


def test_status_details_give_the_delay_without_a_header():
    assert ApiError(429, json.dumps(STATUS_429).encode(), "PATCH", "/x").retry_after == 3.0


@pytest.mark.parametrize("header, expected", [
    (None, None), ("", None), ("0", None), ("soon", None),
    ("Wed, 21 Oct 2026 07:28:00 GMT", None),  # the API server sends seconds; a date is not guessed at
    ("99999", float(MAX_RETRY_AFTER)),
])
def test_unusable_or_huge_retry_after(header, expected):
    assert ApiError(503, b"not json", "GET", "/x", header).retry_after == expected


def test_a_permanent_failure_has_no_delay_even_with_retry_after():
    exc = sync_error(ApiError(422, b"{}", "PATCH", "/x", "5"), "applying")
    assert isinstance(exc, PermanentError) and not hasattr(exc, "delay")


def test_stretch_next_retry_raises_only_the_interval_of_the_next_retry():
    job = SimpleNamespace(retries_left=2, retry_intervals=[1, 30])
    stretch_next_retry(job, 4.2)
    assert job.retry_intervals == [5, 30]  # first retry: at least 4.2 s, in RQ's whole seconds
    stretch_next_retry(job, 2)
    assert job.retry_intervals == [5, 30]  # never shortened
    job = SimpleNamespace(retries_left=0, retry_intervals=[1])
    stretch_next_retry(job, 60)
    assert job.retry_intervals == [1]  # no retry left: nothing to stretch


class _Throttling(ThreadingHTTPServer):
    """A plain-HTTP proxy to the real API server (with the stack's admin
    certificate) that answers the first write in ``namespace`` 429."""

    daemon_threads = True

    def __init__(self, stack, namespace: str, retry_after: int):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        data = yaml.safe_load(open(stack.kubeconfig))
        cluster, user = data["clusters"][0]["cluster"], data["users"][0]["user"]
        self.upstream = cluster["server"]
        self.pool = urllib3.PoolManager(cert_reqs=ssl.CERT_REQUIRED, ca_certs=cluster["certificate-authority"],
                                        cert_file=user["client-certificate"], key_file=user["client-key"])
        self.namespace, self.retry_after = namespace, retry_after
        self.throttled: list[str] = []

    def throttles(self, method: str, path: str) -> bool:
        if self.throttled or method != "PATCH" or "dryRun" in path:
            return False
        return f"/namespaces/{self.namespace}/" in path


class _ProxyHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _forward(self):
        server: _Throttling = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if server.throttles(self.command, self.path):
            server.throttled.append(f"{self.command} {self.path}")
            data = json.dumps({**STATUS_429, "details": {"retryAfterSeconds": server.retry_after}}).encode()
            self._answer(429, {"Content-Type": "application/json", "Retry-After": str(server.retry_after)}, data)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        resp = server.pool.request(self.command, server.upstream + self.path, body=body or None,
                                   headers=headers, retries=False, preload_content=True)
        keep = {k: v for k, v in resp.headers.items()
                if k.lower() not in ("transfer-encoding", "connection", "content-length", "content-encoding")}
        self._answer(resp.status, keep, resp.data)

    def _answer(self, status: int, headers: dict, data: bytes):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward


@pytest.mark.stack
def test_a_throttled_sync_is_retried_no_sooner_than_the_api_server_asked(harness, git_repo, stack, namespace,
                                                                        redis_conn, tmp_path, monkeypatch):
    proxy = _Throttling(stack, namespace, retry_after=3)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "proxy",
        "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{proxy.server_address[1]}"}}],
        "users": [{"name": "proxy", "user": {}}],
        "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}]}))
    monkeypatch.setattr(kube_module, "_process_kube", Kube(load_api_client(str(kubeconfig))))
    try:
        repo = git_repo(f"throttled{uuid.uuid4().hex[:6]}")
        harness.configure(repo, backoff=["1s"], retries=2)  # the repo's own backoff: 1 s
        sha = repo.commit_and_push("v1", app_files("1.0"))
        queued = harness.request(sha)
        harness.work()
        assert len(proxy.throttled) == 1, proxy.throttled
        first = harness.history()[0]
        assert first["result"] == "retrying"
        assert "HTTP 429" in first["error"] and "asked to retry after 3s" in first["error"]
        scheduled = ScheduledJobRegistry(keys.SYNC_QUEUE, connection=redis_conn)
        assert scheduled.get_job_ids() == [queued.job_id]
        when = scheduled.get_scheduled_time(queued.job_id).timestamp()
        # The repo's backoff alone would retry 1 s after the failure was recorded.
        assert when - first["finished_at"] >= 2, f"retried {when - first['finished_at']:.1f}s after, asked 3s"
        # Once due, the retry goes through the same proxy (no longer throttling) and applies.
        enqueue_when_due(redis_conn, keys.SYNC_QUEUE, queued.job_id)
        harness.work()
        assert harness.history()[0]["result"] == "success"
        assert harness.state()["applied_sha"] == sha
    finally:
        proxy.shutdown()
        proxy.server_close()
