"""Bursts and redeliveries through the real web and worker processes.

50 commits pushed to one branch within a second (objects sent first, then
the branch moved 50 times, as 50 pushes move it), their webhooks
delivered shuffled and concurrently, each one twice: every delivery yields
exactly one job (the copy is answered ``duplicate`` with the same job id),
the newest commit ends applied, and the applied shas recorded in the history
only ever move forward along the branch (each an ancestor of the next).
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client

from pullbridge import keys
from pullbridge.demo.harness import wait_for
from tests.faults.conftest import configmap, history, sync_jobs

pytestmark = pytest.mark.stack

PUSHES = 50


def git(*args, cwd) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def is_ancestor(work, older: str, newer: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", older, newer], cwd=work).returncode == 0


def test_fifty_pushes_delivered_shuffled_and_twice(deployment, namespace, kube, redis_conn, figure):
    name = f"burst{uuid.uuid4().hex[:6]}"
    run = deployment(name=name, full_name=f"pullbridge/{name}")
    run.write_config({"worker": {"inventory_namespace": namespace}})
    base = run.head
    shas = []
    for i in range(1, PUSHES + 1):  # commits made first, so the pushes themselves come fast
        (run.work / "deploy").mkdir(exist_ok=True)
        (run.work / "deploy" / "cm.yaml").write_text(configmap("burst", namespace, f"v{i}"))
        git("add", "-A", cwd=run.work)
        git("-c", "user.name=t", "-c", "user.email=t@x.invalid", "commit", "-qm", f"v{i}", cwd=run.work)
        shas.append(git("rev-parse", "HEAD", cwd=run.work))
    # The objects go over first; then each push is just the branch moving, so 50 fit in a second.
    git("push", "-q", f"file://{run.bare}", "HEAD:refs/staging/burst", cwd=run.work)
    run.start("web", "worker")

    deliveries = [(str(uuid.uuid4()), (shas[i - 1] if i else base), sha) for i, sha in enumerate(shas)]
    ready: list[tuple[str, str, str]] = []
    answers: list[tuple[str, int, dict]] = []
    lock = threading.Lock()

    def deliver(item):
        delivery, before, after = item
        status, body = run.send_push(before, after, ["deploy/cm.yaml"], delivery=delivery)
        with lock:
            answers.append((delivery, status, body))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=12) as pool:
        for i, sha in enumerate(shas):
            git("--git-dir", str(run.bare), "update-ref", "refs/heads/main", sha, cwd=run.work)  # "a push"
            ready.append(deliveries[i])
            if len(ready) >= 5 or i == len(shas) - 1:  # hosts batch and reorder: shuffle, send twice
                batch = ready * 2
                random.shuffle(batch)
                for item in batch:
                    pool.submit(deliver, item)
                ready = []
    burst = time.monotonic() - started

    assert len(answers) == 2 * PUSHES
    assert all(status in (200, 202) for _, status, _ in answers), [a for a in answers if a[1] not in (200, 202)]
    by_delivery: dict[str, list[dict]] = {}
    for delivery, status, body in answers:
        by_delivery.setdefault(delivery, []).append({**body, "http": status})
    for delivery, pair in by_delivery.items():
        assert sorted(p["status"] for p in pair) == ["duplicate", "queued"], pair
        assert pair[0]["job_id"] == pair[1]["job_id"], pair  # the copy names the original's job
    jobs_named = {p["job_id"] for pair in by_delivery.values() for p in pair}

    newest = shas[-1]
    core = client.CoreV1Api(kube)

    def final_applied() -> bool:
        return (redis_conn.hget(keys.state(name), "applied_sha") or b"").decode() == newest

    took = wait_for(final_applied, 120, 0.2)
    assert took is not None, run.log_tail("worker")
    assert core.read_namespaced_config_map("burst", namespace).data["value"] == f"v{PUSHES}"
    wait_for(lambda: not redis_conn.zcard(keys.wanted(name)), 30, 0.2)

    records = list(reversed(history(redis_conn, name)))  # oldest first
    applied = [r["sha"] for r in records if r.get("result") == "success"]
    assert applied and applied[-1] == newest
    for older, newer in zip(applied, applied[1:]):
        assert older != newer and is_ancestor(run.work, older, newer), (older, newer)
    assert redis_conn.zcard(keys.wanted(name)) == 0
    assert set(sync_jobs(redis_conn)) >= jobs_named
    # Stragglers: webhooks for older commits arriving after the newest is applied change nothing.
    before = len(history(redis_conn, name))
    for sha in random.sample(shas[:-1], 5):
        assert run.send_push(base, sha, ["deploy/cm.yaml"])[0] == 202
    assert wait_for(lambda: len(history(redis_conn, name)) > before and not redis_conn.zcard(keys.wanted(name)),
                    60, 0.2) is not None
    late = history(redis_conn, name)[:len(history(redis_conn, name)) - before]
    assert all(r["result"] == "skipped" for r in late), late
    assert final_applied() and core.read_namespaced_config_map("burst", namespace).data["value"] == f"v{PUSHES}"
    results = [r.get("result") for r in records]
    figure(f"burst: {PUSHES} pushes + {PUSHES} redeliveries in {burst:.2f}s -> {len(jobs_named)} jobs named, "
           f"{len(records)} syncs run ({results.count('success')} applied, {results.count('skipped')} skipped), "
           f"applied shas in order: {' -> '.join(s[:7] for s in applied)}; newest applied "
           f"{took:.1f}s after the last delivery; every redelivery answered duplicate with its original's job; "
           f"5 late webhooks for older commits: {len(late)} sync(s), all skipped, v{PUSHES} kept")
