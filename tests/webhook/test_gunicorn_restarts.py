"""The deliveries counter under the Procfile's real server while its workers come and go.

Each gunicorn worker keeps its counts in a file of its own (prometheus_client's
multiprocess mode) that outlives it: a worker restarted after ``max_requests``
or killed outright must leave every delivery it counted counted once, and the
total must never go back.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

import requests

from tests.webhook import payloads as P
from tests.webhook.conftest import GENEROUS, running_web, secret
from tests.webhook.test_gunicorn import deliveries

PUSHES = 30  # at least; more until the workers have been replaced (see below)


def counted(base: str) -> float:
    text = requests.get(base + "/metrics", headers={"Connection": "close"}, timeout=GENEROUS).text
    return sum(deliveries(text).values())


def workers_of(log) -> list[int]:
    master = int(re.search(r"Listening at: \S+ \((\d+)\)", log.read_text()).group(1))
    children = open(f"/proc/{master}/task/{master}/children").read().split()
    return [int(pid) for pid in children]


def test_deliveries_are_counted_once_and_never_go_back_as_workers_restart_or_are_killed(tmp_path):
    # every worker restarts after a few requests: the 30 pushes and the scrapes outlive many of them
    with running_web(tmp_path, workers=2, extra_env={"GUNICORN_CMD_ARGS": "--max-requests 4"}) as (base, _, log):
        # A worker past max_requests goes on accepting until its loop looks again (up to a second):
        # push until two replacements have booted, however fast the pushes go.
        pushes, give_up = 0, time.monotonic() + GENEROUS
        while pushes < PUSHES or (log.read_text().count("Booting worker") < 4 and time.monotonic() < give_up):
            body = json.dumps(P.github_push(after=P.sha(f"restart{pushes}"))).encode()
            headers = {**P.signed_headers("github", secret("PB_TEST_GITHUB_SECRET"), body), "Connection": "close"}
            assert requests.post(base + "/hooks/gh", data=body, headers=headers, timeout=GENEROUS).status_code == 202
            pushes += 1
        assert log.read_text().count("Booting worker") >= 4, "the workers were not replaced"
        deadline = time.monotonic() + GENEROUS  # each worker adds its tally within FLUSH_SECONDS, or as it exits
        seen = [counted(base)]
        while seen[-1] != pushes and time.monotonic() < deadline:
            time.sleep(0.05)
            seen.append(counted(base))
        assert seen[-1] == pushes

        for pid in workers_of(log):  # the tallies are flushed: killing every worker loses nothing
            os.kill(pid, signal.SIGKILL)
        for _ in range(10):
            seen.append(counted(base))
        assert seen == sorted(seen), f"the total went back: {seen}"
        assert seen[-1] == pushes
