"""The stack's git smart-HTTP server, run as its own process on a free port (not the shared one)."""

import http.client
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pullbridge.stack.procs import port_in_use, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bare_repo(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    work = path.parent / (path.name + "-work")
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "a.txt").write_text("one\n")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    subprocess.run([*git, "push", "-q", str(path), "main"], check=True)
    return path


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    port = free_port()
    log = open(tmp_path / "githttp.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pullbridge.stack.githttp", str(root), str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: port_in_use(port) or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, (tmp_path / "githttp.log").read_text()
        yield root, port
    finally:
        proc.terminate()
        proc.wait()
        log.close()


def info_refs(conn: http.client.HTTPConnection, repo: str, method: str = "GET"):
    conn.request(method, f"/{repo}/info/refs?service=git-upload-pack")
    resp = conn.getresponse()
    return resp.status, resp.read()


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_git_did_not_read_does_not_break_the_next_request(server, chunked):
    root, port = server
    bare_repo(root / "app.git")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = b"0032want " + b"x" * 300_000
    headers = {"Content-Type": "application/x-git-upload-pack-request"}
    if chunked:
        conn.request("POST", "/missing.git/git-upload-pack", body=iter([body[:100_000], body[100_000:]]),
                     headers=headers, encode_chunked=True)
    else:
        conn.request("POST", "/missing.git/git-upload-pack", body=body, headers=headers)
    first = conn.getresponse()
    first.read()
    assert first.status == 404
    # The same keep-alive connection: the rest of the first body must not be read as a request.
    status, refs = info_refs(conn, "app.git")
    assert status == 200 and b"refs/heads/main" in refs
    conn.close()


def test_a_percent_encoded_repo_path_is_decoded(server, tmp_path):
    root, port = server
    bare_repo(root / "my repo.git")
    out = subprocess.run(["git", "ls-remote", f"http://127.0.0.1:{port}/my%20repo.git"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "refs/heads/main" in out.stdout


def test_an_encoded_dot_dot_does_not_leave_the_root(server, tmp_path):
    root, port = server
    bare_repo(root.parent / "outside.git")
    for path in ("..", "%2e%2e", "x/%2E%2E%2F.."):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        status, body = info_refs(conn, f"{path}/outside.git")
        assert status == 403, (path, status, body)
        assert b"is not allowed" in body and b"refs/heads/main" not in body
        conn.close()


def test_head_answers_like_get_without_a_body(server):
    root, port = server
    bare_repo(root / "app.git")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    status, body = info_refs(conn, "app.git", method="HEAD")
    assert (status, body) == (200, b"")
    status, refs = info_refs(conn, "app.git")  # the connection is still in step
    assert status == 200 and b"refs/heads/main" in refs
    conn.close()


def test_a_chunked_push_and_a_clone_still_work(server, tmp_path):
    root, port = server
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "big.git")], check=True)
    subprocess.run(["git", "-C", str(root / "big.git"), "config", "http.receivepack", "true"], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "blob.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MB, more than postBuffer
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "big"], check=True)
    url = f"http://127.0.0.1:{port}/big.git"
    push = subprocess.run([*git, "-c", "http.postBuffer=65536", "push", "-q", url, "main"],
                          capture_output=True, text=True)
    assert push.returncode == 0, push.stderr
    subprocess.run(["git", "clone", "-q", url, str(tmp_path / "clone")], check=True)
    assert (tmp_path / "clone" / "blob.bin").read_bytes() == (work / "blob.bin").read_bytes()
