"""Strict config of commit statuses and alerts, and the provider defaults derived from a repo."""

from __future__ import annotations

import pytest

from pullbridge.config import ConfigError, check_secrets, parse_config
from pullbridge.notify_config import status_api_url, status_context, status_project


def repo(**kw):
    base = {"name": "app", "url": "https://github.com/acme/app.git", "provider": "github",
            "secret_env": "S", "status": {"token_env": "T"}}
    base.update(kw)
    return base


def one(**kw):
    return parse_config({"repos": [repo(**kw)]}).repos[0]


@pytest.mark.parametrize("url,provider,api,project", [
    ("https://github.com/acme/app.git", "github", "https://api.github.com", "acme/app"),
    ("git@github.com:acme/app.git", "github", "https://api.github.com", "acme/app"),
    ("https://ghe.corp/acme/app.git", "github", "https://ghe.corp/api/v3", "acme/app"),
    ("https://gitlab.corp/grp/sub/app.git", "gitlab", "https://gitlab.corp/api/v4", "grp/sub/app"),
    ("ssh://git@gitlab.corp:2222/grp/app.git", "gitlab", "https://gitlab.corp/api/v4", "grp/app"),
    ("http://127.0.0.1:3000/acme/app.git", "gitea", "http://127.0.0.1:3000/api/v1", "acme/app"),
    ("https://bb.corp/scm/ACME/app.git", "bitbucket-server", "https://bb.corp", "ACME/app"),
    ("https://bb.corp/bitbucket/scm/~ada/app.git", "bitbucket-server", "https://bb.corp/bitbucket", "~ada/app"),
    ("ssh://git@bb.corp:7999/ACME/app.git", "bitbucket-server", "https://bb.corp", "ACME/app"),
])
def test_defaults_by_provider(url, provider, api, project):
    r = one(url=url, provider=provider)
    assert status_api_url(r) == api
    assert status_project(r) == project
    assert status_context(r) == "pullbridge/app"


def test_explicit_settings_win():
    r = one(provider="gitlab", repository="ignored/x",
            status={"token_file": "/run/t", "api_url": "https://gl.corp/api/v4/", "project": "1234",
                    "context": "pullbridge/cluster-b"})
    assert status_api_url(r) == "https://gl.corp/api/v4"
    assert status_project(r) == "1234"
    assert status_context(r) == "pullbridge/cluster-b"


@pytest.mark.parametrize("url,api_url,project", [
    ("https://git.corp/gitlab/grp/app.git", "https://git.corp/gitlab/api/v4", "grp/app"),
    ("https://git.corp/tools/gitlab/grp/sub/app.git", "https://git.corp/tools/gitlab/api/v4", "grp/sub/app"),
    ("https://git.corp/gitlab/grp/app.git", "https://git.corp/api/v4", "gitlab/grp/app"),  # no root: a group
    ("https://git.corp/grp/app.git", "https://git.corp/gitlab/api/v4", "grp/app"),  # the URL has no root
])
def test_a_gitlab_relative_url_root_in_api_url_is_no_part_of_the_derived_project(url, api_url, project):
    r = one(provider="gitlab", url=url, status={"token_env": "T", "api_url": api_url})
    assert status_project(r) == project
    given = one(provider="gitlab", url=url, repository="gitlab/grp/app", status={"token_env": "T", "api_url": api_url})
    assert status_project(given) == "gitlab/grp/app"  # a given repository: as it is


@pytest.mark.parametrize("status,expected", [
    ({}, "exactly one of token_env or token_file"),
    ({"token_env": "T", "token_file": "/f"}, "exactly one of token_env or token_file"),
    ({"token_env": "T", "colour": "red"}, "unknown key"),
    ({"token_env": "T", "context": "c" * 256}, "at most 255"),
    ({"token_env": "T", "api_url": "api.github.com"}, "http:// or https://"),
    ({"token_env": "T", "state": "x"}, "unknown key"),
])
def test_status_settings_are_strict(status, expected):
    with pytest.raises(ConfigError) as err:
        one(status=status)
    assert expected in str(err.value)
    assert any(path.startswith("repos[0]") for path, _ in err.value.problems)


def test_unsupported_provider_and_bad_project_are_errors():
    with pytest.raises(ConfigError, match="supported for github, gitlab, gitea, bitbucket-server, not generic"):
        one(provider="generic", repository="ACME/app")
    with pytest.raises(ConfigError, match="must be owner/name"):
        one(status={"token_env": "T", "project": "just-a-name"})


def test_alerts_config_is_strict():
    ok = parse_config({"repos": [repo()], "alerts": [
        {"kind": "slack", "url_env": "SLACK_URL", "events": ["sync_failed"]},
        {"kind": "webhook", "url_file": "/run/hook", "repos": ["app"], "backoff": ["10s", "1m"]}]})
    assert ok.alerts[0].wants("sync_failed", "app") and not ok.alerts[0].wants("drift_corrected", "app")
    assert ok.alerts[1].backoff == [10.0, 60.0]
    for bad, expected in [
        ({"kind": "teams", "url_env": "U"}, "alerts[0].kind"),
        ({"kind": "slack"}, "exactly one of url_env or url_file"),
        ({"kind": "slack", "url_env": "U", "events": ["sync_exploded"]}, "alerts[0].events[0]"),
        ({"kind": "slack", "url_env": "U", "repos": ["nope"]}, "unknown repository 'nope'"),
        ({"kind": "slack", "url_env": "U", "url": "https://hooks.slack.com/x"}, "unknown key"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_config({"repos": [repo()], "alerts": [bad]})
        assert expected in str(err.value), (bad, str(err.value))


def test_check_secrets_names_tokens_and_alert_urls_without_values(monkeypatch):
    monkeypatch.setenv("S", "hook")
    monkeypatch.delenv("T", raising=False)
    monkeypatch.setenv("SLACK_URL", "")
    config = parse_config({"repos": [repo()], "alerts": [{"kind": "slack", "url_env": "SLACK_URL"}]})
    problems = dict(check_secrets(config))
    assert problems["repos[0].status.token_env"] == "environment variable T is not set"
    assert problems["alerts[0].url_env"] == "env:SLACK_URL is empty"


def test_check_secrets_refuses_a_status_token_no_header_can_carry(monkeypatch):
    monkeypatch.setenv("S", "hook")
    monkeypatch.setenv("T", "ghp_new\nghp_old")
    problems = dict(check_secrets(parse_config({"repos": [repo()]})))
    assert problems == {"repos[0].status.token_env": "env:T holds a space, line break or other character "
                                                     "no API token has"}
    monkeypatch.setenv("T", " ghp_new\n")  # the surrounding whitespace of a file or env value is dropped
    assert check_secrets(parse_config({"repos": [repo()]})) == []
