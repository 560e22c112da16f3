"""The worker and scheduler processes refuse to start with a one-line reason and exit 2, as
operators script against, instead of a traceback's exit 1: a log level in lower case is fine,
an unknown one, a bad Redis URL and an unreachable Redis are named (never a password).  The
reason is a log line like every other (JSON, or text with PULLBRIDGE_LOG_FORMAT=text)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.stack

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
CONFIG = ("repos:\n  - {name: app, url: 'file:///nowhere.git', provider: generic, secret_env: PB_S}\n")


def _run(stack, tmp_path, module: str, *args, **env):
    config = tmp_path / "pullbridge.yaml"
    config.write_text(CONFIG)
    full = {**stack.env, "PULLBRIDGE_CONFIG": str(config), "PB_S": "s", **env}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("module", ["worker", "worker.scheduler"])
def test_an_unreachable_redis_is_one_line_and_exit_2(stack, tmp_path, module):
    done = _run(stack, tmp_path, module, REDIS_URL="redis://:hunter2@127.0.0.1:1/0",
                PULLBRIDGE_LOG_LEVEL="debug")  # lower case is a level too
    prog = module.rsplit(".", 1)[-1]
    assert done.returncode == 2, done.stderr
    last = [json.loads(line) for line in done.stderr.splitlines()][-1]  # debug lines before it are JSON too
    assert last["level"] == "error" and last["logger"] == f"pullbridge.{prog}"
    assert last["msg"].startswith(f"{prog}: cannot reach Redis at redis://127.0.0.1:1/0"), last
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr


def test_text_log_lines_for_a_terminal_and_an_unknown_format_named(stack, tmp_path):
    done = _run(stack, tmp_path, "worker.scheduler", REDIS_URL="redis://127.0.0.1:1/0", PULLBRIDGE_LOG_FORMAT="Text")
    assert done.returncode == 2 and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ERROR pullbridge.scheduler: "
        r"scheduler: cannot reach Redis at redis://127\.0\.0\.1:1/0: .*\n", done.stderr), done.stderr
    for args, env in ((["--log-format", "yaml"], {}), ([], {"PULLBRIDGE_LOG_FORMAT": "yaml"})):
        done = _run(stack, tmp_path, "worker", *args, **env)
        assert done.returncode == 2 and "invalid log_format value: 'yaml'" in done.stderr, done.stderr


def test_a_bad_redis_url_and_an_unknown_log_level_are_named(stack, tmp_path):
    done = _run(stack, tmp_path, "worker", REDIS_URL="127.0.0.1:6379")
    assert done.returncode == 2 and "worker: bad Redis URL" in done.stderr and "Traceback" not in done.stderr
    for args, env in ((["--log-level", "loud"], {}), ([], {"PULLBRIDGE_LOG_LEVEL": "loud"})):
        done = _run(stack, tmp_path, "worker", *args, **env)
        assert done.returncode == 2 and "invalid log_level value: 'loud'" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
