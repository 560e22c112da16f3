"""A whole Pullbridge on the local stack: a git repo, a config, the Procfile's
processes and a signed webhook sender.

Why it exists: the demo, the end-to-end tests and the benchmarks all need the
same thing -- the real web and worker processes in front of a real git repo
and API server -- and should not each grow their own copy of it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from pullbridge.stack import Stack, wait_until

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line and not line.startswith("#"))


class LocalDeployment:
    """One configured repository, its bare git repo and the processes serving it."""

    def __init__(self, stack: Stack, name: str = "demo", full_name: str = "pullbridge/demo",
                 path: str = "deploy", redis_url: str | None = None, repo_settings: dict | None = None,
                 extra_env: dict | None = None):
        self.stack = stack
        self.name = name
        self.full_name = full_name
        self.path = path
        self.tmp = Path(tempfile.mkdtemp(prefix=f"pullbridge-{name}-"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.secret = secrets.token_hex(20)
        self.bare = stack.git_root / f"{name}-{uuid.uuid4().hex[:8]}.git"
        self.work = self.tmp / "work"
        self.port = free_port()
        self.redis_url = redis_url or stack.redis_url
        self.repo_settings = repo_settings or {}
        self.env = {**os.environ, **stack.env(), "PULLBRIDGE_WEBHOOK_SECRET": self.secret,
                    "REDIS_URL": self.redis_url, "PULLBRIDGE_CONFIG": str(self.tmp / "pullbridge.yaml"),
                    "PORT": str(self.port), "WEB_HOST": "127.0.0.1", "PULLBRIDGE_CACHE_DIR": str(self.tmp / "cache"),
                    **(extra_env or {})}
        git("init", "-q", "--bare", "-b", "main", str(self.bare))
        git("init", "-q", "-b", "main", str(self.work))
        self.head = "0" * 40

    @property
    def url(self) -> str:
        return f"{self.stack.git_http_url}/{self.bare.name}"

    # -- git --------------------------------------------------------------
    def commit_and_push(self, files: dict[str, str | None], message: str = "change") -> tuple[str, list[str]]:
        """Write (or, for None, delete) files under the work tree, commit, push; -> (sha, paths)."""
        for rel, text in files.items():
            target = self.work / rel
            if text is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        git("add", "-A", cwd=self.work)
        git("-c", "user.name=Pullbridge Demo", "-c", "user.email=demo@pullbridge.invalid", "commit", "-q",
            "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", f"file://{self.bare}", "HEAD:refs/heads/main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work), sorted(files)

    # -- processes --------------------------------------------------------
    def write_config(self, extra: dict | None = None) -> None:
        repo = {"name": self.name, "url": self.url, "branch": "main", "path": self.path,
                "provider": "github", "repository": self.full_name,
                "secret_env": "PULLBRIDGE_WEBHOOK_SECRET", **self.repo_settings}
        config = {"server": {"public_url": f"http://127.0.0.1:{self.port}"}, "repos": [repo], **(extra or {})}
        Path(self.env["PULLBRIDGE_CONFIG"]).write_text(json.dumps(config, indent=2))

    def start(self, *names: str) -> None:
        commands = procfile()
        for name in names or ("web", "worker"):
            log = open(self.tmp / f"{name}.log", "ab")
            self.procs[name] = subprocess.Popen(
                ["sh", "-c", "exec " + commands[name]], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=ROOT)
            log.close()
        if "web" in self.procs and not wait_until(self.web_ready, 30):
            raise RuntimeError(f"the web process did not answer; log: {self.tmp / 'web.log'}")

    def web_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = self.tmp / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # -- webhooks ---------------------------------------------------------
    def push_payload(self, before: str, after: str, changed: list[str]) -> bytes:
        payload = {
            "ref": "refs/heads/main", "before": before, "after": after, "created": before == "0" * 40,
            "deleted": False, "forced": False,
            "repository": {"full_name": self.full_name, "name": self.full_name.split("/")[-1],
                           "clone_url": "https://example.invalid/never-used.git"},
            "pusher": {"name": "pullbridge-demo"},
            "commits": [{"id": after, "message": "change", "added": [], "removed": [], "modified": changed}],
            "head_commit": {"id": after, "added": [], "removed": [], "modified": changed},
        }
        return json.dumps(payload).encode()

    def send_push(self, before: str, after: str, changed: list[str],
                  delivery: str | None = None) -> tuple[int, dict]:
        body = self.push_payload(before, after, changed)
        signature = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/hooks/{self.name}", data=body, method="POST",
            headers={"Content-Type": "application/json", "X-GitHub-Event": "push",
                     "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "X-Hub-Signature-256": signature})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:
                return exc.code, {}

    def push(self, files: dict[str, str | None], message: str = "change") -> tuple[str, int, dict]:
        """Commit, push and deliver the webhook, as a git host would; -> (sha, status, answer)."""
        before = self.head
        sha, changed = self.commit_and_push(files, message)
        self.head = sha
        status, answer = self.send_push(before, sha, changed)
        return sha, status, answer

    # -- clean-up ---------------------------------------------------------
    def stop(self, *names: str) -> None:
        for name in names or list(self.procs):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def forget_redis_state(self) -> None:
        from redis import Redis

        conn = Redis.from_url(self.redis_url)
        try:
            for key in conn.scan_iter(match=f"pb:*:{self.name}:*"):
                conn.delete(key)
        finally:
            conn.close()

    def cleanup(self) -> None:
        self.stop()
        self.forget_redis_state()
        shutil.rmtree(self.bare, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_for(check, timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until ``check()`` was true, or None after ``timeout``."""
    started = time.monotonic()
    if wait_until(check, timeout, interval):
        return time.monotonic() - started
    return None
