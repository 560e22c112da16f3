"""Every configured secret, scanned for in everything Pullbridge wrote or served.

A full flow through the real web, worker and scheduler processes -- a good
push, a failing one, a wrongly signed delivery, a failed and a good operator
login, commit statuses posted with a token -- then every page fetched (as the
logged-in operator), the three processes' logs and every Redis value of the
repository read: the webhook secret, the status token and the operator token
appear nowhere.
"""

from __future__ import annotations

import uuid

import pytest
import requests

from pullbridge import keys
from pullbridge.demo.harness import wait_for
from tests.faults.conftest import configmap, history
from tests.notify_support import GITHUB_TOKEN, fake_hosts  # noqa: F401 (fixture)

pytestmark = pytest.mark.stack


def test_no_secret_in_logs_pages_or_redis(deployment, fake_hosts, namespace, redis_conn, figure):  # noqa: F811
    name = f"secrets{uuid.uuid4().hex[:6]}"
    operator = "op-" + uuid.uuid4().hex
    run = deployment(name=name, full_name="acme/deploy",
                     repo_settings={"status": {"api_url": fake_hosts.base + "/github",
                                               "token_env": "PB_FAULTS_STATUS_TOKEN",
                                               "backoff": [0], "retries": 1, "timeout": 5}},
                     extra_env={"PB_FAULTS_STATUS_TOKEN": GITHUB_TOKEN, "PB_FAULTS_OPERATOR_TOKEN": operator,
                                "PULLBRIDGE_LOG_LEVEL": "DEBUG"})
    run.write_config({"server": {"public_url": f"http://127.0.0.1:{run.port}",
                                 "operator_token_env": "PB_FAULTS_OPERATOR_TOKEN"},
                      "worker": {"inventory_namespace": namespace}})
    run.start("web", "worker", "scheduler")
    applied = lambda sha: (redis_conn.hget(keys.state(name), "applied_sha") or b"").decode() == sha  # noqa

    v1, status, _ = run.push({"deploy/a.yaml": configmap("sec-a", namespace, "v1")}, "v1")
    assert status == 202 and wait_for(lambda: applied(v1), 60, 0.2) is not None, run.log_tail("worker")
    bad, status, _ = run.push({"deploy/b.yaml": "kind: [\n"}, "bad")
    assert status == 202
    assert wait_for(lambda: history(redis_conn, name)[0].get("result") == "failure", 60, 0.2) is not None
    good_secret = run.secret
    run.secret = "x" * len(good_secret)  # a delivery signed with the wrong secret
    assert run.send_push(v1, bad, [])[0] == 401
    run.secret = good_secret
    assert wait_for(lambda: len(fake_hosts.requests) >= 4, 30, 0.2) is not None  # statuses went out, with the token

    base = f"http://127.0.0.1:{run.port}"
    web = requests.Session()
    origin = {"Origin": base}
    assert web.post(f"{base}/login", data={"token": operator[:-1] + "x"}, headers=origin).status_code == 403
    assert web.post(f"{base}/login", data={"token": operator}, headers=origin, allow_redirects=False).status_code == 303
    pages = ["/", f"/repos/{name}", "/queue", "/login", "/metrics", "/healthz", "/readyz", f"/repos/{name}?x=1"]
    pages += [f"/syncs/{r['id']}" for r in history(redis_conn, name)]
    served = []
    for path in pages:
        answer = web.get(base + path)
        assert answer.status_code < 500, path
        served.append((path, answer.status_code, answer.text))
    assert any(p.startswith("/syncs/") and s == 200 for p, s, _ in served)

    run.stop()  # flush the logs
    logs = {n: (run.tmp / f"{n}.log").read_text(errors="replace") for n in ("web", "worker", "scheduler")}
    stored = []
    for key in redis_conn.scan_iter(match=f"*{name}*"):
        kind = redis_conn.type(key).decode()
        if kind == "string":
            stored.append(redis_conn.get(key))
        elif kind == "list":
            stored += redis_conn.lrange(key, 0, -1)
        elif kind == "hash":
            stored += [k + b"=" + v for k, v in redis_conn.hgetall(key).items()]
        elif kind == "zset":
            stored += redis_conn.zrange(key, 0, -1)
    text = "\n".join([*logs.values(), *(t for _, _, t in served),
                      *(s.decode(errors="replace") for s in stored)])
    secrets = {"webhook secret": run.secret, "status token": GITHUB_TOKEN, "operator token": operator}
    found = {what: text.count(value) for what, value in secrets.items() if value in text}
    assert not found, found
    figure(f"secrets: {len(secrets)} secrets scanned in {sum(len(v) for v in logs.values())} bytes of web/worker/"
           f"scheduler logs, {len(served)} pages ({sum(len(t) for _, _, t in served)} bytes) and {len(stored)} "
           f"Redis values of the repo: 0 found; {len(fake_hosts.requests)} statuses were posted with the token")
