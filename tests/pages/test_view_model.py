"""Pure logic behind the pages: states, git host links, error and source parsing, masking."""

from __future__ import annotations

import pytest

from pullbridge.config import parse_config
from webhook.pages import abstime, reltime
from webhook.pages import view_model as vm


def repo(url: str, provider: str):
    return parse_config({"repos": [{"name": "r", "url": url, "provider": provider, "repository": "acme/shop",
                                    "secret_env": "X"}]}).repos[0]


@pytest.mark.parametrize("url, provider, expected", [
    ("https://github.com/acme/shop.git", "github", "https://github.com/acme/shop/commit/{sha}"),
    ("https://x:tok@github.example.com/acme/shop", "github", "https://github.example.com/acme/shop/commit/{sha}"),
    ("git@github.com:acme/shop.git", "github", "https://github.com/acme/shop/commit/{sha}"),
    ("ssh://git@gitlab.example.com:2222/group/sub/app.git", "gitlab",
     "https://gitlab.example.com/group/sub/app/-/commit/{sha}"),
    ("https://gitea.example.com/org/app.git", "gitea", "https://gitea.example.com/org/app/commit/{sha}"),
    ("https://bb.example.com/scm/PROJ/app.git", "bitbucket-server",
     "https://bb.example.com/projects/PROJ/repos/app/commits/{sha}"),
    ("https://git.example.com/app.git", "generic", None),
    ("file:///srv/git/app.git", "github", None),
])
def test_commit_links_per_provider(url, provider, expected):
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert vm.commit_url(repo(url, provider), sha) == (expected.format(sha=sha) if expected else None)


def test_commit_link_needs_a_real_sha():
    assert vm.commit_url(repo("https://github.com/a/b", "github"), "<script>") is None
    assert vm.commit_url(None, "0123456") is None


def test_display_url_drops_credentials():
    assert vm.display_url("https://user:hunter2@git.example.com/a.git") == "https://git.example.com/a.git"


@pytest.mark.parametrize("state, latest, word", [
    ({"suspended": "1", "last_result": "failure"}, None, "suspended"),
    ({"suspended": "true", "held_sha": "ab" * 20}, None, "suspended"),
    ({"held_sha": "ab" * 20, "last_result": "success"}, None, "held"),
    ({"last_result": "failure"}, None, "failing"),
    ({"last_result": "retrying"}, None, "retrying"),
    ({"last_result": "success", "last_sync_at": "100", "last_drift_at": "200",
      "last_drift_objects": "3", "last_drift_corrected": "0"}, None, "drifted"),
    ({"last_result": "success", "last_sync_at": "100", "last_drift_at": "200",
      "last_drift_objects": "3", "last_drift_corrected": "3"}, None, "synced"),
    ({"last_result": "success", "last_sync_at": "300", "last_drift_at": "200",
      "last_drift_objects": "3", "last_drift_corrected": "0"}, None, "synced"),
    ({}, {"result": "success"}, "synced"),
    ({}, None, "never synced"),
])
def test_classify(state, latest, word):
    assert vm.classify(state, latest)[0] == word


def test_suspended_is_said_plainly():
    assert "Suspended" in vm.classify({"suspended": "1"}, None)[1]
    assert "held at abababababab" in vm.classify({"held_sha": "ab" * 20}, None)[1]


def test_parse_error_names_object_and_file():
    parsed = vm.parse_error("Deployment/my-demo/fluxdemo (deploy/app.yaml, doc 2): spec.replicas: Invalid value: -1")
    (obj,) = parsed["objects"]
    assert obj["kind"] == "Deployment" and obj["namespace"] == "my-demo" and obj["name"] == "fluxdemo"
    assert obj["file"] == "deploy/app.yaml" and obj["doc"] == "2"
    assert obj["message"] == "spec.replicas: Invalid value: -1"
    plain = vm.parse_error("TemporaryError: API server unreachable")
    assert plain["objects"] == [] and plain["summary"] == "TemporaryError: API server unreachable"
    assert vm.parse_error(None) is None


def test_parse_error_with_several_objects_as_the_applier_words_it():
    parsed = vm.parse_error(
        "validation failed for 7 objects, nothing applied: Deployment/web/api (apps/api.yaml, doc 2): "
        "spec.replicas: Invalid value: -1; Namespace/web (ns.yaml, doc 1): forbidden: no; ConfigMap/web/c "
        "(c.yaml, doc 3): data: Invalid value: \"a; b\" (and 4 more)")
    assert parsed["summary"] == "validation failed for 7 objects, nothing applied" and parsed["more"] == 4
    assert [(o["kind"], o["namespace"], o["name"], o["file"], o["doc"]) for o in parsed["objects"]] == [
        ("Deployment", "web", "api", "apps/api.yaml", "2"), ("Namespace", "", "web", "ns.yaml", "1"),
        ("ConfigMap", "web", "c", "c.yaml", "3")]
    assert parsed["objects"][0]["message"] == "spec.replicas: Invalid value: -1"
    assert parsed["objects"][2]["message"] == 'data: Invalid value: "a; b"'


def test_parse_error_as_the_renderer_words_it():
    parsed = vm.parse_error("ConfigMap/web/c is declared twice: a.yaml, doc 1 and b.yaml, doc 2")
    assert parsed["objects"] == [] and "declared twice" in parsed["summary"]


def test_change_rows_split_and_order():
    rows = vm.change_rows({"changes": [
        {"object": "ConfigMap/ns/a", "action": "unchanged", "source": "a.yaml, doc 1"},
        {"object": "Namespace/ns", "action": "created", "source": "ns.yaml, doc 1"},
        {"object": "Service/ns/gone", "action": "deleted"},
        {"object": "Deployment/ns/web", "action": "configured", "source": "dir/app.yaml, doc 3"},
    ]})
    assert [r["action"] for r in rows] == ["created", "configured", "deleted", "unchanged"]
    assert rows[1] | {} == {**rows[1], "kind": "Deployment", "namespace": "ns", "name": "web",
                            "file": "dir/app.yaml", "doc": "3"}
    assert rows[0]["namespace"] == "" and rows[0]["name"] == "ns"


def test_drift_rows_hide_secret_values():
    rows = vm.drift_rows({"drift": [
        {"object": "Secret/ns/db", "field": "data.password", "live": "aHVudGVyMg==", "declared": "c2VjcmV0"},
        {"object": "Deployment/ns/web", "field": "spec.replicas", "live": 4, "declared": 1,
         "manager": "kubectl-scale", "changed_at": "2026-11-26T08:00:00Z"},
    ], "changes": [{"object": "ConfigMap/ns/c", "action": "configured",
                    "diffs": [{"field": "data.value", "live": "x" * 1000, "declared": None}]}]})
    assert rows[0]["live"] == rows[0]["declared"] == "(hidden: Secret data)"
    assert rows[1]["live"] == "4" and rows[1]["manager"] == "kubectl-scale"
    assert rows[2]["live"] == "x" * 1000 and rows[2]["declared"] == "(absent)"  # cut on the page, once redacted


def test_redactor_masks_secrets_and_url_credentials():
    redact = vm.Redactor([b"hook-secret-1", b"op-token", b"", b"ab"])
    assert redact("bad hook-secret-1 and op-token") == "bad [secret] and [secret]"
    assert redact("fetch https://bot:ghp_abc@github.com/x failed") == "fetch https://***@github.com/x failed"
    assert redact(None) == ""


def test_times():
    assert reltime(1000, now=1000) == "just now"
    assert reltime(1000, now=1000 + 125) == "2 min ago"
    assert reltime(1000, now=1000 + 3 * 86400) == "3 d ago"
    assert reltime(1000 + 30, now=1000) == "in 30 s"
    assert reltime(None) == ""
    assert abstime(0) == "1970-01-01 00:00:00 UTC"


def test_headline_says_what_happened():
    assert vm.headline({"result": "success", "sha": "ab" * 20, "counts": {"created": 2, "unchanged": 1}}) == \
        ("ok", "Applied abababababab: 2 object(s) changed, 1 unchanged")
    assert vm.headline({"result": "success", "dry_run": True, "sha": "ab" * 20, "counts": {}})[1].startswith("Report mode")
    assert vm.headline({"result": "failure", "sha": None})[0] == "bad"
    assert vm.headline({"result": "success", "reason": "drift", "sha": "ab" * 20, "counts": {"configured": 1}})[1] == \
        "Drift corrected: 1 object(s) put back as abababababab declares them"
