"""Each page through Flask's test client, against the stack's Redis with real records and jobs."""

from __future__ import annotations

import json

import pytest
from rq import Queue
from rq.registry import FailedJobRegistry

from pullbridge import keys
from tests.pages.conftest import (OPERATOR_TOKEN, WEBHOOK_SECRET, base_config, failed_job, login,
                                  save_record)
from worker import history, metrics

pytestmark = pytest.mark.stack

CHANGES = [
    {"object": "Namespace/shop", "action": "unchanged", "source": "deploy/ns.yaml, doc 1"},
    {"object": "Deployment/shop/web", "action": "configured", "source": "deploy/app.yaml, doc 2"},
    {"object": "ConfigMap/shop/web-conf", "action": "created", "source": "deploy/app.yaml, doc 1"},
    {"object": "Service/shop/old", "action": "deleted"},
    {"object": "ConfigMap/shop/keep", "action": "skipped", "detail": "pullbridge.io/prune: disabled"},
]


def text(answer) -> str:
    return answer.data.decode()


def test_overview_lists_every_repo_with_state_commit_and_times(client, redis_conn):
    record = save_record(redis_conn, changes=CHANGES)
    redis_conn.hset(keys.state("shop"), "last_check_at", str(record.finished_at - 30))
    save_record(redis_conn, repo="infra", result="failure", sha="cd" * 20,
                error="Deployment/ops/api (apps/api.yaml, doc 1): spec.replicas: Invalid value: -1")
    page = text(client.get("/"))
    assert client.get("/").headers["Content-Type"].startswith("text/html")
    assert 'href="/repos/shop"' in page and 'href="/repos/infra"' in page
    assert "synced" in page and "failing" in page
    assert "https://github.com/acme/shop-deploy/commit/" + "ab" * 20 in page
    assert "spec.replicas: Invalid value: -1" in page
    assert f'href="/syncs/{record.id}"' in page
    assert "30 s ago" in page or "31 s ago" in page  # the drift check, relative ...
    assert " UTC</span>" in page                      # ... and absolute


def test_last_drift_check_falls_back_to_the_newest_periodic_sync(client, redis_conn):
    import time

    save_record(redis_conn, reason="periodic", finished_at=time.time() - 600)
    save_record(redis_conn, reason="push")
    page = text(client.get("/"))
    row = page[page.index('id="repo-shop"'):page.index('id="repo-infra"')]
    drift_cell = row.split("<td")[-1]
    assert "10 min ago" in drift_cell and "never" not in drift_cell


def test_repo_page_says_what_the_last_periodic_check_found_and_marks_a_failed_one(client, redis_conn):
    """A drift check the API server refused keeps ``last_check_at`` at the last one that looked
    (worker.periodic.record_check); what went wrong is shown, not only the age of that time."""
    save_record(redis_conn)
    redis_conn.hset(keys.state("shop"), "last_check_result", "in sync: 12 objects checked")
    assert "<dd>in sync: 12 objects checked</dd>" in text(client.get("/repos/shop"))
    failed = "drift check failed: configmaps is forbidden: User cannot list resource"
    redis_conn.hset(keys.state("shop"), "last_check_result", failed)
    page = text(client.get("/repos/shop"))
    assert f'<dt>Last periodic check said</dt><dd class="error">{failed}</dd>' in page


def test_overview_says_suspended_and_held_plainly(client, redis_conn):
    save_record(redis_conn)
    redis_conn.hset(keys.state("shop"), mapping={"suspended": "1"})
    redis_conn.hset(keys.state("infra"), mapping={"held_sha": "ef" * 20, "applied_sha": "ef" * 20})
    page = text(client.get("/"))
    assert "Suspended: neither synced nor corrected until resumed" in page
    assert "Rolled back and held at efefefefefef until resumed" in page


def test_repo_page_paginates_history_and_marks_drift_corrections(make_app, redis_conn):
    client = make_app({**base_config(), "worker": {"history_limit": 60}}).test_client()
    ids = []
    for i in range(30):
        ids.append(save_record(redis_conn, reason="drift" if i == 29 else "push", sha=f"{i:02d}" * 20).id)
    first = text(client.get("/repos/shop"))
    assert "page 1 of 2" in first and "30 kept" in first
    link = 'class="sync-link" href="/syncs/{}"'.format
    assert link(ids[-1]) in first and link(ids[0]) not in first
    assert "drift correction" in first
    second = text(client.get("/repos/shop?page=2"))
    assert link(ids[0]) in second and link(ids[-1]) not in second
    assert client.get("/repos/shop?page=x").status_code == 200
    missing = client.get("/repos/nope")
    assert missing.status_code == 404 and "No repository named" in text(missing)


def test_a_page_number_past_the_end_shows_the_last_page(client, redis_conn):
    ids = [save_record(redis_conn, sha=f"{i:02d}" * 20).id for i in range(30)]
    for page in ("3", "99999999999999999999", "9" * 4000, "9" * 5000):  # int() refuses > 4300 digits
        answer = client.get(f"/repos/shop?page={page}")
        assert answer.status_code == 200, page
        assert "page 2 of 2" in text(answer) and f"/syncs/{ids[0]}" in text(answer)
    empty = client.get("/repos/infra?page=99999999999999999999")
    assert empty.status_code == 200 and "Redis is unavailable" not in text(empty)


def test_redis_refusing_a_command_is_not_reported_as_an_outage(client, redis_conn):
    redis_conn.set(keys.history("shop"), "not a list")  # LLEN answers WRONGTYPE
    answer = client.get("/repos/shop")
    assert answer.status_code == 500
    assert "Redis refused this page" in text(answer) and "Redis is unavailable" not in text(answer)


def test_sync_page_shows_everything_a_developer_needs(client, redis_conn):
    record = save_record(redis_conn, changes=CHANGES, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958",
                         notes=["0123456789ab is older than the applied commit"])
    page = text(client.get(f"/syncs/{record.id}"))
    assert "Applied abababababab: 3 object(s) changed, 1 unchanged" in page
    assert "https://github.com/acme/shop-deploy/commit/" + "ab" * 20 in page
    assert "72d3162e-cc78-11e3-81ab-4c9367dc0958" in page and ">push<" in page
    for phase in ("fetch", "render", "apply", "prune"):
        assert f"<th>{phase}</th>" in page
    row = page[page.index("act-configured\">configured"):]
    assert "<td>Deployment</td><td>shop</td>" in row and "<code>deploy/app.yaml</code></td><td class=\"num\">2</td>" in row
    assert "pullbridge.io/prune: disabled" in page and "1 unchanged object" in page
    assert page.index(">created<") < page.index(">configured<") < page.index(">deleted<")


def test_sync_page_names_the_failed_object_and_file(client, redis_conn):
    error = "validation failed, nothing applied: Deployment/shop/web (deploy/app.yaml, doc 2): spec.replicas: Invalid value: -1: must be >= 0"
    record = save_record(redis_conn, result="failure", error=error, changes=[])
    page = text(client.get(f"/syncs/{record.id}"))
    assert "failed" in page and 'id="error"' in page
    assert "<strong>Deployment</strong>" in page and "<strong>web</strong>" in page
    assert "<code>deploy/app.yaml</code> (document 2)" in page and "validation failed, nothing applied" in page
    assert "spec.replicas: Invalid value: -1: must be &gt;= 0" in page
    assert "Nothing was applied." in page


def test_sync_page_shows_drift_diffs(client, redis_conn):
    record = save_record(redis_conn, reason="drift", changes=[
        {"object": "Deployment/shop/web", "action": "configured", "source": "deploy/app.yaml, doc 2",
         "diffs": [{"field": "spec.replicas", "live": 4, "declared": 1, "manager": "kubectl-scale"}]}])
    page = text(client.get(f"/syncs/{record.id}"))
    assert "Drift found" in page and "<code>spec.replicas</code>" in page
    assert '<code class="live">4</code>' in page and '<code class="declared">1</code>' in page
    assert "kubectl-scale" in page and "drift correction" in page


def test_sync_page_points_to_a_newer_sync(client, redis_conn):
    old = save_record(redis_conn)
    new = save_record(redis_conn, sha="cd" * 20)
    assert f"/syncs/{new.id}" in text(client.get(f"/syncs/{old.id}"))
    assert "A newer sync" not in text(client.get(f"/syncs/{new.id}"))


def test_unknown_sync_is_a_404_page(client):
    answer = client.get("/syncs/shop-20200101T000000-abcdef")
    assert answer.status_code == 404
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "No sync with id" in text(answer) and "<script" not in text(client.get("/syncs/<script>"))


def test_queue_page_shows_depths_and_failed_jobs_with_their_error(client, redis_conn):
    job = failed_job(redis_conn, "the API said no")
    Queue(keys.SYNC_QUEUE, connection=redis_conn).enqueue("tests.pages.jobs.boom", "later", description="sync shop")
    page = text(client.get("/queue"))
    assert f'id="failed-{job.id}"' in page and "RuntimeError: the API said no" in page
    assert 'id="depth-pullbridge-sync"><th>pullbridge-sync</th><td class="num queued">1</td>' in page
    assert "Traceback" not in page
    assert "Log in with the operator token" in page and "Retry</button>" not in page


def test_retry_needs_the_token_then_leaves_the_failed_registry(client, redis_conn):
    job = failed_job(redis_conn, "once")
    failed = FailedJobRegistry(queue=Queue(keys.STATUS_QUEUE, connection=redis_conn))
    url = f"/queue/{keys.STATUS_QUEUE}/{job.id}/retry"
    assert client.post(url).status_code == 403
    assert client.post(url, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert job.id in failed
    csrf = login(client)
    assert client.post(url).status_code == 403                        # cookie without the form's CSRF token
    assert client.post(url, data={"csrf_token": csrf},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert job.id in failed
    done = client.post(url, data={"csrf_token": csrf})
    assert done.status_code == 303 and "done=retried" in done.headers["Location"]
    assert job.id not in failed
    assert job.id in Queue(keys.STATUS_QUEUE, connection=redis_conn).get_job_ids()
    assert "is queued again" in text(client.get(done.headers["Location"]))
    again = client.post(url, data={"csrf_token": csrf})
    assert "done=not-failed" in again.headers["Location"]


def test_behind_a_proxy_that_ends_tls_the_public_url_is_this_site(make_app, redis_conn):
    """The proxy passes the request on as http; the browser's Origin is the https public_url."""
    job = failed_job(redis_conn, "once")
    client = make_app(base_config(public_url="https://pb.example.com")).test_client()
    site = {"base_url": "http://pb.example.com", "headers": {"Origin": "https://pb.example.com"}}
    csrf = login(client, **site)
    url = f"/queue/{keys.STATUS_QUEUE}/{job.id}/retry"
    assert client.post(url, data={"csrf_token": csrf}, base_url=site["base_url"],
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post(url, data={"csrf_token": csrf}, **site).status_code == 303
    assert job.id not in FailedJobRegistry(queue=Queue(keys.STATUS_QUEUE, connection=redis_conn))


def test_delete_with_a_bearer_token(client, redis_conn):
    job = failed_job(redis_conn, "gone soon")
    url = f"/queue/{keys.STATUS_QUEUE}/{job.id}/delete"
    assert client.post(url, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}).status_code == 204
    assert not redis_conn.exists(job.key)
    assert job.id not in FailedJobRegistry(queue=Queue(keys.STATUS_QUEUE, connection=redis_conn))
    assert client.post(f"/queue/other/{job.id}/delete",
                       headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}).status_code == 409


def test_login_cookie_is_strict_httponly_and_not_the_token(client):
    wrong = client.post("/login", data={"token": "nope"})
    assert wrong.status_code == 403 and "That is not the operator token" in text(wrong)
    ok = client.post("/login", data={"token": OPERATOR_TOKEN, "next": "//evil.example/x"})
    assert ok.status_code == 303 and ok.headers["Location"] == "/"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and OPERATOR_TOKEN not in cookie
    page = text(client.get("/queue"))
    assert "Log out" in page
    logout = client.post("/logout", data={"csrf_token": login(client)})
    assert logout.status_code == 303 and "pb_operator=;" in logout.headers["Set-Cookie"]


@pytest.mark.parametrize("target", ["/\t/evil.example/phish", "/\n/evil.example", "/\r\n//evil.example"])
def test_login_never_leaves_the_site_for_a_target_with_control_characters(client, target):
    form = text(client.get("/login", query_string={"next": target}))
    assert 'name="next" value="/"' in form
    answer = client.post("/login", data={"token": OPERATOR_TOKEN, "next": target})
    assert answer.status_code == 303 and answer.headers["Location"] == "/"


def test_without_an_operator_token_nothing_can_be_changed(client, redis_conn, no_operator_token):
    job = failed_job(redis_conn, "stuck")
    answer = client.post(f"/queue/{keys.STATUS_QUEUE}/{job.id}/retry",
                         headers={"Authorization": "Bearer anything"})
    assert answer.status_code == 403 and "No operator token is configured" in text(answer)
    assert client.post("/login", data={"token": ""}).status_code == 403
    assert "needs an operator token" in text(client.get("/queue"))


def test_protected_pages_need_the_token_but_hooks_health_and_metrics_do_not(make_app, redis_conn):
    client = make_app(base_config(protect_pages=True)).test_client()
    record = save_record(redis_conn)
    for path in ("/", "/repos/shop", f"/syncs/{record.id}", "/queue"):
        answer = client.get(path)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/login?next=/"), path
        assert client.get(path, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}).status_code == 200
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/login").status_code == 200
    assert client.get("/assets/pages.css").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200
    hook = client.post("/hooks/shop", data=b"{}", headers={"X-GitHub-Event": "push"})
    assert hook.status_code == 401 and hook.is_json
    login(client)
    assert client.get(f"/syncs/{record.id}").status_code == 200


def test_a_link_from_another_site_to_a_protected_page_is_opened_again_from_this_site(make_app, redis_conn):
    """The SameSite=Strict cookie is left out of a cross-site navigation (a commit status's link):
    the answer loads the same page again from this site, which sends it; never another site's URL."""
    client = make_app(base_config(protect_pages=True)).test_client()
    record = save_record(redis_conn)
    cross_site = {"Sec-Fetch-Site": "cross-site"}
    answer = client.get(f"/syncs/{record.id}?x=1", headers=cross_site)
    assert answer.status_code == 200
    assert f'<meta http-equiv="refresh" content="0; url=/syncs/{record.id}?x=1">' in answer.text
    assert 'id="headline"' not in answer.text  # nothing of the record before the login
    answer = client.get(f"/syncs/{record.id}", headers={"Sec-Fetch-Site": "same-origin"})
    assert answer.status_code == 302 and answer.headers["Location"] == f"/login?next=/syncs/{record.id}"
    login(client)
    answer = client.get(f"/syncs/{record.id}", headers=cross_site)  # a test client sends the cookie anyway
    assert answer.status_code == 200 and "http-equiv" not in answer.text


def test_a_wrong_bearer_token_is_403_whether_or_not_the_pages_are_protected(make_app, redis_conn):
    """docs/pages.md: a script's POST "answers ... 403 when the token is wrong"."""
    job = failed_job(redis_conn, "stuck")
    url = f"/queue/{keys.STATUS_QUEUE}/{job.id}/retry"
    for protect in (False, True):
        client = make_app(base_config(protect_pages=protect)).test_client()
        answer = client.post(url, headers={"Authorization": "Bearer wrong"})
        assert answer.status_code == 403 and "The operator token is wrong." in text(answer), protect
    assert job.id in FailedJobRegistry(queue=Queue(keys.STATUS_QUEUE, connection=redis_conn))


def test_protected_pages_without_a_token_stay_closed(make_app, no_operator_token):
    client = make_app(base_config(protect_pages=True)).test_client()
    assert client.get("/").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_secrets_never_reach_a_page(client, redis_conn):
    leak = f"fetch https://bot:{WEBHOOK_SECRET}@git.example.com/x failed; token {OPERATOR_TOKEN}"
    record = save_record(redis_conn, result="failure", error=leak, notes=[WEBHOOK_SECRET])
    failed_job(redis_conn, f"posting with {WEBHOOK_SECRET} failed")
    login(client)
    for path in ("/", "/repos/shop", f"/syncs/{record.id}", "/queue"):
        page = text(client.get(path))
        assert WEBHOOK_SECRET not in page and OPERATOR_TOKEN not in page, path
    assert "[secret]" in text(client.get("/queue"))


def test_page_responses_carry_security_headers(client):
    headers = client.get("/").headers
    assert "script-src" not in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"


def test_metrics_serve_the_receiver_and_the_worker_metrics(client, redis_conn):
    metrics.record_sync(redis_conn, "shop", "success", 1.5)
    body = text(client.get("/metrics"))
    assert 'pullbridge_sync_results_total{repo="shop",result="success"} 1.0' in body
    assert "pullbridge_webhook_deliveries_total" in body or "pullbridge_webhook_intake_seconds" in body
    assert 'pullbridge_queue_jobs{queue="pullbridge-sync"' in body


def test_redis_down_is_a_clear_page(make_app, throwaway_redis):
    from pullbridge.config import parse_config
    from webhook import create_app

    app = create_app(parse_config(base_config()), redis_url=throwaway_redis.url)
    throwaway_redis.stop()
    answer = app.test_client().get("/")
    assert answer.status_code == 503 and "Redis is unavailable" in text(answer)
    app.extensions["pullbridge"].conn.close()


def test_history_records_read_back_as_saved(redis_conn):
    record = save_record(redis_conn, changes=CHANGES)
    assert json.loads(redis_conn.get(keys.sync_record(record.id)))["changes"] == CHANGES
    assert history.history(redis_conn, "shop")[0]["id"] == record.id


def test_queue_page_shows_a_job_a_real_worker_is_running(client, redis_conn, stack):
    import os
    import subprocess
    import sys
    import time

    from tests.pages.conftest import redis_url

    release = "pb:test:pages:release"
    job = Queue(keys.STATUS_QUEUE, connection=redis_conn).enqueue(
        "tests.pages.jobs.hold", release, description="status running-test")
    worker = subprocess.Popen([sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", redis_url(redis_conn),
                               keys.STATUS_QUEUE], env={**os.environ, "PYTHONPATH": os.getcwd()},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        depth = ('id="depth-pullbridge-status"><th>pullbridge-status</th>'
                 '<td class="num queued">0</td><td class="num">1</td>')
        page = ""
        # Until the worker has started it. The page reads the depths before the running jobs, so one
        # render can list the job as running while its depth row still counts it queued: wait for both.
        give_up = time.monotonic() + 120  # only so a broken page fails instead of hanging
        while not (f"<code>{job.id}</code>" in page and depth in page) and worker.poll() is None \
                and time.monotonic() < give_up:
            time.sleep(0.1)
            page = text(client.get("/queue"))
        assert "status running-test" in page and "No job is running" not in page
        assert depth in page
    finally:
        redis_conn.rpush(release, "go")
        worker.wait()


def test_a_drift_record_from_the_periodic_job_shows_its_diffs(client, redis_conn):
    """The drift module's own record type and save path, as the periodic job writes them."""
    from worker.periodic import DriftRecord, save_drift

    record = DriftRecord("shop", "drift", sha="ab" * 20)
    record.drift = [{"object": "Deployment/shop/web", "field": "spec.replicas", "live": 4, "declared": 1,
                     "manager": "kubectl", "subresource": "scale", "corrected": False}]
    record.result = "success"
    save_drift(redis_conn, record, limit=10)
    page = text(client.get(f"/syncs/{record.id}"))
    assert "spec.replicas" in page and "kubectl" in page
    overview = text(client.get("/"))
    row = overview[overview.index('id="repo-shop"'):]
    assert "drifted" in row.split("</tr>")[0]
