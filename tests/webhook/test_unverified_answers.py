"""Answers given before a delivery is verified, end to end through Flask against a real Redis.

Anyone can cause them (an unknown name, an oversized or unreadable body, a secret we
cannot read), so they are logged at most once a second per name, each naming the delivery
the request claims and counted under the repository's provider, and they tell the caller
nothing about how the receiver is set up.
"""

from __future__ import annotations

import io
import json

import pytest

from tests.webhook import payloads as P
from tests.webhook.helpers import post


def test_body_over_the_cap_is_413(client, config):
    cap = config.server.max_body_bytes
    payload = P.github_push(pad_to=cap + 1000)
    response = post(client, "gh", payload)
    assert response.status_code == 413 and response.json["limit"] == cap


def test_chunked_body_over_the_cap_is_413_without_reading_the_rest(app, config):
    cap = config.server.max_body_bytes

    class Endless(io.RawIOBase):
        served = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            n = len(buffer)
            buffer[:n] = b"x" * n
            Endless.served += n
            return n

    environ = {"wsgi.input": Endless(), "wsgi.input_terminated": True, "CONTENT_LENGTH": ""}
    response = app.test_client().post("/hooks/gh", environ_overrides=environ,
                                      headers={"Transfer-Encoding": "chunked"})
    assert response.status_code == 413
    assert Endless.served <= cap + 64 * 1024


def test_unauthenticated_noise_is_logged_at_most_once_a_second(client, capfd):
    import webhook.noise

    webhook.noise.forget()
    capfd.readouterr()
    for _ in range(5):
        assert client.post("/hooks/gh", data=b"{}").status_code == 401
    lines = [json.loads(l) for l in capfd.readouterr().err.splitlines() if l.startswith("{")]
    assert [l["left_out"] for l in lines if l.get("status") == 401] == [0]
    webhook.noise.seen_long_ago("gh")  # a while later
    assert client.post("/hooks/gh", data=b"{}").status_code == 401
    lines = [json.loads(l) for l in capfd.readouterr().err.splitlines() if l.startswith("{")]
    assert [l["left_out"] for l in lines if l.get("status") == 401] == [4]
    text = client.get("/metrics").get_data(as_text=True)
    assert 'outcome="unauthorized",provider="github"}' in text  # every one is still counted


def test_answers_given_before_the_signature_check_are_noise_too(client, capfd):
    """An oversized or malformed body is refused before the signature is checked, so anyone
    can send a flood of them: logged at most once a second, like forged signatures."""
    import webhook.noise

    webhook.noise.forget()
    capfd.readouterr()
    for raw, status in (("99999999999", 413), ("12a", 400)) * 3:
        response = client.post("/hooks/gh", data=b"{}", environ_overrides={"CONTENT_LENGTH": raw})
        assert response.status_code == status
    lines = [json.loads(l) for l in capfd.readouterr().err.splitlines() if l.startswith("{")]
    assert [(l["status"], l["left_out"]) for l in lines if "status" in l] == [(413, 0)]
    text = client.get("/metrics").get_data(as_text=True)
    assert 'outcome="bad_payload",provider="github"}' in text  # every one is still counted


def test_a_413_is_counted_and_logged_under_its_provider_however_the_body_came(app, config, capfd):
    """Announced by Content-Length (refused before reading) or chunked (refused at the cap),
    a 413 is the repository's provider's, and its line names the delivery the request claims."""
    import webhook.noise
    from webhook import metrics

    cap = config.server.max_body_bytes
    before = metrics.DELIVERIES.labels("github", "payload_too_large")._value.get()
    headers = {"X-GitHub-Event": "push"}
    announced = {"CONTENT_LENGTH": str(cap + 1)}
    chunked = {"wsgi.input": io.BytesIO(b"x" * (cap + 10)), "wsgi.input_terminated": True, "CONTENT_LENGTH": ""}
    for n, environ in enumerate((announced, chunked)):
        webhook.noise.forget()  # each line is the first for the name: it is written
        capfd.readouterr()
        response = app.test_client().post("/hooks/gh", data=b"{}", environ_overrides=environ,
                                          headers={**headers, "X-GitHub-Delivery": f"big-{n}"})
        assert response.status_code == 413
        [line] = [json.loads(l) for l in capfd.readouterr().err.splitlines() if l.startswith("{")]
        assert (line["provider"], line["delivery"]) == ("github", f"big-{n}")
    assert metrics.DELIVERIES.labels("github", "payload_too_large")._value.get() == before + 2


def test_an_error_on_our_side_is_logged_every_time_even_before_the_signature_check(client, capfd,
                                                                                  monkeypatch):
    """An unreadable webhook secret is the operator's to fix: not rate-limited with the noise."""
    import webhook.noise

    monkeypatch.delenv("PB_TEST_GITHUB_SECRET")
    webhook.noise.forget()
    capfd.readouterr()
    for _ in range(3):
        assert client.post("/hooks/gh", data=b"{}").status_code == 500
    lines = [json.loads(l) for l in capfd.readouterr().err.splitlines() if l.startswith("{")]
    assert [(l["status"], l["outcome"]) for l in lines if "status" in l] == [(500, "misconfigured")] * 3


@pytest.mark.parametrize("where", ["file", "env"])
def test_an_unreadable_secret_is_named_in_the_log_but_never_to_the_caller(config, redis_conn, tmp_path, capfd,
                                                                         monkeypatch, where):
    """Anyone can make the receiver read a repository's secret (an unsigned request does):
    the 500 names the repository, and only the log says where its secret is kept."""
    from pullbridge.config import parse_config
    from tests.webhook.conftest import CONFIG, repo
    from webhook import create_app

    missing = tmp_path / "secrets" / "hook.token"
    entry = repo("gh-hidden", "github", "PB_TEST_HIDDEN_SECRET", repository="octo-org/deploy")
    if where == "file":
        del entry["secret_env"]
        entry["secret_file"] = str(missing)
    monkeypatch.delenv("PB_TEST_HIDDEN_SECRET", raising=False)
    kwargs = redis_conn.connection_pool.connection_kwargs
    app = create_app(parse_config({**CONFIG, "repos": [entry]}),
                     redis_url=f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}")
    capfd.readouterr()
    response = app.test_client().post("/hooks/gh-hidden", data=b"{}", headers={"X-GitHub-Event": "push"})
    assert response.status_code == 500 and response.json["error"] == "misconfigured"
    assert "gh-hidden" in response.json["message"]
    answer = response.get_data(as_text=True)
    location = str(missing) if where == "file" else "PB_TEST_HIDDEN_SECRET"
    assert location not in answer and "secrets" not in answer and "PB_TEST" not in answer
    [line] = [json.loads(l) for l in capfd.readouterr().err.splitlines() if l.startswith("{")]
    assert line["status"] == 500 and location in line["error"]


def test_a_logged_401_or_404_line_names_the_claimed_delivery_only_when_well_formed(client, capfd):
    import webhook.noise

    body = json.dumps(P.github_push()).encode()
    forged = P.signed_headers("github", b"not-the-secret", body)
    for delivery, expected in ((forged["X-GitHub-Delivery"], forged["X-GitHub-Delivery"]),
                               ("bad id with spaces", None)):
        webhook.noise.forget()  # this line is the first for the name: it is written
        capfd.readouterr()
        response = client.post("/hooks/gh", data=body, headers={**forged, "X-GitHub-Delivery": delivery})
        assert response.status_code == 401
        [line] = [json.loads(l) for l in capfd.readouterr().err.splitlines() if l.startswith("{")]
        assert line["status"] == 401 and line.get("delivery") == expected
    webhook.noise.forget()
    client.post("/hooks/nope", data=body, headers=forged)  # unknown repo: any provider's header
    [line] = [json.loads(l) for l in capfd.readouterr().err.splitlines() if l.startswith("{")]
    assert line["status"] == 404 and line["delivery"] == forged["X-GitHub-Delivery"]
    webhook.noise.forget()
    client.post("/hooks/nope", data=body)  # no delivery header at all
    [line] = [json.loads(l) for l in capfd.readouterr().err.splitlines() if l.startswith("{")]
    assert line["status"] == 404 and "delivery" not in line


def test_a_content_length_of_thousands_of_digits_is_413_not_500(client, config):
    """int() refuses more than 4300 digits (a ValueError, so a 500) when no server in front
    refused the header first."""
    response = client.post("/hooks/gh", data=b"{}", environ_overrides={"CONTENT_LENGTH": "9" * 5000})
    assert response.status_code == 413 and response.json["limit"] == config.server.max_body_bytes
