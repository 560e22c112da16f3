"""The view serving ``POST /hooks/<name>``: timing, metrics and the log line
around ``Intake.receive`` (which holds the logic).

Why a view bound to the app's ``Intake`` by ``register`` and not a
blueprint's view finding it through ``current_app``: this is the route
anyone on the internet can flood with forged deliveries, and issue 3 wants a
401 to cost at most a tenth more than a no-op route.  Measured in-process
(Flask 3, 15 rounds of 5,000 requests), a blueprint's route cost 1.4-2.2 µs
more per request than the app's own (Flask looks up the blueprint chain when
it starts, finishes and tears down each request), and the ``current_app``
proxy another 1.2 µs: together a tenth of what a forged delivery cost beyond
the no-op (102 against 69 µs per request in-process).

For the same reason each configured repository gets a static rule,
``/hooks/<its name>``, beside the ``/hooks/<name>`` rule that answers the
names nobody configured (404): werkzeug matches a static path without
running a converter and its regular expression (3.1 against 6.3 µs per
match, measured).  And a forged delivery's 401 is ``Intake.receive``'s
answer ``UNAUTHORIZED``, built once and returned, not an exception raised
through two frames and caught.  Together, in-process (15 rounds of 5,000
forged 8 KB deliveries): 97.4 -> 88.5 µs per request, against 69 µs for the
no-op route and 80-85 µs for the bench's floor route (``webhook.bench_routes``,
which gets static rules too).

Every delivery is counted in the metrics.  Every delivery that got past the
signature check is logged, and so is every error on our side (5xx: an
unreadable secret must reach the operator).  Unauthenticated noise, every
other answer given before the signature was checked (401, 404, an oversized
or malformed body), is logged at most once a second per repository name (``webhook.noise``), the
line saying how many were left out since.  Such a line names
the delivery id the request claims (``claimed_delivery``), to find it in the
host's delivery log.  A delivery is past
the check once ``Intake.receive`` put its ``delivery`` in the line's fields.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, request

from webhook import errors
from webhook.errors import json_bytes
from webhook.events import WsgiHeaders
from webhook.intake import claimed_delivery
from webhook.logs import log_fields
from webhook.metrics import observe
from webhook.noise import noise_to_log

ENDPOINT = "hooks_receive"  # no dot: Flask would take "hooks" for a blueprint and look it up


def register(app: Flask, intake) -> None:
    """Serve ``POST /hooks/<name>`` from ``app`` with ``intake`` (its ``Intake``)."""

    def receive(name: str):
        return receive_delivery(intake, name)

    app.add_url_rule("/hooks/<name>", ENDPOINT, receive, methods=["POST"])
    for name in intake.config.repos_by_name:  # a static rule per repository: matched without the converter
        app.add_url_rule(f"/hooks/{name}", ENDPOINT, receive, defaults={"name": name}, methods=["POST"])


def receive_delivery(intake, name: str) -> Response:
    started = time.perf_counter()
    log: dict = {"repo": name, "provider": "unknown"}
    outcome, status = "error", 500
    headers = WsgiHeaders(request.environ)
    try:
        answer = intake.receive(name, headers.environ, headers, log)
        outcome, status = answer.outcome, answer.status
        log.update(answer.log)
        return Response(answer.encoded or json_bytes(answer.body), status, mimetype="application/json")
    except errors.HookError as exc:
        outcome, status = exc.code, exc.status
        if exc.log_detail:
            log["error"] = exc.log_detail
        return errors.error_response(exc)
    finally:
        elapsed = time.perf_counter() - started
        observe(log["provider"], outcome, elapsed)
        if "delivery" in log or status >= 500:  # verified, or our fault: every line is written
            _log_delivery(intake, log, outcome, status, elapsed)
        elif (left_out := noise_to_log(name)) is not None:
            log["left_out"] = left_out
            log["delivery"] = claimed_delivery(log["provider"], headers)
            _log_delivery(intake, log, outcome, status, elapsed)


def _log_delivery(intake, log: dict, outcome: str, status: int, elapsed: float) -> None:
    """The delivery's line, put together only when it is written (most 401s are not)."""
    log.update(outcome=outcome, status=status, duration_ms=round(elapsed * 1000, 2))
    log_fields(intake.logger, logging.INFO if status < 400 else logging.WARNING, "webhook delivery", log)
