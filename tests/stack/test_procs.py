"""Process bookkeeping: `down` stops exactly what `up` started, by pid file."""

import socket
import subprocess
import sys

import pytest

from pullbridge.stack.procs import Process, StackError, port_in_use


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_process(port: int) -> Process:
    return Process("testhttp", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                   ports=[port], ready=lambda: port_in_use(port), timeout=15)


def test_start_then_stop_by_pid_file(tmp_path):
    port = free_port()
    proc = http_process(port)
    proc.start(tmp_path, tmp_path, log=lambda m: None)
    pid = proc.running_pid(tmp_path)
    assert pid is not None and port_in_use(port)
    proc.start(tmp_path, tmp_path, log=lambda m: None)  # idempotent
    assert proc.running_pid(tmp_path) == pid
    proc.stop(tmp_path, log=lambda m: None)
    assert proc.running_pid(tmp_path) is None
    assert not (tmp_path / "testhttp.pid").exists()


def test_a_pid_file_naming_another_program_is_not_trusted(tmp_path):
    other = subprocess.Popen(["sleep", "30"])
    try:
        # The pid is right but the start time is not: the pid was reused.
        (tmp_path / "testhttp.pid").write_text(f"{other.pid} 1\n")
        proc = http_process(free_port())
        assert proc.running_pid(tmp_path) is None
        proc.stop(tmp_path, log=lambda m: None)
        assert other.poll() is None, "stop must never signal a process it did not start"
    finally:
        other.kill()


def test_a_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port}.*taken"):
            http_process(port).start(tmp_path, tmp_path, log=lambda m: None)
