"""Alerts: one per change of state, delivered by a real RQ worker to local HTTP receivers."""

from __future__ import annotations

import json
import logging
import re
import threading

import pytest
from rq import Queue
from rq.registry import FailedJobRegistry

from pullbridge import keys
from pullbridge.config import parse_config
from tests.conftest import ROOT
from tests.notify_support import dead_redis, fake_hosts, run_status_worker  # noqa: F401
from worker import alerts


@pytest.fixture
def setup(fake_hosts, redis_conn, monkeypatch, tmp_path):  # noqa: F811
    slack_url = fake_hosts.base + "/hooks/slack/T000/B000/secretpart"
    monkeypatch.setenv("SLACK_URL", slack_url)
    (tmp_path / "hook-url").write_text(fake_hosts.base + "/hooks/generic\n")
    monkeypatch.setenv("HOOK_SECRET", "s")
    data = {
        "server": {"public_url": "https://pb.example"},
        "repos": [{"name": n, "url": f"https://git.example/acme/{n}.git", "provider": "github",
                   "secret_env": "HOOK_SECRET"} for n in ("app", "infra")],
        "alerts": [
            {"kind": "slack", "url_env": "SLACK_URL", "backoff": [0], "retries": 2},
            {"kind": "webhook", "url_file": str(tmp_path / "hook-url"), "backoff": [0], "retries": 2,
             "events": ["sync_failed", "sync_recovered"], "repos": ["app"]},
        ],
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(data))
    monkeypatch.setenv("PULLBRIDGE_CONFIG", str(path))
    return fake_hosts, redis_conn, parse_config(data), slack_url


def delivered(hosts):
    return [(r["path"].split("/")[2], r["payload"]) for r in hosts.requests]


def test_failure_retried_three_times_alerts_once_and_recovery_once(setup):
    hosts, conn, config, _ = setup
    app = config.repo("app")
    alerts.sync_finished(conn, config, app, "success", "s-0", "applied")  # first success: quiet
    for attempt in range(3):
        alerts.sync_finished(conn, config, app, "failure", f"s-1", f"apply failed (attempt {attempt + 1})")
    run_status_worker(conn)
    got = delivered(hosts)
    assert sorted(kind for kind, _ in got) == ["generic", "slack"]
    generic = next(p for k, p in got if k == "generic")
    assert generic["event"] == "sync_failed" and generic["repo"] == "app"
    assert generic["summary"] == "apply failed (attempt 1)"
    assert generic["url"] == "https://pb.example/syncs/s-1"
    slack = next(p for k, p in got if k == "slack")
    assert "sync failed" in slack["text"] and "*app*" in slack["text"]
    assert slack["blocks"][0]["text"]["text"] == slack["text"]

    hosts.requests.clear()
    alerts.sync_finished(conn, config, app, "success", "s-2", "applied 4 objects")
    alerts.sync_finished(conn, config, app, "success", "s-3", "nothing to do")
    run_status_worker(conn)
    got = delivered(hosts)
    assert sorted(kind for kind, _ in got) == ["generic", "slack"]
    assert all(p.get("event", "sync_recovered") == "sync_recovered" for _, p in got)
    assert "recovered" in next(p for k, p in got if k == "slack")["text"]


def test_first_result_being_a_failure_alerts(setup):
    hosts, conn, config, _ = setup
    job_ids = alerts.sync_finished(conn, config, config.repo("infra"), "error", "s-7", "render error")
    assert len(job_ids) == 1  # the generic webhook only listens to "app"
    run_status_worker(conn)
    assert [k for k, _ in delivered(hosts)] == ["slack"]


def test_drift_corrected_alerts_once_per_sync(setup):
    hosts, conn, config, _ = setup
    app = config.repo("app")
    assert len(alerts.drift_alert(conn, config, app, "drift_corrected", "d-1", "Deployment/web replicas 3 -> 1 reverted")) == 1
    assert alerts.drift_alert(conn, config, app, "drift_corrected", "d-1", "again (retried job)") == []
    assert len(alerts.drift_alert(conn, config, app, "drift_corrected", "d-2", "ConfigMap/x reverted")) == 1
    run_status_worker(conn)
    got = delivered(hosts)
    assert [k for k, _ in got] == ["slack", "slack"]  # the webhook does not want drift events
    assert "drift corrected" in got[0][1]["text"]


def test_concurrent_failures_alert_once(setup):
    hosts, conn, config, _ = setup
    app = config.repo("app")
    results = []
    barrier = threading.Barrier(8)

    def finish(i):
        barrier.wait()
        results.append(alerts.sync_finished(conn.__class__(connection_pool=conn.connection_pool),
                                            config, app, "failure", f"s-{i}", "boom"))

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r) for r in results) == [0] * 7 + [2]


def test_delivery_is_retried_and_a_4xx_is_permanent_without_leaking_the_url(setup, caplog):
    hosts, conn, config, slack_url = setup
    caplog.set_level(logging.INFO)
    hosts.script += [(500, {"error": "down"}, {}), (404, {"error": "no_service"}, {})]
    # slack gets the 500 (retried, then sent); the webhook gets the 404 (failed, no retry)
    alerts.sync_finished(conn, config, config.repo("app"), "failure", "s-1", "boom")
    run_status_worker(conn)
    assert len(hosts.requests) == 3
    failed = FailedJobRegistry(keys.STATUS_QUEUE, connection=conn)
    assert failed.count == 1
    job = Queue(keys.STATUS_QUEUE, connection=conn).fetch_job(failed.get_job_ids()[0])
    assert "HTTP 404" in job.latest_result().exc_string
    assert "secretpart" not in job.latest_result().exc_string
    assert "secretpart" not in caplog.text
    assert all("secretpart" not in str(a) for a in job.args)


def test_a_redirected_alert_is_not_followed_and_its_secret_path_not_shown(setup, caplog):
    hosts, conn, config, slack_url = setup
    caplog.set_level(logging.INFO)
    moved = slack_url.replace("/hooks/slack/", "/hooks/moved/")
    hosts.script.append((301, {}, {"Location": moved}))
    alerts.sync_finished(conn, config, config.repo("infra"), "failure", "s-1", "boom")  # slack only
    run_status_worker(conn)
    assert [r.get("method", "POST") for r in hosts.requests] == ["POST"]
    failed = FailedJobRegistry(keys.STATUS_QUEUE, connection=conn)
    error = Queue(keys.STATUS_QUEUE, connection=conn).fetch_job(failed.get_job_ids()[0]).latest_result().exc_string
    assert f"HTTP 301: redirected to {hosts.base}/… (path not shown)" in error
    assert "secretpart" not in error and "secretpart" not in caplog.text


def test_an_alert_url_file_with_two_lines_fails_without_quoting_it(setup, tmp_path, caplog):
    """A URL file with an old URL kept below the new one: the HTTP client's refusal would quote
    the URL's secret path into the log and the failed job; it is refused by name instead."""
    hosts, conn, config, slack_url = setup
    caplog.set_level(logging.INFO)
    (tmp_path / "hook-url").write_text(f"{hosts.base}/hooks/generic/newsecret\n{hosts.base}/hooks/generic/oldsecret\n")
    alerts.sync_finished(conn, config, config.repo("app"), "failure", "s-1", "boom")
    run_status_worker(conn)
    assert [r["path"].split("/")[2] for r in hosts.requests] == ["slack"]
    failed = FailedJobRegistry(keys.STATUS_QUEUE, connection=conn)
    error = Queue(keys.STATUS_QUEUE, connection=conn).fetch_job(failed.get_job_ids()[0]).latest_result().exc_string
    assert f"file:{tmp_path / 'hook-url'} holds a space, line break or other character no URL has" in error
    for text in (error, caplog.text):
        assert "newsecret" not in text and "oldsecret" not in text


def test_unknown_result_and_redis_down_never_raise(setup):
    hosts, conn, config, _ = setup
    assert alerts.sync_finished(conn, config, config.repo("app"), "exploded", "s", "x") == []
    dead = dead_redis()
    assert alerts.sync_finished(dead, config, config.repo("app"), "failure", "s", "x") == []
    assert alerts.drift_alert(dead, config, config.repo("app"), "drift_corrected", "s", "x") == []
    assert alerts.drift_check_finished(dead, config, config.repo("app"), False, "x") == []


def test_slack_message_escapes_and_links():
    msg = alerts.slack_message({"event": "sync_failed", "repo": "app", "sync_id": "s-1",
                                "url": "https://pb/syncs/s-1", "summary": "a <b> & c"})
    assert msg["text"].startswith(":red_circle: Pullbridge: sync failed for *app* (<https://pb/syncs/s-1|sync s-1>)")
    assert "a &lt;b&gt; &amp; c" in msg["text"]
    msg = alerts.slack_message({"event": "drift_check_failed", "repo": "app", "sync_id": None,
                                "url": "https://pb/repos/app", "summary": "drift check failed: HTTP 403"})
    assert msg["text"].startswith(":no_entry: Pullbridge: drift check failing for *app* (<https://pb/repos/app|repo "
                                  "page>)\ndrift check failed")


def test_the_json_body_is_the_one_documented(setup):
    """docs/notifications.md shows the generic webhook's body: the same fields, `at` in its form."""
    hosts, conn, config, _ = setup
    documented = (ROOT / "docs" / "notifications.md").read_text().split("The JSON webhook body:", 1)[1]
    example = json.loads(documented.split("```json", 1)[1].split("```", 1)[0])
    assert len(alerts.sync_finished(conn, config, config.repo("app"), "failure", "s-1", "apply failed")) == 2
    run_status_worker(conn)
    body = next(payload for kind, payload in delivered(hosts) if kind == "generic")
    assert list(body) == list(example)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["at"]), body["at"]
    assert example["at"].startswith("2026-") and example["at"].endswith("Z")
