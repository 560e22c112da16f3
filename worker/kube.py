"""Kubernetes access for the worker: one pooled client and one RESTMapper per process.

Why it exists: a long-lived worker must not rebuild clients or re-run
discovery for every job.  ``Kube`` wraps the ``kubernetes`` package's
ApiClient (kubeconfig from $KUBECONFIG, else in-cluster) but sends requests
through its pooled urllib3 manager with raw JSON bodies: the generated
models and the dynamic client cost more CPU than a sync of a thousand
objects can afford.  The RESTMapper discovers a group/version only when an
object of it is first seen, and forgets it when a kind is unknown (a CRD
that was just created) or no longer served: a request under a group that the
API server answers with a 404 about the kind itself, not about one object (a
CRD deleted since it was discovered, by prune, by hand, by another worker),
drops that group's discovery, so that the next use asks again.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from worker.errors import PermanentError, TemporaryError, cut, short_invalid_value
from worker.protobuf_status import status_body
from worker.secretmask import SecretMask, secret_mask

FIELD_MANAGER = "pullbridge"
POOL_SIZE = 64
REQUEST_TIMEOUT = (10, 60)
MAX_RETRY_AFTER = 3600  # seconds: a longer Retry-After is taken as this
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, application/json"
LIST_PAGE = 500
TYPED_PATCH_FAILED = "failed to create typed patch object"  # SSA's 500 for a body off the schema


class ApiError(Exception):
    """A non-2xx answer from the API server; ``mask`` hides the Secret values it may quote."""

    def __init__(self, status: int, body: bytes | dict, method: str, path: str, retry_after: str | None = None,
                 mask: SecretMask | None = None):
        """``body``: as answered, or already decoded (a Status the server sent in protobuf)."""
        self.status = status
        self.method = method
        self.path = path
        try:
            decoded = body if isinstance(body, dict) else json.loads(body)
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
            decoded = {"message": cut(mask.hide(text) if mask else text)}
        elif mask:
            decoded = mask.hide_in(decoded)
        self.body = decoded
        self.retry_after = _seconds(retry_after, self.body)
        super().__init__(f"{method} {path}: HTTP {status}: {cut(self.message)}")

    @property
    def message(self) -> str:
        return str(self.body.get("message") or self.body.get("reason") or "")

    @property
    def reason(self) -> str:
        return str(self.body.get("reason") or "")

    @property
    def typed_patch_failed(self) -> bool:
        """The body does not fit the object's schema (a ConfigMap value that is a YAML number):
        server-side apply answers 500 for it, yet the same body fails the same way every time."""
        return self.status == 500 and self.message.startswith(TYPED_PATCH_FAILED)

    @property
    def detail(self) -> str:
        """What the refusal says about the object: a 422's field causes (a long quoted object
        shortened), else the message without the object's name (which the caller states)."""
        message = self.message
        causes = (self.body.get("details") or {}).get("causes") or []
        if self.status == 422 and causes:
            return ", ".join(f"{c['field']}: {short_invalid_value(c.get('message', ''))}" if c.get("field")
                             else c.get("message", "") for c in causes)
        if self.typed_patch_failed:  # "failed to create typed patch object (ns/name; /v1, Kind=X): .data.a: ..."
            message = message.split("): ", 1)[-1].removeprefix("errors:")  # several: "errors:\n  .a: ...\n  .b: ..."
            return ", ".join(line.strip() for line in message.splitlines() if line.strip())
        if " is invalid: " in message:
            return message.split(" is invalid: ", 1)[1]
        if self.status == 403:
            return "forbidden: " + message.rsplit(": ", 1)[-1]
        return message

    @property
    def not_served(self) -> bool:
        """A 404 about the kind, not about one object (whose name the answer gives): the API
        server does not serve it, as after its CustomResourceDefinition was deleted."""
        return self.status == 404 and not (self.body.get("details") or {}).get("name")

    @property
    def temporary(self) -> bool:
        """Retrying may help: a conflict, throttling, a server error, or a kind not served that
        discovery had served (``Kube`` forgot it: the retry looks the kind up again)."""
        return self.status in (409, 429) or (self.status >= 500 and not self.typed_patch_failed) \
            or self.not_served


def _seconds(header: str | None, body: dict) -> float | None:
    """How long the API server asked to wait: ``Retry-After`` (seconds), else the
    Status' ``details.retryAfterSeconds``; None when it did not say."""
    value = (header or "").strip()
    if not value.isdigit():
        details = body.get("details")
        value = str(details.get("retryAfterSeconds", "")) if isinstance(details, dict) else ""
    return float(min(int(value), MAX_RETRY_AFTER)) if value.isdigit() and int(value) > 0 else None


def sync_error(exc: Exception, what: str) -> Exception:
    """The sync error for a failed API call: temporary (retried) or permanent, saying what failed."""
    if isinstance(exc, (PermanentError, TemporaryError)):
        return exc
    if isinstance(exc, ApiError) and not exc.temporary:
        return PermanentError(f"{what}: HTTP {exc.status}: {cut(exc.message)}")
    if isinstance(exc, ApiError):  # retried; when the server said how long to wait, not sooner
        asked = f" (the API server asked to retry after {exc.retry_after:g}s)" if exc.retry_after else ""
        if exc.not_served:
            asked = " (the kind is no longer served; it is looked up again on retry)"
        return TemporaryError(f"{what}: HTTP {exc.status}: {cut(exc.message)}{asked}", exc.retry_after)
    return TemporaryError(f"{what}: {cut(exc)}")


def parallel(fn: Callable, items: list, concurrency: int) -> list:
    """``fn`` over ``items``, at most ``concurrency`` at a time (the requests share the pool): the
    results in order, an exception in place of the result of each call that raised one."""
    def guarded(x):
        try:
            return fn(x)
        except Exception as exc:  # noqa: BLE001 - sorted out by the caller
            return exc
    if len(items) <= 1 or concurrency <= 1:
        return [guarded(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items))) as pool:
        return list(pool.map(guarded, items))


def _resource_group(path: str) -> str | None:
    """The API group of a path below one of its versions ('' for the core group); None for
    discovery's own paths (``/apis/<group>/<version>``)."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) > 2:
        return ""
    if parts[0] == "apis" and len(parts) > 3:
        return parts[1]
    return None


@dataclass(frozen=True)
class Mapping:
    """Where a kind lives in the API: ``/apis/apps/v1/namespaces/x/deployments``."""

    group: str
    version: str
    kind: str
    resource: str
    namespaced: bool
    listable: bool = field(default=True, compare=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection(self, namespace: str | None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{quote(namespace)}/{self.resource}"
        return f"{base}/{self.resource}"

    def path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection(namespace)}/{quote(name)}"


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class KindGone(TemporaryError):
    """A LIST found its kind no longer served, though discovery had served it (its
    CustomResourceDefinition deleted since): the Kube has forgotten the kind's group, so
    resolving the kind again says whether, and where, it is served now."""

    def __init__(self, mapping: Mapping, namespace: str | None):
        where = f" in {namespace}" if namespace else ""
        super().__init__(f"listing {mapping.resource}{where}: HTTP 404: kind {mapping.kind} in "
                         f"{mapping.api_version} is no longer served")


class Kube:
    """A pooled API client plus a lazily filled RESTMapper; safe to share between threads."""

    def __init__(self, api_client: k8s_client.ApiClient):
        self.api_client = api_client
        self.host = api_client.configuration.host.rstrip("/")
        self.pool = api_client.rest_client.pool_manager
        self._mappings: dict[tuple[str, str], dict[str, Mapping]] = {}
        self._mapper_lock = threading.Lock()
        self.writes = 0  # mutating requests sent (dry-runs excluded), for benchmarks and tests
        self.requests = 0

    # -- raw requests -----------------------------------------------------
    def request(self, method: str, path: str, body=None, query: dict | None = None,
                content_type: str = "application/json", decode: bool = True,
                protobuf: bool = False, accept: str | None = None, live: dict | None = None) -> dict | None:
        """Send one request; return the decoded JSON answer or raise ApiError / TemporaryError.

        The ApiError hides the values of a Secret the request sent (``body``) or is about
        (``live``: the object as the caller read it), as the server may quote either.
        """
        url = self.host + path
        if query:
            url += "?" + urlencode(query)
        if accept is None:
            accept = "application/vnd.kubernetes.protobuf, application/json" if protobuf and not decode \
                else "application/json"
        headers = {"Accept": accept, "User-Agent": "pullbridge"}
        sent = body
        if body is not None:
            headers["Content-Type"] = content_type
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body, separators=(",", ":"))
        self.api_client.update_params_for_auth(headers, [], ["BearerToken"], path, method, None)
        self.requests += 1
        if method != "GET" and not (query and query.get("dryRun")):
            self.writes += 1
        try:
            resp = self.pool.request(method, url, body=body, headers=headers,
                                     timeout=urllib3.Timeout(connect=REQUEST_TIMEOUT[0],
                                                             read=REQUEST_TIMEOUT[1]),
                                     retries=False, preload_content=True)
        except urllib3.exceptions.HTTPError as exc:
            raise TemporaryError(f"API server unreachable: {cut(exc, 200)}") from None
        if resp.status >= 400:
            data = resp.data
            if "protobuf" in (resp.headers.get("Content-Type") or ""):
                data = status_body(data)  # its details tell an object's 404 from a kind's
            error = ApiError(resp.status, data, method, path, resp.headers.get("Retry-After"),
                             mask=secret_mask(sent, live))
            group = _resource_group(path)
            if error.not_served and group is not None:
                self.forget(group)  # what discovery said of it is stale
            raise error
        if not decode:
            return None
        return json.loads(resp.data) if resp.data else {}

    def get(self, path: str, query: dict | None = None) -> dict | None:
        """GET or None when the object does not exist."""
        try:
            return self.request("GET", path, query=query)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list_metadata(self, collection: str) -> Iterator[dict]:
        """The metadata of every object in ``collection``, a page at a time (metadata only,
        so a Namespace full of Secrets or Events costs little to look through)."""
        query = {"limit": LIST_PAGE}
        while True:
            page = self.request("GET", collection, query=query, accept=METADATA_ONLY)
            for item in page.get("items") or []:
                yield item.get("metadata") or {}
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            query = {"limit": LIST_PAGE, "continue": token}

    def list_by_name(self, mapping: Mapping, namespace: str | None) -> dict[str, dict]:
        """One LIST of ``mapping``'s objects (in ``namespace``): {name: object}, each object with its
        ``apiVersion`` and ``kind`` (a LIST's items carry neither)."""
        found = {}
        for obj in self.request("GET", mapping.collection(namespace)).get("items", []):
            obj.setdefault("apiVersion", mapping.api_version)
            obj.setdefault("kind", mapping.kind)
            found[obj["metadata"]["name"]] = obj
        return found

    def list_each(self, wanted: list[tuple[Mapping, str | None]], concurrency: int) -> dict:
        """One LIST per (mapping, namespace) in ``wanted``, ``concurrency`` at a time:
        {(mapping, namespace): {name: object}}.  Raises KindGone when one finds its kind no
        longer served, else the sync error of the first LIST that failed."""
        found = {}
        for key, result in zip(wanted, parallel(lambda k: self.list_by_name(*k), wanted, concurrency)):
            if isinstance(result, ApiError) and result.not_served:
                raise KindGone(*key)
            if isinstance(result, Exception):
                raise sync_error(result, f"listing {key[0].resource}")
            found[key] = result
        return found

    def delete(self, path: str, live: dict | None = None) -> None:
        """DELETE with background propagation (dependents go after the object, as kubectl does);
        ``live``: the object as read, whose Secret values an error must not show."""
        self.request("DELETE", path, body={"kind": "DeleteOptions", "apiVersion": "v1",
                                           "propagationPolicy": "Background"}, live=live)

    # -- RESTMapper -------------------------------------------------------
    def _discover(self, group: str, version: str) -> dict[str, Mapping]:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            doc = self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return {}
            raise
        kinds = {}
        for res in doc.get("resources", []):
            if "/" in res["name"]:  # subresources
                continue
            kinds[res["kind"]] = Mapping(group, version, res["kind"], res["name"], res["namespaced"],
                                         "list" in (res.get("verbs") or []))
        return kinds

    def namespaced_kinds(self) -> tuple[list[Mapping], dict[str, ApiError]]:
        """Every namespaced kind the server serves and can list, discovered afresh (a CRD may
        have come since), each once: in its group's most preferred version that serves it; and
        the group-versions whose discovery failed, by apiVersion, with the error (an aggregated
        API whose server is down answers 503): what they serve is unknown."""
        versions = [("", v) for v in self.request("GET", "/api").get("versions") or []]
        for group in self.request("GET", "/apis").get("groups") or []:
            versions += [(group["name"], v["version"]) for v in group.get("versions") or []]
        found: dict[tuple[str, str], Mapping] = {}
        failed: dict[str, ApiError] = {}
        for group, version in versions:  # the server lists a group's versions most preferred first
            try:
                kinds = self._discover(group, version)
            except ApiError as exc:
                failed[f"{group}/{version}" if group else version] = exc
                continue
            for m in kinds.values():
                if m.namespaced and m.listable:
                    found.setdefault((group, m.resource), m)
        return list(found.values()), failed

    def mapping(self, api_version: str, kind: str) -> Mapping | None:
        """The resource of ``kind`` in ``api_version``; None when the server has no such kind."""
        group, version = split_api_version(api_version)
        key = (group, version)
        kinds = self._mappings.get(key)
        if kinds is None or kind not in kinds:
            with self._mapper_lock:
                kinds = self._discover(group, version)
                self._mappings[key] = kinds
        return kinds.get(kind)

    def forget(self, group: str | None = None) -> None:
        """Drop cached discovery (for one group, or all): new CRDs appear on next use."""
        with self._mapper_lock:
            for key in list(self._mappings):
                if group is None or key[0] == group:
                    del self._mappings[key]


def load_api_client(kubeconfig: str | None = None) -> k8s_client.ApiClient:
    """An ApiClient from $KUBECONFIG (or the given file), else the in-cluster service account."""
    configuration = k8s_client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if path:
            # A list of files (a:b) is passed whole: the client merges it as kubectl does.
            k8s_config.load_kube_config(config_file=path, client_configuration=configuration)
        else:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except k8s_config.ConfigException:
                k8s_config.load_kube_config(client_configuration=configuration)
    except (k8s_config.ConfigException, OSError) as exc:
        raise PermanentError(f"no Kubernetes configuration: {cut(exc, 200)}") from None
    configuration.connection_pool_maxsize = POOL_SIZE
    return k8s_client.ApiClient(configuration)


_process_kube: Kube | None = None
_process_lock = threading.Lock()


def process_kube() -> Kube:
    """The process-wide Kube, built on first use."""
    global _process_kube
    with _process_lock:
        if _process_kube is None:
            _process_kube = Kube(load_api_client())
        return _process_kube
