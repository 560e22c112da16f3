"""Redis killed and restarted while pushes arrive, on a private AOF redis-server.

The web process talks to its own ``redis-server --appendonly yes
--appendfsync always`` (never the shared stack's).  While Redis is down the
receiver answers 503 with Retry-After, never 2xx; after the restart every
delivery answered 202 before the kill is still there: its sha is wanted and
the sync job that will take it is still queued.  Deliveries refused with 503
are redelivered (as a git host does) and taken.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
import redis
from rq import Queue

from pullbridge import keys
from pullbridge.demo.harness import free_port, wait_for
from tests.test_liveness import probe

pytestmark = pytest.mark.stack


class AofRedis:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pb-faults-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conn = redis.Redis.from_url(self.url)
        assert wait_for(lambda: self._ping(conn), 20), "redis-server did not start"
        conn.close()

    @staticmethod
    def _ping(conn) -> bool:
        try:
            return conn.ping()
        except redis.RedisError:
            return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def cleanup(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def aof_redis():
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = AofRedis()
    server.start()
    yield server
    server.cleanup()


def test_redis_killed_and_restarted_while_pushes_arrive(aof_redis, deployment, figure):
    name = f"redis{uuid.uuid4().hex[:6]}"
    run = deployment(name=name, full_name=f"pullbridge/{name}", redis_url=aof_redis.url)
    run.write_config()
    run.start("web")  # no worker: what was acknowledged must still be queued afterwards

    answers: list[tuple[float, float, str, int, dict]] = []
    stop = threading.Event()

    def sender() -> None:
        while not stop.is_set():
            sha = secrets.token_hex(20)
            sent = time.monotonic()
            status, body = run.send_push("0" * 40, sha, ["deploy/a.yaml"], delivery=str(uuid.uuid4()))
            answers.append((sent, time.monotonic(), sha, status, body))
            time.sleep(0.01)

    senders = [threading.Thread(target=sender) for _ in range(2)]
    for t in senders:
        t.start()
    time.sleep(1.0)
    aof_redis.kill()
    down_from = time.monotonic()
    time.sleep(2.0)
    down_until = time.monotonic()
    aof_redis.start()
    time.sleep(1.0)
    stop.set()
    for t in senders:
        t.join()

    statuses = [a[3] for a in answers]
    assert set(statuses) <= {202, 503}, sorted(set(statuses))
    while_down = [a for a in answers if a[0] > down_from and a[1] < down_until]
    assert while_down and all(a[3] == 503 for a in while_down)
    assert redis.Redis.from_url(aof_redis.url).ping()
    refused = [a for a in answers if a[3] == 503]
    assert refused  # and each said when to come back
    acked_before = [a for a in answers if a[3] == 202 and a[1] < down_from]
    acked = [a for a in answers if a[3] == 202]
    conn = redis.Redis.from_url(aof_redis.url)
    wanted = {s.decode() for s in conn.zrange(keys.wanted(name), 0, -1)}
    lost = [a[2] for a in acked if a[2] not in wanted]
    assert not lost, f"{len(lost)} acknowledged shas lost"
    queued = conn.get(keys.queued(name)).decode()
    assert queued in Queue(keys.SYNC_QUEUE, connection=conn).get_job_ids()

    # The host redelivers what was refused: all taken now.
    retried = [run.send_push("0" * 40, a[2], ["deploy/a.yaml"])[0] for a in refused]
    assert set(retried) == {202}
    wanted = {s.decode() for s in conn.zrange(keys.wanted(name), 0, -1)}
    assert {a[2] for a in answers} <= wanted
    conn.close()
    figure(f"redis restart: {len(answers)} deliveries; {len(acked_before)} acknowledged before the SIGKILL, "
           f"{len(acked)} in all, 0 lost after the AOF restart; {len(refused)} answered 503 while down "
           f"({len(while_down)} sent and answered inside the 2.0 s outage, 0 of them 2xx); "
           f"{len(retried)} redeliveries all 202")


def test_503_carries_retry_after(aof_redis, deployment):
    run = deployment(name=f"ra{uuid.uuid4().hex[:6]}", redis_url=aof_redis.url)
    run.write_config()
    run.start("web")
    aof_redis.kill()
    body = run.push_payload("0" * 40, "c" * 40, ["deploy/a.yaml"])
    req = urllib.request.Request(
        f"http://127.0.0.1:{run.port}/hooks/{run.name}", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": "ra-1",
                 "X-Hub-Signature-256": "sha256=" + hmac.new(run.secret.encode(), body, hashlib.sha256).hexdigest()})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=10)
    assert caught.value.code == 503 and int(caught.value.headers["Retry-After"]) > 0


def vouches_while_waiting(alive) -> None:
    """The process waiting for Redis keeps vouching for itself (``pullbridge.liveness``): waiting is not
    hung, and a liveness probe restarting it would not bring Redis back."""
    first = float(alive.read_text())
    assert wait_for(lambda: float(alive.read_text()) > first, 30, 0.2) is not None  # again, every RETRY_SECONDS
    assert probe(str(alive)).returncode == 0


def test_the_scheduler_outlives_a_redis_restart(aof_redis, deployment, figure):
    """RQ's CronScheduler loop exits on the first refused connection: the periodic reconcile
    would stop until someone restarted the process.  It waits for Redis and goes on."""
    name = f"rsch{uuid.uuid4().hex[:6]}"
    run = deployment(name=name, full_name=f"pullbridge/{name}", redis_url=aof_redis.url,
                     repo_settings={"interval": "10s"})
    run.write_config()
    alive = run.tmp / "scheduler-alive"
    run.env["PULLBRIDGE_ALIVE_FILE"] = str(alive)
    run.start("scheduler")  # no worker: the reconcile jobs it queues stay in the queue
    scheduler = run.procs["scheduler"]
    conn = redis.Redis.from_url(aof_redis.url)
    queue = Queue(keys.SYNC_QUEUE, connection=conn)
    assert wait_for(lambda: queue.count > 0, 60, 0.2) is not None, run.log_tail("scheduler")
    conn.close()

    aof_redis.kill()
    noticed = wait_for(lambda: scheduler.poll() is not None or "Redis unreachable" in run.log_tail("scheduler"),
                       60, 0.2)
    assert noticed is not None
    assert scheduler.poll() is None, run.log_tail("scheduler", 40)
    vouches_while_waiting(alive)
    aof_redis.start()
    restarted = time.time()
    conn = redis.Redis.from_url(aof_redis.url)
    queue = Queue(keys.SYNC_QUEUE, connection=conn)

    def queued_after_restart() -> bool:
        return any(job.enqueued_at.timestamp() > restarted for job in queue.get_jobs())

    took = wait_for(queued_after_restart, 60, 0.2)
    assert took is not None, run.log_tail("scheduler", 40)
    assert scheduler.poll() is None
    conn.close()
    figure(f"redis restart under the scheduler: it kept running and queued the next reconcile {took:.1f}s "
           f"after Redis was back")


def test_retries_are_still_scheduled_after_a_redis_restart(aof_redis, deployment, figure):
    """A retry waits in RQ's scheduled registry until the worker's RQ scheduler process
    queues it.  That process exited when Redis went away, and RQ starts it again only at
    the worker's maintenance pass (every 10 minutes): no retry ran in the meantime."""
    from datetime import timedelta

    name = f"rret{uuid.uuid4().hex[:6]}"
    run = deployment(name=name, full_name=f"pullbridge/{name}", redis_url=aof_redis.url)
    run.write_config()
    run.start("worker")
    conn = redis.Redis.from_url(aof_redis.url)
    from rq import Worker

    def waiting_for_jobs() -> bool:  # its RQ scheduler process started, itself waiting for a job
        idle = [w for w in Worker.all(connection=conn) if w.get_state() == "idle"]
        return bool(idle) and bool(conn.exists(f"rq:scheduler-lock:{keys.SYNC_QUEUE}"))

    assert wait_for(waiting_for_jobs, 60, 0.1) is not None, run.log_tail("worker")
    conn.close()
    aof_redis.kill()
    log_says = lambda text: text in run.log_tail("worker", 1000)  # noqa: E731
    # RQ's scheduler process noticed: it exited ("Scheduler [PID n] raised an exception"), or it waits.
    assert wait_for(lambda: log_says("Scheduler [PID") or log_says("Redis unreachable"), 60, 0.2) is not None, \
        run.log_tail("worker", 60)
    aof_redis.start()
    restarted = time.monotonic()
    conn = redis.Redis.from_url(aof_redis.url)
    # What a TemporaryError's Retry does: the job waits in the scheduled registry for its backoff.
    job = Queue(keys.SYNC_QUEUE, connection=conn).enqueue_in(timedelta(seconds=1), "worker.periodic_claim.guard_ms", 10)
    took = wait_for(lambda: job.get_status(refresh=True) == "finished", 120, 0.2)
    assert took is not None, f"still {job.get_status()}\n" + run.log_tail("worker", 40)
    assert run.procs["worker"].poll() is None
    conn.close()
    figure(f"redis restart under a worker: a job scheduled 1 s ahead (a retry's backoff) ran "
           f"{time.monotonic() - restarted:.1f}s after Redis was back")


def test_a_worker_outlives_redis_going_away_mid_sync(aof_redis, deployment, namespace, kube, figure):
    """The sync ends while Redis is down: RQ cannot record its end, and the error it raises
    ended the worker.  The worker waits for Redis instead; the commit, still wanted, is
    applied by the sync the periodic reconcile queues once the dead sync's lock expired."""
    from kubernetes import client

    from tests.faults.test_worker_killed import manifests

    name = f"rmid{uuid.uuid4().hex[:6]}"
    objects = 150
    run = deployment(name=name, full_name=f"pullbridge/{name}", redis_url=aof_redis.url,
                     repo_settings={"interval": "10s", "concurrency": 1})
    run.write_config({"worker": {"inventory_namespace": namespace, "lock_ttl": "4s", "lock_wait": "2s"}})
    alive = run.tmp / "worker-alive"
    run.start("web", "scheduler")
    run.env["PULLBRIDGE_ALIVE_FILE"] = str(alive)
    run.start("worker")
    core = client.CoreV1Api(kube)
    conn = redis.Redis.from_url(aof_redis.url)
    applied = lambda sha: (conn.hget(keys.state(name), "applied_sha") or b"").decode() == sha  # noqa: E731
    v1, status, _ = run.push({"deploy/all.yaml": manifests(namespace, "v1", 3)}, "v1")
    assert status == 202 and wait_for(lambda: applied(v1), 60, 0.2) is not None, run.log_tail("worker")

    def v2_count() -> int:
        return sum(1 for cm in core.list_namespaced_config_map(namespace).items
                   if cm.metadata.name.startswith("kill-") and (cm.data or {}).get("value") == "v2")

    v2, status, _ = run.push({"deploy/all.yaml": manifests(namespace, "v2", objects)}, "v2")
    assert status == 202 and wait_for(lambda: 10 <= v2_count() < objects, 60, 0.05) is not None
    aof_redis.kill()
    worker = run.procs["worker"]
    ended = wait_for(lambda: worker.poll() is not None
                     or "could not record the start or end" in run.log_tail("worker", 1000), 120, 0.2)
    assert ended is not None, run.log_tail("worker", 40)
    assert worker.poll() is None, run.log_tail("worker", 40)
    vouches_while_waiting(alive)
    aof_redis.start()
    restarted = time.monotonic()
    conn = redis.Redis.from_url(aof_redis.url)
    took = wait_for(lambda: applied(v2), 120, 0.2)
    assert took is not None, run.log_tail("worker", 40) + run.log_tail("scheduler", 20)
    assert v2_count() == objects and worker.poll() is None
    assert conn.zcard(keys.wanted(name)) == 0 and not conn.exists(keys.lock(name))
    conn.close()
    figure(f"redis down as a sync ended: the worker waited for Redis; the commit was applied again "
           f"{time.monotonic() - restarted:.1f}s after Redis was back")
