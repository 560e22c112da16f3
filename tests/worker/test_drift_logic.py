"""Unit tests of drift's pure logic: the ignore-fields syntax, the field comparison, who changed a field."""

from __future__ import annotations

import pytest

from worker.drift_compare import changed_by, differences, value_at
from worker.ownership import Tok, is_ignored, parse_path, show_path, strip_ignored


def test_parse_and_show_round_trip():
    for text in ("spec.replicas", "metadata.annotations[example.com/build]",
                 "spec.template.spec.containers[name=nginx].image", "spec.ports[0].port",
                 "spec.template.spec.containers[*].resources"):
        assert show_path(parse_path(text)).replace(".*", "[*]") == text.replace(".*", "[*]")
    assert parse_path("a.*.b")[1] == Tok("any")


@pytest.mark.parametrize("bad", ["", "spec.", ".spec", "spec..x", "spec[x", "spec[]"])
def test_malformed_paths_are_errors(bad):
    with pytest.raises(ValueError):
        parse_path(bad)


def test_ignored_covers_subtrees_and_wildcards():
    patterns = [parse_path("spec.replicas"), parse_path("spec.template.spec.containers[*].image")]
    assert is_ignored(parse_path("spec.replicas"), patterns)
    assert is_ignored(parse_path("spec.template.spec.containers[name=a].image"), patterns)
    assert not is_ignored(parse_path("spec.template.spec.containers[name=a].env"), patterns)


def test_strip_removes_fields_but_keeps_annotation():
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "d", "annotations": {"pullbridge.io/ignore-fields": "spec.replicas, "
                                                                                     "spec.template.spec.containers[name=b].image"}},
           "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "x"},
                                                                      {"name": "b", "image": "y"}]}}}}
    strip_ignored(obj)
    assert "replicas" not in obj["spec"]
    assert obj["spec"]["template"]["spec"]["containers"] == [{"name": "a", "image": "x"}, {"name": "b"}]
    assert "pullbridge.io/ignore-fields" in obj["metadata"]["annotations"]


@pytest.mark.parametrize("path", ["metadata.name", "metadata.annotations", "kind",
                                  "metadata.annotations[pullbridge.io/ignore-fields]"])
def test_strip_refuses_identity_fields(path):
    obj = {"kind": "ConfigMap", "metadata": {"name": "x", "annotations": {"pullbridge.io/ignore-fields": path}}}
    with pytest.raises(ValueError):
        strip_ignored(obj)


def test_differences_by_name_and_scalar():
    declared = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "1"}},
                "spec": {"replicas": 1, "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}]}]}}}}
    live = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "n", "labels": {"a": "1", "extra": "x"}, "uid": "u"},
            "spec": {"replicas": 4, "strategy": {}, "template": {"spec": {"containers": [
                {"name": "side", "image": "busybox"},
                {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "2"}]}]}}},
            "status": {"replicas": 4}}
    found = {show_path(p): (d, l) for p, d, l in differences(declared, live)}
    assert found == {"spec.replicas": (1, 4),
                     "spec.template.spec.containers[name=web].env[name=A].value": ("1", "2")}


def test_differences_missing_and_ignored():
    declared = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}
    live = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    assert [(show_path(p), d, l) for p, d, l in differences(declared, live)] == [("data.b", "2", None)]
    assert list(differences(declared, live, (), [parse_path("data.b")])) == []
    assert list(differences({"x": True}, {"x": 1})) and not list(differences({"x": 1}, {"x": 1}))


def test_changed_by_names_the_newest_other_manager():
    live = {"metadata": {"managedFields": [
        {"manager": "pullbridge", "operation": "Apply", "time": "2026-01-01T00:00:00Z",
         "fieldsV1": {"f:spec": {"f:template": {}}}},
        {"manager": "kubectl", "operation": "Update", "subresource": "scale", "time": "2026-01-02T00:00:00Z",
         "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {"manager": "kubectl-edit", "operation": "Update", "time": "2026-01-03T00:00:00Z",
         "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
             'k:{"name":"web"}': {".": {}, "f:image": {}}}}}}}},
    ]}, "spec": {"replicas": 4, "template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}}}
    owner = changed_by(live, parse_path("spec.replicas"))
    assert (owner["manager"], owner["subresource"]) == ("kubectl", "scale")
    assert changed_by(live, parse_path("spec.template.spec.containers[name=web].image"))["manager"] == "kubectl-edit"
    assert changed_by(live, parse_path("spec.template.spec.containers[name=web].env")) is None
    assert value_at(live, parse_path("spec.template.spec.containers[name=web].image")) == "x"


def test_index_paths_on_named_lists_are_translated_to_names():
    from worker.drift_compare import by_name
    declared = {"spec": {"containers": [{"name": "web", "image": "a"}, {"name": "side"}],
                         "rules": [{"host": "x"}]}}
    assert show_path(by_name(parse_path("spec.containers[1].image"), declared)) == "spec.containers[name=side].image"
    assert show_path(by_name(parse_path("spec.rules[0].host"), declared)) == "spec.rules[0].host"  # no names
    assert show_path(by_name(parse_path("spec.containers[5]"), declared)) == "spec.containers[5]"  # no such item
    assert show_path(by_name(parse_path("*.containers[0]"), declared)) == "*.containers[0]"


def test_a_string_data_secret_is_compared_as_stored_and_its_ignore_paths_follow():
    from worker.drift import resolve
    from worker.kube import Mapping
    from worker.render import Manifest

    class Mappings:  # only what resolve asks of the API server
        def mapping(self, api_version, kind):
            return Mapping("", "v1", kind, "secrets", True)

    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "db", "annotations": {"pullbridge.io/ignore-fields": "stringData.token"}},
              "data": {"user": "YQ==", "password": "b2xk"}, "stringData": {"password": "new", "token": "t"}}
    [target], notes = resolve(Mappings(), [Manifest(secret, "s.yaml", 1)], "apps")
    assert notes == [] and "stringData" not in target.obj
    assert target.obj["data"] == {"user": "YQ==", "password": "bmV3", "token": "dA=="}  # stringData wins
    assert is_ignored(parse_path("data.token"), target.ignored)
    assert not is_ignored(parse_path("data.password"), target.ignored)
    assert secret["stringData"] == {"password": "new", "token": "t"}  # the manifest itself is untouched
