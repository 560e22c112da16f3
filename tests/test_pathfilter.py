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
    # `**/` also matches no folder at all (gitignore, GitHub Actions' paths:)
    ("x.yaml", "**/x.yaml", True),
    ("a/b/x.yaml", "**/x.yaml", True),
    ("a/bx.yaml", "**/x.yaml", False),
    ("deploy/app.yaml", "deploy/**/app.yaml", True),
    ("deploy/a/b/app.yaml", "deploy/**/app.yaml", True),
    ("deployapp.yaml", "deploy/**/app.yaml", False),
    ("deploy/app.yaml", "**/deploy/**/*.yaml", True),
    ("deploy/a/app.yaml", "deploy/**", True),
    ("a**/x.yaml", "a**/x.yaml", True),
    ("x.yaml", "a**/x.yaml", False),  # `**/` after anything but `/` is just two stars
])
def test_path_matches(path, pattern, expected):
    assert path_matches(path, pattern) is expected


def test_touches_lets_unknown_paths_through():
    assert touches(None, ["deploy/"])
    assert touches(frozenset({"src/x"}), [])
    assert not touches(frozenset({"src/x"}), ["deploy/"])
    assert not touches(frozenset(), ["deploy/"])
