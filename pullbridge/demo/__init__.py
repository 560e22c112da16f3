"""`pullbridge demo`: the original Flux demo's scenario, end to end on the local stack.

Why it exists: it is the README's first command, the quickest proof that the
whole path works on a machine: a bare git repo holding the demo manifests,
the Procfile's web, worker and scheduler processes, a signed GitHub push
webhook, the new value read back from the API server, and a `kubectl scale`
by hand reverted by the periodic reconcile.  Everything it starts or creates is
removed on exit, also on Ctrl-C.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from pullbridge.demo.harness import LocalDeployment, wait_for
from pullbridge.stack import Stack

MANIFESTS = Path(__file__).with_name("manifests")
NAMESPACE = "my-demo"
DRIFT_INTERVAL = 10


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def info(text: str) -> None:
    print(f"    {text}", flush=True)


class Demo:
    def __init__(self, stack: Stack):
        self.stack = stack
        self.run_ = LocalDeployment(stack, name="fluxdemo", full_name="pullbridge/fluxdemo", path="deploy",
                                    repo_settings={"interval": f"{DRIFT_INTERVAL}s"})
        self.kube = None

    def app_version(self) -> str | None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        try:
            dep = client.AppsV1Api(self.kube).read_namespaced_deployment("fluxdemo", NAMESPACE)
        except ApiException:
            return None
        for container in dep.spec.template.spec.containers:
            for env in container.env or []:
                if env.name == "APP_VERSION":
                    return env.value
        return None

    def expect_version(self, version: str, timeout: float = 60) -> float:
        took = wait_for(lambda: self.app_version() == version, timeout)
        if took is None:
            raise RuntimeError(f"APP_VERSION did not become {version!r} within {timeout:.0f}s")
        return took

    def replicas(self) -> int | None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        try:
            return client.AppsV1Api(self.kube).read_namespaced_deployment("fluxdemo", NAMESPACE).spec.replicas
        except ApiException:
            return None

    def drift_lines(self) -> list[str]:
        import json

        from redis import Redis

        from pullbridge import keys

        conn = Redis.from_url(self.run_.redis_url)
        try:
            for raw in conn.lrange(keys.history(self.run_.name), 0, 20):
                summary = json.loads(raw)
                if summary.get("reason") != "drift":
                    continue
                record = json.loads(conn.get(keys.sync_record(summary["id"])) or "{}")
                return [f"{e['object']} {e['field']}: live {e['live']}, declared {e['declared']}, "
                        f"changed by {e.get('manager') or 'unknown'}"
                        f"{' (' + e['subresource'] + ')' if e.get('subresource') else ''}, "
                        f"{'corrected' if e.get('corrected') else 'not corrected'}"
                        for e in record.get("drift_entries", [])]
        finally:
            conn.close()
        return ["(no drift record found)"]

    def kubectl(self, *args: str) -> None:
        out = subprocess.run([str(self.stack.kubectl), *args], env=self.run_.env,
                             capture_output=True, text=True)
        for line in (out.stdout + out.stderr).splitlines():
            info(line)

    def deliver(self, files: dict, message: str) -> None:
        sha, status, answer = self.run_.push(files, message)
        info(f"commit {sha[:12]} \"{message}\" pushed")
        info(f"POST /hooks/{self.run_.name} -> {status} {answer}")
        if status != 202:
            raise RuntimeError(f"the webhook was not accepted: {status} {answer}")

    def run(self) -> None:
        from kubernetes import config as kconfig

        self.kube = kconfig.new_client_from_config(config_file=str(self.stack.kubeconfig))
        r = self.run_

        step(f"A git repository with the Flux demo's manifests, on the git host at {self.stack.git_http_url}")
        files = {f"deploy/{p.name}": p.read_text() for p in sorted(MANIFESTS.glob("*.yaml"))}
        for name in files:
            info(name)
        r.write_config()

        step("Starting the Procfile's web (gunicorn), worker (RQ) and scheduler processes")
        r.start("web", "worker", "scheduler")
        info(f"web on http://127.0.0.1:{r.port}, worker on {r.redis_url}, "
             f"periodic reconcile every {DRIFT_INTERVAL}s")

        step("The first commit is pushed; the git host delivers its signed push webhook")
        self.deliver(files, "Flux demo: namespace, fluxdemo deployment, nginx config")
        took = self.expect_version("v1")
        info(f"applied {took:.2f}s after the webhook was answered")
        self.kubectl("get", "namespace/my-demo", "deployment/fluxdemo", "configmap/nginx-conf", "-n", NAMESPACE)

        step("A developer changes APP_VERSION from v1 to v2 and pushes")
        text = files["deploy/fluxdemo.yaml"].replace('value: "v1"', 'value: "v2"')
        self.deliver({"deploy/fluxdemo.yaml": text}, "fluxdemo: APP_VERSION v2")
        took = self.expect_version("v2")

        step(f"Read back from the API server, {took:.2f}s after the webhook was answered")
        self.kubectl("get", "deployment/fluxdemo", "-n", NAMESPACE, "-o",
                     "jsonpath=APP_VERSION={.spec.template.spec.containers[1].env[1].value}{'\\n'}")
        step("Someone scales the Deployment by hand: kubectl scale deployment/fluxdemo --replicas=4")
        self.kubectl("scale", "deployment/fluxdemo", "--replicas=4", "-n", NAMESPACE)
        back = wait_for(lambda: self.replicas() == 1, 6 * DRIFT_INTERVAL)
        if back is None:
            raise RuntimeError(f"the drift was not reverted within {6 * DRIFT_INTERVAL}s")
        step(f"The periodic reconcile put it back to 1 replica {back:.1f}s later; the history says:")
        for line in self.drift_lines():
            info(line)
        info(f"the sync pages show the same at http://127.0.0.1:{r.port}/repos/{r.name}")
        step("Done: Git said v2 with 1 replica, and the cluster follows Git.")

    def cleanup(self) -> None:
        step("Cleaning up: stopping the processes, deleting namespace my-demo and the demo repository")
        self.run_.stop()
        if self.kube is not None:
            from kubernetes import client
            from kubernetes.client.rest import ApiException
            try:
                client.CoreV1Api(self.kube).delete_namespace(NAMESPACE)
            except ApiException:
                pass
        self.run_.cleanup()


def run_demo() -> int:
    demo = Demo(Stack())
    previous = signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    try:
        demo.run()
        return 0
    except RuntimeError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        for name in ("web", "worker"):
            tail = demo.run_.log_tail(name)
            if tail:
                print(f"--- last lines of the {name} log ---\n{tail}", file=sys.stderr)
        return 1
    finally:
        demo.cleanup()
        signal.signal(signal.SIGTERM, previous)
