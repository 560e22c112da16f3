"""Start, find and stop the stack's processes by pid file, never by name.

Why: ``stack down`` must stop exactly what ``stack up`` started, even on a
machine that runs its own Redis or etcd.  A pid file is trusted only while the
process it names still runs the same program (checked in /proc), so a reused
pid is never signalled.  ``stack up`` and ``down`` hold one lock file for their
whole run: two callers starting a stopped stack at once (two pytest processes,
the demo and the tests) would otherwise both start a process, the loser's pid
file would hide the winner, and ``down`` could never stop it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator


class StackError(Exception):
    """A part of the stack cannot be installed or started; the message says where to look."""


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@contextmanager
def exclusive(lock_path: Path, log=print) -> Iterator[None]:
    """Hold an flock on lock_path, waiting (and saying so) while another caller holds it.

    The kernel drops the lock when the holder exits, however it exits, so a
    killed `stack up` never leaves the stack locked.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another `pullbridge stack up` or `down` to finish (lock {lock_path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22).

    Together with the pid it names one process for the life of the machine,
    which a pid alone does not (pids are reused).  None once it has exited.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 and not _exited(pid, fields[0]) else None


@dataclass
class Process:
    name: str
    argv: list[str]
    ports: list[int]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    hint: str = ""  # what to try when it exits at start, after what its log says

    def pid_file(self, run_dir: Path) -> Path:
        return run_dir / f"{self.name}.pid"

    def running_pid(self, run_dir: Path) -> int | None:
        """The pid from our pid file, if that very process (pid and start time) still runs."""
        try:
            pid_text, started = self.pid_file(run_dir).read_text().split()[:2]
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        return pid if _start_time(pid) == started else None

    def start(self, run_dir: Path, log_dir: Path, log=print) -> None:
        pid = self.running_pid(run_dir)
        if pid is not None:
            if wait_until(self.ready, self.timeout):
                log(f"{self.name}: already running (pid {pid})")
                return
            raise StackError(f"{self.name} runs (pid {pid}) but does not answer; "
                             f"see {log_dir / (self.name + '.log')}, or run `pullbridge stack down`")
        for port in self.ports:
            if port_in_use(port):
                raise StackError(f"{self.name}: port {port} on 127.0.0.1 is taken by another program; "
                                 f"free it or set PULLBRIDGE_*_PORT (see `pullbridge stack --help`)")
        log_path = log_dir / f"{self.name}.log"
        with open(log_path, "ab") as out:
            # The log keeps earlier runs: an error shows only what this start wrote.
            this_run = out.tell()
            try:
                proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env={**os.environ, **self.env},
                                        start_new_session=True)
            except OSError as exc:
                raise StackError(f"{self.name}: cannot run {self.argv[0]}: {exc.strerror}") from None
        self.pid_file(run_dir).write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
        started = time.monotonic()
        # Exited first, ready second: a process that died (say, it lost the bind) must not pass
        # for started because something else answers on its port.
        while proc.poll() is None and not self.ready():
            if time.monotonic() - started > self.timeout:
                raise StackError(f"{self.name} did not become ready within {self.timeout:.0f}s; "
                                 f"log: {log_path}\n{_tail(log_path, this_run)}")
            time.sleep(0.2)
        if proc.poll() is not None:
            self.pid_file(run_dir).unlink(missing_ok=True)
            raise StackError(f"{self.name} {how_it_ended(proc.returncode)} at start; "
                             f"log: {log_path}\n{_tail(log_path, this_run)}"
                             + (f"\n{self.hint}" if self.hint else ""))
        log(f"{self.name}: started (pid {proc.pid}) in {time.monotonic() - started:.1f}s")

    def stop(self, run_dir: Path, log=print, timeout: float = 15.0) -> None:
        pid = self.running_pid(run_dir)
        if pid is None:
            self.pid_file(run_dir).unlink(missing_ok=True)
            return
        _signal(pid, signal.SIGTERM)
        if not wait_until(lambda: self.running_pid(run_dir) is None, timeout):
            _signal(pid, signal.SIGKILL)
            wait_until(lambda: self.running_pid(run_dir) is None, 5)
        self.pid_file(run_dir).unlink(missing_ok=True)
        log(f"{self.name}: stopped (pid {pid})")


def _exited(pid: int, state: str) -> bool:
    """Whether a process in this state has exited: a zombie none of whose threads still runs.

    A zombie first thread is not enough: the process's other threads (Go's, a
    threaded server's) go on holding its files, its listening ports among them.
    """
    if state != "Z":
        return False
    try:
        return os.listdir(f"/proc/{pid}/task") in ([], [str(pid)])
    except OSError:
        return True


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:  # it exited since it was last looked at
        pass


def how_it_ended(returncode: int) -> str:
    """How a process ended, from its return code (negative: the signal that killed it)."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _tail(path: Path, start: int, lines: int = 15) -> str:
    """The last lines written to path from byte offset start on."""
    try:
        with open(path, "rb") as log:
            log.seek(start)
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:]) or "(it wrote nothing to its log)"
