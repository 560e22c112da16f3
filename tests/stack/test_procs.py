"""Process bookkeeping: `down` stops exactly what `up` started, by pid file, even when two `up`s race."""

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pullbridge.stack import Stack
from pullbridge.stack.procs import Process, StackError, port_in_use, wait_until


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


def test_a_process_that_exits_at_start_is_not_taken_for_ready(tmp_path):
    # Something else answers "ready" (as the winner of a port race would) only once our
    # process has died: its death must be seen, not the other's readiness.
    def ready_once_dead() -> bool:
        pid = int((tmp_path / "dying.pid").read_text().split()[0])
        return wait_until(lambda: _state(pid) in ("Z", None), timeout=60)

    proc = Process("dying", ["sh", "-c", "exit 3"], ports=[], ready=ready_once_dead, timeout=60)
    with pytest.raises(StackError, match="dying exited with status 3 at start"):
        proc.start(tmp_path, tmp_path, log=lambda m: None)
    assert not (tmp_path / "dying.pid").exists()


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


class OneProcessStack(Stack):
    """The real `up`/`down`, locking included, over one small HTTP server under a test's root."""

    test_port = 0

    def install(self, log=print) -> None:
        pass  # packages and Kubernetes binaries are not what these tests are about

    def processes(self) -> list[Process]:
        return [http_process(self.test_port)]


def one_process_stack(root: Path, port: int) -> OneProcessStack:
    stack = OneProcessStack(root=root)
    stack.test_port = port
    return stack


def _up_in_child(root: Path, port: int, barrier, messages) -> None:
    if barrier is not None:
        barrier.wait()
    try:
        one_process_stack(root, port).up(log=messages.put)
    except Exception as exc:  # reported to the test, which shows it
        messages.put(f"{type(exc).__name__}: {exc}")
    finally:
        messages.put("done")


def _messages_until_done(messages, count: int) -> list[str]:
    seen, done = [], 0
    while done < count:
        message = messages.get(timeout=120)  # a hang guard only: a stuck `up` fails the test
        done += message == "done"
        seen.append(message)
    return seen


def test_two_concurrent_ups_start_the_process_once_and_down_stops_it(tmp_path):
    port = free_port()
    barrier, messages = multiprocessing.Barrier(2), multiprocessing.Queue()
    children = [multiprocessing.Process(target=_up_in_child, args=(tmp_path, port, barrier, messages))
                for _ in range(2)]
    for child in children:
        child.start()
    seen = _messages_until_done(messages, 2)
    for child in children:
        child.join()
    stack = one_process_stack(tmp_path, port)
    try:
        started = [m for m in seen if m.startswith("testhttp: started")]
        again = [m for m in seen if m.startswith("testhttp: already running")]
        assert len(started) == 1 and len(again) == 1, seen
        pid = http_process(port).running_pid(tmp_path / "run")
        assert f"(pid {pid})" in started[0] and f"(pid {pid})" in again[0]
    finally:
        stack.down(log=lambda m: None)
    assert not port_in_use(port), "down stopped every server that up started"


HOLD_LOCK = """import fcntl, sys
with open(sys.argv[1], "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_up_waits_while_another_caller_holds_the_stack_lock(tmp_path):
    port = free_port()
    lock = tmp_path / "run" / "stack.lock"
    lock.parent.mkdir(parents=True)
    messages = multiprocessing.Queue()
    # Another program holds the lock (not this process: a forked child would inherit it).
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    child = multiprocessing.Process(target=_up_in_child, args=(tmp_path, port, None, messages))
    try:
        assert holder.stdout.readline() == "locked\n"
        child.start()
        first = messages.get(timeout=120)  # a hang guard only
        assert first.startswith("waiting for another `pullbridge stack up` or `down`"), first
        assert not port_in_use(port), "nothing starts while the lock is held"
        holder.stdin.write("release\n")  # the holder exits, the lock goes with it: `up` goes on
        holder.stdin.flush()
        rest = _messages_until_done(messages, 1)
        assert any(m.startswith("testhttp: started") for m in rest), rest
        assert port_in_use(port)
    finally:
        holder.kill()
        holder.wait()
        if child.pid is not None:
            child.join()
        one_process_stack(tmp_path, port).down(log=lambda m: None)
    assert not port_in_use(port)


def test_a_failed_start_shows_only_what_this_start_logged_and_names_the_signal(tmp_path):
    (tmp_path / "crashing.log").write_text("an earlier run's last words\n")
    proc = Process("crashing", ["sh", "-c", "echo segfaulting now; kill -SEGV $$"], ports=[],
                   ready=lambda: False, timeout=60, hint="Move its data away.")
    with pytest.raises(StackError) as failed:
        proc.start(tmp_path, tmp_path, log=lambda m: None)
    assert "crashing was killed by SIGSEGV at start" in str(failed.value)
    assert str(failed.value).endswith("segfaulting now\nMove its data away.")
    assert "segfaulting now" in str(failed.value)
    assert "earlier run" not in str(failed.value), "the log's older lines are not this start's"


def test_a_program_the_kernel_refuses_is_a_clear_error(tmp_path):
    truncated = tmp_path / "kube-apiserver"
    truncated.write_bytes(b"")
    truncated.chmod(0o755)
    proc = Process("kube-apiserver", [str(truncated)], ports=[], ready=lambda: False)
    with pytest.raises(StackError, match=f"kube-apiserver: cannot run {truncated}: Exec format error"):
        proc.start(tmp_path, tmp_path, log=lambda m: None)


def test_a_process_that_died_is_shown_so_and_up_starts_it_again(tmp_path):
    port = free_port()
    stack = one_process_stack(tmp_path, port)
    stack.up(log=lambda m: None)
    try:
        pid = http_process(port).running_pid(tmp_path / "run")
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not port_in_use(port), timeout=60)
        [(name, state)] = stack.status()
        assert state.startswith("died (see ") and "`pullbridge stack up` starts it again" in state
        stack.up(log=lambda m: None)
        assert stack.status()[0][1].startswith("running")
        assert http_process(port).running_pid(tmp_path / "run") not in (None, pid)
    finally:
        stack.down(log=lambda m: None)
    assert stack.status() == [("testhttp", "stopped")]


class TwoProcessStack(Stack):
    """Two small HTTP servers on the stack's etcd and Redis ports (chosen by the test)."""

    def install(self, log=print) -> None:
        pass

    def processes(self) -> list[Process]:
        return [http_process(self.etcd_port), http_process(self.redis_port)]


def test_a_taken_port_starts_nothing_and_names_the_variable_that_moves_it(tmp_path):
    etcd_port = free_port()
    stack = TwoProcessStack(root=tmp_path, etcd_port=etcd_port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stack.redis_port = taken.getsockname()[1]
        try:
            with pytest.raises(StackError) as failed:
                stack.up(log=lambda m: None)
        finally:
            stack.down(log=lambda m: None)
    assert f"needs port {stack.redis_port} (moved with PULLBRIDGE_REDIS_PORT)" in str(failed.value)
    assert "nothing was started" in str(failed.value)
    assert not port_in_use(etcd_port), "the parts whose ports are free were not started either"


class PkiReaderStack(OneProcessStack):
    """One HTTP server whose command line names the stack's certificate directory, as
    kube-apiserver's does."""

    def processes(self) -> list[Process]:
        return [Process("testhttp", [sys.executable, "-m", "http.server", "--directory",
                                     str(self.root / "pki"), "--bind", "127.0.0.1", str(self.test_port)],
                        ports=[self.test_port], ready=lambda: port_in_use(self.test_port), timeout=15)]


def test_damaged_certificates_are_made_anew_and_their_readers_restarted(tmp_path):
    stack = PkiReaderStack(root=tmp_path)
    stack.test_port = free_port()
    stack.up(log=lambda m: None)
    try:
        run = tmp_path / "run"
        pid = stack.processes()[0].running_pid(run)
        old_ca = (tmp_path / "pki" / "ca.crt").read_bytes()
        (tmp_path / "pki" / "admin.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\ncut sh")
        messages = []
        stack.up(log=messages.append)
        assert (tmp_path / "pki" / "ca.crt").read_bytes() != old_ca, "the whole PKI is made anew"
        assert f"testhttp: restarting, the certificates in {tmp_path / 'pki'} were made anew" in messages
        new_pid = stack.processes()[0].running_pid(run)
        assert new_pid not in (None, pid)
        stack.up(log=messages.append)
        assert stack.processes()[0].running_pid(run) == new_pid, "whole certificates restart nothing"
    finally:
        stack.down(log=lambda m: None)


# The first thread exits (as a Go program's or a threaded server's can) while another
# thread, sleeping, keeps the listening socket: the process is a zombie in /proc, yet holds
# the port until every thread has gone.
FIRST_THREAD_EXITS = """import ctypes, socket, sys, threading, time
server = socket.socket()
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
threading.Thread(target=time.sleep, args=(3600,)).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def test_down_waits_for_every_thread_so_the_port_is_free(tmp_path):
    port = free_port()
    proc = Process("threaded", [sys.executable, "-c", FIRST_THREAD_EXITS, str(port)], ports=[port],
                   ready=lambda: port_in_use(port), timeout=15)
    proc.start(tmp_path, tmp_path, log=lambda m: None)
    pid = int((tmp_path / "threaded.pid").read_text().split()[0])
    try:
        assert wait_until(lambda: _state(pid) == "Z", timeout=60)
        assert proc.running_pid(tmp_path) == pid, "a zombie whose threads run is still running"
        proc.stop(tmp_path, log=lambda m: None)
        assert not port_in_use(port), "down returns once the port is free"
    finally:
        if port_in_use(port):  # the check failed: do not leave the sleeping thread behind
            os.kill(pid, signal.SIGKILL)


def test_the_apiserver_without_its_certificates_reads_not_ready_rather_than_failing(tmp_path):
    # `stack status` asks this of a running kube-apiserver: certificate files gone (which
    # `stack up` makes anew) must show as "not ready", not end `status` with a traceback.
    assert Stack(root=tmp_path, apiserver_port=free_port())._apiserver_ready() is False
