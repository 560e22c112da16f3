"""Strict configuration of image automation: unknown keys and half-given credentials are errors."""

import pytest

from pullbridge.config import ConfigError, check_secrets, parse_config

REPO = {"name": "app", "url": "file:///srv/app.git", "provider": "generic", "secret_env": "X"}


def problems(data) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    return err.value.problems


def test_defaults_and_full_settings():
    config = parse_config({"repos": [REPO]})
    assert not config.repos[0].images.enabled and config.images.registries == []
    config = parse_config({
        "repos": [dict(REPO, images={"enabled": True, "interval": "2m", "author_name": "Bot",
                                     "author_email": "bot@example.com", "dry_run": True, "push_attempts": 3})],
        "images": {"cache_ttl": "1m", "registries": [
            {"host": "Registry.Example.com:5000", "username_env": "U", "password_file": "/run/pw"},
            {"host": "127.0.0.1:5001", "insecure": True}],
            "hooks": [{"name": "harbor", "secret_env": "H"}]}})
    images = config.repos[0].images
    assert (images.interval, images.dry_run, images.push_attempts) == (120.0, True, 3)
    assert config.images.cache_ttl == 60.0
    assert config.images.registry("registry.example.com:5000").password_file == "/run/pw"
    assert config.images.registry("127.0.0.1:5001").insecure
    assert config.images.hook("harbor").secret.describe() == "env:H"


@pytest.mark.parametrize("data, path", [
    ({"repos": [dict(REPO, images={"enabeld": True})]}, "repos[0].images.enabeld"),
    ({"images": {"registries": [{"host": "r.io", "pasword_env": "P"}]}}, "images.registries[0].pasword_env"),
    ({"images": {"registries": [{"host": "https://r.io"}]}}, "images.registries[0].host"),
    ({"images": {"registries": [{"host": "r.io", "username_env": "U"}]}}, "images.registries[0]"),
    ({"images": {"registries": [{"host": "r.io", "username_env": "U", "password_env": "P",
                                 "password_file": "/f"}]}}, "images.registries[0]"),
    ({"images": {"hooks": [{"name": "h"}]}}, "images.hooks[0]"),
    ({"images": {"registries": [{"host": "r.io"}, {"host": "R.io"}]}}, "images"),
    ({"repos": [dict(REPO, images={"interval": "5s"})]}, "repos[0].images.interval"),
    ({"repos": [dict(REPO, images={"author_email": "a@b>\\n"})]}, "repos[0].images.author_email"),
])
def test_errors_name_their_key_path(data, path):
    assert path in [p for p, _ in problems(data)], problems(data)


def test_check_secrets_covers_hooks_and_registry_credentials(monkeypatch):
    monkeypatch.setenv("X", "x")
    monkeypatch.delenv("PB_NO_SUCH_VAR", raising=False)
    config = parse_config({"repos": [REPO], "images": {
        "hooks": [{"name": "h", "secret_env": "PB_NO_SUCH_VAR"}],
        "registries": [{"host": "r.io", "username_env": "X", "password_env": "PB_NO_SUCH_VAR"}]}})
    assert [p for p, _ in check_secrets(config)] == ["images.hooks[0].secret_env", "images.registries[0]"]
