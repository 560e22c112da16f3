"""Durations must be finite and bounded: the scheduler turns them into timers."""

from __future__ import annotations

import pytest
import yaml

from pullbridge.config import ConfigError, parse_config, parse_duration
from pullbridge.config_types import MAX_DURATION

REPO = {"name": "demo", "url": "file:///x", "provider": "gitlab", "repository": "g/demo", "secret_env": "S"}


@pytest.mark.parametrize("text, message", [(".nan", "finite"), (".inf", "finite"), ("-.inf", "finite"),
                                           ("1.0e+300", "at most 8760h"), ("8761h", "at most 8760h")])
def test_unusable_intervals_are_config_errors_naming_the_key(text, message):
    value = yaml.safe_load(f"interval: {text}")["interval"]
    with pytest.raises(ConfigError) as err:
        parse_config({"repos": [{**REPO, "interval": value}]})
    assert "repos[0].interval: " in str(err.value) and message in str(err.value)


def test_the_bound_applies_to_every_duration():
    assert parse_duration("8760h") == MAX_DURATION == 365 * 86400
    assert parse_config({"server": {"dedup_ttl": "720h"}, "repos": [REPO]}).server.dedup_ttl == 30 * 86400
    with pytest.raises(ConfigError) as err:
        parse_config({"worker": {"lock_ttl": float("inf")}, "repos": [REPO]})
    assert "worker.lock_ttl: " in str(err.value)


def test_queue_timeout_is_a_duration_under_the_10s_git_hosts_wait():
    assert parse_config({"repos": [REPO]}).server.queue_timeout == 5.0
    assert parse_config({"server": {"queue_timeout": "9s"}, "repos": [REPO]}).server.queue_timeout == 9.0
    for value, message in (("10s", "less than 10"), ("1m", "less than 10"), (0, "positive")):
        with pytest.raises(ConfigError) as err:
            parse_config({"server": {"queue_timeout": value}, "repos": [REPO]})
        assert "server.queue_timeout: " in str(err.value) and message in str(err.value)
