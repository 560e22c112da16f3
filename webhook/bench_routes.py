"""Routes that exist only for ``bench/intake`` (``PULLBRIDGE_BENCH_NOOP=1``).

Why: the intake goals are ratios against a route that does nothing, served
by the same gunicorn with the same settings.  Two routes give the two ends
of that scale:

- ``POST /bench/noop`` does nothing (the baseline every ratio divides by);
- ``POST /bench/floor/<name>`` does only the work no receiver of this design
  can skip, and nothing else: read the body, check GitHub's HMAC-SHA256
  signature with the repository's secret (401), decode the JSON as the
  receiver does, record the push durably with the very same
  ``request_sync`` (one group-committed Redis script call), and answer a
  small JSON.  No metrics, no log line, no provider abstraction, no field
  validation, no delivery id checks.

How far ``/hooks/<name>`` is from the floor is what the receiver's own code
costs; how far the floor is from the no-op is what reading, verifying,
parsing and an fsynced Redis write cost under gunicorn on this machine.  The
floor is a measuring stick, never a receiver: it is not registered unless
asked for, and it skips checks that ``/hooks/<name>`` must make.
"""

from __future__ import annotations

from flask import Flask, Response, request

from pullbridge import keys
from pullbridge.queueing import request_sync
from webhook.errors import json_bytes
from webhook.providers import github
from webhook.providers._signing import hex_signature_ok

_UNAUTHORIZED = b'{"error": "unauthorized"}'


def register(app: Flask) -> None:
    intake = app.extensions["pullbridge"]

    def noop():
        return "", 204

    def floor(name: str):
        repo = intake.config.repo(name)
        environ = request.environ
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        signature = environ.get("HTTP_X_HUB_SIGNATURE_256")
        if not hex_signature_ok(signature, intake.secret(repo), body, prefix="sha256="):
            return Response(_UNAUTHORIZED, 401, mimetype="application/json")
        sha = github.decode(body, with_paths=bool(repo.paths))["after"]  # as the receiver decodes it
        delivery = environ.get("HTTP_X_GITHUB_DELIVERY", "")
        queued = request_sync(intake.conn, intake.config, repo, sha, reason="bench floor",
                              delivery=delivery, dedup_key=keys.delivery(repo.name, delivery),
                              committer=intake.committer)
        return Response(json_bytes({"sha": sha, "job_id": queued.job_id}), 202, mimetype="application/json")

    app.add_url_rule("/bench/noop", "bench_noop", noop, methods=["POST", "GET"])
    app.add_url_rule("/bench/floor/<name>", "bench_floor", floor, methods=["POST"])
    for name in intake.config.repos_by_name:  # matched as cheaply as /hooks/<name> is (webhook.hooks)
        app.add_url_rule(f"/bench/floor/{name}", "bench_floor", floor, defaults={"name": name},
                         methods=["POST"])
