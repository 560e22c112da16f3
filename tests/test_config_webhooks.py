"""`config check` on what webhook intake relies on: a mistake there is reported, with the key
to fix, before deliveries are quietly ignored, refused or accepted when they should not be."""

from __future__ import annotations

import json

import pytest

from pullbridge.cli import main
from pullbridge.config import ConfigError, check_secrets, parse_config


def repo(**fields):
    return {"name": "app", "url": "https://github.com/acme/app.git", "provider": "github",
            "secret_env": "PB_CFG_SECRET", **fields}


def check(tmp_path, capsys, data: dict) -> tuple[int, str, str]:
    """Run `pullbridge config check` on ``data`` written as a file (JSON is YAML)."""
    path = tmp_path / "pullbridge.yaml"
    path.write_text(json.dumps(data))
    code = main(["config", "check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err.replace(f"pullbridge: {path}: ", "")


@pytest.mark.parametrize("provider, url, name", [
    ("github", "https://github.com/acme/app.git", "acme/app"),
    ("github", "https://x:token@github.example.com/acme/app/", "acme/app"),
    ("github", "git@github.com:acme/app.git", "acme/app"),
    ("github", "ssh://git@github.com/acme/app.git", "acme/app"),
    ("gitea", "http://127.0.0.1:3000/acme/app.git", "acme/app"),
    ("gitlab", "https://gitlab.example.com/group/sub/app.git", "group/sub/app"),
    ("gitlab", "git@gitlab.example.com:group/app.git", "group/app"),
    ("gitlab", "ssh://git@gitlab.example.com:2222/group/sub/deeper/app.git", "group/sub/deeper/app"),
    ("bitbucket-server", "https://bb.example.com/scm/PROJ/app.git", "PROJ/app"),
    ("bitbucket-server", "https://bb.example.com/bitbucket/scm/proj/app.git", "proj/app"),
    ("bitbucket-server", "ssh://git@bb.example.com:7999/proj/app.git", "proj/app"),
])
def test_repository_is_derived_from_the_url_when_not_given(provider, url, name):
    assert parse_config({"repos": [repo(provider=provider, url=url)]}).repos[0].repository == name


def test_a_given_repository_wins_and_generic_payloads_need_none():
    given = parse_config({"repos": [repo(repository="acme/renamed")]}).repos[0]
    assert given.repository == "acme/renamed"
    generic = parse_config({"repos": [repo(provider="generic", url="file:///srv/git/app.git")]}).repos[0]
    assert generic.repository is None


@pytest.mark.parametrize("provider, url", [
    ("github", "file:///srv/git/app.git"),
    ("github", "https://git.example.com/app.git"),           # no owner
    ("github", "https://git.example.com/a/b/app.git"),       # owner/name is two parts
    ("gitea", "http://127.0.0.1:18480/app.git"),
    ("gitlab", "https://gitlab.example.com/app.git"),        # a project lives in a group
    ("bitbucket-server", "https://bb.example.com/projects/PROJ/repos/app"),  # not a clone URL
    ("bitbucket-server", "ssh://git@bb.example.com:7999/app.git"),
])
def test_config_check_requires_a_repository_the_url_does_not_give(tmp_path, capsys, monkeypatch,
                                                                   provider, url):
    monkeypatch.setenv("PB_CFG_SECRET", "s")
    code, out, err = check(tmp_path, capsys, {"repos": [repo(provider=provider, url=url)]})
    assert code == 2 and out == ""
    assert err.startswith("repos[0].repository: required: cannot be derived from url")
    code, out, _ = check(tmp_path, capsys, {"repos": [repo(provider=provider, url=url, repository="acme/app")]})
    assert code == 0 and "ok (1 repositories: app)" in out


def test_the_url_in_the_message_is_never_quoted(tmp_path, capsys):
    code, _, err = check(tmp_path, capsys, {"repos": [repo(url="https://x:hunter2@git.example.com/app.git")]})
    assert code == 2 and "repos[0].repository: " in err and "hunter2" not in err


def test_config_check_rejects_events_that_never_sync(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PB_CFG_SECRET", "s")
    code, out, err = check(tmp_path, capsys, {"repos": [repo(provider="gitlab", url="https://gl.example/g/app.git",
                                                             events=["push", "Push Hook"])]})
    assert code == 2 and out == ""
    assert err == "repos[0].events[1]: Input should be 'push'\n"
    code, out, err = check(tmp_path, capsys, {"repos": [repo(events=[])]})  # would ignore every push
    assert code == 2 and out == ""
    assert err == "repos[0].events: List should have at least 1 item after validation, not 0\n"
    assert check(tmp_path, capsys, {"repos": [repo(events=["push"])]})[0] == 0


BAD_SIGNING_SECRET = "whsec_not!base64"


@pytest.mark.parametrize("where", ["env", "file"])
def test_config_check_decodes_a_gitlab_signing_secret(tmp_path, capsys, monkeypatch, where):
    gitlab = {"provider": "gitlab", "url": "https://gl.example/g/app.git"}
    if where == "env":
        monkeypatch.setenv("PB_CFG_SECRET", BAD_SIGNING_SECRET)
        entry, key, shown = repo(**gitlab), "secret_env", "env:PB_CFG_SECRET"
    else:
        secret_file = tmp_path / "signing"
        secret_file.write_text(BAD_SIGNING_SECRET + "\n")
        entry = {**repo(**gitlab, secret_file=str(secret_file)), "secret_env": None}
        key, shown = "secret_file", f"file:{secret_file}"
    code, out, err = check(tmp_path, capsys, {"repos": [entry]})
    assert code == 2 and out == ""
    assert err == (f"repos[0].{key}: {shown} is a GitLab signing secret (whsec_...) whose key "
                   "is not valid base64\n")
    assert "not!base64" not in err


def test_a_signing_secret_that_decodes_passes_and_other_providers_take_any_secret(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PB_CFG_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    monkeypatch.setenv("PB_CFG_OTHER", BAD_SIGNING_SECRET)  # an HMAC key like any other for GitHub
    config = parse_config({"repos": [repo(provider="gitlab", url="https://gl.example/g/app.git"),
                                     repo(name="gh", secret_env="PB_CFG_OTHER")]})
    assert check_secrets(config) == []


def test_secret_problems_name_the_key_that_names_the_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("PB_CFG_SECRET", raising=False)
    monkeypatch.setenv("PB_CFG_EMPTY", "")
    missing = tmp_path / "missing"
    config = parse_config({"repos": [repo(), {**repo(name="b", secret_file=str(missing)), "secret_env": None},
                                     repo(name="c", secret_env="PB_CFG_EMPTY")]})
    assert [path for path, _ in check_secrets(config)] == ["repos[0].secret_env", "repos[1].secret_file",
                                                           "repos[2].secret_env"]


def test_duplicate_names_are_reported_at_the_second_name(tmp_path, capsys):
    code, _, err = check(tmp_path, capsys, {"repos": [repo(), repo(url="https://github.com/acme/y.git")]})
    assert code == 2 and err == "repos[1].name: repository name 'app' is already used by repos[0]\n"


def test_dedup_ttl_must_outlast_a_replay_the_signature_tolerance_admits():
    with pytest.raises(ConfigError) as err:
        parse_config({"server": {"signature_tolerance": "5m", "dedup_ttl": "10m"}})
    [(path, message)] = err.value.problems
    assert path == "server.dedup_ttl" and "server.signature_tolerance" in message
    with pytest.raises(ConfigError, match="server.dedup_ttl: .*twice server.signature_tolerance"):
        parse_config({"server": {"signature_tolerance": "13h"}})  # against the default dedup_ttl, 24h
    assert parse_config({"server": {"signature_tolerance": "5m", "dedup_ttl": "11m"}}).server.dedup_ttl == 660


def test_config_check_warns_of_status_links_to_the_default_address_and_of_no_repositories(tmp_path, capsys,
                                                                                       monkeypatch):
    monkeypatch.setenv("PB_CFG_SECRET", "s3cret")
    monkeypatch.setenv("PB_CFG_TOKEN", "t0ken")
    posting = repo(status={"token_env": "PB_CFG_TOKEN"})
    code, out, err = check(tmp_path, capsys, {"repos": [posting, repo(name="quiet")]})
    assert code == 0 and "ok (2 repositories" in out
    assert err.strip() == ("server.public_url: warning: not set, so the commit statuses of app link to "
                           "http://127.0.0.1:8080, which only this machine can open")
    code, out, err = check(tmp_path, capsys, {"server": {"public_url": "https://pb.example"}, "repos": [posting]})
    assert (code, err) == (0, "")
    code, out, err = check(tmp_path, capsys, {"repos": []})
    assert code == 0 and err.strip() == "repos: warning: no repository is configured; every webhook will be answered 404"
