"""The blueprint serving ``POST /hooks/<name>``: timing, metrics and the log line
around ``Intake.receive`` (which holds the logic)."""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, current_app, request

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
        # json.dumps + Response: a third of jsonify's cost on the hot path
        return Response(json.dumps(answer.body), answer.status, mimetype="application/json")
    except errors.HookError as exc:
        outcome, status = exc.code, exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        observe(log["provider"], outcome, elapsed)
        log.update(outcome=outcome, status=status, duration_ms=round(elapsed * 1000, 2))
        level = 20 if status < 400 else 30
        intake.logger.log(level, "webhook delivery", extra=log)
