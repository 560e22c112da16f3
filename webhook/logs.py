"""Structured (one JSON object per line, ``pullbridge.logformat``) logs for the receiver.

Why: a delivery is traced through the logs by its id (``delivery``), and
log shippers parse JSON without guessing.  Only fields passed explicitly in
``extra`` are written: no request headers or bodies, so no secret or
signature can leak into a log line.

Under gunicorn each worker hands its lines to a writer of its own
(``start_writer``: a thread, which gunicorn's gevent worker makes a
greenlet): the request only builds the record and puts it on a queue, and
the writer formats whatever has gathered and writes it with one ``write``.
The line per delivery skips even the record (``log_fields``): its fields
are queued as they are and formatted into the same line by the writer.
Written from the request, every line cost a system call (and, with OS
threads, a wait for the handler's lock) on the request's path.  The writer
takes the lines of every other logger too (the root logger's: WARNING and
up, from code such as ``worker.metrics`` that the web process runs), which
gunicorn, configuring no root logger, left to Python's last-resort handler:
bare messages without time or level.  ``stop_writer`` (gunicorn's
``worker_exit``) writes what is still queued; lines queued in a worker that
is killed outright (SIGKILL) are lost, as with any buffered log.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

from pullbridge.config_types import log_level
from pullbridge.logformat import StderrHandler, make_formatter

LOGGER_NAME = "pullbridge.webhook"


def setup_logging(level: str | int = "INFO", fmt: str = "json") -> logging.Logger:
    """Give the receiver's logger one handler on stderr, its lines in format ``fmt``
    (``pullbridge.logformat``; the first call's format stays: idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(getattr(h, "_pullbridge", False) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(make_formatter(fmt))
        handler._pullbridge = True
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(log_level(level) if isinstance(level, str) else level)
    return logger


WRITER_BATCH = 512  # lines per write at most


class _QueueHandler(logging.Handler):
    """Puts records on the writer's queue; nothing is formatted or written here.

    The record already holds its own copy of the ``extra`` fields and the
    formatter reads nothing else, so formatting later gives the same line.
    """

    def __init__(self, records: queue.SimpleQueue):
        super().__init__()
        self.records = records

    def handle(self, record: logging.LogRecord) -> bool:  # no handler lock: the queue is thread-safe
        if record.args:  # arguments may change after this call: fix the message now
            record.msg, record.args = record.getMessage(), None
        if record.exc_info:  # a traceback's frames do not outlive the request: format it now
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.put(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)


class LogWriter:
    """One thread that formats queued records and writes them, many per ``write``."""

    _STOP = object()

    def __init__(self, handler: logging.Handler):
        self.handler = handler  # the JSON handler the lines were written through before
        self.records: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="pullbridge-log-writer", daemon=True)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self.records.get()]
            while len(batch) < WRITER_BATCH:
                try:
                    batch.append(self.records.get_nowait())
                except queue.Empty:
                    break
            if any(record is self._STOP for record in batch):
                # A line logged just as the handler was swapped back may come after
                # the stop mark: it is written too, then the writer ends.
                stopping = True
                batch = [record for record in batch if record is not self._STOP]
            self._write(batch)

    def _write(self, batch: list) -> None:
        if not batch:
            return
        lines = []
        for record in batch:
            try:
                if type(record) is _Fields:
                    lines.append(self.handler.formatter.line(*record))
                else:
                    lines.append(self.handler.format(record))
            except Exception:  # noqa: BLE001 -- one bad record must not stop the writer
                lines.append(json.dumps({"level": "error", "logger": LOGGER_NAME,
                                         "msg": "a log record could not be formatted"}))
        try:
            stream = self.handler.stream
            stream.write("\n".join(lines) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 -- as logging does: a broken stderr must not kill the thread
            pass

    def stop(self, timeout: float = 5.0) -> None:
        self.records.put(self._STOP)
        self.thread.join(timeout)


_writer: LogWriter | None = None


class _Fields(tuple):
    """A line queued without a LogRecord: (created, level name, logger name, msg, fields)."""


def log_fields(logger: logging.Logger, level: int, msg: str, fields: dict) -> None:
    """``logger.log(level, msg, extra=fields)``, for the receiver's line per delivery.

    With the writer running, the fields go on its queue as they are and the
    writer formats them into the line a LogRecord would give.  That skips
    what a logging call does on the request's path: build a LogRecord (with
    its process, thread and file name lookups), find the caller's frame and
    walk the handler chain, which under ``bench/intake``'s push load cost
    about 25 us of CPU per line.  ``fields`` must not change afterwards.
    Without the writer (tests, the dev server) it is the logging call.
    """
    writer = _writer
    if writer is None or logger.name != LOGGER_NAME:
        logger.log(level, msg, extra=fields)
    elif logger.isEnabledFor(level):
        writer.records.put(_Fields((time.time(), logging.getLevelName(level), LOGGER_NAME, msg, fields)))


def start_writer() -> LogWriter:
    """Route the receiver's log lines, and the root logger's, through a writer thread (idempotent)."""
    global _writer
    logger = setup_logging(logging.getLogger(LOGGER_NAME).level or "INFO")
    if _writer is None:
        direct = next(h for h in logger.handlers if getattr(h, "_pullbridge", False))
        writer = LogWriter(direct)
        queued = _QueueHandler(writer.records)
        queued._pullbridge = True
        queued._direct = direct
        logger.removeHandler(direct)
        logger.addHandler(queued)
        logging.getLogger().addHandler(queued)
        writer.thread.start()
        _writer = writer
    return _writer


def stop_writer() -> None:
    """Write what is queued and go back to writing from the logging thread (the root logger
    to Python's default)."""
    global _writer
    writer, _writer = _writer, None
    if writer is None:
        return
    logger, root = logging.getLogger(LOGGER_NAME), logging.getLogger()
    for handler in list(logger.handlers):
        if getattr(handler, "_direct", None) is writer.handler:
            logger.removeHandler(handler)
            logger.addHandler(writer.handler)
    for handler in list(root.handlers):
        if getattr(handler, "_direct", None) is writer.handler:
            root.removeHandler(handler)
    writer.stop()
