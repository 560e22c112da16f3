"""A paced webhook load against a LocalDeployment: N signed pushes at R per second.

Why it exists: the fault suite runs a small load (CI) and ``bench/webhook-load``
the full 1,000 at 200/s; both need the same driver.  The commits are real (a
chain made with ``git fast-import`` in one process, each one changing a
ConfigMap), every webhook names its own commit and delivery id, sends are
open-loop (scheduled at ``i / rate`` whatever the answers do) over keep-alive
connections, and the acknowledgement latency is measured per request.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from pullbridge import keys


def configmap(namespace: str, value: str) -> str:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: load\n  namespace: {namespace}\n"
            f"data:\n  value: \"{value}\"\n")


def make_commits(run, namespace: str, count: int) -> list[str]:
    """``count`` commits on main, pushed to the deployment's bare repo; -> shas, oldest first."""
    chunks = []
    for i in range(1, count + 1):
        content = configmap(namespace, f"v{i}").encode()
        message = f"load v{i}".encode()
        chunks.append(b"commit refs/heads/main\nmark :%d\ncommitter Load <load@pullbridge.invalid> %d +0000\n"
                      % (i, 1700000000 + i))
        chunks.append(b"data %d\n%s\n" % (len(message), message))
        if i > 1:
            chunks.append(b"from :%d\n" % (i - 1))
        chunks.append(b"M 100644 inline deploy/load.yaml\ndata %d\n%s\n" % (len(content), content))
    subprocess.run(["git", "fast-import", "--quiet"], input=b"".join(chunks), cwd=run.work, check=True)
    subprocess.run(["git", "push", "-q", "-f", f"file://{run.bare}", "main:refs/heads/main"], cwd=run.work,
                   check=True)
    shas = subprocess.run(["git", "rev-list", "--reverse", "main"], cwd=run.work, check=True,
                          capture_output=True, text=True).stdout.split()
    return shas[-count:]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def send_load(run, shas: list[str], rate: float, senders: int = 32) -> dict:
    """Deliver one webhook per sha at ``rate`` per second; -> figures and every answer."""
    local = threading.local()
    results: list[tuple[int, float, dict]] = []
    lock = threading.Lock()

    def deliver(i: int) -> None:
        before = shas[i - 1] if i else "0" * 40
        body = run.push_payload(before, shas[i], ["deploy/load.yaml"])
        headers = {"Content-Type": "application/json", "X-GitHub-Event": "push",
                   "X-GitHub-Delivery": str(uuid.uuid4()),
                   "X-Hub-Signature-256": "sha256=" + hmac.new(run.secret.encode(), body, hashlib.sha256).hexdigest()}
        started = time.perf_counter()
        for attempt in range(2):
            conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", run.port, timeout=30)
            local.conn = conn
            try:
                conn.request("POST", f"/hooks/{run.name}", body=body, headers=headers)
                answer = conn.getresponse()
                payload = json.loads(answer.read() or b"{}")
                break
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                local.conn = None  # a keep-alive connection the server closed: once more, fresh
                if attempt:
                    raise
        with lock:
            results.append((answer.status, time.perf_counter() - started, payload))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=senders) as pool:
        futures = []
        for i in range(len(shas)):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(deliver, i))
        for future in futures:
            future.result()
    took = time.perf_counter() - t0
    latencies = [r[1] * 1000 for r in results]
    return {"sent": len(shas), "seconds": took, "rate": len(shas) / took,
            "statuses": sorted({r[0] for r in results}), "acked": sum(1 for r in results if r[0] == 202),
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies), "jobs": len({r[2].get("job_id") for r in results})}


def applied_sha(conn, name: str) -> str:
    return (conn.hget(keys.state(name), "applied_sha") or b"").decode()
