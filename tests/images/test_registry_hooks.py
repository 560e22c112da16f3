"""Registry notifications: verification, payload kinds, and a real docker-registry
notifying the receiver, whose queued scan then commits the new tag."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
import uuid

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder
from rq import Queue, SimpleWorker
from werkzeug.serving import make_server

from pullbridge import keys
from pullbridge.config import parse_config
from tests.images.registry_harness import Registry, free_port
from tests.images.helpers import NEW, OLD, bare_git, day
from webhook.registry_hooks import DISTRIBUTION_EVENTS, pushed_images, register

SECRET = "s3cret-" + uuid.uuid4().hex


def hook_config(repo_url: str, registry_host: str, tmp_path=None) -> dict:
    return {
        "repos": [{"name": "images-demo", "url": repo_url, "provider": "generic", "secret_env": "PB_TEST_HOOK_SECRET",
                   "images": {"enabled": True, "author_name": "Image Bot", "author_email": "bot@pullbridge.invalid"}}],
        "images": {"registries": [{"host": registry_host, "insecure": True}],
                   "hooks": [{"name": "local", "secret_env": "PB_TEST_HOOK_SECRET"}]},
    }


@pytest.fixture
def client(redis_conn, monkeypatch):
    monkeypatch.setenv("PB_TEST_HOOK_SECRET", SECRET)
    config = parse_config(hook_config("file:///nowhere.git", "127.0.0.1:5000"))
    app = Flask("registry-hooks-test")
    register(app, config, redis_conn)
    return app.test_client()


def distribution_event(repository="team/app", tag="v2", host="127.0.0.1:5000"):
    return {"events": [
        {"action": "push", "target": {"mediaType": "application/octet-stream", "repository": repository,
                                      "url": f"http://{host}/v2/{repository}/blobs/sha256:00"}},
        {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                      "repository": repository, "tag": tag,
                                      "url": f"http://{host}/v2/{repository}/manifests/sha256:11"},
         "request": {"host": host}},
        {"action": "pull", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                      "repository": "other/thing", "tag": "x"}}]}


def test_payload_kinds():
    assert pushed_images(distribution_event()) == [("127.0.0.1:5000/team/app", "v2")]
    hub = {"push_data": {"tag": "develop-v1.9.0", "pusher": "x"}, "repository": {"repo_name": "weaveworks/fluxdemo"}}
    assert pushed_images(hub) == [("docker.io/weaveworks/fluxdemo", "develop-v1.9.0")]
    harbor = {"type": "PUSH_ARTIFACT", "event_data": {"resources": [
        {"tag": "v3", "resource_url": "harbor.example.com/library/app:v3"}],
        "repository": {"repo_full_name": "library/app"}}}
    assert pushed_images(harbor) == [("harbor.example.com/library/app", "v3")]
    assert pushed_images({"type": "DELETE_ARTIFACT", "event_data": {"resources": []}}) == []


ODD_SHAPES = [
    {"events": [1, None, "x", {"action": "push", "target": "x"}, {"action": "push", "target": {"repository": 5}}]},
    {"events": [{"action": "push", "target": {"repository": "a/b", "url": 7}, "request": []}]},
    {"push_data": {}, "repository": "weaveworks/app"},
    {"push_data": {"tag": 3}, "repository": {"repo_name": ["x"]}},
    {"push_data": {}, "repository": {"repo_name": "UPPER/Case!"}},
    {"type": "PUSH_ARTIFACT", "event_data": {"resources": ["x", {"resource_url": 5}]}},
    {"type": "PUSH_ARTIFACT", "event_data": {"resources": "x"}},
]


def test_parts_without_the_documented_shape_are_skipped(client, redis_conn):
    for payload in ODD_SHAPES:
        assert pushed_images(payload) == [], payload
        answer = client.post("/hooks/registry/local", data=json.dumps(payload),
                             headers={"Content-Type": DISTRIBUTION_EVENTS, "Authorization": f"Bearer {SECRET}"})
        assert answer.status_code == 200 and answer.json["accepted"] is False, (payload, answer.json)
    mixed = {"events": [1, *distribution_event()["events"]]}
    assert pushed_images(mixed) == [("127.0.0.1:5000/team/app", "v2")]


def test_a_secret_that_is_empty_or_unset_is_our_fault_not_the_senders(client, redis_conn, monkeypatch):
    body = json.dumps(distribution_event()).encode()
    headers = {"Content-Type": DISTRIBUTION_EVENTS, "Authorization": "Bearer "}
    monkeypatch.setenv("PB_TEST_HOOK_SECRET", "")
    empty = client.post("/hooks/registry/local", data=body, headers=headers)
    assert (empty.status_code, empty.json["error"]) == (500, "misconfigured")
    assert empty.json["message"] == "the secret of registry hook local is empty"
    monkeypatch.delenv("PB_TEST_HOOK_SECRET")
    unset = client.post("/hooks/registry/local", data=body, headers=headers)
    assert (unset.status_code, unset.json["error"]) == (500, "misconfigured")
    assert "PB_TEST_HOOK_SECRET" not in unset.get_data(as_text=True)
    assert redis_conn.get(keys.image_scan_queued("images-demo")) is None


def test_secret_forms_and_refusals(client, redis_conn):
    body = json.dumps(distribution_event()).encode()
    url = "/hooks/registry/local"
    ctype = {"Content-Type": DISTRIBUTION_EVENTS}
    assert client.post(url, data=body, headers=ctype).status_code == 401
    assert client.post(url, data=body, headers={**ctype, "Authorization": "Bearer nope"}).status_code == 401
    assert client.post(url + "?token=nope", data=body, headers=ctype).status_code == 401
    assert client.post("/hooks/registry/unknown", data=body, headers=ctype).status_code == 404
    assert redis_conn.get(keys.image_scan_queued("images-demo")) is None

    ok = client.post(url, data=body, headers={**ctype, "Authorization": f"Bearer {SECRET}"})
    assert ok.status_code == 202, ok.json
    assert ok.json["images"] == [{"repository": "127.0.0.1:5000/team/app", "tag": "v2"}]
    job_id = ok.json["scans"]["images-demo"]
    assert Queue(keys.IMAGES_QUEUE, connection=redis_conn).fetch_job(job_id).func_name == keys.IMAGE_SCAN_JOB
    # a second notification while the scan waits does not queue another one
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    again = client.post(url, data=body, headers={**ctype, "X-Pullbridge-Signature": sig})
    assert again.status_code == 202 and again.json["scans"]["images-demo"] == job_id
    assert len(Queue(keys.IMAGES_QUEUE, connection=redis_conn)) == 1
    hub = json.dumps({"push_data": {"tag": "v9"}, "repository": {"repo_name": "team/app"}})
    assert client.post(f"{url}?token={SECRET}", data=hub, content_type="application/json").status_code == 202
    bad = client.post(url, data=b"{not json", headers={**ctype, "Authorization": SECRET})
    assert bad.status_code == 400 and SECRET not in bad.get_data(as_text=True)
    quiet = client.post(url, data=b'{"events": []}', headers={**ctype, "Authorization": SECRET})
    assert quiet.status_code == 200 and quiet.json["accepted"] is False
    huge = client.post(url, data=b" " * (3 * 1024 * 1024 + 1), headers={**ctype, "Authorization": SECRET})
    assert huge.status_code == 413


def test_registry_notification_triggers_a_scan_that_commits(demo, registry, image_name, redis_conn,
                                                            tmp_path, monkeypatch):
    repo, image, files = demo
    monkeypatch.setenv("PB_TEST_HOOK_SECRET", SECRET)
    port = free_port()
    # the registry pushing here is a second docker-registry that notifies; it serves the same image name
    (tmp_path / "notifying").mkdir()
    notifying = Registry(tmp_path / "notifying", notify_url=f"http://127.0.0.1:{port}/hooks/registry/local",
                         notify_headers={"Authorization": f"Bearer {SECRET}"})
    data = hook_config(repo.file_url, notifying.host)
    config_file = tmp_path / "pullbridge.yaml"
    config_file.write_text(json.dumps(data))
    monkeypatch.setenv("PULLBRIDGE_CONFIG", str(config_file))
    fluxdemo = files["fluxdemo.yaml"].replace(registry.host, notifying.host)
    repo.commit_and_push("use the notifying registry", {"fluxdemo.yaml": fluxdemo})
    app = Flask("registry-hooks-live")
    register(app, parse_config(data), redis_conn)
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        notifying.push_image(f"{image_name}-nginx", "1.27", day(1))
        notifying.push_image(image_name, OLD, day(1))
        queued = _wait_for(lambda: redis_conn.get(keys.image_scan_queued("images-demo")))
        assert queued, (tmp_path / "notifying" / "registry.log").read_text()[-2000:]
        redis_conn.delete(keys.image_scan_queued("images-demo"))
        Queue(keys.IMAGES_QUEUE, connection=redis_conn).empty()
        notifying.push_image(image_name, NEW, day(5))
        # a late notification of the pushes above may have queued a scan that empty() then removed,
        # leaving its marker: wait for a marker whose job exists (the next notification replaces it)
        images_queue = Queue(keys.IMAGES_QUEUE, connection=redis_conn)
        job_id = _wait_for(lambda: (marker := redis_conn.get(keys.image_scan_queued("images-demo")))
                           and images_queue.fetch_job(marker.decode()) is not None and marker)
        assert job_id
        worker = SimpleWorker([Queue(keys.IMAGES_QUEUE, connection=redis_conn)], connection=redis_conn)
        worker.work(burst=True)
        job = Queue(keys.IMAGES_QUEUE, connection=redis_conn).fetch_job(job_id.decode())
        result = job.return_value()
        assert result and result["sha"], job.latest_result()
        assert result["errors"] == [] and [c["new_tag"] for c in result["changes"]] == [NEW]
        assert bare_git(repo, "rev-parse", "main").strip() == result["sha"]
        assert f"{notifying.host}/{image_name}:{NEW}" in bare_git(repo, "show", "main:fluxdemo.yaml")
        assert [m.decode() for m in redis_conn.zrange(keys.wanted("images-demo"), 0, -1)] == [result["sha"]]
        assert redis_conn.get(keys.image_scan_queued("images-demo")) is None
    finally:
        server.shutdown()
        notifying.stop()


def _wait_for(probe, tries: int = 600):
    """Poll a condition a bounded number of times (the registry notifies asynchronously)."""
    for _ in range(tries):
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    return None


class CountingStream(io.BytesIO):
    """A request body that remembers how much of it was read."""

    taken = 0

    def read(self, size=-1):
        data = super().read(size)
        self.taken += len(data)
        return data


def test_a_chunked_notification_over_the_cap_is_refused_without_reading_it_all(client):
    cap = 3 * 1024 * 1024
    stream = CountingStream(b" " * (cap + 512 * 1024))
    environ = EnvironBuilder("/hooks/registry/local", method="POST", headers={
        "Content-Type": DISTRIBUTION_EVENTS, "Authorization": SECRET}).get_environ()
    environ.pop("CONTENT_LENGTH", None)  # chunked: the server says where the body ends
    environ.update({"wsgi.input": stream, "wsgi.input_terminated": True})
    huge = client.application.response_class.from_app(client.application, environ)
    assert huge.status_code == 413 and huge.json["error"] == "too_large"
    assert stream.taken <= cap + 1
    bad = client.post("/hooks/registry/local", data=b"{}", headers={"Authorization": SECRET},
                      environ_overrides={"CONTENT_LENGTH": "2x"})
    assert bad.status_code == 400 and bad.json["error"] == "bad_payload"


def test_a_hook_that_joins_a_queued_interval_scan_makes_it_bypass_the_cache(demo, registry, image_name, redis_conn,
                                                                             tmp_path, monkeypatch):
    # the registry reports another host name than the manifests use, so forget() drops nothing they read
    from worker.images.scan import request_scan, scan

    repo, image, files = demo
    monkeypatch.setenv("PB_TEST_HOOK_SECRET", SECRET)
    data = hook_config(repo.file_url, registry.host)
    (tmp_path / "pullbridge.yaml").write_text(json.dumps(data))
    monkeypatch.setenv("PULLBRIDGE_CONFIG", str(tmp_path / "pullbridge.yaml"))
    config = parse_config(data)
    assert scan(redis_conn, config, config.repos[0]).changes == []  # the tag list (OLD only) is cached now
    registry.push_image(image_name, NEW, day(5))
    interval_job = request_scan(redis_conn, config, config.repos[0], reason="interval")

    app = Flask("registry-hooks-join")
    register(app, config, redis_conn)
    alias = registry.host.replace("127.0.0.1", "localhost")
    response = app.test_client().post("/hooks/registry/local", json=distribution_event(image_name, NEW, alias),
                                      headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 202 and response.get_json()["scans"] == {"images-demo": interval_job}

    queue = Queue(keys.IMAGES_QUEUE, connection=redis_conn)
    assert queue.job_ids == [interval_job]
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    result = queue.fetch_job(interval_job).return_value()
    assert result and [(c["old_tag"], c["new_tag"]) for c in result["changes"]] == [(OLD, NEW)], result
    assert f"{image}:{NEW}" in bare_git(repo, "show", "main:fluxdemo.yaml")
    assert redis_conn.get(keys.image_scan_fresh("images-demo")) is None


def test_an_interval_request_that_joins_a_waiting_scan_sets_no_flag(demo, registry, redis_conn):
    from worker.images.scan import request_scan

    repo, _, _ = demo
    config = parse_config(hook_config(repo.file_url, registry.host))
    first = request_scan(redis_conn, config, config.repos[0], reason="interval")
    assert request_scan(redis_conn, config, config.repos[0], reason="interval") == first
    assert redis_conn.get(keys.image_scan_fresh("images-demo")) is None
