"""The worker's and scheduler's output is JSON lines in the web process's shape (``pullbridge.logformat``):
every line they write, their own and RQ's, from start to SIGTERM, with a failed job's traceback as a field."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from rq import Queue
from rq.job import Job

from pullbridge import keys
from tests.worker.process_support import wait_for
from tests.worker.sync_manifests import app_files

pytestmark = pytest.mark.stack


def json_lines(path: Path) -> list[dict]:
    """Every line of the file as a JSON object with ts, level, logger and msg (fails naming the first that is not)."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"{path.name} line {number} is not JSON: {line!r}")
        assert isinstance(entry, dict) and {"ts", "level", "logger", "msg"} <= entry.keys(), (path.name, number, line)
        entries.append(entry)
    return entries


def test_every_line_of_the_worker_and_the_scheduler_is_a_json_object(harness, git_repo, tmp_path, processes):
    repo = git_repo("logs")
    sha = repo.commit_and_push("v1", app_files("1.0"))
    harness.configure(repo, interval="10s")
    logs = [tmp_path / "worker.log", tmp_path / "scheduler.log"]
    cache = {"PULLBRIDGE_CACHE_DIR": str(tmp_path / "mirrors-procs"), "PULLBRIDGE_LOG_LEVEL": "debug"}
    scheduler = processes("scheduler", "worker.scheduler", env=cache)
    worker = processes("worker", "worker", "--name", f"logs-test-{os.getpid()}", env=cache)
    harness.request(sha)
    wait_for("the commit applied", lambda: harness.state().get("applied_sha") == sha, tmp_path)
    failing = Queue(keys.SYNC_QUEUE, connection=harness.conn).enqueue("math.sqrt", -1)
    wait_for("the failing job failed", lambda: Job.fetch(failing.id, connection=harness.conn).is_failed, tmp_path)
    wait_for("a periodic reconcile queued", lambda: "Enqueued job reconcile" in logs[1].read_text(), tmp_path)
    for proc in (worker, scheduler):
        proc.terminate()
        proc.wait()

    worker_lines, scheduler_lines = json_lines(logs[0]), json_lines(logs[1])
    assert {"rq.worker", "pullbridge.sync", "rq.scheduler"} <= {e["logger"] for e in worker_lines}
    assert {"rq.cron", "pullbridge.scheduler"} <= {e["logger"] for e in scheduler_lines}
    assert any("started with PID" in e["msg"] for e in worker_lines)  # what RQ's lines say is kept
    assert any(e["msg"].startswith("scheduler: 1 repos scheduled") for e in scheduler_lines)
    assert {e["level"] for e in worker_lines} >= {"debug", "info", "error"}

    [failed] = [e for e in worker_lines if e.get("job_id") == failing.id and e["level"] == "error"]
    assert failed["logger"] == "rq.worker" and "\n" not in failed["msg"], failed
    assert failing.id in failed["msg"] and "math.sqrt" in failed["msg"]
    assert failed["exc"].startswith("Traceback") and "ValueError: math domain error" in failed["exc"]
