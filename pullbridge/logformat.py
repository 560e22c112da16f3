"""The shape of every Pullbridge process's log lines: one JSON object per line on stderr.

Why it exists: the Procfile's three processes (``web``, ``worker``,
``scheduler``) are shipped to the same log store, which parses JSON without
guessing.  Each line is ``ts`` (UTC, milliseconds), ``level``, ``logger``,
``msg``, then those of ``FIELDS`` that the line was given (``extra``: no
other attribute of a record is written, so nothing that was not meant for a
log, such as a job's arguments, ends up in one), and ``exc``, a traceback.

``PULLBRIDGE_LOG_FORMAT=text`` gives the same lines as text for a developer
at a terminal: ``ts LEVEL logger: msg key=value ...``, a traceback after it.

The receiver's handler and its writer thread are ``webhook.logs``; the
worker and the scheduler send every logger's lines (their own, RQ's, Python
warnings) through ``setup_process_logging``.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import orjson

LOG_FORMAT_ENV = "PULLBRIDGE_LOG_FORMAT"
LOG_FORMATS = ("json", "text")
FIELDS = ("delivery", "repo", "provider", "event", "outcome", "status", "ref", "sha", "job_id",
          "duration_ms", "reason", "error", "left_out")


def log_format(value: str) -> str:
    """'json' or 'text' in any case -> that name; ValueError otherwise (an argparse ``type``:
    the process exits 2 naming the value)."""
    name = str(value).strip().lower()
    if name not in LOG_FORMATS:
        raise ValueError(f"unknown log format {value!r} (one of {', '.join(LOG_FORMATS)})")
    return name


class JsonFormatter(logging.Formatter):
    _cached: tuple[int, str] = (-1, "")  # (second, its text); one tuple, so threads see a pair

    def _timestamp(self, created: float, msecs: float) -> str:
        second = int(created)
        cached = self._cached
        if cached[0] != second:  # strftime once a second, not once a line
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._cached = cached
        return f"{cached[1]}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        exc = None
        if record.exc_info:
            exc = self.formatException(record.exc_info)
        elif record.exc_text:  # formatted already (the writer thread's records, RQ's job failures)
            exc = record.exc_text
        return self.line(record.created, record.levelname, record.name, record.getMessage(),
                         record.__dict__, exc)

    def entry(self, created: float, levelname: str, name: str, msg: str, fields: dict,
              exc: str | None = None) -> dict:
        """A line's content: time, level, logger, message, then those of FIELDS that are set."""
        entry = {
            "ts": self._timestamp(created, (created - int(created)) * 1000),
            "level": levelname.lower(),
            "logger": name,
            "msg": msg,
        }
        for key in FIELDS:
            value = fields.get(key)
            if value is not None:
                entry[key] = value
        if exc:
            entry["exc"] = exc
        return entry

    def line(self, created: float, levelname: str, name: str, msg: str, fields: dict,
             exc: str | None = None) -> str:
        """One JSON line of ``entry``."""
        entry = self.entry(created, levelname, name, msg, fields, exc)
        try:
            return orjson.dumps(entry, default=str).decode()  # a fifth of json.dumps' time
        except TypeError:  # e.g. a lone surrogate in a str, which orjson refuses
            return json.dumps(entry, default=str)


class TextFormatter(JsonFormatter):
    """The same lines for a terminal: ``ts LEVEL logger: msg key=value ...``, a traceback below."""

    def line(self, created: float, levelname: str, name: str, msg: str, fields: dict,
             exc: str | None = None) -> str:
        entry = self.entry(created, levelname, name, msg, fields)
        known = "".join(f" {key}={entry[key]}" for key in FIELDS if key in entry)
        text = f"{entry['ts']} {levelname} {name}: {msg}{known}"
        return f"{text}\n{exc}" if exc else text


def make_formatter(name: str = "json") -> JsonFormatter:
    """The formatter of a ``log_format`` name."""
    return TextFormatter() if log_format(name) == "text" else JsonFormatter()


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (test capture swaps it)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


RQ_LOGGERS = "rq."


def traceback_out_of_message(record: logging.LogRecord) -> bool:
    """RQ's line for a job that raised ends its message with the traceback (``'... (%s)\\n%s'``,
    the traceback last): move it to the line's ``exc``, where every other traceback is, so
    ``msg`` is the one line naming the worker, the job and its function."""
    if (record.name.startswith(RQ_LOGGERS) and isinstance(record.msg, str) and record.msg.endswith("\n%s")
            and isinstance(record.args, tuple) and record.args and not record.exc_info):
        record.msg, record.exc_text, record.args = record.msg[:-3], str(record.args[-1]), record.args[:-1]
    return True


def setup_process_logging(level: str, fmt: str = "json") -> None:
    """Every logger's lines in this process (its own, RQ's, Python warnings), at ``level`` and
    up, through one handler on stderr in format ``fmt``.

    RQ adds handlers of its own (plain text, INFO on stdout) to ``rq.worker``,
    ``rq.scheduler`` and ``rq.cron`` only when no logger above them has one:
    with this handler on the root logger it sets their level and nothing else.
    """
    handler = StderrHandler()
    handler.setFormatter(make_formatter(fmt))
    handler.addFilter(traceback_out_of_message)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
