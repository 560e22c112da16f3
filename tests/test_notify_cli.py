"""`pullbridge notify status|alert` against the local API server."""

from __future__ import annotations

import json
import re

from pullbridge.cli import main
from tests.notify_support import GITHUB_TOKEN, fake_hosts  # noqa: F401
from tests.test_status import SHA, make_config


def test_notify_status_posts_once_and_reports(fake_hosts, monkeypatch, tmp_path, capsys):  # noqa: F811
    make_config(fake_hosts, monkeypatch, tmp_path)
    assert main(["notify", "status", "gh", SHA, "--state", "success"]) == 0
    out = capsys.readouterr().out
    assert "ok: posted" in out and GITHUB_TOKEN not in out
    assert fake_hosts.final[("github", "acme/deploy", SHA, "pullbridge/gh")] == "success"

    monkeypatch.setenv("GH_TOKEN", "wrong")
    assert main(["notify", "status", "gh", SHA]) == 2
    assert "refused: status: HTTP 401" in capsys.readouterr().out


def alert_config(monkeypatch, tmp_path, slack_url: str, second_kind: str, second_url: str):
    """A config with one repository and two alert destinations: slack at $SLACK_URL, then
    ``second_kind`` at $HOOK_URL."""
    monkeypatch.setenv("SLACK_URL", slack_url)
    monkeypatch.setenv("HOOK_URL", second_url)
    monkeypatch.setenv("S", "x")
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({
        "repos": [{"name": "app", "url": "https://git.example/a/app.git", "provider": "github", "secret_env": "S"}],
        "alerts": [{"kind": "slack", "url_env": "SLACK_URL"}, {"kind": second_kind, "url_env": "HOOK_URL"}]}))
    return path


def test_notify_alert_sends_to_each_destination(fake_hosts, monkeypatch, tmp_path, capsys):  # noqa: F811
    path = alert_config(monkeypatch, tmp_path, fake_hosts.base + "/hooks/slack/secret", "webhook",
                        fake_hosts.base + "/nowhere")
    assert main(["notify", "alert", "--config", str(path)]) == 2
    out = capsys.readouterr().out
    assert "slack:env:SLACK_URL: sent" in out
    assert "webhook:env:HOOK_URL: failed: webhook:env:HOOK_URL: HTTP 404" in out
    assert "secret" not in out.replace("SLACK_URL", "")
    assert "test alert" in fake_hosts.requests[0]["payload"]["text"]


def test_an_alert_url_without_its_scheme_is_named_never_printed(fake_hosts, monkeypatch, tmp_path, capsys):  # noqa: F811
    """A Slack URL pasted without `https://` is the secret itself: `notify alert` and `config check`
    say where it is kept and what is wrong, and the other destinations still get their alert."""
    path = alert_config(monkeypatch, tmp_path, "hooks.slack.example/services/T0/B0/s3cr3tpath", "slack",
                        fake_hosts.base + "/hooks/slack/other")
    assert main(["notify", "alert", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ("slack:env:SLACK_URL: failed: env:SLACK_URL is not an http(s) URL\n"
                   "slack:env:HOOK_URL: sent\n")
    assert err == ""
    assert main(["config", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"pullbridge: {path}: alerts[0].url_env: env:SLACK_URL is not an http(s) URL\n")


def test_the_test_alert_has_the_time_every_alert_has(fake_hosts, monkeypatch, tmp_path, capsys):  # noqa: F811
    """A receiver that reads `at` as a timestamp is checked by the test alert too, not given null."""
    path = alert_config(monkeypatch, tmp_path, fake_hosts.base + "/hooks/slack/x", "webhook",
                        fake_hosts.base + "/hooks/generic")
    assert main(["notify", "alert", "--config", str(path)]) == 0
    [generic] = [r["payload"] for r in fake_hosts.requests if r["path"] == "/hooks/generic"]
    assert generic["event"] == "test" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", generic["at"] or "")
