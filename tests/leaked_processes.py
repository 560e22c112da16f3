"""A test run that leaves a process behind fails, naming the process and the test that left it.

Why: CI runs the suite on a machine thrown away afterwards, so a worker, web
server or registry a test starts and never stops would pass unnoticed there,
and pile up on a developer's machine, holding ports, Redis connections and CPU.

How: this run marks its environment with ``PULLBRIDGE_TEST_RUN=<uuid>``, which
every process it starts inherits (unless started with an environment of its
own).  After each test, a marked process or a child of pytest still alive is
noted against that test; once the session is over (fixtures torn down), any
still alive is reported, stopped, and the run fails.  The stack's own
processes are not counted: when the session had to start the stack, they
carry the mark but belong to the machine (``stack down`` stops them).  Not
seen: a process that both loses the mark (its own environment, or a program
writing its title over it, as redis-server does) and leaves pytest's children
(a daemon).
"""

from __future__ import annotations

import gc
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

MARK = "PULLBRIDGE_TEST_RUN"
SETTLE_SECONDS = 10.0  # processes told to stop at teardown may take a moment to exit

_run_id = uuid.uuid4().hex
_first_seen: dict[int, str] = {}  # leaked pid -> the test after which it was first seen alive
_leaked: list[str] = []


def pytest_configure(config):
    os.environ[MARK] = _run_id


def started_processes() -> set[int]:
    """The live processes this run started (other than pytest itself and the stack's): those
    with the mark, and pytest's own children (a program such as redis-server writes its
    title over its environment, mark included)."""
    needle = f"{MARK}={_run_id}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            if state != "Z" and (int(parent) == os.getpid()
                                 or needle in (entry / "environ").read_bytes().split(b"\0")):
                found.add(int(entry.name))
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
    return found - _stack_pids()


def _stack_pids() -> set[int]:
    from pullbridge.stack import Stack

    stack = Stack()
    return {pid for proc in stack.processes()
            if (pid := proc.running_pid(stack.root / "run")) is not None}


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(exited)"


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)
    finally:
        for pid in started_processes():
            _first_seen.setdefault(pid, item.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    gc.collect()  # an unreachable object still holding a process (GitPython's git cat-file) lets go
    deadline = time.monotonic() + SETTLE_SECONDS
    while (alive := started_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in sorted(alive):
        _leaked.append(f"pid {pid} ({_command_line(pid)}), alive since "
                       f"{_first_seen.get(pid, 'the end of the session')}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if _leaked and session.exitstatus == pytest.ExitCode.OK:  # a failing run keeps its own status
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _leaked:
        terminalreporter.section("processes left behind by tests (now killed)", red=True)
        for line in _leaked:
            terminalreporter.write_line(line)
