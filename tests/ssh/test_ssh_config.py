"""The ``ssh:`` configuration section: strict keys, defaults from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from pullbridge.config import ConfigError, load_config, parse_config


def test_defaults_follow_env_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("PULLBRIDGE_IDENTITY", raising=False)
    monkeypatch.delenv("PULLBRIDGE_KNOWN_HOSTS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    ssh = parse_config({}).ssh
    assert ssh.identity_path() == tmp_path / "pullbridge" / "identity"
    assert ssh.known_hosts_path() == tmp_path / "pullbridge" / "known_hosts"
    monkeypatch.setenv("PULLBRIDGE_IDENTITY", "/keys/id")
    monkeypatch.setenv("PULLBRIDGE_KNOWN_HOSTS", "/keys/kh")
    assert ssh.identity_path() == Path("/keys/id") and ssh.known_hosts_path() == Path("/keys/kh")
    explicit = parse_config({"ssh": {"identity_file": "/a", "known_hosts_file": "/b",
                                     "connect_timeout": "1m"}}).ssh
    assert (explicit.identity_path(), explicit.known_hosts_path()) == (Path("/a"), Path("/b"))
    assert explicit.connect_timeout == 60.0


def test_unknown_and_bad_keys_are_named():
    with pytest.raises(ConfigError) as err:
        parse_config({"ssh": {"identity": "/a", "connect_timeout": "soon"}})
    paths = dict(err.value.problems)
    assert paths["ssh.identity"] == "unknown key"
    assert "duration" in paths["ssh.connect_timeout"]


def test_a_tilde_means_the_home_directory_for_every_reader_and_writer(monkeypatch, tmp_path, capsys):
    """`pullbridge identity` and `known-hosts` write, `known-hosts list` and the worker's git_env
    read: with ``~/...`` paths in the config all of them must name the same files."""
    from pullbridge.cli import main
    from pullbridge.known_hosts import HostKey, record
    from worker.ssh import git_env

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PULLBRIDGE_CONFIG", raising=False)
    cfg = tmp_path / "pullbridge.yaml"
    cfg.write_text("ssh:\n  identity_file: ~/pb/identity\n  known_hosts_file: ~/pb/known_hosts\n"
                   "repos:\n  - {name: app, url: 'git@git.example.com:org/app.git', provider: generic,"
                   " secret_env: X}\n"
                   "  - {name: own, url: 'git@git.example.com:org/own.git', provider: generic,"
                   " secret_env: X, ssh_key_file: ~/pb/own-key}\n")
    config = load_config(cfg)
    home_pb = tmp_path / "home" / "pb"
    assert config.ssh.identity_path() == home_pb / "identity"
    assert config.ssh.known_hosts_path() == home_pb / "known_hosts"
    assert config.ssh.key_path(config.repo("own")) == home_pb / "own-key"

    assert main(["identity", "--config", str(cfg)]) == 0
    public = capsys.readouterr().out.split()
    assert (home_pb / "identity").is_file()
    record("~/pb/known_hosts", "git.example.com", 22, [HostKey("x", public[0], public[1])])
    assert main(["known-hosts", "list", "--config", str(cfg)]) == 0
    assert "git.example.com (ED25519)" in capsys.readouterr().out
    env = git_env(config.repo("app"), config)
    assert f"IdentityFile={home_pb / 'identity'}" in env["GIT_SSH_COMMAND"]
    assert f"UserKnownHostsFile={home_pb / 'known_hosts'}" in env["GIT_SSH_COMMAND"]
    assert main(["identity", "--file", "~/pb/own-key"]) == 0
    env = git_env(config.repo("own"), config)
    assert f"IdentityFile={home_pb / 'own-key'}" in env["GIT_SSH_COMMAND"]
