"""The receiver's log under the Procfile's real server: what its code logs is one JSON line each.

gunicorn configures no root logger, so under it a line of any logger outside the
receiver's own (``pullbridge.webhook``) went to Python's last-resort handler: a
bare message without time or level (a WARNING and up), or nowhere (INFO).
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.webhook.conftest import GENEROUS, RedisServer, running_web

REGISTRY_SECRET = "registry-hook-secret"
HOOKS = {"hooks": [{"name": "harbor", "secret_env": "PB_TEST_REGISTRY_HOOK"},
                   {"name": "unset", "secret_env": "PB_TEST_REGISTRY_HOOK_UNSET"}]}
NOTIFICATION = {"events": [{"action": "push", "request": {"host": "registry.example.com"},
                            "target": {"repository": "team/app", "tag": "v2",
                                       "mediaType": "application/vnd.oci.image.manifest.v1+json"}}]}


def gunicorns_own(line: str) -> bool:
    """gunicorn's own lines ("[time] [pid] [LEVEL] ..."), plain text by design (GUNICORN_LOGLEVEL)."""
    return line.startswith("[")


def json_lines_until(log, found, what: str) -> list[dict]:
    """The log's JSON lines once ``found(lines)`` holds (each worker writes its lines a moment later);
    fails naming ``what`` and any line that is neither JSON nor gunicorn's own."""
    deadline = time.monotonic() + GENEROUS
    while True:
        text = log.read_text()
        other = [line for line in text.splitlines() if not line.startswith("{") and not gunicorns_own(line)]
        assert not other, f"lines that are not JSON: {other}"
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        if found(lines):
            return lines
        if time.monotonic() > deadline:
            pytest.fail(f"no line {what} in:\n{text[-3000:]}")
        time.sleep(0.05)


@pytest.fixture
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def web(tmp_path, redis_server):
    with running_web(tmp_path, workers=2, redis_url=redis_server.url, images=HOOKS,
                     extra_env={"PB_TEST_REGISTRY_HOOK": REGISTRY_SECRET}) as running:
        yield running


def test_registry_hook_lines_are_the_receivers_json_lines_and_its_500_says_why(web):
    base, _, log = web
    accepted = requests.post(base + "/hooks/registry/harbor", json=NOTIFICATION,
                             headers={"Authorization": f"Bearer {REGISTRY_SECRET}"}, timeout=GENEROUS)
    assert accepted.status_code == 202, accepted.text
    unset = requests.post(base + "/hooks/registry/unset", json=NOTIFICATION,
                          headers={"Authorization": "Bearer anything"}, timeout=GENEROUS)
    assert unset.status_code == 500
    assert "PB_TEST_REGISTRY_HOOK_UNSET" not in unset.text  # where it is kept: the log's only

    def hook_lines(lines):
        return [line for line in lines if "registry hook" in line["msg"]]

    lines = hook_lines(json_lines_until(log, lambda lines: len(hook_lines(lines)) == 2, "per registry hook"))
    by_hook = {("harbor" if "harbor" in line["msg"] else "unset"): line for line in lines}
    assert by_hook["harbor"]["level"] == "info" and "1 image(s) pushed" in by_hook["harbor"]["msg"]
    assert by_hook["unset"]["level"] == "warning" and by_hook["unset"]["status"] == 500
    assert "PB_TEST_REGISTRY_HOOK_UNSET" in by_hook["unset"]["error"]
    assert REGISTRY_SECRET not in log.read_text()


def test_a_warning_of_a_module_outside_the_receivers_logger_is_a_json_line(web, redis_server):
    base, _, log = web
    redis_server.stop()
    scrape = requests.get(base + "/metrics", timeout=GENEROUS)
    assert scrape.status_code == 200
    assert "pullbridge_metrics_redis_up 0.0" in scrape.text
    lines = json_lines_until(log, lambda lines: any("Redis unreadable" in line["msg"] for line in lines),
                             "saying Redis was unreadable at the scrape")
    [line] = [line for line in lines if "Redis unreadable" in line["msg"]]
    assert line["level"] == "warning" and line["logger"] == "worker.metrics" and line["ts"]
