"""A kustomize render reads the repository only: what ``kubectl kustomize`` would build from
outside the checkout (another tenant's checkout on a shared worker) or fetch from elsewhere is
refused before it runs, naming the kustomization and the entry.  The real kubectl shows that
each refused layout really leaves the checkout; builds inside it render as before."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.tree_support import CM, COMPONENT, write
from worker.errors import PermanentError
from worker.kustomization import walk
from worker.render import render

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture
def worker_dir(tmp_path: Path) -> Path:
    """A worker's disk: this repository's checkout in ``repo``, another tenant's base and
    component next to it, and symlinks in the checkout that lead to them."""
    write(tmp_path, {
        "tenant/kustomization.yaml": "resources: [cm.yaml]\n",
        "tenant/cm.yaml": CM.format(name="other-tenant"),
        "tenant-component/kustomization.yaml": COMPONENT + "resources: [cm.yaml]\n",
        "tenant-component/cm.yaml": CM.format(name="other-tenant"),
        "repo/deploy/app.yaml": CM.format(name="app"),
        "repo/deploy/sub/deeper/.keep": "",
    })
    os.symlink("../../tenant", tmp_path / "repo/deploy/shared")
    os.symlink(tmp_path / "tenant", tmp_path / "repo/deploy/absolute")
    os.symlink("sub/deeper", tmp_path / "repo/deploy/link")
    return tmp_path


ESCAPES = {
    "a base up the tree": ("resources: [app.yaml, ../../tenant]", "resources entry '../../tenant'"),
    "bases, the old spelling": ("resources: [app.yaml]\nbases: [../../tenant]", "bases entry '../../tenant'"),
    "a component": ("resources: [app.yaml]\ncomponents: [../../tenant-component]",
                    "components entry '../../tenant-component'"),
    "a key in capitals (kustomize matches keys in any case)": ("Resources: [app.yaml, ../../tenant]",
                                                               "resources entry '../../tenant'"),
    "a directory symlink in the checkout": ("resources: [app.yaml, shared]", "resources entry 'shared'"),
    "an absolute directory symlink": ("resources: [app.yaml, absolute]", "resources entry 'absolute'"),
    "'..' after a symlink (kustomize cleans the path as written)": (
        "resources: [app.yaml, link/../../../tenant]", "resources entry 'link/../../../tenant'"),
    "a !!binary path": (f"resources: [app.yaml, !!binary {base64.b64encode(b'../../tenant').decode()}]",
                        "resources entry '../../tenant'"),
}


@pytest.mark.parametrize("kustomization,entry", ESCAPES.values(), ids=list(ESCAPES))
def test_a_build_reaching_outside_the_checkout_is_refused(worker_dir, stack, kustomization, entry):
    deploy = worker_dir / "repo/deploy"
    (deploy / "kustomization.yaml").write_text(kustomization + "\n")
    built = subprocess.run([stack.kubectl, "kustomize", str(deploy)], capture_output=True, text=True)
    assert "other-tenant" in built.stdout, built.stderr  # kustomize itself would build the other tenant's

    with pytest.raises(PermanentError) as info:
        render(worker_dir / "repo", "deploy")
    assert str(info.value) == f"deploy/kustomization.yaml: {entry} leads outside the repository"


def test_a_base_reached_through_the_repository_is_checked_too(worker_dir, stack):
    write(worker_dir / "repo", {"deploy/kustomization.yaml": "resources: [app.yaml, ../base]\n",
                                "base/kustomization.yaml": "resources: [../../tenant]\n"})
    with pytest.raises(PermanentError, match=r"^base/kustomization\.yaml: resources entry '\.\./\.\./tenant' "
                                             r"leads outside the repository$"):
        render(worker_dir / "repo", "deploy")


def test_a_kustomization_file_symlinked_out_of_the_checkout_is_refused(worker_dir, stack):
    write(worker_dir / "repo", {"deploy/kustomization.yaml": "resources: [app.yaml, ../base]\n"})
    (worker_dir / "repo/base").mkdir()
    (worker_dir / "repo/base/kustomization.yaml").symlink_to(worker_dir / "tenant/kustomization.yaml")
    with pytest.raises(PermanentError, match=r"^base/kustomization\.yaml: symlink leads outside the repository$"):
        render(worker_dir / "repo", "deploy")


def test_an_overlay_with_its_base_components_patches_and_generators_in_the_repository_renders(tmp_path, stack):
    write(tmp_path, {
        "base/kustomization.yaml": "resources: [cm.yaml]\nconfigMapGenerator:\n"
                                   "  - {name: settings, files: [conf=settings.conf], envs: [app.env]}\n",
        "base/cm.yaml": CM.format(name="app"),
        "base/settings.conf": "a=1\n",
        "base/app.env": "MODE=prod\n",
        "label/kustomization.yaml": COMPONENT + "labels: [{pairs: {tier: web}}]\n",
        "overlay/kustomization.yaml": (
            "resources: [../base]\ncomponents: [../label]\nnamePrefix: prod-\n"
            "patches: [{path: patch.yaml}]\ntransformers: [annotate.yaml]\n"
            "replacements: [{path: replace.yaml}]\n"),
        "overlay/patch.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {k: patched}\n",
        "overlay/annotate.yaml": "apiVersion: builtin\nkind: AnnotationsTransformer\nmetadata: {name: a}\n"
                                 "annotations: {team: shop}\n"
                                 "fieldSpecs: [{path: metadata/annotations, create: true}]\n",
        "overlay/replace.yaml": "- source: {kind: ConfigMap, name: app, fieldPath: data.k}\n"
                                "  targets: [{select: {kind: ConfigMap, name: app}, fieldPaths: [data.copy],\n"
                                "             options: {create: true}}]\n",
    })
    rendered = {m.name: m.obj for m in render(tmp_path, "overlay")}
    assert sorted(rendered) == ["prod-app", *[n for n in rendered if n.startswith("prod-settings-")]]
    app = rendered["prod-app"]
    assert app["data"] == {"k": "patched", "copy": "patched"}
    assert app["metadata"]["labels"] == {"tier": "web"} and app["metadata"]["annotations"] == {"team": "shop"}


@pytest.mark.parametrize("overlay", ["base", "overlays/namespaced", "overlays/cluster-wide",
                                     "overlays/external-redis"])
def test_pullbridges_own_kustomizations_are_not_refused(overlay):
    build = walk(DEPLOY.parent, DEPLOY / overlay)
    assert build.refusals == [] and build.kustomizations


@pytest.fixture
def listener():
    """A TCP port on this machine that counts the connections made to it."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[tuple] = []

    def serve():
        while True:
            try:
                conn, peer = server.accept()
            except OSError:
                return
            accepted.append(peer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close alone does not)
    server.close()
    thread.join()


REMOTE = {
    "an https file": ("resources: [app.yaml, 'http://127.0.0.1:{port}/cm.yaml']",
                      "resources entry 'http://127.0.0.1:{port}/cm.yaml'"),
    "a git base over https": ("resources: [app.yaml, 'https://127.0.0.1:{port}/org/repo//deploy?ref=v1']",
                              "resources entry 'https://127.0.0.1:{port}/org/repo//deploy?ref=v1'"),
    "a git base over ssh": ("resources: [app.yaml, 'ssh://git@127.0.0.1:{port}/org/repo']",
                            "resources entry 'ssh://git@127.0.0.1:{port}/org/repo'"),
    "an scp-like git base": ("resources: [app.yaml, 'git@127.0.0.1:org/repo']",
                             "resources entry 'git@127.0.0.1:org/repo'"),
    "a github.com base": ("resources: [app.yaml, github.com/acme/base]", "resources entry 'github.com/acme/base'"),
    "a local repository by file://": ("resources: [app.yaml, 'file:///srv/other.git']",
                                      "resources entry 'file:///srv/other.git'"),
    "a remote component": ("resources: [app.yaml]\ncomponents: ['git::https://127.0.0.1:{port}/org/repo']",
                           "components entry 'git::https://127.0.0.1:{port}/org/repo'"),
    "a remote patch": ("resources: [app.yaml]\npatches: [{{path: 'HTTP://127.0.0.1:{port}/p.yaml'}}]",
                       "patches[].path entry 'HTTP://127.0.0.1:{port}/p.yaml'"),
    "a remote generator file": (
        "resources: [app.yaml]\nconfigMapGenerator: [{{name: c, files: ['k=http://127.0.0.1:{port}/k']}}]",
        "configMapGenerator[].files entry 'k=http://127.0.0.1:{port}/k'"),
    "a remote path in an inline transformer": (
        "resources: [app.yaml]\ntransformers:\n- |-\n  apiVersion: builtin\n  kind: PatchTransformer\n"
        "  metadata: {{name: p}}\n  path: http://127.0.0.1:{port}/p.yaml",
        "transformers: PatchTransformer path entry 'http://127.0.0.1:{port}/p.yaml'"),
}


@pytest.mark.parametrize("kustomization,entry", REMOTE.values(), ids=list(REMOTE))
def test_a_remote_base_or_file_is_refused_and_never_fetched(tmp_path, stack, listener, monkeypatch,
                                                            kustomization, entry):
    port, accepted = listener
    write(tmp_path, {"deploy/app.yaml": CM.format(name="app"),
                     "deploy/kustomization.yaml": kustomization.format(port=port) + "\n"})
    expected = (f"deploy/kustomization.yaml: {entry.format(port=port)} is remote: Pullbridge builds from the "
                "repository only (copy what it names into the repository)")
    with pytest.raises(PermanentError) as info:
        render(tmp_path, "deploy")
    assert str(info.value) == expected
    assert accepted == []
    monkeypatch.setenv("PULLBRIDGE_KUBECTL", str(tmp_path / "no-kubectl"))  # kubectl is not even started
    with pytest.raises(PermanentError) as again:
        render(tmp_path, "deploy")
    assert str(again.value) == expected


def test_helm_charts_are_refused_by_name(tmp_path, stack):
    write(tmp_path, {"deploy/kustomization.yaml":
                     "helmCharts: [{name: redis, repo: 'https://charts.example.com', version: 1.0.0}]\n"})
    with pytest.raises(PermanentError, match=r"^deploy/kustomization\.yaml: helmCharts cannot be built: Pullbridge "
                                             r"runs kustomize without Helm"):
        render(tmp_path, "deploy")


def test_a_plugin_configuration_built_from_a_directory_is_refused(tmp_path, stack):
    """A transformer built by a kustomization is what that build's own patches make it, so its
    file paths (an ``https://`` patch) cannot be known before kustomize runs."""
    write(tmp_path, {
        "deploy/kustomization.yaml": "resources: [app.yaml]\ntransformers: [../transformers]\n",
        "deploy/app.yaml": CM.format(name="app"),
        "transformers/kustomization.yaml": "resources: [annotate.yaml]\n",
        "transformers/annotate.yaml": "apiVersion: builtin\nkind: AnnotationsTransformer\nmetadata: {name: a}\n"
                                      "annotations: {team: shop}\n",
    })
    with pytest.raises(PermanentError, match=r"^deploy/kustomization\.yaml: transformers entry '\.\./transformers' "
                                             r"is a directory: Pullbridge takes transformers from files or inline"):
        render(tmp_path, "deploy")


def test_a_kustomization_that_cannot_be_read_is_refused_before_kustomize_follows_it(tmp_path, stack):
    write(tmp_path, {"deploy/kustomization.yaml": "resources: [../base]\n",
                     "base/kustomization.yaml": "resources: [a.yaml\n"})
    with pytest.raises(PermanentError, match=r"^base/kustomization\.yaml: invalid YAML: line 2: "):
        render(tmp_path, "deploy")


@pytest.mark.parametrize("kustomization, problem", [
    ("resources: &r [app.yaml, *r]\n", r"line 1: YAML alias \*r lies inside the node it names"),
    ("resources: [app.yaml]\nnamePrefix: " + "[" * 900 + "]" * 900 + "\n", "line 2: YAML nested deeper than 200"),
])
def test_a_kustomization_that_cannot_be_loaded_safely_is_refused_naming_the_line(tmp_path, stack,
                                                                                 kustomization, problem):
    """Loaded, the first one contains itself: following its resources never ended (RecursionError)."""
    write(tmp_path, {"deploy/kustomization.yaml": kustomization, "deploy/app.yaml": CM.format(name="app")})
    with pytest.raises(PermanentError, match=rf"^deploy/kustomization\.yaml: {problem}"):
        render(tmp_path, "deploy")
