"""Unit tests of hiding a Secret's values in API error text (worker.secretmask, worker.kube.ApiError)."""

from __future__ import annotations

import base64
import json

from worker.kube import ApiError
from worker.secretmask import HIDDEN, secret_mask


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(**fields) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, **fields}


def test_data_and_string_data_values_are_hidden_in_both_forms():
    mask = secret_mask(secret(data={"password": b64("declared-PW")}),
                       secret(stringData={"token": "live-TOKEN"}))
    text = f"from {b64('declared-PW')} / declared-PW to live-TOKEN / {b64('live-TOKEN')}"
    assert mask.hide(text) == f"from {HIDDEN} / {HIDDEN} to {HIDDEN} / {HIDDEN}"


def test_a_multi_line_value_is_hidden_as_quoted_too():
    key = "-----BEGIN KEY-----\nc2VjcmV0\n-----END KEY-----"
    mask = secret_mask(secret(stringData={"tls.key": key}))
    assert mask.hide(f"Invalid value: {json.dumps(key)}") == f'Invalid value: "{HIDDEN}"'


def test_values_that_are_not_strings_and_short_ones_in_a_type_check_error():
    mask = secret_mask(secret(stringData={"pin": 84736251, "on": True, "port": 80}))
    assert mask.hide("pin 84736251 and the data[port] key") == f"pin {HIDDEN} and the data[port] key"
    text = "errors:\n  .stringData.on: expected string, got &{true}\n  .stringData.port: expected string, got &{80}"
    assert mask.hide(text) == (f"errors:\n  .stringData.on: expected string, got {HIDDEN}\n"
                               f"  .stringData.port: expected string, got {HIDDEN}")


def test_only_secrets_are_masked():
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"value": "visible-value"}}
    assert secret_mask(configmap, None, {"kind": "DeleteOptions"}) is None
    assert secret_mask(configmap, secret(data={"pw": b64("hidden-PW")})).hide("visible-value hidden-PW") == \
        f"visible-value {HIDDEN}"


def test_api_error_hides_values_in_its_status_and_before_cutting_a_plain_body():
    mask = secret_mask(secret(data={"password": b64("declared-PW")}))
    status = {"kind": "Status", "message": "denied: declared-PW", "reason": "Invalid",
              "details": {"causes": [{"message": "quoted declared-PW", "field": "data[password]"}]}}
    exc = ApiError(422, json.dumps(status).encode(), "PATCH", "/api/v1/namespaces/x/secrets/db", mask=mask)
    assert exc.message == f"denied: {HIDDEN}" and "declared-PW" not in str(exc)
    assert exc.body["details"]["causes"] == [{"message": f"quoted {HIDDEN}", "field": "data[password]"}]
    plain = ("x" * 290 + "declared-PW").encode()  # the cut to 300 characters falls inside the value
    exc = ApiError(500, plain, "PATCH", "/api/v1/namespaces/x/secrets/db", mask=mask)
    assert "decl" not in exc.message and exc.message.startswith("x" * 290)
