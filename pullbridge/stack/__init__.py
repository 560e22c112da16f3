"""The local stack: real etcd, kube-apiserver, kube-controller-manager, Redis and a git host.

Why it exists: the demo, the tests and the benchmarks must run against real
parts on a bare machine.  ``up`` installs what is missing (Debian packages,
Kubernetes binaries built once from the Go module proxy and cached per
version), starts everything on loopback, and waits until each part answers.
``down`` stops exactly the processes ``up`` started, found by their pid files
and checked against their start time, never by name.  Both hold
``run/stack.lock`` throughout, so concurrent callers take turns.

Everything lives under ``$PULLBRIDGE_STACK_DIR`` (default
``~/.cache/pullbridge/stack``); ports can be moved with ``PULLBRIDGE_*_PORT``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pullbridge.stack import certs, gotoolchain
from pullbridge.stack.procs import (Process, StackError, exclusive, how_it_ended, port_in_use,
                                    wait_until)

K8S_VERSION = os.environ.get("PULLBRIDGE_K8S_VERSION", "v1.36.2")
CACHE = Path(os.environ.get("PULLBRIDGE_CACHE", Path.home() / ".cache" / "pullbridge"))
# A command (or, starting with "/", a file) that shows a Debian package is there.
APT_PACKAGES = {"etcd": "etcd-server", "redis-server": "redis-server", "git": "git", "curl": "curl",
                "/etc/ssl/certs/ca-certificates.crt": "ca-certificates"}
# The binaries built from k8s.io/kubernetes -> the arguments that make each print its version.
K8S_BINARIES = {"kube-apiserver": ["--version"], "kube-controller-manager": ["--version"],
                "kubectl": ["version", "--client"]}


def _port_variable(name: str) -> str:
    return f"PULLBRIDGE_{name}_PORT"


def _port(name: str, default: int) -> int:
    return int(os.environ.get(_port_variable(name), default))


@dataclass
class Stack:
    root: Path = field(default_factory=lambda: Path(
        os.environ.get("PULLBRIDGE_STACK_DIR", CACHE / "stack")))
    etcd_port: int = field(default_factory=lambda: _port("ETCD", 23790))
    etcd_peer_port: int = field(default_factory=lambda: _port("ETCD_PEER", 23800))
    apiserver_port: int = field(default_factory=lambda: _port("APISERVER", 16443))
    kcm_port: int = field(default_factory=lambda: _port("KCM", 16444))
    redis_port: int = field(default_factory=lambda: _port("REDIS", 16379))
    git_port: int = field(default_factory=lambda: _port("GIT", 18480))

    # ---- paths -------------------------------------------------------------
    @property
    def bin_dir(self) -> Path:
        return CACHE / "k8s" / K8S_VERSION

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def git_root(self) -> Path:
        return self.root / "git"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def git_http_url(self) -> str:
        return f"http://127.0.0.1:{self.git_port}"

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    def env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "REDIS_URL": self.redis_url,
            "PULLBRIDGE_GIT_ROOT": str(self.git_root),
            "PULLBRIDGE_GIT_HTTP": self.git_http_url,
            "PULLBRIDGE_KUBECTL": str(self.kubectl),
            "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '')}",
        }

    # ---- processes ---------------------------------------------------------
    def processes(self) -> list[Process]:
        pki = self.root / "pki"
        p = {name: pki / name for name in ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key",
                                           "sa.key", "sa.pub", "tokens.csv", "admin.crt", "admin.key")}
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{self.etcd_peer_port}"
        fsync = os.environ.get("PULLBRIDGE_REDIS_FSYNC", "always")
        return [
            Process("etcd", [
                etcd, "--name", "pullbridge", "--data-dir", str(self.root / "etcd"),
                "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", f"pullbridge={peer_url}", "--log-level", "warn",
                "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "30m",
                "--quota-backend-bytes", str(4 * 1024 ** 3),
            ], ports=[self.etcd_port, self.etcd_peer_port],
                ready=lambda: _http_ok(f"{etcd_url}/health"),
                hint=f"If it cannot read its data (an older etcd's, or damaged), move {self.root / 'etcd'} "
                     f"away and run `pullbridge stack up` again: the cluster then starts empty."),
            Process("kube-apiserver", [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1", f"--secure-port={self.apiserver_port}",
                "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
                f"--tls-cert-file={p['apiserver.crt']}", f"--tls-private-key-file={p['apiserver.key']}",
                f"--client-ca-file={p['ca.crt']}", f"--token-auth-file={p['tokens.csv']}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p['sa.pub']}",
                f"--service-account-signing-key-file={p['sa.key']}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true", "--profiling=false",
                f"--cert-dir={self.root / 'apiserver-certs'}", "--v=1",
            ], ports=[self.apiserver_port], ready=self._apiserver_ready, timeout=90),
            Process("kube-controller-manager", [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1", f"--secure-port={self.kcm_port}",
                f"--cert-dir={self.root / 'kcm-certs'}",
                "--leader-elect=false", "--use-service-account-credentials=false",
                f"--service-account-private-key-file={p['sa.key']}",
                f"--root-ca-file={p['ca.crt']}",
                f"--cluster-signing-cert-file={p['ca.crt']}",
                f"--cluster-signing-key-file={p['ca.key']}",
                "--service-cluster-ip-range=10.96.0.0/16", "--v=1",
            ], ports=[self.kcm_port],
                # Debian's etcd 3.4 lacks what the WatchList client needs: without
                # this, informers miss new objects and Deployments get no ReplicaSets.
                env={"KUBE_FEATURE_WatchListClient": "false"},
                ready=lambda: _http_ok(f"https://127.0.0.1:{self.kcm_port}/healthz"), timeout=60),
            Process("redis", [
                redis, "--bind", "127.0.0.1", "--port", str(self.redis_port),
                "--dir", str(self.root / "redis"), "--appendonly", "yes",
                "--appendfsync", fsync, "--save", "", "--daemonize", "no",
                "--protected-mode", "yes", "--databases", "32",
            ], ports=[self.redis_port], ready=self._redis_ready),
            Process("git-http", [
                sys.executable, "-m", "pullbridge.stack.githttp", str(self.git_root),
                str(self.git_port),
            ], ports=[self.git_port], ready=lambda: _http_ok(f"{self.git_http_url}/", any_status=True)),
        ]

    def _apiserver_ready(self) -> bool:
        return _http_ok(f"{self.apiserver_url}/readyz", cert=self.root / "pki")

    def _redis_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def port_variables(self) -> dict[int, str]:
        """Each port the stack listens on -> the environment variable that moves it."""
        return {getattr(self, f"{name.lower()}_port"): _port_variable(name)
                for name in ("ETCD", "ETCD_PEER", "APISERVER", "KCM", "REDIS", "GIT")}

    # ---- verbs -------------------------------------------------------------
    @property
    def lock_file(self) -> Path:
        return self.root / "run" / "stack.lock"

    def install(self, log=print) -> None:
        """What `up` needs on the machine: Debian packages and the Kubernetes binaries."""
        ensure_packages(log)
        ensure_k8s_binaries(self.bin_dir, log)

    def up(self, log=print) -> None:
        with exclusive(self.lock_file, log):
            self._up(log)

    def _up(self, log) -> None:
        self.install(log)
        for sub in ("etcd", "redis", "logs", "run", "apiserver-certs", "kcm-certs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.git_root.mkdir(parents=True, exist_ok=True)
        run = self.root / "run"
        self._check_ports(run)
        paths, made = certs.ensure_pki(self.root / "pki")
        if made:
            self._stop_pki_users(run, log)
        certs.write_kubeconfig(self.kubeconfig, self.apiserver_url, paths)
        for proc in self.processes():
            proc.start(run, self.logs, log)
        log(f"stack up: Kubernetes {K8S_VERSION} at {self.apiserver_url}, Redis at {self.redis_url}, "
            f"git at {self.git_http_url}")

    def _check_ports(self, run: Path) -> None:
        """Every port a stopped part needs is free, or nothing starts (no half-started stack)."""
        variables = self.port_variables()
        taken = [f"{proc.name} needs port {port} (moved with {variables.get(port, 'its variable')})"
                 for proc in self.processes() if proc.running_pid(run) is None
                 for port in proc.ports if port_in_use(port)]
        if taken:
            raise StackError(f"ports on 127.0.0.1 taken by another program, so nothing was started: "
                             f"{'; '.join(taken)}. Free them, or pick other ports and set the same "
                             f"variables for `pullbridge stack up`, `env` and `down`")

    def _stop_pki_users(self, run: Path, log) -> None:
        """The certificates were made anew: a running part still holds the old ones, so it stops
        (to be started again with the new ones) instead of failing TLS with its peers."""
        pki = str(self.root / "pki")
        for proc in reversed(self.processes()):
            if any(pki in arg for arg in proc.argv) and proc.running_pid(run) is not None:
                log(f"{proc.name}: restarting, the certificates in {pki} were made anew")
                proc.stop(run, log)

    def down(self, log=print) -> None:
        with exclusive(self.lock_file, log):
            for proc in reversed(self.processes()):
                proc.stop(self.root / "run", log)

    def status(self) -> list[tuple[str, str]]:
        rows = []
        for proc in self.processes():
            pid = proc.running_pid(self.root / "run")
            if pid is None and proc.pid_file(self.root / "run").exists():
                rows.append((proc.name, f"died (see {self.logs / (proc.name + '.log')}); "
                                        f"`pullbridge stack up` starts it again"))
            elif pid is None:
                rows.append((proc.name, "stopped"))
            else:
                rows.append((proc.name, f"running (pid {pid}){'' if proc.ready() else ', not ready'}"))
        return rows


def _http_ok(url: str, cert: Path | None = None, any_status: bool = False) -> bool:
    import ssl
    import urllib.error
    import urllib.request

    try:
        ctx = ssl.create_default_context()
        if cert is not None:  # missing or damaged files (`stack up` makes them anew): no answer
            ctx.load_verify_locations(cert / "ca.crt")
            ctx.load_cert_chain(cert / "admin.crt", cert / "admin.key")
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
            return resp.status == 200 or any_status
    except urllib.error.HTTPError:
        return any_status
    except (OSError, ValueError):
        return False


def ensure_packages(log=print) -> None:
    missing = [pkg for cmd, pkg in APT_PACKAGES.items()
               if not (Path(cmd).exists() if cmd.startswith("/") else
                       shutil.which(cmd) or Path("/usr/bin", cmd).exists())]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(f"missing packages {', '.join(missing)}: install them (Debian: apt-get install "
                         f"{' '.join(missing)})")
    log(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    result = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"apt-get install {' '.join(missing)} failed:\n{result.stderr[-2000:]}")
    # Debian starts the packaged services; the stack runs its own copies.
    for service in ("redis-server", "etcd"):
        subprocess.run(["service", service, "stop"], capture_output=True, check=False)


def damaged_k8s_binaries(bin_dir: Path) -> list[str]:
    """What is wrong with each cached binary that is missing or does not answer its version
    (a truncated or half-copied file crashes or is refused by the kernel)."""
    problems = []
    for name, version_args in K8S_BINARIES.items():
        path = bin_dir / name
        if not path.exists():
            problems.append(f"{name} is missing")
            continue
        try:
            result = subprocess.run([str(path), *version_args], capture_output=True, text=True,
                                    timeout=60, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append(f"{name} does not run ({exc})")
            continue
        if result.returncode != 0 or K8S_VERSION not in result.stdout:
            answer = (f"answers {result.stdout.strip()[:80]!r}" if result.returncode == 0
                      else how_it_ended(result.returncode))
            problems.append(f"{name} does not answer `{' '.join(version_args)}` with {K8S_VERSION} "
                            f"(it {answer})")
    return problems


def ensure_k8s_binaries(bin_dir: Path, log=print) -> None:
    problems = damaged_k8s_binaries(bin_dir)
    if not problems:
        return
    if bin_dir.exists():
        log(f"the Kubernetes binaries in {bin_dir} are damaged ({'; '.join(problems)}): "
            f"building them again")
    build_k8s_binaries(bin_dir, log)


def build_k8s_binaries(bin_dir: Path, log=print) -> None:
    proxy = gotoolchain.proxy_base()
    mod_url = f"{proxy}/k8s.io/kubernetes/@v/{K8S_VERSION}.mod"
    try:
        with urllib.request.urlopen(mod_url, timeout=60) as resp:
            gomod = resp.read().decode()
    except (OSError, ValueError) as exc:
        raise StackError(f"cannot read the go.mod of k8s.io/kubernetes {K8S_VERSION} "
                         f"from {mod_url}: {exc}") from None
    go_bin = gotoolchain.ensure_go(gotoolchain.wanted_toolchain(gomod), CACHE / "go", log)
    # GOTOOLCHAIN=local: build with exactly this Go, never a second download by go itself.
    build_env = {**os.environ, "PATH": f"{go_bin}{os.pathsep}{os.environ.get('PATH', '')}",
                 "GOTOOLCHAIN": "local", "GOPROXY_URL": proxy}
    script = Path(__file__).with_name("build-k8s.sh")
    log_path = bin_dir.parent / f"build-{K8S_VERSION}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log(f"building Kubernetes {K8S_VERSION} from the Go module proxy (first time on this machine, "
        f"several minutes); log: {log_path}")
    started = time.monotonic()
    with open(log_path, "w") as out:
        result = subprocess.run(["bash", str(script), K8S_VERSION, str(bin_dir)],
                                stdout=out, stderr=subprocess.STDOUT, env=build_env)
    if result.returncode != 0:
        tail = log_path.read_text()[-1500:]
        raise StackError(f"building Kubernetes {K8S_VERSION} failed (log: {log_path}):\n{tail}")
    log(f"built Kubernetes {K8S_VERSION} in {time.monotonic() - started:.0f}s")


__all__ = ["Stack", "StackError", "K8S_VERSION", "wait_until"]
