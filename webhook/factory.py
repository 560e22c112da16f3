"""The app factory of the Flask receiver: ``create_app(config=None)``, which
gunicorn calls (see the Procfile) as ``webhook:create_app()``.  The configuration comes from the argument or from
``$PULLBRIDGE_CONFIG``; Redis from ``app.config["REDIS_URL"]`` (when the
caller sets it via ``redis_url=``), else ``$REDIS_URL``.  Everything the hot
path needs (configuration, a pooled Redis client, secrets) is set up once
per process here, never per request.

``PULLBRIDGE_BENCH_NOOP=1`` adds ``POST /bench/noop``, a route that does
nothing, and ``POST /bench/floor/<name>``, the least a receiver can do
(``webhook.bench_routes``), so ``bench/intake`` can measure both ends of its
scale under the very same gunicorn settings.  They are off unless asked for.
"""

from __future__ import annotations

import logging
import os

from flask import Flask, jsonify
from redis import Redis

from pullbridge.redis_url import connect
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError
from redis.retry import Retry
from werkzeug.exceptions import HTTPException

from pullbridge.config import Config, load_config
from pullbridge.logformat import LOG_FORMAT_ENV
from webhook import errors
from webhook.logs import setup_logging

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
BENCH_NOOP_ENV = "PULLBRIDGE_BENCH_NOOP"


def make_redis(url: str) -> Redis:
    """A pooled, thread-safe client that fails fast: a webhook must not hang on a dead Redis.

    A command is retried once on a fresh connection when its connection broke
    (Redis restarted, or closed an idle one), never when Redis was too slow
    to answer: that retry would double the wait on a slow Redis and could run
    a write twice."""
    return connect(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1, supported_errors=(ConnectionError,)),
    )


def create_app(config: Config | None = None, *, redis_url: str | None = None,
               bench_noop: bool | None = None) -> Flask:
    from webhook.intake import Intake
    from webhook import health, hooks, pages, registry_hooks

    app = Flask(__name__)
    app.json.sort_keys = False
    config = config if config is not None else load_config()
    url = redis_url or app.config.get("REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    app.config["REDIS_URL"] = url
    logger = setup_logging(os.environ.get("PULLBRIDGE_LOG_LEVEL", "INFO"), os.environ.get(LOG_FORMAT_ENV, "json"))
    intake = app.extensions["pullbridge"] = Intake(config, make_redis(url), logger)
    hooks.register(app, intake)
    app.register_blueprint(health.bp)
    pages.register(app)
    registry_hooks.register(app)
    if bench_noop if bench_noop is not None else os.environ.get(BENCH_NOOP_ENV) == "1":
        from webhook import bench_routes

        bench_routes.register(app)
    register_error_handlers(app, logger)
    return app


def register_error_handlers(app: Flask, logger: logging.Logger) -> None:
    @app.errorhandler(errors.HookError)
    def hook_error(exc: errors.HookError):
        return errors.error_response(exc)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response = jsonify(error=(exc.name or "error").lower().replace(" ", "_"),
                           message=exc.description)
        response.status_code = exc.code or 500
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        logger.exception("unexpected error", extra={"error": type(exc).__name__})
        response = jsonify(error="internal", message="internal error; it was logged")
        response.status_code = 500
        return response
