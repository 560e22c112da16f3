"""A real OpenSSH server on loopback for the SSH transport tests.

Starts ``/usr/sbin/sshd -D`` (Debian openssh-server) with its own config, its
own freshly generated host keys and an ``AuthorizedKeysFile`` the tests
write, listening on 127.0.0.1 on a free port.  Logins are as the user running
the tests; repositories are bare repos in a temporary directory, addressed
as ``ssh://USER@127.0.0.1:PORT/abs/path.git``.  sshd must run as root (it
needs /run/sshd for privilege separation), as it does in CI.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path, kind: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)], check=True)
    return path


@dataclass
class SshServer:
    host: str
    port: int
    user: str
    root: Path                 # where bare repositories go
    authorized_keys: Path
    host_key_pubs: list[Path]
    log: Path

    def url(self, repo: str) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}{self.root / repo}"

    def scp_url(self, repo: str) -> str:
        return f"{self.user}@{self.host}:{self.root / repo}"

    def authorize(self, public_line: str) -> None:
        self.authorized_keys.write_text(public_line.strip() + "\n")

    def bare_repo(self, name: str) -> Path:
        path = self.root / name
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
        return path


def _wait_for_banner(proc: subprocess.Popen, port: int, log: Path) -> None:
    # Readiness, not a timing assertion: poll until sshd greets us or exits.
    while True:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port)) as s:
                if s.recv(64).startswith(b"SSH-2.0"):
                    return
        except OSError:
            time.sleep(0.05)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    if not os.path.exists(SSHD):
        pytest.fail("sshd not found: install Debian's openssh-server (apt-get install -y openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("the sshd fixture must run as root (privilege separation needs /run/sshd)")
    base = tmp_path_factory.mktemp("sshd")
    keys = [_keygen(base / "host_ed25519_key", "ed25519"), _keygen(base / "host_ecdsa_key", "ecdsa")]
    authorized = base / "authorized_keys"
    authorized.write_text("")
    repos = base / "repos"
    repos.mkdir()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port = _free_port()
    config = base / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1",
        *(f"HostKey {k}" for k in keys),
        f"PidFile {base / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}",
        "StrictModes no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        f"AllowUsers {getpass.getuser()}",
        "LogLevel VERBOSE",
        "",
    ]))
    log = base / "sshd.log"
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config), "-p", str(port)],
                                stdout=log_fh, stderr=subprocess.STDOUT)
    try:
        _wait_for_banner(proc, port, log)
        yield SshServer(host="127.0.0.1", port=port, user=getpass.getuser(), root=repos,
                        authorized_keys=authorized, host_key_pubs=[k.with_suffix(".pub") for k in keys],
                        log=log)
    finally:
        proc.terminate()
        proc.wait()
