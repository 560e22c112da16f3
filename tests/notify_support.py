"""Test support for commit statuses and alerts: a git host API on a real socket, Redis, a worker.

``FakeHosts`` is a small HTTP server (http.server in a thread) that checks
every request the way the documented APIs (GitHub, GitLab, Gitea, Bitbucket Server) do: method, path, auth header,
required headers, JSON fields, allowed states and limits, answering 401/404/
400/422 like the real host; a GET on a commit's statuses lists them (200),
as GitHub's does, and is recorded with its headers.  It keeps a GitLab-like state machine per commit
and name (posting ``running`` twice is GitLab's 400 "Cannot transition
status via :run from :running").  Tests can queue canned answers
(``script``) to prove retries: 500, 409, 429 with Retry-After.

Redis is the stack's (tests/conftest.py ``redis_conn``: this process's own
flushed DB); ``dead_redis`` is a client for a port nobody listens on.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
from rq import Queue, SimpleWorker

from pullbridge import keys

GITHUB_TOKEN = "ghp_test_token_never_logged"
GITLAB_TOKEN = "glpat-test-token-never-logged"
GITEA_TOKEN = "gitea-test-token-never-logged"
BITBUCKET_TOKEN = "bbdc-test-token-never-logged"
SHA_RE = r"[0-9a-f]{40}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeHosts:
    """GitHub (under /github), GitLab (/gitlab/api/v4), Gitea (/gitea/api/v1), Bitbucket Server (/bitbucket)
    and alert sinks (/hooks/...)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[tuple[int, dict, dict]] = []
        self.final: dict[tuple, str] = {}
        self.gitlab_open: dict[tuple, str] = {}
        self.known_projects = {"acme/deploy", "group/sub/deploy", "42", "ACME/deploy", "~ada/deploy"}
        self.lock = threading.Lock()
        hosts = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with hosts.lock:
                    status, body, headers = hosts.handle(self.path, dict(self.headers.items()), raw)
                data = b"" if status == 204 else json.dumps(body).encode()
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # like GitHub and Gitea: GET on a commit's statuses lists them
                with hosts.lock:
                    hosts.requests.append({"method": "GET", "path": self.path, "payload": None, "at": time.time(),
                                           "headers": {k.lower(): v for k, v in self.headers.items()}})
                listing = re.search(rf"/repos/[^/]+/[^/]+/statuses/{SHA_RE}$", self.path)
                data = b"[]" if listing else b'{"message": "Not Found"}'
                self.send_response(200 if listing else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # --- request checking ---------------------------------------------------------------

    def handle(self, path: str, headers: dict, raw: bytes):
        headers = {k.lower(): v for k, v in headers.items()}
        try:
            payload = json.loads(raw or b"null")
        except ValueError:
            payload = None
        record = {"path": path, "headers": headers, "payload": payload, "at": time.time()}
        self.requests.append(record)
        if self.script:
            return self.script.pop(0)
        if path.startswith("/github/"):
            record["provider"] = "github"
            return self.github(path.removeprefix("/github"), headers, payload, "Bearer " + GITHUB_TOKEN,
                               {"error", "failure", "pending", "success"})
        if path.startswith("/gitea/api/v1/"):
            record["provider"] = "gitea"
            return self.github(path.removeprefix("/gitea/api/v1"), headers, payload, "token " + GITEA_TOKEN,
                               {"error", "failure", "pending", "success", "warning"}, gitea=True)
        if path.startswith("/gitlab/api/v4/"):
            record["provider"] = "gitlab"
            return self.gitlab(path.removeprefix("/gitlab/api/v4"), headers, payload)
        if path.startswith("/bitbucket/rest/"):
            record["provider"] = "bitbucket"
            return self.bitbucket(path.removeprefix("/bitbucket"), headers, payload)
        if path.startswith("/hooks/"):
            record["provider"] = "hook"
            if headers.get("content-type", "").split(";")[0] != "application/json" or not isinstance(payload, dict):
                return 400, {"error": "expected a JSON object"}, {}
            if path.startswith("/hooks/slack") and not isinstance(payload.get("text"), str):
                return 400, {"error": "no_text"}, {}
            return 200, {"ok": True}, {}
        return 404, {"message": "Not Found"}, {}

    def github(self, path, headers, payload, auth, states, gitea=False):
        m = re.fullmatch(rf"/repos/([^/]+)/([^/]+)/statuses/({SHA_RE})", path)
        if not m:
            return 404, {"message": "Not Found"}, {}
        if headers.get("authorization") != auth:
            return 401, {"message": "Bad credentials"}, {}
        if not headers.get("user-agent"):
            return 403, {"message": "Request forbidden: a User-Agent header is required"}, {}
        if not gitea and (headers.get("accept") != "application/vnd.github+json"
                          or headers.get("x-github-api-version") != "2022-11-28"):
            return 400, {"message": "expected GitHub media type and API version headers"}, {}
        project = f"{m.group(1)}/{m.group(2)}"
        if project not in self.known_projects:
            return 404, {"message": "Not Found"}, {}
        if not isinstance(payload, dict):
            return 400, {"message": "Problems parsing JSON"}, {}
        unknown = set(payload) - {"state", "target_url", "description", "context"}
        errors = [{"field": k, "code": "invalid"} for k in sorted(unknown)]
        if payload.get("state") not in states:
            errors.append({"resource": "Status", "field": "state", "code": "custom",
                           "message": f"state must be one of {sorted(states)}"})
        description = payload.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 140):
            errors.append({"resource": "Status", "field": "description", "code": "custom",
                           "message": "description is too long (maximum is 140 characters)"})
        context = payload.get("context", "default")
        if not isinstance(context, str) or not context or len(context) > 255:
            errors.append({"resource": "Status", "field": "context", "code": "custom"})
        target_url = payload.get("target_url")
        if target_url is not None and not re.match(r"^https?://", str(target_url)):
            errors.append({"resource": "Status", "field": "target_url", "code": "custom"})
        if errors:
            return 422, {"message": "Validation Failed", "errors": errors}, {}
        provider = "gitea" if gitea else "github"
        self.final[(provider, project, m.group(3), context)] = payload["state"]
        return 201, {"id": len(self.requests), "state": payload["state"], "context": context,
                     "description": description, "target_url": target_url}, {}

    def gitlab(self, path, headers, payload):
        m = re.fullmatch(rf"/projects/([^/]+)/statuses/({SHA_RE})", path)
        if not m:
            return 404, {"message": "404 Not Found"}, {}
        if headers.get("private-token") != GITLAB_TOKEN:
            return 401, {"message": "401 Unauthorized"}, {}
        project = m.group(1).replace("%2F", "/").replace("%2f", "/")
        if project not in self.known_projects:
            return 404, {"message": "404 Project Not Found"}, {}
        if not isinstance(payload, dict):
            return 400, {"error": "state is missing"}, {}
        allowed = {"state", "ref", "name", "context", "target_url", "description", "coverage", "pipeline_id"}
        if set(payload) - allowed:
            return 400, {"error": f"unknown parameters {sorted(set(payload) - allowed)}"}, {}
        state = payload.get("state")
        if state not in ("pending", "running", "success", "failed", "canceled"):
            return 400, {"error": "state does not have a valid value"}, {}
        name = payload.get("name") or payload.get("context") or "default"
        if len(name) > 255 or len(payload.get("description") or "") > 255:
            return 400, {"message": {"name": ["is too long"]}}, {}
        key = ("gitlab", project, m.group(2), name)
        current = self.gitlab_open.get(key)
        if state == "running" and current == "running":
            return 400, {"message": "Cannot transition status via :run from :running "
                                    "(Reason(s): Status cannot transition via \"run\")"}, {}
        if state == "pending" and current in ("pending", "running"):
            return 400, {"message": f"Cannot transition status via :enqueue from :{current} "
                                    "(Reason(s): Status cannot transition via \"enqueue\")"}, {}
        if state in ("pending", "running"):
            self.gitlab_open[key] = state
        else:
            self.gitlab_open.pop(key, None)
        self.final[key] = state
        return 201, {"id": len(self.requests), "status": state, "name": name, "ref": payload.get("ref")}, {}

    def bitbucket(self, path, headers, payload):
        """Bitbucket Data Center's builds API (7.4+): key, state and url required; 204 No Content."""
        m = re.fullmatch(rf"/rest/api/latest/projects/([^/]+)/repos/([^/]+)/commits/({SHA_RE})/builds", path)
        if not m:
            return 404, {"errors": [{"message": "Not Found"}]}, {}
        if headers.get("authorization") != "Bearer " + BITBUCKET_TOKEN:
            return 401, {"errors": [{"message": "Authentication failed. Please check your credentials."}]}, {}
        project = f"{m.group(1)}/{m.group(2)}"
        if project not in self.known_projects:
            return 404, {"errors": [{"message": f"Repository {project} does not exist."}]}, {}
        if not isinstance(payload, dict):
            return 400, {"errors": [{"message": "Unable to parse the request body"}]}, {}
        allowed = {"key", "state", "url", "name", "description", "ref", "buildNumber", "duration", "lastUpdated",
                   "parent", "testResults"}
        problems = [f"unknown field {k}" for k in sorted(set(payload) - allowed)]
        if payload.get("state") not in ("INPROGRESS", "SUCCESSFUL", "FAILED", "CANCELLED", "UNKNOWN"):
            problems.append("state is not valid")
        for field, limit in (("key", 255), ("url", 450), ("name", 255), ("description", 255)):
            value = payload.get(field)
            if field in ("key", "url") and not value:
                problems.append(f"{field} is required")
            elif value is not None and (not isinstance(value, str) or len(value) > limit):
                problems.append(f"{field} is longer than {limit} characters")
        if payload.get("url") and not re.match(r"^https?://", payload["url"]):
            problems.append("url is not a valid URL")
        if problems:
            return 400, {"errors": [{"message": p} for p in problems]}, {}
        self.final[("bitbucket", project, m.group(3), payload["key"])] = payload["state"]
        return 204, {}, {}

    def answered(self, provider: str) -> list[dict]:
        return [r for r in self.requests if r.get("provider") == provider]


@pytest.fixture
def fake_hosts():
    hosts = FakeHosts()
    yield hosts
    hosts.close()


def run_status_worker(conn) -> None:
    """Run a real RQ worker over the status queue until it is empty."""
    SimpleWorker([Queue(keys.STATUS_QUEUE, connection=conn)], connection=conn).work(burst=True)


def dead_redis() -> redis.Redis:
    """A client for a port nobody listens on, failing fast (no client-side retries)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


RECEIVER_SECRET = "receiver-test-secret"


def receiver_with_statuses(monkeypatch, tmp_path, redis_conn, namespace, git, *, api_url: str, token: str,
                           status: dict | None = None):
    """A GitHub-provider repo ``app`` (repository ``acme/deploy``, as FakeHosts knows it) on the
    stack's git host with commit statuses on, and the receiver's app for it.  A fixture's
    generator: yields (config, test client); ``signed_push`` delivers a push to it."""
    from pullbridge.config import load_config
    from tests.pages.conftest import redis_url
    from webhook import create_app

    path = tmp_path / "pullbridge.yaml"
    path.write_text(json.dumps({
        "server": {"public_url": "https://pb.example"},
        "worker": {"inventory_namespace": namespace, "lock_wait": 1},  # a locked repo hands over soon
        "repos": [{"name": "app", "url": git.http_url, "provider": "github", "repository": "acme/deploy",
                   "secret_env": "PB_TEST_RECEIVER_SECRET", "namespace": namespace,
                   "status": {"token_env": "PB_TEST_RECEIVER_TOKEN", "api_url": api_url, **(status or {})}}],
    }))
    monkeypatch.setenv("PULLBRIDGE_CONFIG", str(path))
    monkeypatch.setenv("PULLBRIDGE_CACHE_DIR", str(tmp_path / "mirrors"))
    monkeypatch.setenv("PB_TEST_RECEIVER_SECRET", RECEIVER_SECRET)
    monkeypatch.setenv("PB_TEST_RECEIVER_TOKEN", token)
    config = load_config(path)
    app = create_app(config, redis_url=redis_url(redis_conn))
    app.testing = True
    yield config, app.test_client()
    app.extensions["pullbridge"].conn.close()


def github_status_site(fake_hosts, redis_conn, namespace, git, tmp_path, monkeypatch):
    """``receiver_with_statuses`` posting to ``fake_hosts``' GitHub, each status tried twice at
    once; a fixture's generator: yields (git, config, test client)."""
    for config, client in receiver_with_statuses(monkeypatch, tmp_path, redis_conn, namespace, git,
                                                 api_url=fake_hosts.base + "/github", token=GITHUB_TOKEN,
                                                 status={"backoff": [0], "retries": 1}):
        yield git, config, client


def signed_push(client, sha: str) -> str:
    """A signed GitHub push of ``sha`` to ``receiver_with_statuses``' app; its sync job id."""
    from tests.webhook import payloads as P

    body = json.dumps(P.github_push(full_name="acme/deploy", after=sha)).encode()
    answer = client.post("/hooks/app", data=body,
                         headers=P.signed_headers("github", RECEIVER_SECRET.encode(), body))
    assert answer.status_code == 202, answer.data
    return answer.get_json()["job_id"]
