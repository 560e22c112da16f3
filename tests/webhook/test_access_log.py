"""gunicorn's access log (``GUNICORN_ACCESSLOG``), on the Procfile's real ``web`` server.

A registry hook may carry its secret in the query (``?token=``, Docker Hub's
only way), so an access log line names the path without the query.
"""

from __future__ import annotations

import requests

from tests.webhook.conftest import GENEROUS, running_web

TOKEN = "hub-token-6be1d0"


def test_an_access_log_line_names_the_path_without_the_query(tmp_path):
    with running_web(tmp_path, workers=1, extra_env={"GUNICORN_ACCESSLOG": "-"}) as (base, _, log):
        answer = requests.post(f"{base}/hooks/registry/hub?token={TOKEN}", data=b"{}", timeout=GENEROUS)
        assert answer.status_code == 404
    text = log.read_text()  # the server has stopped: every line is written
    assert '"POST /hooks/registry/hub HTTP/1.1" 404 ' in text, text[-2000:]
    assert TOKEN not in text, text[-2000:]
