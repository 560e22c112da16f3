"""The apps ``test_gunicorn_closing`` serves under the Procfile's web command, with the
worker's linger made long enough that no verdict there depends on how fast the machine is.

Those tests send a 16 MiB body after the server has answered and shut its side: the
server must read and drop it, not reset the connection.  A real client has
``LINGER_SECONDS`` (2 s) to send the rest; a test's client on a loaded machine may take
longer, and the reset that follows would say nothing about the server.  gunicorn loads
the app in each worker after the fork, so setting the worker module's constant here
changes the linger of that test server's workers only.  A linger ends as soon as the
client closes, so a long one costs a passing test nothing.  Only tests serve these.
"""

from __future__ import annotations

import webhook.gunicorn_worker
from tests.webhook.failing_app import app as failing
from webhook import create_app

__all__ = ["create_app", "failing"]  # served as lingering_apps:create_app() and lingering_apps:failing

webhook.gunicorn_worker.LINGER_SECONDS = 60.0
