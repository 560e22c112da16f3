"""The ``paths:`` filter the receiver and the periodic reconcile share (pure)."""

from __future__ import annotations

import pytest

from pullbridge.pathfilter import path_matches, touches


@pytest.mark.parametrize("path,pattern,expected", [
    ("deploy/app.yaml", "deploy/", True),
    ("deploy/app.yaml", "deploy", True),
    ("deployment/app.yaml", "deploy", False),
    ("deploy/a/b.yaml", "deploy/*.yaml", True),
    ("src/main.py", "deploy/", False),
    ("base/kustomization.yaml", "*/kustomization.yaml", True),
    ("x", "", False),
])
def test_path_matches(path, pattern, expected):
    assert path_matches(path, pattern) is expected


def test_touches_lets_unknown_paths_through():
    assert touches(None, ["deploy/"])
    assert touches(frozenset({"src/x"}), [])
    assert not touches(frozenset({"src/x"}), ["deploy/"])
    assert not touches(frozenset(), ["deploy/"])
