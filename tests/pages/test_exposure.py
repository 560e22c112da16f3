"""What hostile or secret text can and cannot do on the pages: Flask's test client against the
stack's Redis, with real sync records and real failed RQ jobs."""

from __future__ import annotations

import pytest

from tests.pages.conftest import WEBHOOK_SECRET, failed_job, save_record

pytestmark = pytest.mark.stack


def text(answer) -> str:
    return answer.data.decode()


def test_a_secret_where_a_long_text_is_cut_is_masked_before_the_cut(client, redis_conn):
    """Cutting first would leave the secret's first characters, which no longer match it."""
    def straddling(limit: int, lead: str) -> str:  # the secret begins a few characters before ``limit``
        return lead + "x" * (limit - len(lead) - 8) + WEBHOOK_SECRET + " and more " + "y" * 400

    record = save_record(redis_conn, changes=[{"object": "ConfigMap/shop/conf", "action": "configured",
                                               "diffs": [{"field": "data.url", "live": straddling(300, "url "),
                                                          "declared": straddling(300, "url ")}]}])
    save_record(redis_conn, result="failure", error=straddling(600, "validation failed: "))
    for path in ("/", f"/syncs/{record.id}"):
        page = text(client.get(path))
        assert WEBHOOK_SECRET[:6] not in page, path
        assert "y" * 400 not in page, path  # cut all the same


def test_a_crafted_link_to_the_queue_page_puts_no_words_on_it(client, redis_conn):
    job = failed_job(redis_conn, "stuck")
    lure = "x is queued again. Your session expired: log in again at https://evil.example/login"
    page = text(client.get("/queue", query_string={"done": "retried", "job": lure}))
    assert "Your session expired" not in page and 'id="notice"' not in page
    page = text(client.get("/queue", query_string={"done": "deleted", "job": job.id}))
    assert f"Job <code>{job.id}</code> was deleted." in page
