"""Errors no verb foresaw still leave as one ``pullbridge: VERB: ...`` line on stderr and exit 2.

Exit 1 means "a negative answer" (e.g. differences found), so a traceback's exit 1 would tell a
script something false.  The unreachable API server is a real one: a kubeconfig pointing at a
closed port, and at a port that speaks plain HTTP where TLS is expected.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pullbridge.cli import main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unforeseen_error_exits_2_naming_the_verb(monkeypatch, capsys):
    from pullbridge.commands import common

    def broken(args):
        raise RuntimeError("boom\n  second line")

    monkeypatch.setattr(common, "load", broken)
    assert main(["history", "app"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "pullbridge: history: RuntimeError: boom second line\n")


@pytest.mark.stack
@pytest.mark.parametrize("server", ["closed port", "plain HTTP"])
def test_identity_with_an_unreachable_api_server_is_a_clear_exit_2(stack, tmp_path, capsys, server):
    http_port = int(urlsplit(stack.git_http_url).port)
    port = _closed_port() if server == "closed port" else http_port
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}",
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c"}))
    code = main(["identity", "--secret", "pullbridge/pullbridge-deploy-key", "--kubeconfig", str(kubeconfig)])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    assert err.startswith("pullbridge: secret pullbridge/pullbridge-deploy-key: API server unreachable: ")
    assert "Traceback" not in err and "not-a-real-token" not in err


def test_only_a_request_that_never_reached_the_api_server_is_called_unreachable():
    """A read timeout may come after the Secret was written: that must not read as 'unreachable'."""
    import urllib3
    from urllib3.exceptions import (MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError,
                                    SSLError)

    from pullbridge.identity import never_connected

    pool = urllib3.HTTPSConnectionPool("127.0.0.1", 1)
    refused = NewConnectionError(pool, "Connection refused")
    assert never_connected(MaxRetryError(pool, "/api", reason=refused))
    assert never_connected(MaxRetryError(pool, "/api", reason=SSLError("wrong version number")))
    assert never_connected(ConnectionRefusedError(111, "refused"))
    assert not never_connected(ReadTimeoutError(pool, "/api", "Read timed out."))
    assert not never_connected(MaxRetryError(pool, "/api", reason=ProtocolError("Connection aborted.")))


@pytest.mark.stack
def test_a_reader_that_stopped_reading_is_no_error_message(stack, tmp_path):
    """`pullbridge queue | head -1`: output to a closed pipe ends the command quietly (exit 2,
    as output was lost), not with 'pullbridge: queue: BrokenPipeError' or Python's own complaint."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        done = subprocess.run([sys.executable, "-m", "pullbridge", "queue", "--redis-url", stack.redis_test_url],
                              stdout=write_end, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2],
                              env={**stack.env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr.decode()) == (2, "")
