"""A real container registry on loopback for the image automation tests.

Debian's ``docker-registry`` (distribution v2.8) runs with its own config:
filesystem storage in a temp dir, 127.0.0.1 on a free port, and optionally
htpasswd basic auth or token auth (a small token server here signs ES256 JWTs
with a self-signed certificate the registry trusts, as Docker Hub's auth
service does).  Images are pushed with direct OCI uploads: a config blob with
a chosen ``created`` time, a tiny layer, then a manifest per tag; no docker
daemon is involved.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import requests

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bcrypt_hash(password: str) -> str:
    try:
        import bcrypt  # type: ignore

        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    except ImportError:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # glibc/libxcrypt bcrypt ($2b$), present up to Python 3.12

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))


class TokenServer:
    """Issues registry bearer tokens (ES256 JWT, x5c header) to clients with the right basic auth."""

    def __init__(self, tmp: Path, service: str, username: str, password: str):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.service, self.issuer = service, "pullbridge-test-issuer"
        self.username, self.password = username, password
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pullbridge test token signer")])
        now = datetime.now(timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_file = tmp / "token-signer.pem"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[dict] = []
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                query = parse_qs(urlparse(self.path).query)
                auth = self.headers.get("Authorization", "")
                expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
                server.requests.append({"query": query, "authorized": auth == expected})
                if auth != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": server.token(query.get("scope", [])), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        for scope in scopes:
            for one in scope.split(" "):
                kind, _, rest = one.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": self.issuer, "sub": self.username, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Registry:
    """One docker-registry process; ``push_image`` uploads small images to it."""

    def __init__(self, tmp: Path, *, htpasswd: tuple[str, str] | None = None,
                 token: TokenServer | None = None, notify_url: str | None = None,
                 notify_headers: dict[str, str] | None = None):
        self.tmp = tmp
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.push_auth: tuple[str, str] | None = htpasswd
        self.token = token
        lines = ["version: 0.1", "log:", "  level: warn", "  accesslog:", "    disabled: true",
                 "storage:", "  filesystem:", f"    rootdirectory: {tmp / 'data'}",
                 "  delete:", "    enabled: true", "http:", f"  addr: {self.host}",
                 f"  secret: {uuid.uuid4().hex}"]
        if htpasswd:
            (tmp / "htpasswd").write_text(f"{htpasswd[0]}:{bcrypt_hash(htpasswd[1])}\n")
            lines += ["auth:", "  htpasswd:", "    realm: pullbridge-test", f"    path: {tmp / 'htpasswd'}"]
        if token:
            lines += ["auth:", "  token:", f"    realm: {token.realm}", f"    service: {token.service}",
                      f"    issuer: {token.issuer}", f"    rootcertbundle: {token.cert_file}"]
            self.push_auth = (token.username, token.password)
        if notify_url:
            lines += ["notifications:", "  endpoints:", "    - name: pullbridge", f"      url: {notify_url}",
                      "      timeout: 5s", "      threshold: 3", "      backoff: 1s"]
            if notify_headers:
                lines.append("      headers:")
                lines += [f"        {k}: [{json.dumps(v)}]" for k, v in notify_headers.items()]
        self.config_file = tmp / "registry.yml"
        self.config_file.write_text("\n".join(lines) + "\n")
        self.log = open(tmp / "registry.log", "wb")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.config_file)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.session = requests.Session()
        self._tokens: dict[str, str] = {}
        self._wait_ready()

    def _wait_ready(self) -> None:
        for _ in range(300):
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.tmp / 'registry.log').read_text()[-2000:]}")
            try:
                requests.get(self.url + "/v2/", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("docker-registry did not start listening")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    # ------------------------------------------------------------ pushing

    def _auth(self, name: str) -> dict:
        if self.token:
            scope = f"repository:{name}:pull,push"
            if scope not in self._tokens:
                resp = requests.get(self.token.realm, params={"service": self.token.service, "scope": scope},
                                    auth=self.push_auth, timeout=10)
                resp.raise_for_status()
                self._tokens[scope] = resp.json()["token"]
            return {"headers": {"Authorization": f"Bearer {self._tokens[scope]}"}}
        return {"auth": self.push_auth} if self.push_auth else {}

    def put_blob(self, name: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        auth = self._auth(name)
        resp = self.session.post(f"{self.url}/v2/{name}/blobs/uploads/", timeout=10, **auth)
        assert resp.status_code == 202, resp.text
        location = resp.headers["Location"]
        if location.startswith("/"):
            location = self.url + location
        sep = "&" if "?" in location else "?"
        resp = self.session.put(f"{location}{sep}digest={digest}", data=data, timeout=10,
                                headers={"Content-Type": "application/octet-stream",
                                         **auth.get("headers", {})}, auth=auth.get("auth"))
        assert resp.status_code == 201, resp.text
        return digest

    def put_manifest(self, name: str, reference: str, manifest: dict, media_type: str) -> str:
        body = json.dumps(manifest).encode()
        auth = self._auth(name)
        resp = self.session.put(f"{self.url}/v2/{name}/manifests/{reference}", data=body, timeout=10,
                                headers={"Content-Type": media_type, **auth.get("headers", {})},
                                auth=auth.get("auth"))
        assert resp.status_code == 201, resp.text
        return resp.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()

    def _image(self, name: str, created: str | None, arch: str) -> tuple[dict, bytes]:
        layer = f"layer of {name} {arch} {uuid.uuid4().hex}".encode()
        layer_digest = self.put_blob(name, layer)
        config = {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}
        if created is not None:
            config["created"] = created
        config_bytes = json.dumps(config).encode()
        config_digest = self.put_blob(name, config_bytes)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
                    "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}]}
        return manifest, json.dumps(manifest).encode()

    def push_image(self, name: str, tag: str, created: datetime | str | None, *,
                   index: bool = False, docker: bool = False) -> str:
        """Push a tiny image under ``name:tag`` whose config says ``created``; returns its digest.

        ``index=True`` pushes an OCI image index instead: an arm64 image created
        a year later listed first, then the amd64 image created at ``created``.
        """
        if isinstance(created, datetime):
            created = created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        manifest, body = self._image(name, created, "amd64")
        if docker:  # Docker image manifest v2 schema 2 instead of OCI
            manifest = dict(manifest, mediaType=DOCKER_MANIFEST, config=dict(manifest["config"], mediaType=DOCKER_CONFIG),
                            layers=[dict(layer, mediaType=DOCKER_LAYER) for layer in manifest["layers"]])
            return self.put_manifest(name, tag, manifest, DOCKER_MANIFEST)
        if not index:
            return self.put_manifest(name, tag, manifest, OCI_MANIFEST)
        entries = []
        later = "2099-01-01T00:00:00Z"
        for arch, (m, b) in (("arm64", self._image(name, later, "arm64")), ("amd64", (manifest, body))):
            digest = self.put_manifest(name, "sha256:" + hashlib.sha256(b).hexdigest(), m, OCI_MANIFEST)
            entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(b),
                            "platform": {"architecture": arch, "os": "linux"}})
        return self.put_manifest(name, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries},
                                 OCI_INDEX)


class PaginatingFront:
    """Serves a real registry's tag lists in pages of ``n`` with ``Link: <...>; rel="next"``.

    distribution v2.8 ignores ``n`` on ``/tags/list`` (v3 and Docker Hub page
    it), so this front applies the spec's ``n``/``last`` paging to the real
    registry's answer; everything else is passed through unchanged.
    """

    def __init__(self, registry: Registry):
        self.pages_served = 0
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                upstream = requests.get(registry.url + url.path, headers={"Accept": self.headers.get("Accept", "")},
                                        timeout=10)
                body, headers = upstream.content, {"Content-Type": upstream.headers.get("Content-Type", "")}
                for name in ("Docker-Content-Digest",):
                    if name in upstream.headers:
                        headers[name] = upstream.headers[name]
                if url.path.endswith("/tags/list") and upstream.status_code == 200:
                    query = parse_qs(url.query)
                    tags = sorted(upstream.json()["tags"])
                    last = query.get("last", [""])[0]
                    tags = [t for t in tags if t > last]
                    n = int(query.get("n", ["100"])[0])
                    page, more = tags[:n], len(tags) > n
                    body = json.dumps({"name": url.path[4:-10], "tags": page}).encode()
                    headers["Content-Type"] = "application/json"
                    if more:
                        headers["Link"] = f'<{url.path}?n={n}&last={page[-1]}>; rel="next"'
                    front.pages_served += 1
                self.send_response(upstream.status_code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
