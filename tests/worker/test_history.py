"""Sync records in Redis: full record per sync, capped summaries per repo, state hash."""

from __future__ import annotations

import json
import logging

from pullbridge import keys
from worker import history
from worker.apply import Change


def test_record_history_cap_and_state(redis_conn):
    for i in range(7):
        record = history.SyncRecord("app", "push", sha=f"{i:040x}")
        record.add([Change("ConfigMap/ns/a", "created", "a.yaml, doc 1"), Change("ConfigMap/ns/b", "unchanged")])
        record.phase("apply")
        record.result = "success"
        history.save(redis_conn, record, limit=5, applied_sha=record.sha)
    summaries = history.history(redis_conn, "app")
    assert len(summaries) == 5 and summaries[0]["sha"] == f"{6:040x}"
    assert summaries[0]["counts"] == {"created": 1, "configured": 0, "unchanged": 1, "deleted": 0, "skipped": 0}
    full = history.get_record(redis_conn, summaries[0]["id"])
    assert full["changes"][0] == {"object": "ConfigMap/ns/a", "action": "created", "source": "a.yaml, doc 1"}
    assert redis_conn.ttl(keys.sync_record(summaries[0]["id"])) > 0
    state = history.repo_state(redis_conn, "app")
    assert state["applied_sha"] == f"{6:040x}" and state["last_result"] == "success"


def test_failure_keeps_the_applied_sha(redis_conn):
    ok = history.SyncRecord("app", "push", sha="a" * 40, result="success")
    history.save(redis_conn, ok, applied_sha=ok.sha)
    bad = history.SyncRecord("app", "push", sha="b" * 40, result="failure", error="validation failed")
    history.save(redis_conn, bad)
    state = history.repo_state(redis_conn, "app")
    assert state["applied_sha"] == "a" * 40 and state["last_error"] == "validation failed"
    assert json.loads(redis_conn.lindex(keys.history("app"), 0))["error"] == "validation failed"


def test_the_sync_line_names_its_job_and_delivery(redis_conn, caplog):
    """The receiver's line names the delivery and its job; the sync's line names both too, so
    the delivery's id finds what became of it in the worker's log."""
    record = history.SyncRecord("app", "push", delivery="d-7f3a", job_id="sync-app-0123456789ab",
                                sha="c" * 40, result="failure", error="validation failed")
    with caplog.at_level(logging.INFO, logger="pullbridge.sync"):
        history.save(redis_conn, record)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"sync {record.id} ")]
    assert " job=sync-app-0123456789ab delivery=d-7f3a " in line
    assert " result=failure " in line and line.endswith("error=validation failed")
