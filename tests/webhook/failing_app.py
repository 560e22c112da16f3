"""A WSGI app that raises instead of answering, for gunicorn's own 500 against the Procfile's server.

``POST /fail`` raises before reading its body (as a bug in the receiver
would); every other request is answered 200 (``/readyz`` too, so
``running_web`` sees the server up).  Only tests serve it.
"""

from __future__ import annotations


def app(environ, start_response):
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("failed before reading the body")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "15")])
    return [b'{"status":"ok"}']
