"""The receiver's log lines: JSON, and written by a writer of their own under gunicorn."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from pullbridge import logformat
from webhook import logs


@pytest.fixture
def logger():
    logger = logs.setup_logging("INFO")
    yield logger
    logs.stop_writer()


def lines_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_line_is_written_at_once_without_the_writer(logger, capfd):
    capfd.readouterr()
    logger.info("webhook delivery", extra={"delivery": "d-1", "repo": "app", "status": 202})
    [line] = lines_of(capfd.readouterr().err)
    assert line["delivery"] == "d-1" and line["repo"] == "app" and line["status"] == 202
    assert line["msg"] == "webhook delivery" and line["level"] == "info"


def test_the_writer_writes_every_line_in_order_and_all_of_them_when_stopped(logger, capfd):
    logs.start_writer()
    assert logs.start_writer() is logs._writer  # idempotent: one writer, one handler
    assert sum(getattr(h, "_pullbridge", False) for h in logger.handlers) == 1
    capfd.readouterr()

    def burst(n: int) -> None:
        for i in range(300):
            logger.info("webhook delivery", extra={"delivery": f"t{n}-{i}", "status": 202})

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logs.stop_writer()  # returns once everything queued is written
    lines = lines_of(capfd.readouterr().err)
    assert len(lines) == 8 * 300
    for n in range(8):
        own = [line["delivery"] for line in lines if line["delivery"].startswith(f"t{n}-")]
        assert own == [f"t{n}-{i}" for i in range(300)]
    # stopped: lines are written directly again
    logger.info("after", extra={"delivery": "after-1"})
    assert [line["delivery"] for line in lines_of(capfd.readouterr().err)] == ["after-1"]


def test_a_queued_line_says_what_was_true_when_it_was_logged(logger, capfd):
    logs.start_writer()
    fields = {"delivery": "d-2", "outcome": "queued"}
    items = ["first"]
    logger.info("items: %s", items, extra=fields)
    fields["outcome"] = "changed later"
    items.append("added later")
    try:
        raise ValueError("the reason")
    except ValueError:
        logger.exception("failed", extra={"delivery": "d-3"})
    logs.stop_writer()
    queued, failed = lines_of(capfd.readouterr().err)
    assert queued["outcome"] == "queued" and queued["msg"] == "items: ['first']"
    assert failed["level"] == "error" and "ValueError: the reason" in failed["exc"]


def test_a_record_that_cannot_be_formatted_does_not_stop_the_writer(logger, capfd):
    writer = logs.start_writer()

    class Broken(logging.Formatter):
        def format(self, record):
            if record.__dict__.get("delivery") == "bad":
                raise RuntimeError("cannot")
            return super().format(record)

    good = writer.handler.formatter
    writer.handler.setFormatter(Broken())
    try:
        logger.info("one", extra={"delivery": "bad"})
        logger.info("two", extra={"delivery": "good"})
        logs.stop_writer()
    finally:
        writer.handler.setFormatter(good)
    err = capfd.readouterr().err
    assert "a log record could not be formatted" in err and "two" in err


def test_fields_that_orjson_refuses_are_still_written(logger, capfd):
    capfd.readouterr()
    logger.info("odd", extra={"delivery": "d-4", "reason": "lone \ud800 surrogate"})
    [line] = lines_of(capfd.readouterr().err)
    assert line["delivery"] == "d-4" and line["reason"].startswith("lone")


def test_a_line_queued_after_the_stop_mark_is_written_and_the_writer_still_ends(capfd):
    handler = logformat.StderrHandler()
    handler.setFormatter(logformat.JsonFormatter())
    writer = logs.LogWriter(handler)
    logger = logging.getLogger("test-writer")

    def record(delivery: str) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.INFO, __file__, 1, "line", None, None,
                                 extra={"delivery": delivery})

    capfd.readouterr()
    writer.records.put(record("before"))
    writer.records.put(writer._STOP)
    writer.records.put(record("after"))  # a logging call that raced the swap back
    writer.thread.start()
    writer.thread.join(10)
    assert not writer.thread.is_alive()
    assert [line["delivery"] for line in lines_of(capfd.readouterr().err)] == ["before", "after"]


@pytest.mark.parametrize("with_writer", [True, False])
def test_log_fields_writes_the_line_a_logging_call_writes(logger, capfd, with_writer):
    fields = {"delivery": "d-7", "repo": "app", "provider": "github", "status": 401, "left_out": 3,
              "duration_ms": 0.25, "headers": "never written: not a known field"}
    if with_writer:
        logs.start_writer()
    capfd.readouterr()
    logs.log_fields(logger, logging.WARNING, "webhook delivery", dict(fields))
    logger.warning("webhook delivery", extra=dict(fields))
    logs.log_fields(logger, logging.DEBUG, "below the level", dict(fields))  # filtered like logging
    logs.stop_writer()
    fast, usual = lines_of(capfd.readouterr().err)
    assert fast.pop("ts")[:16] == usual.pop("ts")[:16]  # the same minute; everything else is equal
    assert fast == usual
    assert fast["level"] == "warning" and fast["left_out"] == 3 and "headers" not in fast
