"""``/healthz`` (the process answers), ``/readyz`` (Redis answers) and ``/metrics``."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from redis.exceptions import RedisError

from webhook.metrics import exposition

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    intake = current_app.extensions["pullbridge"]
    try:
        intake.conn.ping()
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
