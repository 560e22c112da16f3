"""Structured (one JSON object per line) logs for the receiver.

Why: a delivery is traced through the logs by its id (``delivery``), and
log shippers parse JSON without guessing.  Only fields passed explicitly in
``extra`` are written: no request headers or bodies, so no secret or
signature can leak into a log line.
"""

from __future__ import annotations

import json
import logging
import sys
import time

LOGGER_NAME = "pullbridge.webhook"
FIELDS = ("delivery", "repo", "provider", "event", "outcome", "status", "ref", "sha", "job_id",
          "duration_ms", "reason", "error", "left_out")


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
        entry = {
            "ts": self._timestamp(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (test capture swaps it)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(level: str | int = "INFO") -> logging.Logger:
    """Give the receiver's logger one JSON handler on stderr (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(getattr(h, "_pullbridge", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        handler._pullbridge = True
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    return logger
