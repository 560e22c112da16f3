"""Shared fixtures: the real local stack, a flushed Redis DB per test, a fresh
namespace per test, bare git repositories served by the stack's git host, and
Pullbridge's own processes started against them.

The stack is started once per test session (`pullbridge stack up` is
idempotent, so an already running stack is reused) and left running: it
belongs to the machine, not to one pytest run.  Tests flush their Redis DB,
so they never use DB 0, the stack's own (``stack env``'s REDIS_URL, the demo's):
``PULLBRIDGE_TEST_REDIS_DB`` names the DB (default 1), and parallel pytest runs
give each a different one so they do not flush each other's queues.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["tests.leaked_processes"]


@dataclass
class StackInfo:
    kubeconfig: str
    redis_url: str          # DB 0 URL of the stack's Redis
    redis_test_url: str     # the DB this pytest process owns
    git_root: Path
    git_http_url: str
    kubectl: str
    env: dict


@pytest.fixture(scope="session")
def stack() -> StackInfo:
    from pullbridge.stack import Stack, StackError

    s = Stack()
    try:
        s.up(log=lambda msg: None)
    except StackError as exc:
        pytest.fail(f"the local stack did not start: {exc}")
    db = int(os.environ.get("PULLBRIDGE_TEST_REDIS_DB", "1"))
    if db == 0:
        pytest.fail("PULLBRIDGE_TEST_REDIS_DB=0 is the stack's own DB (the demo's); tests flush theirs")
    env = {**os.environ, **s.env()}
    test_url = f"redis://127.0.0.1:{s.redis_port}/{db}"
    env["REDIS_URL"] = test_url
    os.environ.update(env)
    return StackInfo(kubeconfig=str(s.kubeconfig), redis_url=s.redis_url, redis_test_url=test_url,
                     git_root=s.git_root, git_http_url=s.git_http_url, kubectl=str(s.kubectl), env=env)


@pytest.fixture
def redis_conn(stack):
    from redis import Redis

    conn = Redis.from_url(stack.redis_test_url)
    conn.flushdb()
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def kube(stack):
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=stack.kubeconfig)
    yield api
    api.close()


@pytest.fixture
def namespace(kube, request):
    from kubernetes import client

    core = client.CoreV1Api(kube)
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"pullbridge.io/test": "true"}}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")


class GitRepo:
    """A bare repo under the stack's git root plus a work tree to commit and push from."""

    def __init__(self, stack: StackInfo, tmp: Path, name: str, branch: str = "main"):
        self.name = name
        self.branch = branch
        self.bare = stack.git_root / f"{name}.git"
        self.http_url = f"{stack.git_http_url}/{name}.git"
        self.file_url = f"file://{self.bare}"
        self.work = tmp / f"{name}-work"
        _git("init", "-q", "--bare", "-b", branch, str(self.bare))
        _git("init", "-q", "-b", branch, str(self.work))

    def git(self, *args: str) -> str:
        return _git("-C", str(self.work), *args)

    def write(self, path: str, text: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def remove(self, path: str) -> None:
        self.git("rm", "-q", "-r", path)

    def commit(self, message: str = "change", files: dict[str, str] | None = None) -> str:
        for path, text in (files or {}).items():
            self.write(path, text)
        self.git("add", "-A")
        self.git("-c", "user.name=Test", "-c", "user.email=test@pullbridge.invalid",
                 "commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").strip()

    def push(self, ref: str | None = None) -> None:
        self.git("push", "-q", self.file_url, f"HEAD:refs/heads/{ref or self.branch}")

    def force_push(self, rev: str = "HEAD") -> None:
        """Move the branch to ``rev`` on the bare repo, whether or not it descends from its head."""
        self.git("push", "-q", "--force", self.file_url, f"{rev}:refs/heads/{self.branch}")

    def commit_and_push(self, message: str = "change", files: dict[str, str] | None = None) -> str:
        sha = self.commit(message, files)
        self.push()
        return sha


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def nested_folders():
    """Factory: ``nested_folders(folder, levels)`` -> ``folder``/a/a/.../a, ``levels`` deep (os.makedirs
    calls itself per level, and fails).  Removed after the test: pytest's own cleanup (shutil.rmtree)
    fails on them too, in every later session of any test run on this machine."""
    made = []

    def make(folder: Path, levels: int) -> Path:
        made.append(folder / "a")
        for _ in range(levels):
            folder = folder / "a"
            folder.mkdir()
        return folder

    yield make
    from worker.fetch import remove_tree

    for top in made:
        remove_tree(top)


@pytest.fixture
def git_repo(stack, tmp_path):
    """Factory: ``git_repo("name")`` -> GitRepo with a fresh bare repo on the stack's git host."""
    made = []

    def make(name: str = "repo", branch: str = "main") -> GitRepo:
        unique = f"{name}-{uuid.uuid4().hex[:8]}"
        repo = GitRepo(stack, tmp_path, unique, branch)
        made.append(repo)
        return repo

    yield make
    for repo in made:
        subprocess.run(["rm", "-rf", str(repo.bare)], check=False)


@pytest.fixture
def processes(stack, tmp_path):
    """Factory: ``processes(name, module, *args, env=None)`` starts ``python -m module *args`` from this
    checkout, on the stack and the test's Redis DB (``env`` added), its output in <tmp_path>/<name>.log;
    -> the Popen.  Each is stopped after the test: SIGTERM, and SIGKILL if it has not exited 30 s later."""
    started: list[subprocess.Popen] = []

    def start(name: str, module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        full_env = {**os.environ, **stack.env, "REDIS_URL": stack.redis_test_url, "PYTHONPATH": str(ROOT),
                    **(env or {})}
        with open(tmp_path / f"{name}.log", "wb") as log:
            started.append(subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=full_env,
                                            stdout=log, stderr=subprocess.STDOUT))
        return started[-1]

    yield start
    for proc in started:
        proc.terminate()
    for proc in started:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
