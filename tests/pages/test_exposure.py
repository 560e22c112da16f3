"""What hostile or secret text can and cannot do on the pages: Flask's test client against the
stack's Redis, with real sync records and real failed RQ jobs."""

from __future__ import annotations

import pytest

from tests.pages.conftest import WEBHOOK_SECRET, base_config, failed_job, save_record

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


def test_every_secret_the_configuration_names_is_masked_as_it_is_used(make_app, redis_conn, monkeypatch):
    """A value read from the environment is used without its surrounding whitespace (a trailing newline
    from a Secret mounted as an env var), so that is the form to mask; registry passwords and registry
    webhook secrets are secrets the configuration names too."""
    used = {"PB_TEST_STATUS_TOKEN": "ghs-status-token-51c0", "PB_TEST_REG_PASSWORD": "reg-password-93ad",
            "PB_TEST_REG_HOOK": "reg-hook-secret-e2b7"}
    for env, value in used.items():
        monkeypatch.setenv(env, value + "\n")
    monkeypatch.setenv("PB_TEST_REG_USER", "robot")
    data = base_config()
    data["repos"][0]["status"] = {"token_env": "PB_TEST_STATUS_TOKEN"}
    data["images"] = {"registries": [{"host": "registry.example.com", "username_env": "PB_TEST_REG_USER",
                                      "password_env": "PB_TEST_REG_PASSWORD"}],
                      "hooks": [{"name": "hub", "secret_env": "PB_TEST_REG_HOOK"}]}
    failed_job(redis_conn, "posting failed: " + " ".join(used.values()))
    page = text(make_app(data).test_client().get("/queue"))
    assert "posting failed: [secret] [secret] [secret]" in page
    for value in used.values():
        assert value not in page
