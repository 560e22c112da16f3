"""Fixtures for the operator CLI tests: a config per test, the CLI run in-process, and real workers.

``ops.run(...)`` calls ``pullbridge.cli.main`` with the test's config and
Redis DB and returns (exit code, stdout, stderr).  Jobs run in a real RQ
``SimpleWorker`` in this process (``ops.work()``), or, for ``--wait``, in a
real ``python -m worker`` subprocess (``ops.start_worker()``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from rq import Queue, SimpleWorker

from pullbridge import keys
from pullbridge.cli import main
from pullbridge.config import load_config


class Ops:
    def __init__(self, stack, conn, namespace: str, tmp_path: Path, capsys, monkeypatch, processes):
        self.stack, self.conn, self.namespace, self.tmp = stack, conn, namespace, tmp_path
        self.capsys = capsys
        self.processes = processes
        self.config_path = tmp_path / "pullbridge.yaml"
        self.cache = tmp_path / "mirrors"
        self.workers = 0
        monkeypatch.setenv("PULLBRIDGE_CONFIG", str(self.config_path))
        monkeypatch.setenv("PULLBRIDGE_CACHE_DIR", str(self.cache))
        monkeypatch.setenv("REDIS_URL", stack.redis_test_url)
        monkeypatch.setenv("PB_TEST_SECRET", "unused")
        self.config = None

    def configure(self, repo, **fields) -> None:
        entry = {"name": "app", "url": repo.http_url, "provider": "generic", "secret_env": "PB_TEST_SECRET",
                 "namespace": self.namespace, "backoff": ["1s"], "retries": 0, **fields}
        data = {"worker": {"inventory_namespace": self.namespace, "lock_wait": "1s"}, "repos": [entry]}
        self.config_path.write_text(json.dumps(data))
        self.config = load_config(self.config_path)

    @property
    def repo(self):
        return self.config.repos[0]

    def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors and --help
            code = exc.code
        out, err = self.capsys.readouterr()
        return code, out, err

    def work(self) -> None:
        """Run every queued sync job in this process (a real RQ SimpleWorker, burst mode)."""
        SimpleWorker([Queue(keys.SYNC_QUEUE, connection=self.conn)], connection=self.conn).work(burst=True)

    def sync(self, sha: str | None = None) -> dict:
        from pullbridge.queueing import request_sync
        from worker import history

        request_sync(self.conn, self.config, self.repo, sha, reason="push")
        self.work()
        return history.history(self.conn, "app")[0]

    def start_worker(self) -> subprocess.Popen:
        """A ``python -m worker`` on the test's config (stopped after the test, by ``processes``)."""
        index, self.workers = self.workers, self.workers + 1
        return self.processes(f"worker-{index}", "worker", "--name", f"cli-test-{os.getpid()}-{index}",
                              env={"PULLBRIDGE_CONFIG": str(self.config_path), "PULLBRIDGE_CACHE_DIR": str(self.cache)})


@pytest.fixture
def ops(stack, redis_conn, namespace, tmp_path, capsys, monkeypatch, processes):
    return Ops(stack, redis_conn, namespace, tmp_path, capsys, monkeypatch, processes)
