"""Drift detection: what counts as unchanged without asking the API server."""

from __future__ import annotations

from worker.apply import Item, describe_api_error, object_id
from worker.apply_diff import (declares_fields, digest, is_subset, managed_by_us, normalized, unchanged_as_recorded,
                               unchanged_by_apply)
from worker.kube import ApiError
from worker.render import Manifest

DESIRED = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
    "spec": {"replicas": 2, "template": {"spec": {"containers": [
        {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}},
}
LIVE = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}, "uid": "u1",
                 "resourceVersion": "42", "generation": 3,
                 "annotations": {"deployment.kubernetes.io/revision": "1"},
                 "managedFields": [{"manager": "pullbridge", "operation": "Apply"},
                                   {"manager": "kube-controller-manager", "operation": "Update"}]},
    "spec": {"replicas": 2, "progressDeadlineSeconds": 600, "template": {"spec": {
        "restartPolicy": "Always",
        "containers": [{"name": "app", "image": "nginx:1.27", "terminationMessagePath": "/dev/termination-log",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}},
    "status": {"replicas": 2},
}


def test_server_defaults_do_not_count_as_drift():
    assert is_subset(DESIRED, LIVE)


def test_changed_value_list_length_or_type_is_drift():
    import copy
    for mutate in (lambda d: d["spec"].update(replicas=3),
                   lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="nginx:1.28"),
                   lambda d: d["spec"]["template"]["spec"]["containers"].append({"name": "side"}),
                   lambda d: d["metadata"]["labels"].update(tier="web"),
                   lambda d: d["spec"].update(replicas="2"),
                   lambda d: d["spec"].update(paused=True)):
        desired = copy.deepcopy(DESIRED)
        mutate(desired)
        assert not is_subset(desired, LIVE)


def test_empty_and_null_desired_values_match_absent_live_ones():
    assert is_subset({"metadata": {"annotations": None, "labels": {}}, "data": []}, {"metadata": {}})
    assert not is_subset({"enabled": False}, {"enabled": 0})


def test_normalized_ignores_bookkeeping_and_status():
    other = {**LIVE, "status": {"replicas": 0},
             "metadata": {**LIVE["metadata"], "resourceVersion": "43", "generation": 4,
                          "managedFields": []}}
    assert normalized(other) == normalized(LIVE)
    changed = {**LIVE, "spec": {**LIVE["spec"], "replicas": 5}}
    assert normalized(changed) != normalized(LIVE)


def test_digest_is_stable_and_key_order_free():
    a = {"b": 1, "a": {"y": 2, "x": 1}}
    b = {"a": {"x": 1, "y": 2}, "b": 1}
    assert digest(a) == digest(b) and digest(a) != digest({**a, "b": 2})


def test_ownership():
    assert managed_by_us(LIVE)
    assert not managed_by_us({"metadata": {"managedFields": [{"manager": "kubectl", "operation": "Apply"}]}})
    bare_ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    assert not declares_fields(bare_ns) and managed_by_us({"metadata": {}}, bare_ns)
    assert declares_fields({**bare_ns, "metadata": {"name": "x", "labels": {"a": "b"}}})


THEIRS = {**LIVE, "metadata": {**LIVE["metadata"], "managedFields": [{"manager": "kubectl", "operation": "Apply"}]}}
SCALED = {**LIVE, "spec": {**LIVE["spec"], "replicas": 5}}


def test_unchanged_as_recorded_needs_the_recorded_manifest_our_ownership_and_every_field_live():
    recorded = {"v": "apps/v1", "h": digest(DESIRED)}
    assert unchanged_as_recorded(DESIRED, LIVE, recorded, digest(DESIRED))
    assert not unchanged_as_recorded(DESIRED, None, recorded, digest(DESIRED))
    assert not unchanged_as_recorded(DESIRED, LIVE, None, digest(DESIRED))
    assert not unchanged_as_recorded(DESIRED, LIVE, {"v": "apps/v1", "h": "older"}, digest(DESIRED))
    assert not unchanged_as_recorded(DESIRED, THEIRS, recorded, digest(DESIRED))
    assert not unchanged_as_recorded(DESIRED, SCALED, recorded, digest(DESIRED))


def test_unchanged_by_apply_when_the_dry_run_changes_only_bookkeeping_of_an_object_we_manage():
    answer = {**LIVE, "metadata": {**LIVE["metadata"], "resourceVersion": "43"}}
    assert unchanged_by_apply(DESIRED, LIVE, answer)
    assert not unchanged_by_apply(DESIRED, SCALED, answer)
    assert not unchanged_by_apply(DESIRED, THEIRS, {**answer, "metadata": THEIRS["metadata"]})


def test_inventory_id():
    assert object_id("apps", "Deployment", "shop", "web") == "shop_web_apps_Deployment"
    assert object_id("", "Namespace", None, "shop") == "_shop__Namespace"


def test_invalid_object_error_names_object_and_file():
    item = Item(Manifest(DESIRED, "deploy/app.yaml", 2), DESIRED)
    body = (b'{"kind":"Status","status":"Failure","reason":"Invalid","code":422,"message":'
            b'"Deployment.apps \\"web\\" is invalid: spec.replicas: Invalid value: -1: must be '
            b'greater than or equal to 0"}')
    text = describe_api_error(item, ApiError(422, body, "PATCH", "/x"))
    assert text == ("Deployment/shop/web (deploy/app.yaml, doc 2): spec.replicas: Invalid value: -1: "
                    "must be greater than or equal to 0")
