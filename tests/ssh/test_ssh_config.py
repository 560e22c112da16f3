"""The ``ssh:`` configuration section: strict keys, defaults from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from pullbridge.config import ConfigError, parse_config


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
