"""deploy/: rendered with a real kustomize and server-side dry-run against the real API server.

Every overlay is rendered by ``kubectl kustomize``; namespaced objects are moved into the test's
namespace (the manifests name "pullbridge", "apps", ...) and the whole set goes through
``kubectl apply --server-side --dry-run=server``: schema, defaulting, admission (Pod Security
"restricted" warnings are turned on for the namespace) and RBAC escalation checks all run, and
nothing is created.  The inventory's RBAC is created for real and exercised as the workers'
ServiceAccount.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from kubernetes import client
from ruamel.yaml import YAML

from pullbridge.config import parse_config

pytestmark = pytest.mark.stack

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OVERLAYS = ["base", "overlays/namespaced", "overlays/cluster-wide", "overlays/external-redis"]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def render(stack, path: str) -> list[dict]:
    out = subprocess.run([stack.kubectl, "kustomize", str(DEPLOY / path)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    return [d for d in YAML(typ="safe", pure=True).load_all(out.stdout) if d]


def relocate(objects: list[dict], namespace: str) -> list[dict]:
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
        for subject in obj.get("subjects", []):
            if subject.get("kind") == "ServiceAccount":
                subject["namespace"] = namespace
    return objects


def dump(objects: list[dict]) -> str:
    # JSON, not YAML: kubectl reads YAML 1.1, where an unquoted "yes" would turn into a bool.
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})


def shipped_config(objects: list[dict]):
    """The Pullbridge configuration the rendered ConfigMap "pullbridge-config" holds."""
    config_map = next(o for o in objects if o["kind"] == "ConfigMap"
                      and o["metadata"]["name"].startswith("pullbridge-config"))
    return parse_config(YAML(typ="safe", pure=True).load(config_map["data"]["pullbridge.yaml"]))


def pod_specs(objects):
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_side_dry_run(stack, kube, namespace, overlay):
    core = client.CoreV1Api(kube)
    core.patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/warn": "restricted"}}})
    objects = relocate(render(stack, overlay), namespace)
    out = subprocess.run(
        [stack.kubectl, "--kubeconfig", stack.kubeconfig, "apply", "--server-side", "--dry-run=server",
         "--field-manager=pullbridge-deploy-test", "-f", "-"],
        input=dump(objects), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr, out.stderr  # e.g. "would violate PodSecurity restricted"
    applied = [line for line in out.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(objects), out.stdout
    # a dry run creates nothing
    assert client.AppsV1Api(kube).list_namespaced_deployment(namespace).items == []


def test_every_overlay_keeps_the_security_settings(stack):
    for overlay in OVERLAYS:
        for name, spec in pod_specs(render(stack, overlay)):
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
            for container in spec["containers"]:
                sc = container["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, name
                assert sc["allowPrivilegeEscalation"] is False, name
                assert sc["capabilities"]["drop"] == ["ALL"], name
            if name != "pullbridge-worker":
                assert spec.get("automountServiceAccountToken") is False, name


def test_the_worker_pod_reaps_the_processes_a_killed_git_leaves(stack):
    """git killed on FETCH_TIMEOUT orphans its remote helper; PID 1 must reap it, and the worker
    process is not an init: the pause container is, once the pod shares its PID namespace."""
    for overlay in OVERLAYS:
        worker = dict(pod_specs(render(stack, overlay)))["pullbridge-worker"]
        assert worker.get("shareProcessNamespace") is True, overlay


def test_processes_probes_and_ingress(stack):
    objects = render(stack, "overlays/namespaced")
    specs = dict(pod_specs(objects))
    procfile = dict(line.split(": ", 1) for line in (DEPLOY.parent / "Procfile").read_text().splitlines()
                    if line.strip())
    web = specs["pullbridge-web"]["containers"][0]
    assert " ".join(web["command"]) == procfile["web"].replace('"', "")
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert " ".join(specs["pullbridge-worker"]["containers"][0]["command"]) == procfile["worker"]
    assert " ".join(specs["pullbridge-scheduler"]["containers"][0]["command"]) == procfile["scheduler"]
    for name in ("pullbridge-worker", "pullbridge-scheduler"):  # pullbridge.liveness: the file on the writable /tmp
        container = specs[name]["containers"][0]
        assert container["livenessProbe"]["exec"]["command"] == ["python", "-m", "pullbridge.liveness"]
        [alive] = [e["value"] for e in container["env"] if e["name"] == "PULLBRIDGE_ALIVE_FILE"]
        assert any(alive.startswith(m["mountPath"] + "/") for m in container["volumeMounts"]
                   if not m.get("readOnly")), (name, alive)
    redis = specs["pullbridge-redis"]["containers"][0]
    assert "--appendonly" in redis["args"]
    ingresses = [o for o in objects if o["kind"] == "Ingress"]
    paths = [p["path"] for i in ingresses for r in i["spec"]["rules"] for p in r["http"]["paths"]]
    assert paths == ["/hooks/"]
    assert not any(o["kind"] == "ClusterRoleBinding" for o in objects)  # least privilege


def test_the_web_pod_serves_what_its_probes_ingress_and_policy_name(stack):
    """The port gunicorn binds ($PORT, read by webhook.gunicorn_conf) is the container port the
    probes, Service and Ingress name and the one the NetworkPolicy lets in; the probe paths are
    the receiver's health routes and the Ingress prefix reaches every repository's hook route and
    nothing but hooks; the metrics directory gunicorn writes is a volume (the root is read-only)."""
    from webhook.factory import create_app

    objects = render(stack, "overlays/namespaced")
    web = dict(pod_specs(objects))["pullbridge-web"]["containers"][0]
    env = {e["name"]: e["value"] for e in web["env"]}
    ports = {p["name"]: p["containerPort"] for p in web["ports"]}
    assert ports == {"http": int(env["PORT"])}
    assert web["readinessProbe"]["httpGet"]["port"] == web["livenessProbe"]["httpGet"]["port"] == "http"
    service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "pullbridge-web")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy"
                  and o["metadata"]["name"] == "pullbridge-web-ingress")
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [ports["http"]]
    assert env["PROMETHEUS_MULTIPROC_DIR"] in {m["mountPath"] for m in web["volumeMounts"]}

    config = shipped_config(objects)
    routes = create_app(config, redis_url="redis://127.0.0.1:1/0").url_map.bind("pullbridge.example.com")
    assert routes.match(web["readinessProbe"]["httpGet"]["path"], "GET")[0] == "health.readyz"
    assert routes.match(web["livenessProbe"]["httpGet"]["path"], "GET")[0] == "health.healthz"
    (prefix,) = [p["path"] for o in objects if o["kind"] == "Ingress"
                 for r in o["spec"]["rules"] for p in r["http"]["paths"]]
    for repo in config.repos:
        assert routes.match(f"{prefix}{repo.name}", "POST") == ("hooks_receive", {"name": repo.name})
    assert routes.match(f"{prefix}registry/harbor", "POST")[0] == "registry_hooks.receive"
    exposed = {rule.endpoint for rule in routes.map.iter_rules() if rule.rule.startswith(prefix)}
    assert exposed == {"hooks_receive", "registry_hooks.receive"}


def test_shipped_config_is_valid_and_matches_the_mounts(stack):
    objects = render(stack, "base")
    config = shipped_config(objects)
    env = next(o for o in objects if o["kind"] == "ConfigMap"
               and o["metadata"]["name"].startswith("pullbridge-env"))["data"]
    worker = dict(pod_specs(objects))["pullbridge-worker"]
    mounts = {m["name"]: m["mountPath"] for m in worker["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in worker["volumes"]}
    key_item = volumes["deploy-key"]["secret"]["items"][0]
    assert key_item["key"] == "ssh-privatekey"  # what `pullbridge identity --secret` writes
    assert config.ssh.identity_file == env["PULLBRIDGE_IDENTITY"] == f"{mounts['deploy-key']}/{key_item['path']}"
    assert config.ssh.known_hosts_file == env["PULLBRIDGE_KNOWN_HOSTS"]
    assert Path(env["PULLBRIDGE_KNOWN_HOSTS"]).parent.as_posix() == mounts["known-hosts"]
    assert env["PULLBRIDGE_CONFIG"] == f"{mounts['config']}/pullbridge.yaml"
    assert env["PULLBRIDGE_CACHE_DIR"] == mounts["cache"]


def test_the_namespaced_overlay_grants_where_each_shipped_repo_applies(stack):
    """A manifest that names no namespace goes to its repo's ``namespace`` (else
    ``worker.default_namespace``): the least-privilege overlay must bind the workers' apply Role
    there, or every such object of the shipped example is refused with 403."""
    objects = render(stack, "overlays/namespaced")
    config = shipped_config(objects)
    account = next(o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "pullbridge")
    worker = {"kind": "ServiceAccount", "name": "pullbridge", "namespace": account["metadata"]["namespace"]}
    granted = {o["metadata"]["namespace"] for o in objects
               if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == "pullbridge-apply"
               and worker in o["subjects"]}
    assert granted, "overlays/namespaced binds no pullbridge-apply Role to the workers"
    for repo in config.repos:
        applies_in = repo.namespace or config.worker.default_namespace
        assert applies_in in granted, f"repos {repo.name}: applies in {applies_in!r}, granted {sorted(granted)}"


def test_the_shipped_rbac_allows_every_inventory_call_of_the_workers(stack, kube, namespace, tmp_path):
    """The inventory lives where the base's Role grants it, and that Role really allows each call.

    The worker's ServiceAccount, the Role ``pullbridge-inventory`` and its binding are created for
    real (moved into the test's namespace, which stands for "pullbridge"), and the worker's own
    inventory code then runs as that ServiceAccount (a TokenRequest token) against the API server,
    which authorizes with RBAC: first write (which GETs the Namespace), read, and the LIST of the
    other repos' inventories.
    """
    from worker import inventory
    from worker.kube import Kube, load_api_client

    objects = render(stack, "overlays/namespaced")
    role = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "pullbridge-inventory")
    binding = next(o for o in objects if o["kind"] == "RoleBinding"
                   and o["metadata"]["name"] == "pullbridge-inventory")
    account = next(o for o in objects if o["kind"] == "ServiceAccount"
                   and o["metadata"]["name"] == "pullbridge")
    config = shipped_config(objects)
    home = account["metadata"]["namespace"]
    assert config.worker.inventory_namespace == role["metadata"]["namespace"] == home
    assert [s["namespace"] for s in binding["subjects"]] == [home]

    grant = relocate([account, role, binding], namespace)
    out = subprocess.run(
        [stack.kubectl, "--kubeconfig", stack.kubeconfig, "apply", "--server-side",
         "--field-manager=pullbridge-deploy-test", "-f", "-"],
        input=dump(grant), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    token = client.CoreV1Api(kube).create_namespaced_service_account_token(
        "pullbridge", namespace, {"spec": {"expirationSeconds": 600}}).status.token
    admin = YAML(typ="safe", pure=True).load(Path(stack.kubeconfig).read_text())
    cluster = admin["clusters"][0]
    kubeconfig = tmp_path / "worker-kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": "worker", "user": {"token": token}}],
        "contexts": [{"name": "worker", "context": {"cluster": cluster["name"], "user": "worker"}}],
        "current-context": "worker"}))
    worker_kube = Kube(load_api_client(str(kubeconfig)))

    entries = {f"{namespace}_web_apps_Deployment": {"v": "apps/v1", "h": "d1"}}
    assert namespace not in inventory._known_namespaces  # so save() GETs the Namespace first
    assert inventory.save(worker_kube, namespace, "apps", entries) is True
    assert inventory.load(worker_kube, namespace, "apps") == entries
    assert inventory.save(worker_kube, namespace, "other", {"x_y__ConfigMap": {"v": "v1", "h": "d2"}})
    assert inventory.declared_elsewhere(worker_kube, namespace, "apps") == {"x_y__ConfigMap": ["other"]}
