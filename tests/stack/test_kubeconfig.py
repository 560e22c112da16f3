"""The stack's kubeconfig works wherever the stack lives, whatever its directory is called."""

import shutil
from pathlib import Path

import yaml
from kubernetes import client, config

from pullbridge.stack import certs

ODD_DIR = "pb #1: it's \"odd\" {x} - [y]"


def test_paths_with_yaml_syntax_in_them_are_read_back_whole(tmp_path):
    pki = tmp_path / ODD_DIR / "pki"
    paths = {name: pki / name for name in ("ca.crt", "admin.crt", "admin.key")}
    loaded = yaml.safe_load(certs.kubeconfig_text("https://127.0.0.1:16443", paths))
    assert loaded["clusters"][0]["cluster"] == {"server": "https://127.0.0.1:16443",
                                                "certificate-authority": str(paths["ca.crt"])}
    assert loaded["users"][0]["user"] == {"client-certificate": str(paths["admin.crt"]),
                                          "client-key": str(paths["admin.key"])}
    assert loaded["current-context"] == "pullbridge-local"


def test_the_client_reaches_the_api_server_through_an_odd_directory(stack, tmp_path):
    pki = tmp_path / ODD_DIR / "pki"
    shutil.copytree(Path(stack.kubeconfig).parent / "pki", pki)
    server = yaml.safe_load(Path(stack.kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
    # The kubeconfig's own path must not hold ":", the list separator of KUBECONFIG.
    kubeconfig = tmp_path / "pb #2" / "kubeconfig"
    kubeconfig.parent.mkdir()
    certs.write_kubeconfig(kubeconfig, server, {name: pki / name for name in ("ca.crt", "admin.crt",
                                                                              "admin.key")})
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        assert client.VersionApi(api).get_code().git_version.startswith("v1.")
    finally:
        api.close()
    assert not list(kubeconfig.parent.glob("*.tmp")), "written in place of a temporary file"
