"""`pullbridge demo`: the original Flux demo's scenario, end to end on the local stack.

Why it exists: it is the README's first command, the quickest proof that the
whole path works on a machine: a bare git repo holding the demo manifests,
the Procfile's web and worker processes, a signed GitHub push webhook, and the
new value read back from the API server.  Everything it starts or creates is
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


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def info(text: str) -> None:
    print(f"    {text}", flush=True)


class Demo:
    def __init__(self, stack: Stack):
        self.stack = stack
        self.run_ = LocalDeployment(stack, name="fluxdemo", full_name="pullbridge/fluxdemo", path="deploy")
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

        step("Starting the Procfile's web (gunicorn) and worker (RQ) processes")
        r.start("web", "worker")
        info(f"web on http://127.0.0.1:{r.port}, worker on {r.redis_url}")

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
        step("Done: Git said v2, and the cluster pulled v2.")

    def cleanup(self) -> None:
        step("Cleaning up: stopping web and worker, deleting namespace my-demo and the demo repository")
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
