"""Deploy key files: created once, reused, rotated, private, and agreed on under concurrency."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pullbridge.identity import IdentityError, check_key_file, ensure_file_identity


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _cli(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    env.pop("PULLBRIDGE_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "pullbridge", *args], capture_output=True, text=True,
                          env=env)


def test_created_once_then_reused(tmp_path):
    path = tmp_path / "cfg" / "identity"
    first = ensure_file_identity(path, comment="pullbridge@test")
    second = ensure_file_identity(path, comment="pullbridge@test")
    assert first.created and not second.created
    assert first.public_line == second.public_line
    assert first.public_line.startswith("ssh-ed25519 AAAA") and first.public_line.endswith(" pullbridge@test")
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert not (tmp_path / "cfg" / "identity.pub").exists()
    assert [p.name for p in path.parent.iterdir()] == ["identity"]  # no temp files left


def test_openssh_tools_accept_the_key(tmp_path):
    path = tmp_path / "identity"
    ident = ensure_file_identity(path, comment="c")
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert derived[:2] == ident.public_line.split()[:2]
    listed = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True,
                            check=True).stdout.split()
    assert listed[0] == "256" and listed[1] == ident.fingerprint and listed[-1] == "(ED25519)"


def test_rotate_makes_a_new_private_key(tmp_path):
    path = tmp_path / "identity"
    old = ensure_file_identity(path)
    new = ensure_file_identity(path, rotate=True)
    assert new.created and new.fingerprint != old.fingerprint
    assert ensure_file_identity(path).fingerprint == new.fingerprint
    assert _mode(path) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640])
def test_readable_key_is_refused(tmp_path, mode):
    path = tmp_path / "identity"
    ensure_file_identity(path)
    os.chmod(path, mode)
    with pytest.raises(IdentityError, match="chmod 600"):
        ensure_file_identity(path)
    with pytest.raises(IdentityError, match="chmod 600"):
        check_key_file(path)


def test_missing_and_foreign_keys_get_clear_errors(tmp_path):
    # The command names the file: a plain `pullbridge identity` may use another (no --config given).
    missing = tmp_path / "keys dir" / "nope"
    with pytest.raises(IdentityError, match=f"no such key file; create it with `pullbridge identity --file "
                                            f"'{missing}'`"):
        check_key_file(missing)
    junk = tmp_path / "junk"
    junk.write_text("not a key\n")
    os.chmod(junk, 0o600)
    with pytest.raises(IdentityError, match="not an OpenSSH private key"):
        ensure_file_identity(junk)
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret-passphrase", "-f", str(locked)],
                   check=True)
    with pytest.raises(IdentityError, match="passphrase"):
        ensure_file_identity(locked)


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
@pytest.mark.parametrize("pem", ["PEM", "PKCS8"])
def test_a_pem_key_another_tool_wrote_is_shown_as_ssh_sees_it(tmp_path, kind, pem):
    """ssh reads PEM private keys (ssh-keygen -m PEM, Terraform's tls_private_key): so does identity."""
    path = tmp_path / "identity"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-m", pem, "-N", "", "-C", "", "-f", str(path)], check=True)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True,
                             check=True).stdout.split()
    ident = ensure_file_identity(path, comment="c")
    assert ident.public_line.split() == [*derived[:2], "c"] and not ident.created
    listed = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True,
                            check=True).stdout.split()
    assert ident.fingerprint == listed[1]
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-m", pem, "-N", "pass phrase", "-f", str(locked)], check=True)
    with pytest.raises(IdentityError, match="passphrase"):
        ensure_file_identity(locked)


def _check_as(uid, path, results):
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    try:
        check_key_file(path)
        results.put("accepted")
    except IdentityError as exc:
        results.put(str(exc))


def test_a_key_the_worker_user_cannot_read_is_refused_before_ssh_runs(tmp_path):
    """A Secret mounted 0400 for root (no fsGroup) and a worker running as another user: the error
    must say so, not leave ssh to go on without a key and blame the git host's refusal on it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to check the file as another user")
    shared = Path(tempfile.mkdtemp())  # traversable by the other user, unlike tmp_path
    try:
        os.chmod(shared, 0o755)
        path = shared / "identity"
        ensure_file_identity(path)
        os.chmod(path, 0o400)  # owned by root: private, but not the worker's
        results = multiprocessing.get_context("fork").Queue()
        child = multiprocessing.get_context("fork").Process(target=_check_as, args=(65534, path, results))
        child.start()
        child.join()
        assert results.get() == (f"{path}: cannot read the key file as user 65534 (owner 0, mode 0400): "
                                 "Permission denied")
    finally:
        shutil.rmtree(shared)


def _race(path, barrier, results):
    barrier.wait()
    results.put(ensure_file_identity(path).fingerprint)


def test_concurrent_first_calls_agree_on_one_key(tmp_path):
    ctx = multiprocessing.get_context("fork")
    n = 6
    for round_ in range(3):
        path = tmp_path / f"round{round_}" / "identity"
        barrier, results = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_race, args=(path, barrier, results)) for _ in range(n)]
        for p in procs:
            p.start()
        fingerprints = [results.get() for _ in range(n)]
        for p in procs:
            p.join()
            assert p.exitcode == 0
        assert len(set(fingerprints)) == 1
        assert ensure_file_identity(path).fingerprint == fingerprints[0]
        assert [p.name for p in path.parent.iterdir()] == ["identity"]


def test_cli_prints_key_on_stdout_and_says_what_happened(tmp_path):
    path = tmp_path / "identity"
    first = _cli("identity", "--file", str(path), "--comment", "pullbridge@ci")
    assert first.returncode == 0, first.stderr
    line = first.stdout.strip()
    assert line.startswith("ssh-ed25519 AAAA") and line.endswith("pullbridge@ci")
    assert "Created a new deploy key" in first.stderr
    again = _cli("identity", "--comment", "pullbridge@ci", env_extra={"PULLBRIDGE_IDENTITY": str(path)})
    assert again.returncode == 0 and again.stdout.strip() == line and again.stderr == ""
    fp = _cli("identity", "--file", str(path), "-l")
    assert fp.stdout.split()[1] == ensure_file_identity(path).fingerprint
    rotated = _cli("identity", "--file", str(path), "--rotate")
    assert rotated.returncode == 0
    assert rotated.stdout.split()[1] != line.split()[1]
    assert "OLD KEY NO LONGER WORKS" in rotated.stderr
    os.chmod(path, 0o644)
    refused = _cli("identity", "--file", str(path))
    assert refused.returncode == 2 and refused.stdout == ""
    assert "readable by any user" in refused.stderr and "chmod 600" in refused.stderr
    assert "PRIVATE KEY" not in refused.stderr


def test_cli_default_path_comes_from_the_config(tmp_path):
    key = tmp_path / "from-config"
    cfg = tmp_path / "pullbridge.yaml"
    cfg.write_text(f"ssh:\n  identity_file: {key}\n")
    out = _cli("identity", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert key.exists() and _mode(key) == 0o600
    bad = tmp_path / "bad.yaml"
    bad.write_text("ssh:\n  identity_fil: x\n")
    err = _cli("identity", "--config", str(bad))
    assert err.returncode == 2 and "ssh.identity_fil: unknown key" in err.stderr


def test_a_key_mounted_from_a_secret_is_accepted(tmp_path, monkeypatch):
    """Kubernetes mounts the Secret root-owned, mode 0440, group fsGroup; the worker runs as
    another uid. Group-readable is fine then (ssh agrees); world-readable never is."""
    path = tmp_path / "identity"
    ensure_file_identity(path)
    os.chmod(path, 0o440)
    with pytest.raises(IdentityError):
        check_key_file(path)  # owned by us: ssh would refuse it too
    monkeypatch.setattr(os, "getuid", lambda: os.stat(path).st_uid + 10001)
    check_key_file(path)
    os.chmod(path, 0o444)
    with pytest.raises(IdentityError, match="any user"):
        check_key_file(path)
