"""The stack's parts, used for real: server-side apply through the Python client,
kubectl's validation against /openapi/v2, an RQ job on the real Redis, git over
smart HTTP."""

import json
import subprocess

import pytest
from kubernetes import client, dynamic
from rq import Queue, SimpleWorker


def deployment(namespace: str, replicas: int = 1) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}},
        },
    }


def test_server_side_apply_through_python_client(kube, namespace):
    dyn = dynamic.DynamicClient(kube)
    api = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    api.server_side_apply(body=deployment(namespace, 2), name="web", namespace=namespace,
                          field_manager="pullbridge-test", force_conflicts=True)
    live = client.AppsV1Api(kube).read_namespaced_deployment("web", namespace)
    assert live.spec.replicas == 2
    managers = {m.manager for m in live.metadata.managed_fields}
    assert "pullbridge-test" in managers

    # Re-applying the same object changes nothing (a ConfigMap: no controller writes its status).
    cm_api = dyn.resources.get(api_version="v1", kind="ConfigMap")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": namespace},
          "data": {"k": "v"}}
    first = cm_api.server_side_apply(body=cm, name="c", namespace=namespace, field_manager="pullbridge-test")
    again = cm_api.server_side_apply(body=cm, name="c", namespace=namespace, field_manager="pullbridge-test")
    assert again.metadata.resourceVersion == first.metadata.resourceVersion


def test_controller_manager_makes_replicasets(kube, namespace):
    from pullbridge.stack import wait_until

    dyn = dynamic.DynamicClient(kube)
    dyn.resources.get(api_version="apps/v1", kind="Deployment").server_side_apply(
        body=deployment(namespace), name="web", namespace=namespace, field_manager="pullbridge-test")
    apps = client.AppsV1Api(kube)
    # Generous: under load (a benchmark making 250 Deployments) the controller lags.
    assert wait_until(lambda: apps.list_namespaced_replica_set(namespace).items, timeout=180)


def test_openapi_v2_is_valid_and_kubectl_validates_against_it(stack, namespace, tmp_path):
    raw = subprocess.run([stack.kubectl, "get", "--raw", "/openapi/v2"], env=stack.env,
                         check=True, capture_output=True).stdout
    doc = json.loads(raw)
    assert doc["swagger"] == "2.0"
    assert "io.k8s.api.apps.v1.Deployment" in doc["definitions"]

    manifest = tmp_path / "d.yaml"
    manifest.write_text(json.dumps(deployment(namespace)))
    ok = subprocess.run([stack.kubectl, "apply", "--server-side", "--validate=strict", "-f", str(manifest)],
                        env=stack.env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = deployment(namespace)
    bad["spec"]["replicaz"] = 3
    manifest.write_text(json.dumps(bad))
    rejected = subprocess.run([stack.kubectl, "apply", "--server-side", "--validate=strict", "-f",
                               str(manifest)], env=stack.env, capture_output=True, text=True)
    assert rejected.returncode != 0
    assert "replicaz" in rejected.stderr


def test_rq_job_runs_on_real_redis(redis_conn):
    queue = Queue("pullbridge-test", connection=redis_conn)
    job = queue.enqueue("tests.rqjobs.add", 2, 3)
    assert queue.count == 1
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    job.refresh()
    assert job.get_status() == "finished"
    assert job.return_value() == 5


def test_redis_keeps_an_append_only_file(redis_conn):
    assert redis_conn.config_get("appendonly")["appendonly"] == "yes"


def test_git_push_and_clone_over_smart_http(git_repo, tmp_path):
    repo = git_repo("smoke")
    sha = repo.commit("first", {"a.txt": "one\n"})
    repo.git("push", "-q", repo.http_url, "HEAD:refs/heads/main")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", repo.http_url, str(clone)], check=True)
    assert (clone / "a.txt").read_text() == "one\n"
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert head == sha
