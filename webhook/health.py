"""``/healthz`` (the process answers), ``/readyz`` (a push can be queued) and ``/metrics``.

Ready means Redis takes a write, not only that it answers: a Redis that
answers PING but refuses writes (a replica after a failover, ``MISCONF``
after a failed snapshot, ``OOM`` at ``maxmemory``, ``NOREPLICAS``) makes
every push a 503, so ``/readyz`` writes a small key with a short expiry.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, jsonify
from redis.exceptions import RedisError

from pullbridge import keys
from webhook.metrics import exposition

READYZ_TTL = 60  # seconds; the key only ever says when a receiver last found Redis writable

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    intake = current_app.extensions["pullbridge"]
    try:
        intake.conn.set(keys.READYZ, repr(time.time()), ex=READYZ_TTL)
    except RedisError as exc:
        response = jsonify(status="unavailable", redis=type(exc).__name__)
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    return jsonify(status="ok", redis="ok")


@bp.get("/metrics")
def metrics():
    intake = current_app.extensions["pullbridge"]
    data, content_type = exposition(intake.conn, intake.config)
    return Response(data, content_type=content_type)
