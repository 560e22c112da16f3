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
