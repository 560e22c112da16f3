"""The log line shapes every process shares (``pullbridge.logformat``): JSON, and text for a terminal."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from pullbridge import logformat


def record(msg: str, *args, exc: bool = False, **fields) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("math domain error")
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.LogRecord("pullbridge.sync", logging.WARNING, __file__, 1, msg, args, exc_info)
    made.__dict__.update(fields)
    made.created = 1_800_000_000.25
    return made


def test_json_and_text_lines_say_the_same():
    made = record("sync %s failed", "app", exc=True, repo="app", job_id="sync-app-1", arguments=["secret"])
    entry = json.loads(logformat.make_formatter("json").format(made))
    assert list(entry) == ["ts", "level", "logger", "msg", "repo", "job_id", "exc"]  # no other attribute
    assert entry["ts"] == "2027-01-15T08:00:00.250Z" and entry["level"] == "warning"
    assert entry["msg"] == "sync app failed" and entry["exc"].endswith("ValueError: math domain error")
    first, *trace = logformat.make_formatter("TEXT").format(made).splitlines()
    assert first == "2027-01-15T08:00:00.250Z WARNING pullbridge.sync: sync app failed repo=app job_id=sync-app-1"
    assert trace[0].startswith("Traceback") and trace[-1] == "ValueError: math domain error"
    with pytest.raises(ValueError, match="unknown log format 'yaml'"):
        logformat.make_formatter("yaml")


def test_a_traceback_rq_puts_in_its_message_goes_to_exc():
    failed = record("Worker %s: job %s: exception raised while executing (%s)\n%s", "w", "j1", "math.sqrt",
                    "Traceback (most recent call last):\nValueError: math domain error", job_id="j1")
    failed.name = "rq.worker"
    assert logformat.traceback_out_of_message(failed)
    entry = json.loads(logformat.JsonFormatter().format(failed))
    assert entry["msg"] == "Worker w: job j1: exception raised while executing (math.sqrt)"
    assert entry["exc"] == "Traceback (most recent call last):\nValueError: math domain error"
    own = record("a message of ours\n%s", "ending in an argument")  # not RQ's: left as it is
    logformat.traceback_out_of_message(own)
    assert json.loads(logformat.JsonFormatter().format(own))["msg"] == "a message of ours\nending in an argument"
