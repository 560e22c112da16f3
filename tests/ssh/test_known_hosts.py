"""The pinned known_hosts file: scanning a real sshd, fingerprints, replacing, hashed entries."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pullbridge.known_hosts import (HostKey, KnownHostsError, host_pattern, lookup, read_entries,
                                    record, scan)


def _keygen_l(pub) -> tuple[str, str, str]:
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], out[1], out[-1]


def _cli(*args):
    env = dict(os.environ)
    env.pop("PULLBRIDGE_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "pullbridge", *args], capture_output=True, text=True,
                          env=env)


def test_host_pattern():
    assert host_pattern("git.example.com") == "git.example.com"
    assert host_pattern("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_scan_reports_the_servers_real_fingerprints(sshd):
    keys = scan(sshd.host, sshd.port)
    expected = {_keygen_l(pub) for pub in sshd.host_key_pubs}
    got = {(d.split()[0], d.split()[1], d.split()[-1]) for d in (k.describe() for k in keys)}
    assert expected <= got


def test_cli_add_and_list(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    out = _cli("known-hosts", "add", sshd.host, "--port", str(sshd.port), "--file", str(kh))
    assert out.returncode == 0, out.stderr
    for pub in sshd.host_key_pubs:
        bits, fp, kind = _keygen_l(pub)
        assert f"{bits} {fp} [{sshd.host}]:{sshd.port} {kind}" in out.stdout
    # ssh-keygen agrees the file names the host
    found = subprocess.run(["ssh-keygen", "-F", f"[{sshd.host}]:{sshd.port}", "-f", str(kh)],
                           capture_output=True, text=True)
    assert found.returncode == 0 and "ssh-ed25519" in found.stdout
    listed = _cli("known-hosts", "list", "--file", str(kh))
    assert listed.returncode == 0
    assert set(listed.stdout.splitlines()) == set(out.stdout.splitlines()[1:])
    # adding again replaces rather than duplicates
    _cli("known-hosts", "add", sshd.host, "--port", str(sshd.port), "--file", str(kh))
    assert len(read_entries(kh)) == len(out.stdout.splitlines()) - 1
    removed = _cli("known-hosts", "remove", sshd.host, "--port", str(sshd.port), "--file", str(kh))
    assert removed.returncode == 0 and read_entries(kh) == []
    again = _cli("known-hosts", "remove", sshd.host, "--port", str(sshd.port), "--file", str(kh))
    assert again.returncode == 2 and "no keys pinned" in again.stderr


def test_cli_add_with_fingerprint_pins_only_a_matching_key(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    _, ed_fp, _ = _keygen_l(sshd.host_key_pubs[0])
    ok = _cli("known-hosts", "add", sshd.host, "--port", str(sshd.port), "--file", str(kh),
              "--fingerprint", ed_fp)
    assert ok.returncode == 0, ok.stderr
    assert [e.fingerprint for e in read_entries(kh)] == [ed_fp]
    wrong = _cli("known-hosts", "add", sshd.host, "--port", str(sshd.port), "--file", str(kh),
                 "--fingerprint", "SHA256:" + "A" * 43)
    assert wrong.returncode == 2 and "offers no key with fingerprint" in wrong.stderr
    assert [e.fingerprint for e in read_entries(kh)] == [ed_fp]  # untouched


def test_unreachable_host_and_bad_names_are_clear_errors(tmp_path):
    with pytest.raises(KnownHostsError, match="no host keys received"):
        scan("127.0.0.1", 1)
    with pytest.raises(KnownHostsError) as unknown:  # ".invalid" never resolves (RFC 2606)
        scan("nosuch.invalid")
    assert str(unknown.value).count("getaddrinfo nosuch.invalid") == 1, str(unknown.value)
    for bad in ("-oProxyCommand=touch /tmp/x", "host;rm", ""):
        with pytest.raises(KnownHostsError, match="not a host name"):
            scan(bad)
    out = _cli("known-hosts", "add", "127.0.0.1", "--port", "70000", "--file", str(tmp_path / "k"))
    assert out.returncode == 2 and not (tmp_path / "k").exists()


def test_record_replaces_only_that_host(tmp_path):
    kh = tmp_path / "known_hosts"
    blob = "AAAAC3NzaC1lZDI1NTE5AAAAIEmDPcwikaFCUSHzewKTNe8GQrIoKGQHhgPpXFNSqlXf"
    blob2 = "AAAAC3NzaC1lZDI1NTE5AAAAIELQtcNUyB77dC43UuiR7T2KEQXZagKSUtT++tnteNw+"
    kh.write_text(f"# comment kept\nother.example ssh-ed25519 {blob}\n"
                  f"git.example,alias.example ssh-ed25519 {blob}\n")
    record(kh, "git.example", 22, [HostKey("x", "ssh-ed25519", blob2)])
    lines = kh.read_text().splitlines()
    assert lines[0] == "# comment kept"
    assert f"other.example ssh-ed25519 {blob}" in lines
    assert f"alias.example ssh-ed25519 {blob}" in lines
    assert f"git.example ssh-ed25519 {blob2}" in lines
    assert [k.blob for k in lookup(kh, "git.example")] == [blob2]
    assert lookup(kh, "git.example", 2222) == []


def test_hashed_entries_are_matched(tmp_path):
    kh = tmp_path / "known_hosts"
    blob = "AAAAC3NzaC1lZDI1NTE5AAAAIEmDPcwikaFCUSHzewKTNe8GQrIoKGQHhgPpXFNSqlXf"
    kh.write_text(f"[git.example]:2222 ssh-ed25519 {blob}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(kh)], check=True, capture_output=True)
    assert kh.read_text().startswith("|1|")
    assert [k.blob for k in lookup(kh, "git.example", 2222)] == [blob]
    assert lookup(kh, "git.example") == []
    kh.write_text(f"*.example ssh-ed25519 {blob}\n")
    assert lookup(kh, "other.host") is None  # wildcards: let ssh decide


def test_host_names_match_case_insensitively_like_openssh(tmp_path):
    """Whatever case the operator typed or the URL carries, the lookup agrees with OpenSSH's own
    (``ssh-keygen -F``) on plain, recorded and hashed entries."""
    from worker.ssh import ssh_host_port

    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True)
    keytype, blob = (tmp_path / "k.pub").read_text().split()[:2]
    by_hand = tmp_path / "by_hand"
    by_hand.write_text(f"GitHub.com {keytype} {blob}\n[Git.Example.com]:2222 {keytype} {blob}\n")
    recorded = tmp_path / "recorded"
    record(recorded, "GitLab.COM", 22, [HostKey("x", keytype, blob)])
    assert read_entries(recorded)[0].patterns == "gitlab.com"
    hashed = tmp_path / "hashed"
    hashed.write_text(f"Gitea.Example.org {keytype} {blob}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(hashed)], check=True, capture_output=True)
    assert read_entries(hashed)[0].patterns.startswith("|1|")

    cases = [(by_hand, "github.com", 22), (by_hand, "GITHUB.COM", 22), (by_hand, "git.example.com", 2222),
             (recorded, "gitlab.com", 22), (recorded, "GitLab.com", 22),
             (hashed, "gitea.example.org", 22), (hashed, "GITEA.example.org", 22)]
    for path, host, port in cases:
        # ssh lowercases the host before it looks it up (a hashed name is of the lowercased host);
        # ssh-keygen -F compares plain names case-insensitively, so it gets the name as typed
        query = host.lower() if path is hashed else host if port == 22 else f"[{host}]:{port}"
        openssh = subprocess.run(["ssh-keygen", "-F", query, "-f", str(path)], capture_output=True, text=True)
        assert openssh.returncode == 0, (path.name, host)
        assert [k.blob for k in lookup(path, host, port)] == [blob], (path.name, host)
    assert lookup(by_hand, "github.com", 2222) == []
    assert ssh_host_port("git@GitHub.com:org/app.git") == ("github.com", 22)
    assert ssh_host_port("ssh://git@GitHub.com/org/app.git") == ("github.com", 22)
