"""KUBECONFIG may list several files, as kubectl allows: the worker merges them all."""

import json
import os

import pytest
import yaml
from kubernetes import client

from worker.errors import PermanentError
from worker.kube import load_api_client


def server_version(api) -> str:
    try:
        return client.VersionApi(api).get_code().git_version
    finally:
        api.close()


def test_a_missing_first_file_is_skipped_like_kubectl_does(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "missing"), stack.kubeconfig]))
    assert server_version(load_api_client()).startswith("v1.")


def test_a_config_split_over_two_files_is_merged(stack, tmp_path, monkeypatch):
    with open(stack.kubeconfig) as fh:
        full = yaml.safe_load(fh)
    # Clusters and users in one file, the contexts and current-context in another.
    creds = tmp_path / "creds"
    creds.write_text(json.dumps({"apiVersion": "v1", "kind": "Config",
                                 "clusters": full["clusters"], "users": full["users"]}))
    contexts = tmp_path / "contexts"
    contexts.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "contexts": full["contexts"],
                                    "current-context": full["current-context"]}))
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(contexts), str(creds)]))
    assert server_version(load_api_client()).startswith("v1.")


def test_no_usable_file_in_the_list_is_a_permanent_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    with pytest.raises(PermanentError, match="no Kubernetes configuration"):
        load_api_client()
