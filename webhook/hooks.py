"""The blueprint serving ``POST /hooks/<name>``: timing, metrics and the log line
around ``Intake.receive`` (which holds the logic)."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request

from webhook import errors
from webhook.metrics import observe

bp = Blueprint("hooks", __name__)


@bp.post("/hooks/<name>")
def receive(name: str):
    intake = current_app.extensions["pullbridge"]
    started = time.perf_counter()
    log: dict = {"repo": name, "provider": "unknown"}
    outcome, status = "error", 500
    try:
        answer = intake.receive(name, request.environ, request.headers, log)
        outcome, status = answer.outcome, answer.status
        log.update(answer.log)
        response = jsonify(answer.body)
        response.status_code = answer.status
        return response
    except errors.HookError as exc:
        outcome, status = exc.code, exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        observe(log["provider"], outcome, elapsed)
        log.update(outcome=outcome, status=status, duration_ms=round(elapsed * 1000, 2))
        level = 20 if status < 400 else 30
        intake.logger.log(level, "webhook delivery", extra=log)
