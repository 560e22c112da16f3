"""`pullbridge demo`: the original Flux demo's scenario, end to end on the local stack.

Why it exists: it is the README's first command, the quickest proof that the
whole path works on a machine: a bare git repo holding the demo manifests,
the Procfile's web and worker processes, a signed GitHub push webhook, and the
new value read back from the API server.  Everything it starts or creates is
removed on exit, also on Ctrl-C.
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
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from pullbridge.stack import Stack, wait_until

MANIFESTS = Path(__file__).with_name("manifests")
REPO_NAME = "fluxdemo"
FULL_NAME = "pullbridge/fluxdemo"
NAMESPACE = "my-demo"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def info(text: str) -> None:
    print(f"    {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


class Demo:
    def __init__(self, stack: Stack):
        self.stack = stack
        self.tmp = Path(tempfile.mkdtemp(prefix="pullbridge-demo-"))
        self.procs: list[subprocess.Popen] = []
        self.secret = secrets.token_hex(20)
        self.bare = stack.git_root / f"demo-{uuid.uuid4().hex[:8]}.git"
        self.work = self.tmp / "work"
        self.port = free_port()
        self.env = {**os.environ, **stack.env(), "DEMO_WEBHOOK_SECRET": self.secret,
                    "PULLBRIDGE_CONFIG": str(self.tmp / "pullbridge.yaml"), "PORT": str(self.port),
                    "PULLBRIDGE_CACHE_DIR": str(self.tmp / "cache"), "WEB_CONCURRENCY": "2"}
        self.kube = None

    # -- set-up -----------------------------------------------------------
    def make_repo(self) -> str:
        step(f"A git repository with the demo manifests, served at {self.stack.git_http_url}")
        git("init", "-q", "--bare", "-b", "main", str(self.bare))
        git("init", "-q", "-b", "main", str(self.work))
        shutil.copytree(MANIFESTS, self.work / "deploy")
        git("add", "-A", cwd=self.work)
        git("-c", "user.name=Demo", "-c", "user.email=demo@pullbridge.invalid", "commit", "-q", "-m",
            "Flux demo: namespace, fluxdemo deployment, nginx config", cwd=self.work)
        git("push", "-q", f"file://{self.bare}", "HEAD:refs/heads/main", cwd=self.work)
        sha = git("rev-parse", "HEAD", cwd=self.work)
        for path in sorted((self.work / "deploy").glob("*.yaml")):
            info(f"deploy/{path.name}")
        info(f"commit {sha[:12]} pushed to {self.stack.git_http_url}/{self.bare.name}")
        return sha

    def write_config(self) -> None:
        config = {
            "server": {"public_url": f"http://127.0.0.1:{self.port}"},
            "repos": [{
                "name": REPO_NAME, "url": f"{self.stack.git_http_url}/{self.bare.name}", "branch": "main",
                "path": "deploy", "provider": "github", "repository": FULL_NAME,
                "secret_env": "DEMO_WEBHOOK_SECRET", "interval": "5m",
            }],
        }
        Path(self.env["PULLBRIDGE_CONFIG"]).write_text(json.dumps(config, indent=2))

    def start_processes(self) -> None:
        step("Starting the Procfile's web and worker processes")
        procfile = dict(line.split(": ", 1) for line in
                        (Path(__file__).parents[2] / "Procfile").read_text().splitlines() if ": " in line)
        for name in ("web", "worker"):
            log = open(self.tmp / f"{name}.log", "wb")
            proc = subprocess.Popen(["sh", "-c", "exec " + procfile[name]], env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=Path(__file__).parents[2])
            self.procs.append(proc)
            info(f"{name}: {procfile[name]}  (pid {proc.pid}, log {self.tmp / (name + '.log')})")
        if not wait_until(self._web_ready, 30):
            raise RuntimeError(f"the web process did not answer; see {self.tmp / 'web.log'}")

    def _web_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    # -- the flow ---------------------------------------------------------
    def send_push(self, before: str, after: str, changed: list[str]) -> dict:
        payload = {
            "ref": "refs/heads/main", "before": before, "after": after, "created": False,
            "deleted": False, "forced": False,
            "repository": {"full_name": FULL_NAME, "name": REPO_NAME,
                           "clone_url": "https://example.invalid/never-used.git"},
            "pusher": {"name": "demo"},
            "commits": [{"id": after, "message": "demo", "added": [], "removed": [], "modified": changed}],
            "head_commit": {"id": after, "added": [], "removed": [], "modified": changed},
        }
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/hooks/{REPO_NAME}", data=body, method="POST",
            headers={"Content-Type": "application/json", "X-GitHub-Event": "push",
                     "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": signature})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                answer = json.loads(resp.read() or b"{}")
                info(f"POST /hooks/{REPO_NAME} -> {resp.status} {json.dumps(answer)}")
                return answer
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"webhook answered {exc.code}: {exc.read()[:300]!r}") from None

    def app_version(self) -> str | None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        try:
            dep = client.AppsV1Api(self.kube).read_namespaced_deployment("fluxdemo", NAMESPACE)
        except ApiException:
            return None
        for container in dep.spec.template.spec.containers:
            for env in container.env or []:
                if env.name == "APP_VERSION":
                    return env.value
        return None

    def wait_for_version(self, version: str, timeout: float = 60) -> float:
        started = time.monotonic()
        if not wait_until(lambda: self.app_version() == version, timeout, interval=0.1):
            raise RuntimeError(f"APP_VERSION did not become {version!r} within {timeout:.0f}s; "
                               f"worker log: {self.tmp / 'worker.log'}")
        return time.monotonic() - started

    def run(self) -> None:
        from kubernetes import config as kconfig

        self.kube = kconfig.new_client_from_config(config_file=str(self.stack.kubeconfig))
        first = self.make_repo()
        self.write_config()
        self.start_processes()

        step("The git host sends the signed push webhook for the first commit")
        self.send_push("0" * 40, first, ["deploy/fluxdemo.yaml"])
        took = self.wait_for_version("v1")
        info(f"applied in {took:.2f}s: Namespace/{NAMESPACE}, Deployment/{NAMESPACE}/fluxdemo, "
             f"ConfigMap/{NAMESPACE}/nginx-conf")
        self.show_cluster()

        step("A developer changes APP_VERSION to v2 and pushes")
        path = self.work / "deploy" / "fluxdemo.yaml"
        path.write_text(path.read_text().replace('value: "v1"', 'value: "v2"'))
        git("-c", "user.name=Demo", "-c", "user.email=demo@pullbridge.invalid", "commit", "-q", "-am",
            "fluxdemo: APP_VERSION v2", cwd=self.work)
        git("push", "-q", f"file://{self.bare}", "HEAD:refs/heads/main", cwd=self.work)
        second = git("rev-parse", "HEAD", cwd=self.work)
        info(f"commit {second[:12]}: {git('show', '--stat', '--format=%s', 'HEAD', cwd=self.work).splitlines()[0]}")
        self.send_push(first, second, ["deploy/fluxdemo.yaml"])
        took = self.wait_for_version("v2")
        step(f"Read back from the API server {took:.2f}s after the webhook")
        info(f"Deployment/{NAMESPACE}/fluxdemo APP_VERSION = {self.app_version()}")
        self.show_cluster()
        step("Done: Git said v2, the cluster pulled v2.")

    def show_cluster(self) -> None:
        out = subprocess.run([str(self.stack.kubectl), "get", "deployment,configmap", "-n", NAMESPACE,
                              "-o", "wide"], env=self.env, capture_output=True, text=True).stdout
        for line in out.splitlines():
            info(line)

    # -- clean-up ---------------------------------------------------------
    def cleanup(self) -> None:
        step("Cleaning up: stopping web and worker, deleting the demo namespace and repository")
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if self.kube is not None:
            from kubernetes import client
            from kubernetes.client.rest import ApiException
            try:
                client.CoreV1Api(self.kube).delete_namespace(NAMESPACE)
            except ApiException:
                pass
            self._forget_redis_state()
        shutil.rmtree(self.bare, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _forget_redis_state(self) -> None:
        from redis import Redis

        conn = Redis.from_url(self.stack.redis_url)
        try:
            for key in conn.scan_iter(match=f"pb:*{REPO_NAME}*"):
                conn.delete(key)
        finally:
            conn.close()


def run_demo() -> int:
    demo = Demo(Stack())
    previous = signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    try:
        demo.run()
        return 0
    except RuntimeError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        for name in ("web", "worker"):
            log = demo.tmp / f"{name}.log"
            if log.exists():
                print(f"--- last lines of {name}.log ---", file=sys.stderr)
                print("\n".join(log.read_text(errors="replace").splitlines()[-25:]), file=sys.stderr)
        return 1
    finally:
        demo.cleanup()
        signal.signal(signal.SIGTERM, previous)
