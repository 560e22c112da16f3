"""Tag policies: Flux v1 annotations, semver ranges, glob/regex ordering (pure logic)."""

from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from worker.images.policy import (PolicyError, SemverRange, TagFilter, parse_tag_version, pick_tag,
                                  workload_policy)


def t(day: int) -> datetime:
    return datetime(2026, 1, day, tzinfo=timezone.utc)


def test_annotations_both_prefixes_and_fluxcd_wins():
    p = workload_policy({"flux.weave.works/automated": "true", "flux.weave.works/tag.flask": "glob:old-*",
                         "fluxcd.io/tag.flask": "semver:~1.8", "fluxcd.io/tag.nginx": "regex:^v"})
    assert p.automated and not p.locked and not p.frozen
    assert p.tag_filters == {"flask": "semver:~1.8", "nginx": "regex:^v"}
    assert repr(p.filter_for("other")) == "glob:*"  # Flux v1: automated without a filter takes any tag
    locked = workload_policy({"fluxcd.io/automated": "true", "flux.weave.works/locked": "true"})
    assert locked.automated and locked.locked and locked.frozen
    assert workload_policy({"fluxcd.io/ignore": "true"}).frozen
    assert not workload_policy({"fluxcd.io/automated": "false"}).automated
    assert not workload_policy(None).automated


def test_filter_parsing():
    assert repr(TagFilter.parse("glob:develop-v*")) == "glob:develop-v*"
    assert repr(TagFilter.parse("develop-*")) == "glob:develop-*"
    assert repr(TagFilter.parse("regexp:^x")) == "regex:^x"
    with pytest.raises(PolicyError):
        TagFilter.parse("regex:(")
    with pytest.raises(PolicyError):
        TagFilter.parse("semver:banana")


@pytest.mark.parametrize("rng, yes, no", [
    ("~1.8", ["1.8.0", "v1.8.9"], ["1.9.0", "1.7.9", "2.0.0", "1.8.1-rc.1"]),
    ("~1.8.3", ["1.8.3", "1.8.10"], ["1.8.2", "1.9.0"]),
    ("~1", ["1.0.0", "1.99.1"], ["2.0.0", "0.9.9"]),
    ("^1.2", ["1.2.0", "1.9.9"], ["1.1.9", "2.0.0"]),
    ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
    ("^0.0.3", ["0.0.3"], ["0.0.4"]),
    (">=1.0 <2.0", ["1.0.0", "1.5.0"], ["2.0.0", "0.9.0"]),
    (">=1.0, <2.0", ["1.0.0"], ["2.0.0"]),
    (">= 1.0, < 2.0", ["1.0.0"], ["2.0.0"]),
    ("1.2 - 1.4", ["1.2.0", "1.4.9"], ["1.5.0", "1.1.0"]),
    ("^1 || ^3", ["1.5.0", "3.0.0"], ["2.0.0"]),
    ("1.2.x", ["1.2.0", "1.2.7"], ["1.3.0"]),
    ("*", ["0.0.1", "9.9.9"], ["1.0.0-alpha"]),
    (">1.2", ["1.3.0"], ["1.2.9"]),
    ("<=1.2", ["1.2.9"], ["1.3.0"]),
    ("!=1.2.3", ["1.2.4"], ["1.2.3"]),
    (">=1.8.0-rc.1 <1.9", ["1.8.0-rc.1", "1.8.0-rc.2", "1.8.5"], ["1.8.1-rc.1"]),
    # Flux v1 (Masterminds): a set whose every comparator names a pre-release takes any pre-release in it
    (">=1.0.0-0", ["1.0.0-rc.1", "1.1.0-rc.1", "2.0.0-alpha", "1.2.0"], ["0.9.0", "0.9.0-rc.1"]),
    ("~1.9.0-0", ["1.9.1-rc.1", "1.9.0"], ["1.10.0-rc.1", "1.8.9-rc.1"]),
    (">=1.0.0-0 <2.0.0", ["1.0.0-rc.1", "1.5.0"], ["1.5.0-rc.1"]),
    ("^1.0.0-0 || ~3", ["1.5.0-rc.1", "3.1.0"], ["2.0.0-rc.1", "3.1.0-rc.1"]),
    (",", ["1.0.0"], ["1.0.0-rc.1"]),  # a set without comparators names no pre-release
])
def test_semver_ranges(rng, yes, no):
    r = SemverRange(rng)
    for v in yes:
        assert r.allows(parse_tag_version(v)), (rng, v)
    for v in no:
        assert not r.allows(parse_tag_version(v)), (rng, v)


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))
def test_tilde_and_caret_bounds(major, minor, patch, m2, p2):
    v = parse_tag_version(f"{major}.{m2}.{p2}")
    assert SemverRange(f"~{major}.{minor}").allows(v) == (m2 == minor)
    if major > 0:
        assert SemverRange(f"^{major}.{minor}.{patch}").allows(v) == ((m2, p2) >= (minor, patch))


@pytest.mark.parametrize("tag, version", [
    ("1.8.0", "1.8.0"), ("v1.8", "1.8.0"), ("24.04", "24.4.0"), ("2024.01.15", "2024.1.15"),
    ("v1.08.0-rc.1", "1.8.0-rc.1"), ("1.0.0-rc.01", None), ("1.2.3.4", None), ("latest", None), ("1.x", None)])
def test_tags_read_as_versions_as_flux_v1_read_them(tag, version):
    parsed = parse_tag_version(tag)
    assert (str(parsed) if parsed else None) == version


def test_zero_padded_calendar_tags_are_ordered_by_version():
    assert pick_tag(TagFilter.parse("semver:~24"), ["22.04", "24.04", "24.09.1"], lambda tag: None).tag == "24.09.1"


def test_semver_picks_highest_version_not_newest_image():
    f = TagFilter.parse("semver:~1.8")
    best = pick_tag(f, ["1.8.0", "v1.8.10", "1.8.9", "1.9.0", "latest", "1.8.11-rc.1"], lambda tag: None)
    assert best.tag == "v1.8.10"


def test_glob_and_regex_pick_by_created_then_name_and_only_read_matching_tags():
    created = {"develop-v1.8.0": t(1), "develop-v1.9.0": t(5), "develop-v1.10.0": t(3), "master-x": t(9)}
    asked = []

    def lookup(tag):
        asked.append(tag)
        return created.get(tag)

    best = pick_tag(TagFilter.parse("glob:develop-v*"), list(created), lookup)
    assert best.tag == "develop-v1.9.0" and "master-x" not in asked
    regex = pick_tag(TagFilter.parse(r"regex:^develop-v1\.(8|10)"), list(created), created.get)
    assert regex.tag == "develop-v1.10.0"
    tie = pick_tag(TagFilter.parse("glob:b*"), ["b3", "b1", "b2"], lambda tag: t(1))
    assert tie.tag == "b1"  # Flux v1's NewerByCreated: equal times, the lowest name first
    assert pick_tag(TagFilter.parse("glob:release-*"), list(created), created.get) is None


@pytest.mark.parametrize("raw", [None, "glob:*", "*", "glob:*e*", "regex:.", "regexp:[lv]"])
def test_latest_is_never_picked_unless_the_filter_is_glob_latest(raw):
    # latest is usually pushed with the newest build, so it shares the newest created time
    created = {"develop-v1.8.0": t(1), "develop-v1.9.0": t(5), "latest": t(5), "LATEST": t(6)}
    tag_filter = workload_policy({"fluxcd.io/tag.app": raw} if raw else {}).filter_for("app")
    assert not tag_filter.matches("latest") and not tag_filter.matches("Latest")
    assert pick_tag(tag_filter, list(created), created.get).tag == "develop-v1.9.0"


def test_glob_latest_picks_latest():
    for raw in ("glob:latest", "latest"):
        assert pick_tag(TagFilter.parse(raw), ["v1", "latest"], lambda tag: t(1)).tag == "latest"
    assert pick_tag(TagFilter.parse("semver:*"), ["1.0.0", "latest"], lambda tag: None).tag == "1.0.0"


@pytest.mark.parametrize("raw", ['semver:">=1.0 <2.0"', "semver:'>=1.0 <2.0'", "'semver:>=1.0 <2.0'"])
def test_quotes_around_a_pattern_are_taken_off(raw):
    from ruamel.yaml import YAML

    # what the annotation reads as when written in a manifest, as the README shows it
    value = YAML(typ="safe", pure=True).load(f"tag.flask: {raw}\n")["tag.flask"]
    f = TagFilter.parse(value)
    assert repr(f) == "semver:>=1.0 <2.0"
    assert pick_tag(f, ["0.9.0", "1.5.0", "2.0.0"], lambda tag: None).tag == "1.5.0"
    assert repr(TagFilter.parse('glob:"develop-v*"')) == repr(TagFilter.parse("'develop-v*'")) == "glob:develop-v*"
    assert repr(TagFilter.parse("regex:'^v'")) == "regex:^v" and repr(TagFilter.parse("glob:'")) == "glob:'"
