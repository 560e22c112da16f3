"""Manifests and read-backs shared by the end-to-end sync tests (the Flux demo's app, Namespaces,
a Widget CRD) and a sync of one of several configured repos."""

from __future__ import annotations

import json
import uuid

import yaml
from kubernetes import client


def configmap(name: str, value: str, extra: str = "") -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}{extra}\ndata:\n  value: \"{value}\"\n"


def deployment(name: str, version: str, replicas: int = 1) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: nginx
          image: nginx:1.27
        - name: flask
          image: python:3.11-slim
          env:
            - {{name: APP_NAME, value: {name}}}
            - {{name: APP_VERSION, value: "{version}"}}
"""


def app_files(version: str, replicas: int = 1) -> dict[str, str]:
    return {"deploy/app.yaml": configmap("nginx-conf", version) + "---\n" + deployment("fluxdemo", version, replicas),
            "deploy/extra/settings.yaml": configmap("settings", "a"),
            "README.md": "not a manifest\n"}


def cm_value(kube, ns, name):
    try:
        return client.CoreV1Api(kube).read_namespaced_config_map(name, ns).data["value"]
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def app_version(kube, ns) -> str:
    dep = client.AppsV1Api(kube).read_namespaced_deployment("fluxdemo", ns)
    env = {e.name: e.value for e in dep.spec.template.spec.containers[1].env}
    return env["APP_VERSION"]


def namespace_doc(name: str, labels: dict | None = None) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": name, **({"labels": labels} if labels else {})}})


def in_namespace(manifest: str, namespace: str) -> str:
    return manifest.replace("metadata:\n", f"metadata:\n  namespace: {namespace}\n", 1)


def read_namespace(kube, name: str):
    try:
        return client.CoreV1Api(kube).read_namespace(name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def namespace_live(kube, name: str) -> bool:
    """True while ``name`` exists and is not being deleted."""
    ns = read_namespace(kube, name)
    return ns is not None and ns.metadata.deletion_timestamp is None


def inventory_entries(kube, namespace: str) -> dict[str, dict]:
    """Repo "app"'s inventory (kept in ``namespace``) by object id; empty before its first save."""
    from worker import inventory
    try:
        cm = client.CoreV1Api(kube).read_namespaced_config_map(inventory.configmap_name("app"), namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return {}
        raise
    return json.loads(cm.data[inventory.DATA_KEY])


def inventory_ids(kube, namespace: str) -> set[str]:
    """The object ids in repo "app"'s inventory (kept in ``namespace``); none before its first save."""
    return set(inventory_entries(kube, namespace))


def widget_group() -> str:
    """An API group of the test's own, so that its CRD cannot meet another test's."""
    return f"t{uuid.uuid4().hex[:8]}.pullbridge.test"


def widget_crd(group: str, minimum: int | None = None, versions: tuple[str, ...] = ("v1",), storage: str = "v1",
               labels: dict | None = None) -> str:
    """The CRD widgets.<group>: namespaced Widgets whose ``spec.size`` is an integer (at least ``minimum``),
    served in each of ``versions``, stored in ``storage``."""
    size = {"type": "integer", **({"minimum": minimum} if minimum is not None else {})}
    schema = json.dumps({"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"size": size}}}}})
    return yaml.safe_dump({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}", **({"labels": labels} if labels else {})},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": v, "served": True, "storage": v == storage,
                               "schema": json.loads(schema)}  # a copy each: no YAML aliases
                              for v in versions]}})


def widget(group: str, size: int, version: str = "v1") -> str:
    return f"apiVersion: {group}/{version}\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: {size}\n"


def widget_specs(kube, group: str, namespace: str, version: str = "v1") -> dict[str, dict]:
    """Each Widget's spec by name, as served in ``version``."""
    found = client.CustomObjectsApi(kube).list_namespaced_custom_object(group, version, namespace, "widgets")
    return {w["metadata"]["name"]: w["spec"] for w in found["items"]}


def sync_repo(harness, index: int, sha: str) -> dict:
    """Push-sync the ``index``-th of the harness's configured repos; its newest summary, a success."""
    from pullbridge.queueing import request_sync
    from worker import history

    config = harness.config
    request_sync(harness.conn, config, config.repos[index], sha, reason="push")
    harness.work()
    summary = history.history(harness.conn, config.repos[index].name)[0]
    assert summary["result"] == "success", summary
    return summary
