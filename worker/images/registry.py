"""A small client for the OCI distribution API: tags, manifests, config blobs.

Why it exists: image automation needs three reads from any registry (Docker
Hub, GHCR, Harbor, a plain ``registry:2``): the tag list (paginated with
``n=`` and ``Link: <...>; rel="next"``), a tag's manifest (following an image
index / manifest list to its linux/amd64 entry), and that manifest's config
blob, whose ``created`` field orders glob and regex policies.  Authentication
follows the registry's challenge: ``WWW-Authenticate: Bearer realm=...,
service=..., scope=...`` fetches a token from the realm (with basic
credentials when configured), ``Basic`` sends the credentials directly.

Credentials never appear in errors or logs; error bodies are cut short.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urljoin

import requests

from pullbridge.config_types import ConfigError
from pullbridge.image_config import RegistryConfig
from worker.images.policy import EPOCH

DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = ("index.docker.io",)  # docker's legacy name for Docker Hub, normalized as docker does
DOCKER_HUB_API = "registry-1.docker.io"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
PAGE_SIZE = 1000
MAX_PAGES = 200
TIMEOUT = 30.0


class RegistryError(Exception):
    """A registry read failed; ``temporary`` says whether a retry may help."""

    def __init__(self, message: str, temporary: bool = True):
        super().__init__(message)
        self.temporary = temporary


# ---------------------------------------------------------------- references

_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(:\d+)?\Z")


@dataclass(frozen=True)
class ImageRef:
    """``[host/]name[:tag][@digest]`` split the way docker does it."""

    host: str       # as written ('docker.io' when none was, or for its alias index.docker.io)
    name: str       # repository path ('library/nginx' for 'nginx' on Docker Hub)
    tag: str | None
    digest: str | None
    original: str

    @classmethod
    def parse(cls, text: str) -> "ImageRef":
        ref = text.strip()
        rest, _, digest = ref.partition("@")
        first, slash, remainder = rest.partition("/")
        if slash and (("." in first or ":" in first or first == "localhost") and _HOST_RE.match(first)):
            host, path = first.lower(), remainder
            if host in DOCKER_HUB_ALIASES:  # one registry: one tag list, one credentials entry
                host = DOCKER_HUB
        else:
            host, path = DOCKER_HUB, rest
        name, tag = path, None
        colon = path.rfind(":")
        if colon > path.rfind("/"):
            name, tag = path[:colon], path[colon + 1:]
        if host == DOCKER_HUB and "/" not in name:
            name = f"library/{name}"
        if not name or not re.match(r"^[a-z0-9]+([._/-][a-z0-9]+|__[a-z0-9]+)*\Z", name):
            raise ValueError(f"{text!r} is not an image reference")
        if tag is not None and not re.match(r"^[\w][\w.-]{0,127}\Z", tag):
            raise ValueError(f"{text!r} has an invalid tag")
        return cls(host=host, name=name, tag=tag, digest=digest or None, original=ref)

    @property
    def repository(self) -> str:
        """``host/name``: what one tag list belongs to."""
        return f"{self.host}/{self.name}"

    def with_tag(self, tag: str) -> str:
        """The same reference text with another tag, written as the original was."""
        base = self.original.partition("@")[0]
        colon = base.rfind(":")
        if self.tag is not None and colon > base.rfind("/"):
            base = base[:colon]
        return f"{base}:{tag}"


@dataclass(frozen=True)
class TagInfo:
    digest: str
    created: datetime | None


def parse_created(value) -> datetime | None:
    """An RFC 3339 timestamp from a config blob (nanoseconds allowed) -> aware datetime.

    None when the image does not say when it was built: no time, one that is
    not a date, or one at or before the Unix epoch, which reproducible builds
    (Bazel, Jib, ko, Nix) write instead of a time (1970-01-01 or Go's zero
    0001-01-01): no image was built then.
    """
    if not isinstance(value, str) or not value:
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", value.strip())
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        created = datetime.fromisoformat(m.group(1) + frac + zone).astimezone(timezone.utc)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved past the calendar by its offset
        return None
    return created if created > EPOCH else None


# ---------------------------------------------------------------- auth

_PARAM_RE = re.compile(r'\s*([A-Za-z_][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://auth",service="x",scope="repository:a:pull,push"`` -> ('bearer', {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[m.group(1).lower()] = value
        pos = m.end()
    return scheme.lower(), params


class RegistryClient:
    """Reads from one registry host, answering its auth challenges as they come.

    One client serves one scan: once the host or its token service has not
    answered (refused, unreachable, timed out), its other reads in that scan
    fail at once with that reason rather than each waiting TIMEOUT; the next
    scan tries again.
    """

    def __init__(self, host: str, settings: RegistryConfig | None = None,
                 session: requests.Session | None = None):
        self.host = host
        api_host = DOCKER_HUB_API if host == DOCKER_HUB else host
        scheme = "http" if settings is not None and settings.insecure else "https"
        self.base = f"{scheme}://{api_host}"
        self.settings = settings
        self.session = session or requests.Session()
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, expires at)
        self._basic = False
        self._silent: str | None = None  # what did not answer (host or token realm): each read would wait again

    def _credentials(self) -> tuple[str, str] | None:
        """The configured credentials, read now; an unreadable one fails this registry only."""
        if self.settings is None:
            return None
        try:
            return self.settings.credentials()
        except ConfigError as exc:  # names the variable or file, never a value
            raise RegistryError(f"{self.host}: credentials: {exc}", temporary=False) from None

    def _refusal(self) -> str:
        """Why a 401 came back, for the operator: no credentials configured, or these refused."""
        if self._credentials() is None:
            return (f"the registry wants credentials and none are configured for {self.host} "
                    "(images.registries: username_env with password_env or password_file)")
        return f"the registry refused the credentials of ${self.settings.username_env}"

    def _authorize(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        if token and token[1] > time.monotonic():
            return {"Authorization": f"Bearer {token[0]}"}
        return {}

    def _fetch_token(self, params: dict[str, str], scope: str) -> None:
        realm = params.get("realm")
        if not realm or not realm.startswith(("http://", "https://")):
            raise RegistryError(f"{self.host}: bearer challenge without a usable realm", temporary=False)
        query = {k: v for k, v in (("service", params.get("service")),
                                   ("scope", params.get("scope") or scope)) if v}
        creds = self._credentials()
        if creds and realm.startswith("http://") and not (self.settings and self.settings.insecure):
            raise RegistryError(f"{self.host}: refusing to send credentials to a plain-http token realm",
                                temporary=False)
        try:
            resp = self.session.get(realm, params=query, auth=creds, timeout=TIMEOUT)
        except requests.RequestException as exc:
            why = f"token request failed: {type(exc).__name__}"
            if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
                self._silent = why
            raise RegistryError(f"{self.host}: {why}") from None
        if resp.status_code != 200:
            hint = f": {self._refusal()}" if resp.status_code == 401 else ""
            raise RegistryError(f"{self.host}: token endpoint answered {resp.status_code}{hint}",
                                temporary=resp.status_code >= 500)
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
            expires_in = float(body.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not token:
            raise RegistryError(f"{self.host}: token endpoint returned no token", temporary=False)
        self._tokens[scope] = (token, time.monotonic() + max(expires_in - 10, 5))

    def get(self, path_or_url: str, scope: str, *, headers: dict | None = None,
            params: dict | None = None, method: str = "GET") -> requests.Response:
        """GET (or HEAD) with auth; follows one challenge round trip. Raises RegistryError on failure."""
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self.base + path_or_url
        if self._silent is not None:  # a registry that hangs would hold the scan TIMEOUT per image
            raise RegistryError(f"{self.host}: not read, it did not answer earlier ({self._silent})")
        for attempt in range(2):
            hdrs = dict(headers or {})
            hdrs.update(self._authorize(scope))
            auth = self._credentials() if self._basic else None
            try:
                resp = self.session.request(method, url, headers=hdrs, params=params, auth=auth,
                                            timeout=TIMEOUT, allow_redirects=True)
            except requests.RequestException as exc:
                why = f"{type(exc).__name__} reading {_short(url)}"
                if isinstance(exc, (requests.ConnectionError, requests.Timeout)) and url.startswith(self.base + "/"):
                    self._silent = why  # not for a next page's URL that names another host
                raise RegistryError(f"{self.host}: {why}") from None
            if resp.status_code != 401 or attempt:
                break
            scheme, challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            if scheme == "bearer":
                self._fetch_token(challenge, scope)
            elif scheme == "basic" and self._credentials():
                self._basic = True
            else:
                break
        if resp.status_code == 200:
            return resp
        if resp.status_code == 401:
            raise RegistryError(f"{self.host}: 401 reading {_short(url)}: {self._refusal()}", temporary=False)
        temporary = resp.status_code >= 500 or resp.status_code == 429
        raise RegistryError(f"{self.host}: {resp.status_code} reading {_short(url)}: "
                            f"{resp.text[:200]!r}", temporary=temporary)

    # ------------------------------------------------------------ reads

    def list_tags(self, name: str) -> list[str]:
        """Every tag of ``name``, following ``Link`` pagination."""
        scope = f"repository:{name}:pull"
        url: str | None = f"{self.base}/v2/{name}/tags/list"
        params: dict | None = {"n": PAGE_SIZE}
        tags: list[str] = []
        for _ in range(MAX_PAGES):
            resp = self.get(url, scope, params=params)
            try:
                page = resp.json().get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"{self.host}: tag list of {name} is not JSON", temporary=False) from None
            if not isinstance(page, list) or not all(isinstance(tag, str) for tag in page):
                raise RegistryError(f"{self.host}: tag list of {name} is not a list of tags", temporary=False)
            tags.extend(page)
            nxt = _next_link(resp.headers.get("Link", ""))
            if not nxt:
                return tags
            url, params = urljoin(resp.url, nxt), None
        raise RegistryError(f"{self.host}: more than {MAX_PAGES} pages of tags for {name}", temporary=False)

    def manifest(self, name: str, reference: str, *, in_index: bool = False) -> tuple[str, dict]:
        """(digest, manifest) for a tag or digest; an index resolves to its linux/amd64 image.

        A registry's answer that is not the documented shape (a body that is no
        JSON object, an index listing another index) is a RegistryError naming
        it, so it fails that image only, never the scan."""
        scope = f"repository:{name}:pull"
        resp = self.get(f"/v2/{name}/manifests/{reference}", scope, headers={"Accept": MANIFEST_ACCEPT})
        digest = resp.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(resp.content).hexdigest()
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise RegistryError(f"{self.host}: manifest {name}:{reference} is not a JSON object", temporary=False)
        media = body.get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0]
        if media in INDEX_TYPES or "manifests" in body:
            chosen = _pick_platform(body.get("manifests"))
            if in_index or not isinstance(chosen, str):
                raise RegistryError(f"{self.host}: index {name}:{reference} lists no image manifest", temporary=False)
            _, inner = self.manifest(name, chosen, in_index=True)
            return digest, inner
        return digest, body

    def digest(self, name: str, tag: str) -> str | None:
        """The tag's manifest digest from a HEAD request (Docker Hub does not count HEADs as pulls)."""
        resp = self.get(f"/v2/{name}/manifests/{tag}", f"repository:{name}:pull",
                        headers={"Accept": MANIFEST_ACCEPT}, method="HEAD")
        return resp.headers.get("Docker-Content-Digest")

    def tag_info(self, name: str, tag: str) -> TagInfo:
        """The tag's manifest digest and its image's creation time (config blob ``created``)."""
        digest, body = self.manifest(name, tag)
        config = body.get("config")
        config_digest = config.get("digest") if isinstance(config, dict) else None
        created = None
        if config_digest:
            resp = self.get(f"/v2/{name}/blobs/{config_digest}", f"repository:{name}:pull")
            try:
                created = parse_created(resp.json().get("created"))
            except (ValueError, AttributeError):
                created = None
        elif body.get("schemaVersion") == 1:  # old schema1: created sits in the v1 history
            try:
                created = parse_created(json.loads(body["history"][0]["v1Compatibility"]).get("created"))
            except (KeyError, IndexError, ValueError, TypeError, AttributeError):
                created = None
        return TagInfo(digest=digest, created=created)


def _pick_platform(manifests) -> str | None:
    """The digest of an index's linux/amd64 entry, else of its first; entries without the
    documented shape are passed over."""
    entries = [m for m in manifests if isinstance(m, dict)] if isinstance(manifests, list) else []
    for m in entries:
        platform = m.get("platform")
        if isinstance(platform, dict) and platform.get("os") == "linux" and platform.get("architecture") == "amd64":
            return m.get("digest")
    return entries[0].get("digest") if entries else None


def _next_link(header: str) -> str | None:
    for part in header.split(","):
        m = re.match(r'\s*<([^>]+)>\s*;(.*)$', part)
        if m and re.search(r'rel="?next"?', m.group(2)):
            return m.group(1)
    return None


def _short(url: str) -> str:
    return url.split("?")[0][-120:]
