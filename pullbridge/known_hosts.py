"""The pinned known_hosts file: the only SSH host keys Pullbridge trusts.

Why it exists: the workers fetch and push with ``StrictHostKeyChecking=yes``
against this file alone, so a host whose key is not recorded here (or whose
key changed) is refused instead of silently trusted.  ``pullbridge
known-hosts add HOST`` fills it with ``ssh-keyscan`` and prints each key's
SHA256 fingerprint (as ``ssh-keygen -lf`` would) so the operator can compare
it with the fingerprints the git host publishes; ``--fingerprint`` makes that
comparison mandatory.

The file is standard OpenSSH ``known_hosts`` syntax; updates are made under a
lock file and written with ``os.replace`` so readers never see half a file.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import os
import re
import subprocess
from dataclasses import dataclass

from pullbridge.config import user_path
from pullbridge.identity import fingerprint_of_blob, key_bits

HOST_RE = re.compile(r"^[A-Za-z0-9_.:%-]+\Z")
TYPE_LABELS = {
    "ssh-ed25519": "ED25519", "ssh-rsa": "RSA", "ssh-dss": "DSA",
    "sk-ssh-ed25519@openssh.com": "ED25519-SK", "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA-SK",
}


class KnownHostsError(Exception):
    """The host cannot be scanned or the file cannot be read or written."""


def validate_host(host: str) -> None:
    """KnownHostsError unless ``host`` is a host name or IP address (``host_pattern`` lowercases it)."""
    if not host or host.startswith("-") or not HOST_RE.match(host):
        raise KnownHostsError(f"{host!r} is not a host name or IP address")


def host_pattern(host: str, port: int = 22) -> str:
    """How OpenSSH names ``host`` on ``port`` in known_hosts ("[host]:port" unless 22), lowercased
    as ssh does before it looks a host up or hashes its name."""
    host = host.lower()
    return host if int(port) == 22 else f"[{host}]:{int(port)}"


@dataclass(frozen=True)
class HostKey:
    patterns: str      # first field: "host", "host,alias", "[host]:2222" or a hashed "|1|salt|hash"
    keytype: str
    blob: str          # base64 key blob
    marker: str = ""   # "@cert-authority" / "@revoked" or ""

    def line(self) -> str:
        return " ".join(p for p in (self.marker, self.patterns, self.keytype, self.blob) if p)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of_blob(self.blob)

    @property
    def type_label(self) -> str:
        if self.keytype.startswith("ecdsa-sha2-"):
            return "ECDSA"
        return TYPE_LABELS.get(self.keytype, self.keytype.upper())

    def describe(self) -> str:
        """One line like ``ssh-keygen -lf``: "256 SHA256:... host (ED25519)"."""
        try:
            bits = key_bits(f"{self.keytype} {self.blob}")
        except Exception:  # key types cryptography cannot load (e.g. security keys)
            bits = 256
        prefix = f"{self.marker} " if self.marker else ""
        return f"{bits} {self.fingerprint} {prefix}{self.patterns} ({self.type_label})"

    def names(self, pattern: str) -> bool:
        """Whether this entry is for exactly ``pattern`` (plain or hashed form).

        Case-insensitive, as in OpenSSH: a hashed name is the hash of the lowercased host, and a
        plain ``GitHub.com`` written by hand still names ``github.com``.
        """
        pattern = pattern.lower()
        for item in self.patterns.split(","):
            if item.startswith("|1|"):
                try:
                    _, _, salt, digest = item.split("|")
                    want = base64.b64decode(digest)
                    got = hmac.new(base64.b64decode(salt), pattern.encode(), hashlib.sha1).digest()
                except (ValueError, TypeError):
                    continue
                if hmac.compare_digest(want, got):
                    return True
            elif item.lower() == pattern:
                return True
        return False

    @property
    def has_wildcards(self) -> bool:
        return any(c in self.patterns for c in "*?!")


def parse_line(line: str) -> HostKey | None:
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None
    marker = ""
    if fields[0].startswith("@"):
        marker, fields = fields[0], fields[1:]
    if len(fields) < 3:
        return None
    try:
        base64.b64decode(fields[2], validate=True)
    except ValueError:
        return None
    return HostKey(patterns=fields[0], keytype=fields[1], blob=fields[2], marker=marker)


def read_entries(path: str | os.PathLike) -> list[HostKey]:
    """Entries of a known_hosts file; a missing file has none."""
    try:
        text = user_path(path).read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KnownHostsError(f"{path}: cannot read: {exc.strerror}") from None
    return [e for e in (parse_line(line) for line in text.splitlines()) if e]


def lookup(path: str | os.PathLike, host: str, port: int = 22) -> list[HostKey] | None:
    """Keys pinned for host:port; None if the file has wildcard entries we cannot judge."""
    entries = read_entries(path)
    pattern = host_pattern(host, port)
    found = [e for e in entries if e.marker != "@revoked" and e.names(pattern)]
    if not found and any(e.has_wildcards for e in entries):
        return None
    return found


def scan(host: str, port: int = 22, timeout: int = 10, keyscan: str = "ssh-keyscan") -> list[HostKey]:
    """The host keys ``host:port`` offers, via ``ssh-keyscan``."""
    validate_host(host)
    cmd = [keyscan, "-p", str(int(port)), "-T", str(int(timeout)), "--", host]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise KnownHostsError(f"{keyscan} not found: install openssh-client") from None
    keys = [e for e in (parse_line(line) for line in proc.stdout.splitlines()) if e]
    if not keys:
        # ssh-keyscan repeats an error once per key type it asked for: say it once
        detail = " ".join(dict.fromkeys(line for line in proc.stderr.splitlines() if not line.startswith("#")))
        raise KnownHostsError(f"no host keys received from {host_pattern(host, port)}"
                              + (f": {detail[:300]}" if detail else ""))
    return keys


def record(path: str | os.PathLike, host: str, port: int, keys: list[HostKey]) -> list[HostKey]:
    """Pin ``keys`` for host:port in ``path``, replacing what was pinned for it before."""
    path = user_path(path)
    pattern = host_pattern(host, port)
    new = [HostKey(patterns=pattern, keytype=k.keytype, blob=k.blob) for k in keys]
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                old_lines = path.read_text().splitlines()
            except FileNotFoundError:
                old_lines = []
            kept = []
            for line in old_lines:
                entry = parse_line(line)
                if entry is None or not entry.names(pattern):
                    kept.append(line)
                    continue
                others = [p for p in entry.patterns.split(",")
                          if not HostKey(p, entry.keytype, entry.blob).names(pattern)]
                if others:  # the line also names other hosts: keep it for them
                    kept.append(HostKey(",".join(others), entry.keytype, entry.blob, entry.marker).line())
            text = "\n".join(kept + [k.line() for k in new]) + "\n"
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
    except OSError as exc:
        raise KnownHostsError(f"{path}: cannot write: {exc.strerror}") from None
    return new
