"""Manifests and read-backs shared by the end-to-end sync tests (the Flux demo's app)."""

from __future__ import annotations

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
