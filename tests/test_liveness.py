"""``pullbridge.liveness``: the deadline file the worker and scheduler write, and the probe that reads it.
(The processes writing it: tests/worker/test_liveness_processes.py and tests/faults/test_redis_restart.py.)"""

from __future__ import annotations

import subprocess
import sys
import time

from pullbridge import liveness


def test_a_deadline_ahead_is_alive_and_one_passed_is_not(tmp_path, monkeypatch):
    path = tmp_path / "alive"
    monkeypatch.setenv(liveness.ALIVE_FILE_ENV, str(path))
    liveness.vouch(30)
    written = float(path.read_text())
    assert written > time.time() + 25
    assert liveness.check(str(path), now=written - 1) == (True, "alive: next sign of life due within 1s")
    alive, said = liveness.check(str(path), now=written + 42)
    assert not alive and said.startswith("no sign of life for 42s past the deadline")
    assert [p.name for p in tmp_path.iterdir()] == ["alive"]  # the part file was renamed, not left


def test_a_missing_or_garbled_file_is_not_alive(tmp_path):
    assert liveness.check(str(tmp_path / "none")) == (
        False, f"{tmp_path / 'none'} does not exist: the process has not vouched for itself")
    (tmp_path / "garbled").write_text("")
    alive, said = liveness.check(str(tmp_path / "garbled"))
    assert not alive and "cannot be read as a deadline" in said


def test_without_the_variable_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(liveness.ALIVE_FILE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    liveness.vouch(30)
    assert list(tmp_path.iterdir()) == []


def probe(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pullbridge.liveness", *args], capture_output=True, text=True,
                          env=env)


def test_the_probe_exits_0_while_alive_1_once_not_and_2_without_a_file(tmp_path):
    path = tmp_path / "alive"
    path.write_text(f"{time.time() + 60}\n")
    ok = probe(str(path))
    assert (ok.returncode, ok.stdout.startswith("alive: next sign of life due within")) == (0, True)
    path.write_text(f"{time.time() - 5}\n")
    late = probe(str(path))
    assert late.returncode == 1 and late.stderr.startswith("no sign of life for "), late.stderr
    bare = probe(env={"PATH": "/usr/bin:/bin"})
    assert bare.returncode == 2 and "PULLBRIDGE_ALIVE_FILE" in bare.stderr


def test_a_file_that_cannot_be_written_is_a_log_line_of_the_process_not_an_error(tmp_path, monkeypatch, caplog):
    """The worker's and scheduler's output is JSON lines (pullbridge.logformat): the failure goes through logging."""
    monkeypatch.setenv(liveness.ALIVE_FILE_ENV, str(tmp_path / "missing-dir" / "alive"))
    with caplog.at_level("WARNING", logger="pullbridge.liveness"):
        liveness.vouch(30)
    [record] = caplog.records
    assert record.getMessage().startswith(f"could not write {tmp_path / 'missing-dir' / 'alive'}: ")
