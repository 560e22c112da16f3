"""A test that leaves a process running fails the run, which names it and stops it.

The check is a plugin of this suite (tests/leaked_processes.py); here it runs in
a pytest of its own over a small test file, as CI's `./dev test` runs it.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LEAKY_TESTS = '''
import subprocess


def test_stops_what_it_starts():
    proc = subprocess.Popen(["sleep", "300"])
    proc.terminate()
    proc.wait()


def test_leaves_a_daemon_behind():
    # Started in a shell that exits at once: the sleep outlives its parent, as a daemon does.
    subprocess.run(["sh", "-c", "sleep 301 >/dev/null 2>&1 &"], check=True)


def test_leaves_a_child_with_an_environment_of_its_own():
    subprocess.Popen(["sleep", "302"], env={"PATH": "/usr/bin:/bin"})
'''


def run_pytest(tmp_path: Path, tests: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_inner.py").write_text(tests)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.leaked_processes", "-p",
                           "no:cacheprovider", "-q", "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def running(command_line: bytes) -> list[Path]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes() == command_line:
                found.append(cmdline.parent)
        except OSError:
            continue
    return found


def test_a_leaked_process_fails_the_run_and_is_stopped(tmp_path):
    result = run_pytest(tmp_path, LEAKY_TESTS)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert "processes left behind by tests (now killed)" in result.stdout
    assert "(sleep 301), alive since test_inner.py::test_leaves_a_daemon_behind" in result.stdout
    assert ("(sleep 302), alive since test_inner.py::test_leaves_a_child_with_an_environment_of_its_own"
            in result.stdout)
    assert "sleep 300" not in result.stdout
    assert running(b"sleep\0" b"301\0") == running(b"sleep\0" b"302\0") == [], \
        "the leaked processes were stopped"


def test_a_run_that_stops_what_it_starts_passes(tmp_path):
    result = run_pytest(tmp_path, LEAKY_TESTS.split("\n\ndef test_leaves")[0])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "left behind" not in result.stdout


def test_a_run_ending_otherwise_keeps_its_exit_status(tmp_path):
    result = run_pytest(tmp_path, LEAKY_TESTS + '''

def test_stops_the_run():
    import pytest
    pytest.exit("stopped by the test", returncode=pytest.ExitCode.INTERRUPTED)
''')
    assert result.returncode == 2, result.stdout + result.stderr
    assert "(sleep 301), alive since test_inner.py::test_leaves_a_daemon_behind" in result.stdout
