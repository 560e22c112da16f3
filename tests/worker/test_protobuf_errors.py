"""A refusal the API server sends in protobuf is read as fully as one in JSON.

A write whose answer the worker does not read asks for protobuf, and the API
server refuses it in protobuf too.  Its details must survive: a 404 naming one
object (its Namespace deleted between the dry-run and the write) is a
permanent error about that object, not "the kind is no longer served" (which
would drop the core group from discovery and retry), and a 422 lists its
field causes.  On the real API server, plus the decoding of bodies that are
no Status.
"""

from __future__ import annotations

import uuid

import pytest

from worker.errors import PermanentError
from worker.kube import FIELD_MANAGER, ApiError, Kube, sync_error
from worker.protobuf_status import MAGIC, status_body

APPLY = {"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": "Ignore"}


def apply_in_protobuf(kube: Kube, path: str, obj: dict) -> ApiError:
    """The ApiError of a real server-side apply of ``obj`` at ``path`` whose answer is asked for in protobuf."""
    with pytest.raises(ApiError) as raised:
        kube.request("PATCH", path, body=obj, query=APPLY, content_type="application/apply-patch+yaml",
                     decode=False, protobuf=True)
    return raised.value


@pytest.mark.stack
def test_a_404_about_one_object_is_not_taken_for_a_kind_no_longer_served(kube):
    worker = Kube(kube)
    worker.mapping("v1", "ConfigMap")
    gone = f"pb-gone-{uuid.uuid4().hex[:8]}"
    error = apply_in_protobuf(worker, f"/api/v1/namespaces/{gone}/configmaps/app", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app", "namespace": gone}})
    assert (error.status, error.message, error.reason) == (404, f'namespaces "{gone}" not found', "NotFound")
    assert not error.not_served and not error.temporary
    failed = sync_error(error, f"applying ConfigMap/{gone}/app")
    assert isinstance(failed, PermanentError)
    assert str(failed) == f'applying ConfigMap/{gone}/app: HTTP 404: namespaces "{gone}" not found'
    asked = worker.requests
    worker.mapping("v1", "ConfigMap")
    assert worker.requests == asked, "the core group's discovery was dropped for one object's 404"


@pytest.mark.stack
def test_a_404_about_the_kind_still_says_it_is_not_served(kube, namespace):
    error = apply_in_protobuf(Kube(kube), f"/apis/apps/v1/namespaces/{namespace}/nosuchthings/x", {
        "apiVersion": "apps/v1", "kind": "NoSuchThing", "metadata": {"name": "x"}})
    assert error.status == 404 and error.not_served and error.temporary


@pytest.mark.stack
def test_a_422_in_protobuf_names_its_field(kube, namespace):
    error = apply_in_protobuf(Kube(kube), f"/api/v1/namespaces/{namespace}/configmaps/Bad_Name", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name", "namespace": namespace}})
    assert error.status == 422 and error.reason == "Invalid"
    assert error.detail.startswith('metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'), \
        error.detail


def test_a_protobuf_body_that_is_no_status_keeps_its_readable_text():
    not_a_status = MAGIC + b"\n\x0e\n\x02v1\x12\x08Endpoint" + b"\x12\x15the readable message."
    assert status_body(not_a_status) == {"message": "the readable message."}
    truncated = MAGIC + b"\n\x0c\n\x02v1\x12\x06Status\x12\x7fcut short, the rest is lost"
    assert status_body(truncated) == {"message": "cut short, the rest is lost"}
    assert status_body(b"\x00\x01") == {"message": "(binary error body)"}
