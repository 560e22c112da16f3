"""Pullbridge's SSH deploy key: made once, then reused, rotated only on request.

Why it exists: to fetch and push over SSH the workers need a private key the
git host accepts as a deploy key.  Like ``fluxctl identity``, Pullbridge makes
that key itself (ed25519, with ``cryptography``, written in the OpenSSH
private key format so ``ssh -i`` reads it) and prints the public half for the
operator to paste into the git host.  The key lives either in a file with
mode 0600 or in a Kubernetes Secret of type ``kubernetes.io/ssh-auth`` (the
worker Deployment mounts that Secret as a file).

Creation is atomic: the key is written to a private temporary file and then
hard-linked into place, which fails if another process got there first; the
loser reads and returns the winner's key, so concurrent first calls agree on
one key.  A Secret is created with ``create`` (409 Conflict -> read the one
that won).  Rotation replaces the file with ``os.replace`` and the Secret
with an optimistic-concurrency ``replace`` (resourceVersion).

No ``.pub`` file is written next to a key file: ssh would prefer a stale
``.pub`` over the private key after a rotation, and the public key is always
derivable from the private one.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shlex
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from pullbridge.config import user_path

SECRET_TYPE = "kubernetes.io/ssh-auth"
SECRET_KEY = "ssh-privatekey"  # the key name the ssh-auth Secret type requires
SECRET_PUB_KEY = "identity.pub"
FINGERPRINT_ANNOTATION = "pullbridge.io/fingerprint"


class IdentityError(Exception):
    """The deploy key cannot be created, read or used; the message says what to do."""


@dataclass(frozen=True)
class Identity:
    """A loaded deploy key. ``private_bytes`` never appears in repr."""

    public_line: str          # "ssh-ed25519 AAAA... pullbridge@host"
    fingerprint: str          # "SHA256:..." as ssh-keygen -lf prints it
    location: str             # a file path or "secret NAMESPACE/NAME"
    created: bool             # made by this call (first use or rotation)
    private_bytes: bytes = b""

    def __repr__(self) -> str:
        return f"Identity({self.fingerprint} at {self.location}, created={self.created})"


def default_comment() -> str:
    return f"pullbridge@{socket.gethostname() or 'localhost'}"


def generate_private_key() -> bytes:
    """A new ed25519 private key in the OpenSSH format, unencrypted."""
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption())


def _load_private(data: bytes, where: str):
    """The private key in ``data``: the OpenSSH format, or PEM (PKCS#1, SEC1, PKCS#8) as other tools
    write it (``ssh-keygen -m PEM``, Terraform's ``tls_private_key``), which ssh reads too."""
    pem = data.lstrip().startswith(b"-----BEGIN ") and b"-----BEGIN OPENSSH PRIVATE KEY-----" not in data
    try:
        if pem:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_ssh_private_key(data, password=None)
    except TypeError:
        raise IdentityError(f"{where}: the key is protected by a passphrase; Pullbridge needs an "
                            "unencrypted key (ssh runs non-interactively)") from None
    except Exception as exc:  # ValueError, UnsupportedAlgorithm, ...: all mean "unusable key"
        raise IdentityError(f"{where}: not an OpenSSH private key ({type(exc).__name__})") from None


def public_key_line(private_bytes: bytes, comment: str, where: str = "key") -> str:
    """The ``authorized_keys``-style public line for an OpenSSH private key."""
    key = _load_private(private_bytes, where)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return f"{public} {comment}".strip()


def fingerprint_of_blob(blob_b64: str) -> str:
    """SHA256 fingerprint of a base64 key blob, exactly as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(base64.b64decode(blob_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def fingerprint(public_line: str) -> str:
    return fingerprint_of_blob(public_line.split()[1])


def key_bits(public_line: str) -> int:
    """Key size as ssh-keygen -l shows it (256 for ed25519)."""
    key = serialization.load_ssh_public_key(" ".join(public_line.split()[:2]).encode())
    if isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        return key.key_size
    return 256


def _identity(private_bytes: bytes, comment: str, location: str, created: bool) -> Identity:
    line = public_key_line(private_bytes, comment, location)
    return Identity(public_line=line, fingerprint=fingerprint(line), location=location,
                    created=created, private_bytes=private_bytes)


# ---------------------------------------------------------------- key files

def check_key_file(path: str | os.PathLike) -> None:
    """Refuse a key file other users can read (ssh refuses it too, less clearly), or this user
    cannot (ssh would go on without a key, and the host's refusal would blame the key)."""
    path = user_path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IdentityError(f"{path}: no such key file; create it with "
                            f"`pullbridge identity --file {shlex.quote(str(path))}`") from None
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read the key file: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise IdentityError(f"{path}: not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o007 or (st.st_uid == os.getuid() and mode & 0o077):
        who = "any user" if mode & 0o004 else "other users"
        raise IdentityError(
            f"{path}: the private key is readable by {who} (mode {mode:04o}); "
            f"a deploy key must be private: run `chmod 600 {path}` (or rotate it if it may have leaked)")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read the key file as user {os.getuid()} (owner {st.st_uid}, "
                            f"mode {mode:04o}): {exc.strerror}") from None


def _write_private_temp(directory: Path, data: bytes) -> Path:
    tmp = directory / f".pullbridge-identity.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_key_file(path: Path, comment: str) -> Identity:
    check_key_file(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read the key file: {exc.strerror}") from None
    return _identity(data, comment, str(path), created=False)


def ensure_file_identity(path: str | os.PathLike, rotate: bool = False,
                         comment: str | None = None) -> Identity:
    """Return the key at ``path``, creating it atomically if absent (or replacing it if ``rotate``)."""
    path = user_path(path)
    comment = comment or default_comment()
    if path.exists() and not rotate:
        return _read_key_file(path, comment)
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = _write_private_temp(directory, generate_private_key())
    except OSError as exc:
        raise IdentityError(f"{path}: cannot write the key file: {exc.strerror}") from None
    try:
        if rotate:
            os.replace(tmp, path)
            created = True
        else:
            try:
                os.link(tmp, path)  # fails if another process created the key first
                created = True
            except FileExistsError:
                created = False
    except OSError as exc:
        raise IdentityError(f"{path}: cannot write the key file: {exc.strerror}") from None
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
    _fsync_dir(directory)
    if not created:
        return _read_key_file(path, comment)
    data = path.read_bytes()
    return _identity(data, comment, str(path), created=True)


# ---------------------------------------------------------------- Kubernetes Secret

def _api_reason(exc) -> str:
    body = (getattr(exc, "body", None) or getattr(exc, "reason", "") or "")
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    return f"{getattr(exc, 'status', '?')} {str(body)[:300]}"


def _secret_identity(secret, location: str, comment: str, created: bool) -> Identity:
    data = secret.data or {}
    if secret.type != SECRET_TYPE or SECRET_KEY not in data:
        raise IdentityError(
            f"{location} exists but is not a Pullbridge deploy key (type {secret.type!r}, "
            f"needs type {SECRET_TYPE} with key {SECRET_KEY}); delete it or choose another name")
    private = base64.b64decode(data[SECRET_KEY])
    stored_pub = base64.b64decode(data.get(SECRET_PUB_KEY, "")).decode(errors="replace").strip()
    ident = _identity(private, comment, location, created)
    # Keep the comment written at creation when it still matches the private key.
    if stored_pub and stored_pub.split()[:2] == ident.public_line.split()[:2]:
        ident = Identity(public_line=stored_pub, fingerprint=ident.fingerprint, location=location,
                         created=created, private_bytes=private)
    return ident


def _secret_body(namespace: str, name: str, private: bytes, comment: str, resource_version=None):
    from kubernetes import client

    line = public_key_line(private, comment)
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=name, namespace=namespace, resource_version=resource_version,
            labels={"app.kubernetes.io/name": "pullbridge", "app.kubernetes.io/component": "deploy-key"},
            annotations={FINGERPRINT_ANNOTATION: fingerprint(line)}),
        type=SECRET_TYPE,
        data={SECRET_KEY: base64.b64encode(private).decode(),
              SECRET_PUB_KEY: base64.b64encode(line.encode() + b"\n").decode()},
    )


def ensure_secret_identity(api_client, namespace: str, name: str, rotate: bool = False,
                           comment: str | None = None) -> Identity:
    """Like ``ensure_file_identity`` but the key lives in Secret ``namespace/name``.

    An API server that cannot be reached (refused, TLS, timeout) is an
    ``IdentityError`` too, naming the Secret, like any other failed request.
    """
    import urllib3

    location = f"secret {namespace}/{name}"
    try:
        return _ensure_secret_identity(api_client, namespace, name, rotate, comment or default_comment())
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        if never_connected(exc):
            raise IdentityError(f"{location}: API server unreachable: {detail}") from None
        raise IdentityError(f"{location}: the API server did not answer ({detail}); a key being written "
                            "may or may not be stored: look at the Secret before trying again") from None


def never_connected(exc: BaseException) -> bool:
    """True when the request never reached the API server (refused, DNS, TLS, connect timeout),
    so nothing can have been written; False when it may have been sent (a read timeout, a cut
    connection)."""
    import urllib3

    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    early = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
             urllib3.exceptions.SSLError, urllib3.exceptions.NameResolutionError,
             ConnectionRefusedError)
    return isinstance(exc, early)


def _ensure_secret_identity(api_client, namespace: str, name: str, rotate: bool, comment: str) -> Identity:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    location = f"secret {namespace}/{name}"
    try:
        current = core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise IdentityError(f"{location}: cannot read: {_api_reason(exc)}") from None
        current = None
    if current is not None and not rotate:
        return _secret_identity(current, location, comment, created=False)
    if current is not None:
        # Rotation: the type of a Secret is immutable, so check it before replacing.
        _secret_identity(current, location, comment, created=False)
        body = _secret_body(namespace, name, generate_private_key(), comment,
                            resource_version=current.metadata.resource_version)
        try:
            stored = core.replace_namespaced_secret(name, namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                raise IdentityError(f"{location} changed while rotating (another rotation?); "
                                    "run the command again") from None
            raise IdentityError(f"{location}: cannot replace: {_api_reason(exc)}") from None
        return _secret_identity(stored, location, comment, created=True)
    try:
        stored = core.create_namespaced_secret(namespace, _secret_body(
            namespace, name, generate_private_key(), comment))
        return _secret_identity(stored, location, comment, created=True)
    except ApiException as exc:
        if exc.status != 409:
            raise IdentityError(f"{location}: cannot create: {_api_reason(exc)}") from None
    # Another caller created it first: use theirs.
    try:
        current = core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        raise IdentityError(f"{location}: cannot read: {_api_reason(exc)}") from None
    return _secret_identity(current, location, comment, created=False)
