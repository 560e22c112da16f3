"""Certificates and keys for the local Kubernetes stack, made with `cryptography`.

Why: kube-apiserver only serves TLS and needs a service-account signing key;
generating them here keeps the stack free of openssl/cfssl scripts.  One CA
signs the apiserver's serving cert and an admin client cert in
``system:masters``; a static token for the same user is written as well.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=3650)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: x509.Name, issuer: x509.Name, public_key, signing_key, *, ca: bool,
          usages: list | None = None, sans: list | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=True, key_cert_sign=False, crl_sign=False,
            content_commitment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _pki_is_whole(paths: dict[str, Path]) -> bool:
    """Every file is there and reads back: each cert signed by the CA and matching its key."""
    try:
        ca = x509.load_pem_x509_certificate(paths["ca.crt"].read_bytes())
        for name in ("ca", "apiserver", "admin"):
            cert = x509.load_pem_x509_certificate(paths[f"{name}.crt"].read_bytes())
            key = serialization.load_pem_private_key(paths[f"{name}.key"].read_bytes(), None)
            cert.verify_directly_issued_by(ca)
            if cert.public_key() != key.public_key():
                return False
        sa_key = serialization.load_pem_private_key(paths["sa.key"].read_bytes(), None)
        if serialization.load_pem_public_key(paths["sa.pub"].read_bytes()) != sa_key.public_key():
            return False
        token = paths["admin.token"].read_text()
        return bool(token) and paths["tokens.csv"].read_text().startswith(f"{token},")
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False


def ensure_pki(pki: Path) -> tuple[dict[str, Path], bool]:
    """The CA, serving cert, admin client cert, SA keys and token, made when any is missing or
    damaged (all anew: they belong together); -> their paths, and whether they were made now."""
    pki.mkdir(parents=True, exist_ok=True)
    paths = {name: pki / name for name in (
        "ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key",
        "sa.key", "sa.pub", "tokens.csv", "admin.token")}
    if _pki_is_whole(paths):
        return paths, False

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("pullbridge-local-ca")
    ca = _cert(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)

    serving_key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default",
                                       "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "::1", "10.96.0.1")]
    serving = _cert(_name("kube-apiserver"), ca_name, serving_key.public_key(), ca_key, ca=False,
                    usages=[ExtendedKeyUsageOID.SERVER_AUTH], sans=sans)

    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _cert(_name("pullbridge-admin", "system:masters"), ca_name, admin_key.public_key(),
                  ca_key, ca=False, usages=[ExtendedKeyUsageOID.CLIENT_AUTH])

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = secrets.token_urlsafe(32)

    pem = serialization.Encoding.PEM
    _write(paths["ca.crt"], ca.public_bytes(pem))
    _write(paths["ca.key"], _key_pem(ca_key), private=True)
    _write(paths["apiserver.crt"], serving.public_bytes(pem))
    _write(paths["apiserver.key"], _key_pem(serving_key), private=True)
    _write(paths["admin.crt"], admin.public_bytes(pem))
    _write(paths["admin.key"], _key_pem(admin_key), private=True)
    _write(paths["sa.key"], _key_pem(sa_key), private=True)
    _write(paths["sa.pub"], sa_key.public_key().public_bytes(
        pem, serialization.PublicFormat.SubjectPublicKeyInfo))
    _write(paths["tokens.csv"], f'{token},pullbridge-admin,pullbridge-admin,"system:masters"\n'.encode(),
           private=True)
    _write(paths["admin.token"], token.encode(), private=True)
    return paths, True


def kubeconfig_text(server: str, paths: dict[str, Path]) -> str:
    """A kubeconfig for the admin user, referring to the cert files by path.

    Written as JSON, which is YAML too: a path with " #", ": " or quotes in it
    would be cut or misread in hand-written YAML, and fail later as a TLS error.
    """
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "pullbridge-local", "cluster": {
            "server": server, "certificate-authority": str(paths["ca.crt"])}}],
        "users": [{"name": "pullbridge-admin", "user": {
            "client-certificate": str(paths["admin.crt"]), "client-key": str(paths["admin.key"])}}],
        "contexts": [{"name": "pullbridge-local", "context": {
            "cluster": "pullbridge-local", "user": "pullbridge-admin"}}],
        "current-context": "pullbridge-local",
    }
    return json.dumps(config, indent=2) + "\n"


def write_kubeconfig(path: Path, server: str, paths: dict[str, Path]) -> None:
    """Replace the kubeconfig atomically: a kubectl reading it meanwhile never sees half a file."""
    _write(path, kubeconfig_text(server, paths).encode())
