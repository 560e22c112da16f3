"""A WSGI app answering with the pid of the worker that served the request, for tests of how
gunicorn's workers share connections (``webhook.accept_balance``).  Only tests serve it."""

from __future__ import annotations

import os


def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
