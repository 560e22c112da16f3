"""Rendering: files and documents found, order, provenance, and refusals."""

from __future__ import annotations

import json
import os

import pytest

from worker import render as render_module
from worker.errors import PermanentError
from tests.tree_support import CM, write
from worker.render import Manifest, render, sort_manifests

def refs(manifests):
    return [(m.ref, m.source) for m in manifests]


def test_nested_multi_document_with_provenance(tmp_path):
    write(tmp_path, {
        "deploy/app.yaml": "---\n" + CM.format(name="a") + "---\n" + CM.format(name="b"),
        "deploy/nested/deeper/c.yml": CM.format(name="c"),
        "deploy/d.json": '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}}',
        "deploy/README.md": "# not a manifest",
        "deploy/values.yaml": "replicas: 3\nimage: nginx\n",
        "deploy/.hidden/e.yaml": CM.format(name="e"),
        "other/f.yaml": CM.format(name="f"),
    })
    got = refs(render(tmp_path, "deploy"))
    assert got == [
        ("ConfigMap/a", "deploy/app.yaml, doc 1"),
        ("ConfigMap/b", "deploy/app.yaml, doc 2"),
        ("ConfigMap/c", "deploy/nested/deeper/c.yml, doc 1"),
        ("ConfigMap/d", "deploy/d.json, doc 1"),
    ]


def test_document_index_counts_empty_documents(tmp_path):
    write(tmp_path, {"x.yaml": CM.format(name="a") + "---\n---\n" + CM.format(name="b")})
    assert refs(render(tmp_path)) == [("ConfigMap/a", "x.yaml, doc 1"), ("ConfigMap/b", "x.yaml, doc 3")]


def test_list_kind_is_expanded(tmp_path):
    write(tmp_path, {"l.yaml": "apiVersion: v1\nkind: List\nitems:\n"
                               "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
                               "- {apiVersion: v1, kind: Secret, metadata: {name: s}}\n"})
    assert refs(render(tmp_path)) == [("ConfigMap/a", "l.yaml, doc 1"), ("Secret/s", "l.yaml, doc 1")]


def m(kind, name, ns=None, api="v1"):
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return Manifest({"apiVersion": api, "kind": kind, "metadata": meta}, "f.yaml", 1)


def test_order_namespaces_and_crds_first_then_stable():
    items = [m("Deployment", "b", "x", "apps/v1"), m("Widget", "w", "x", "example.com/v1"),
             m("ConfigMap", "z", "x"), m("Namespace", "x"), m("ConfigMap", "a", "x"),
             m("CustomResourceDefinition", "widgets.example.com", api="apiextensions.k8s.io/v1"),
             m("Deployment", "a", "x", "apps/v1"), m("Gadget", "g", "x", "example.com/v1"),
             m("ServiceAccount", "s", "x")]
    order = [i.ref for i in sort_manifests(items)]
    assert order == ["CustomResourceDefinition/widgets.example.com", "Namespace/x", "ServiceAccount/x/s",
                     "ConfigMap/x/a", "ConfigMap/x/z", "Deployment/x/a", "Deployment/x/b",
                     "Gadget/x/g", "Widget/x/w"]
    assert [i.ref for i in sort_manifests(list(reversed(items)))] == order


@pytest.mark.parametrize("text, message", [
    ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n", "bad.yaml: line"),
    (CM.format(name="a") + "---\n- just\n- a list\n", "bad.yaml, doc 2: not a Kubernetes object"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "bad.yaml, doc 1: ConfigMap has no metadata.name"),
])
def test_bad_input_is_permanent_and_names_the_file(tmp_path, text, message):
    write(tmp_path, {"bad.yaml": text})
    with pytest.raises(PermanentError, match=message.replace("[", r"\[")):
        render(tmp_path)


@pytest.mark.parametrize("text", [
    "kind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n",
    "apiversion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    "apiVersion: v1\nKind: ConfigMap\nmetadata:\n  name: a\n",
])
def test_an_object_alone_in_its_file_without_apiversion_or_kind_is_refused_not_ignored(tmp_path, text):
    """Ignored, the object would be missing from the commit, and pruned."""
    write(tmp_path, {"deploy/cm.yaml": text, "deploy/other.yaml": CM.format(name="b"),
                     "chart/Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n"})
    with pytest.raises(PermanentError, match=r"^deploy/cm.yaml, doc 1: not a Kubernetes object \(apiVersion"):
        render(tmp_path)


@pytest.mark.parametrize("file, text", [
    ("deploy/objects.yaml", "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n"),
    ("deploy/objects.json", '[{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}]'),
])
def test_a_bare_list_of_objects_is_refused_not_ignored(tmp_path, file, text):
    """kubectl refuses it; ignored, the objects would be missing from the commit, and pruned."""
    write(tmp_path, {file: text, "deploy/other.yaml": CM.format(name="b"),
                     "deploy/tools.yaml": "plugins:\n- name: lint\n  kind: check\n"})
    with pytest.raises(PermanentError, match=rf"^{file}, doc 1: not a Kubernetes object \(apiVersion and kind"):
        render(tmp_path, "deploy")


def test_yaml_with_custom_tags_that_declares_no_manifest_is_ignored(tmp_path):
    write(tmp_path, {
        "mkdocs.yml": "site_name: docs\nmarkdown_extensions:\n  - pymdownx.emoji:\n"
                      "      emoji_generator: !!python/name:material.extensions.emoji.to_svg\n",
        "infra/stack.yaml": "Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n"
                            "    Properties:\n      BucketName: !Sub {Name: x}\n"
                            "Outputs:\n  Arn: {Value: !GetAtt [Bucket, Arn]}\n  Name: {Value: !Ref Bucket}\n",
        "deploy/cm.yaml": CM.format(name="a"),
    })
    assert refs(render(tmp_path)) == [("ConfigMap/a", "deploy/cm.yaml, doc 1")]


def test_manifest_with_a_custom_tag_is_refused_naming_file_doc_and_line(tmp_path):
    write(tmp_path, {"cm.yaml": CM.format(name="a") + "---\n" + CM.format(name="b").replace("k: v", "k: !Ref v")})
    with pytest.raises(PermanentError,
                       match="^cm.yaml, doc 2: line 13: YAML tag '!Ref' cannot be used in a Kubernetes object$"):
        render(tmp_path)


def test_value_not_matching_its_explicit_tag_is_refused_without_quoting_it(tmp_path):
    write(tmp_path, {"s.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n"
                               "stringData:\n  password: !!bool hunter2\n"})
    with pytest.raises(PermanentError, match="^s.yaml: invalid YAML: a value does not match its explicit tag$"):
        render(tmp_path)


def test_duplicate_object_names_both_places(tmp_path):
    write(tmp_path, {"a.yaml": CM.format(name="same"), "b/b.yaml": CM.format(name="same")})
    with pytest.raises(PermanentError, match=r"ConfigMap/same is declared twice: a.yaml, doc 1 and b/b.yaml, doc 1"):
        render(tmp_path)


def test_symlink_leaving_the_repo_is_refused(tmp_path):
    outside = tmp_path / "outside"
    write(outside, {"secret.yaml": CM.format(name="stolen")})
    repo = tmp_path / "repo"
    write(repo, {"ok.yaml": CM.format(name="ok")})
    os.symlink(outside / "secret.yaml", repo / "link.yaml")
    with pytest.raises(PermanentError, match="link.yaml: symlink leads outside the repository"):
        render(repo)
    (repo / "link.yaml").unlink()
    os.symlink(outside, repo / "dirlink")
    with pytest.raises(PermanentError, match="dirlink: symlink leads outside"):
        render(repo)


def test_symlink_inside_the_repo_is_followed(tmp_path):
    write(tmp_path, {"shared/a.yaml": CM.format(name="a")})
    (tmp_path / "deploy").mkdir()
    os.symlink("../shared", tmp_path / "deploy" / "shared")
    assert refs(render(tmp_path, "deploy")) == [("ConfigMap/a", "deploy/shared/a.yaml, doc 1")]


@pytest.mark.parametrize("link, target", [("app.yaml", "missing.yaml"), ("shared", "../gone"),
                                          ("loop.yaml", "loop.yaml")])
def test_a_symlink_leading_nowhere_is_refused_not_skipped(tmp_path, link, target):
    """Skipped, what it named would silently be missing from the commit, and pruned; a loop of
    links failed the sync with an error that was retried, naming the worker's checkout path."""
    write(tmp_path, {"deploy/ok.yaml": CM.format(name="ok")})
    os.symlink(target, tmp_path / "deploy" / link)
    with pytest.raises(PermanentError) as info:
        render(tmp_path, "deploy")
    assert str(info.value) == (f"deploy/{link}: symlink leads nowhere (its target is missing, or links lead "
                               "in a loop)")


def test_a_file_or_folder_reached_twice_through_symlinks_is_read_once(tmp_path):
    """Whether a link names a file or the folder holding it, the objects are declared once, under
    the first path that reaches them (name order), not 'declared twice' for files only."""
    write(tmp_path, {"deploy/base/a.yaml": CM.format(name="a"), "deploy/base/b.yaml": CM.format(name="b")})
    os.symlink("base/a.yaml", tmp_path / "deploy" / "a-link.yaml")
    os.symlink("base", tmp_path / "deploy" / "z-link")
    os.symlink("..", tmp_path / "deploy" / "base" / "up")
    assert refs(render(tmp_path, "deploy")) == [("ConfigMap/a", "deploy/a-link.yaml, doc 1"),
                                                ("ConfigMap/b", "deploy/base/b.yaml, doc 1")]


def test_folders_nested_deeper_than_pythons_recursion_limit_render(tmp_path, nested_folders):
    write(tmp_path, {"deploy/cm.yaml": CM.format(name="top")})
    write(nested_folders(tmp_path / "deploy", 1100), {"deep.yaml": CM.format(name="deep")})
    assert [m.name for m in render(tmp_path, "deploy")] == ["deep", "top"]


def test_configured_path_outside_or_missing(tmp_path):
    os.symlink("/", tmp_path / "root")
    with pytest.raises(PermanentError, match="leads outside"):
        render(tmp_path, "root")
    with pytest.raises(PermanentError, match="does not exist"):
        render(tmp_path, "nope")


def test_kustomize_is_rendered_by_real_kubectl(tmp_path, stack):
    write(tmp_path, {
        "base/cm.yaml": CM.format(name="app"),
        "base/kustomization.yaml": "resources: [cm.yaml]\n",
        "overlay/kustomization.yaml": "resources: [../base]\nnamePrefix: prod-\nnamespace: shop\n"
                                      "commonLabels: {tier: web}\n",
    })
    got = render(tmp_path, "overlay")
    assert refs(got) == [("ConfigMap/shop/prod-app", "overlay/kustomization.yaml, doc 1")]
    assert got[0].obj["metadata"]["labels"] == {"tier": "web"}


def test_a_file_name_that_is_not_utf8_or_not_printable_is_named_escaped(tmp_path):
    """Git allows any bytes in a name; a lone surrogate in a source could not be stored or shown,
    and a control or bidi character would garble, or reorder, what the pages and logs show."""
    folder = os.fsencode(tmp_path / "deploy")
    os.makedirs(folder + b"/d\xe9j\xe0")
    with open(folder + b"/d\xe9j\xe0/caf\xe9.yaml", "w") as f:
        f.write(CM.format(name="a"))
    assert refs(render(tmp_path, "deploy")) == [("ConfigMap/a", "deploy/d\\xe9j\\xe0/caf\\xe9.yaml, doc 1")]
    write(tmp_path, {"deploy/bidi-\u202egnp.yaml": CM.format(name="b"), "deploy/line\nbreak.yaml": CM.format(name="c")})
    sources = dict(refs(render(tmp_path, "deploy")))
    assert (sources["ConfigMap/b"], sources["ConfigMap/c"]) == ("deploy/bidi-\\u202egnp.yaml, doc 1",
                                                                "deploy/line\\nbreak.yaml, doc 1")
    os.symlink(tmp_path.parent, folder + b"/\xff.yaml")
    with pytest.raises(PermanentError, match=r"^deploy/\\xff.yaml: symlink leads outside"):
        render(tmp_path, "deploy")


def test_a_kustomization_refused_in_a_folder_whose_name_is_not_utf8_is_named_escaped(tmp_path):
    """The kustomization checks name the file as the render does: a lone surrogate in the
    message could not be stored in the sync record, nor logged."""
    folder = os.fsencode(tmp_path / "k") + b"\xff"
    os.makedirs(folder)
    with open(folder + b"/kustomization.yaml", "w") as f:
        f.write("resources: [\n")
    with pytest.raises(PermanentError) as info:
        render(tmp_path, os.fsdecode(os.path.basename(folder)))
    assert str(info.value).startswith("k\\xff/kustomization.yaml: "), info.value
    str(info.value).encode("utf-8")


def test_a_kustomize_build_larger_than_the_bound_is_refused_not_read(tmp_path, stack, monkeypatch):
    """A small kustomization repeating one file in a generator builds as much as it likes (a 3 KB
    one and a 1 MB file, which git compresses to a few KB, build 200 MB): held in memory, then
    parsed, such output could take the worker down.  Here the bound is 1 MiB, the build 2.4 MB."""
    monkeypatch.setattr(render_module, "MAX_MANIFEST_BYTES", render_module.MIB)
    write(tmp_path, {"k/big.txt": "x" * 300_000, "k/kustomization.yaml": "configMapGenerator:\n- name: huge\n"
                     "  files: [" + ", ".join(f"k{i}=big.txt" for i in range(8)) + "]\n"})
    with pytest.raises(PermanentError) as info:
        render(tmp_path, "k")
    assert str(info.value) == ("k/kustomization.yaml: kustomize built 2.3 MiB of objects, more than the 1 MiB "
                               "Pullbridge renders (a generator or replacement repeating a large file?)")
    monkeypatch.setattr(render_module, "MAX_MANIFEST_BYTES", 3 * render_module.MIB)
    assert [m.ref for m in render(tmp_path, "k")][0].startswith("ConfigMap/huge-")


@pytest.mark.parametrize("path, size", [("deploy", "1.8"), ("deploy/b.yaml", "1.1")])
def test_manifest_files_larger_than_the_bound_are_refused_before_they_are_parsed(tmp_path, monkeypatch, path,
                                                                                  size):
    """Parsed, manifests take about 11 times their size in memory: a few hundred MB of them (which
    git may store in a few KB) got the worker killed.  Here the bound is 1 MiB."""
    monkeypatch.setattr(render_module, "MAX_MANIFEST_BYTES", render_module.MIB)
    write(tmp_path, {"deploy/a.yaml": CM.format(name="a") + "#" * 700_000 + "\n",
                     "deploy/b.yaml": CM.format(name="b") + "#" * 1_200_000 + "\n"})
    with pytest.raises(PermanentError) as info:
        render(tmp_path, path)
    assert str(info.value) == (f"path {path!r}: its manifest files total {size} MiB, more than the 1 MiB "
                               "Pullbridge renders")
    assert [m.name for m in render(tmp_path, "deploy/a.yaml")] == ["a"]


def test_kubectl_killed_while_building_says_so(tmp_path, monkeypatch):
    """A pod's OOM killer ends kubectl, the largest process, while it holds a huge build: that
    failed with an empty message ('kustomize failed: ')."""
    kubectl = tmp_path / "kubectl"
    kubectl.write_text("#!/bin/sh\nkill -9 $$\n")
    kubectl.chmod(0o755)
    monkeypatch.setenv("PULLBRIDGE_KUBECTL", str(kubectl))
    write(tmp_path, {"k/kustomization.yaml": "resources: [cm.yaml]\n", "k/cm.yaml": CM.format(name="a")})
    with pytest.raises(PermanentError) as info:
        render(tmp_path, "k")
    assert str(info.value) == ("k/kustomization.yaml: kustomize failed: kubectl was killed by signal 9 "
                               "(out of memory, building too much?)")


def test_kustomize_error_is_permanent_without_machine_paths(tmp_path, stack):
    write(tmp_path, {"k/kustomization.yaml": "resources: [missing.yaml]\n"})
    with pytest.raises(PermanentError) as info:
        render(tmp_path, "k")
    assert "k/kustomization.yaml: kustomize failed" in str(info.value)
    assert str(tmp_path) not in str(info.value)


def test_a_kustomize_error_names_the_checkout_itself_as_the_repository_root(tmp_path, stack):
    """kustomize names the directories it visits by their absolute paths, the checkout's own too
    (not followed by "/"): each shows relative to the repository, the checkout as '.'."""
    write(tmp_path, {"overlay/kustomization.yaml": "resources: [..]\n"})
    with pytest.raises(PermanentError) as info:
        render(tmp_path, "overlay")
    message = str(info.value)
    assert message == ("overlay/kustomization.yaml: kustomize failed: error: accumulating resources: accumulation "
                       "err='accumulating resources from '..': '.' must resolve to a file': cycle detected: "
                       "candidate root '.' contains visited root 'overlay'"), message


def _alias_bomb(levels: int) -> str:
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: bomb", "data:", "  a0: &a0 lol"]
    lines += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


UNSAFE_YAML = {
    # loaded, it fails the sync's copies (RecursionError, retried); a libyaml before 0.2.6 crashed
    # the worker outright on a few ten thousand levels (a segmentation fault in its composer)
    "deep nesting": ("data:\n  k: " + "[" * 900 + "]" * 900 + "\n", "line 6: YAML nested deeper than 200 levels"),
    # libyaml stops at 1000 levels, reading ahead: a loader in Python (image automation's) recursed
    "nesting past libyaml's own limit": ("data:\n  k: " + "[" * 5000 + "]" * 5000 + "\n",
                                         "line 6: YAML nested deeper than 200 levels"),
    "an alias bomb (billion laughs)": (_alias_bomb(9).split("data:\n", 1)[1],
                                       "line 13: YAML aliases expand the document by more than 100000 values"),
    "an alias inside the node it names": ("data: &d\n  self: *d\n",
                                          "line 6: YAML alias \\*d lies inside the node it names"),
}


@pytest.mark.parametrize("body, message", UNSAFE_YAML.values(), ids=list(UNSAFE_YAML))
def test_yaml_that_would_take_the_worker_down_is_refused_naming_file_and_line(tmp_path, body, message):
    write(tmp_path, {"deploy/ok.yaml": CM.format(name="ok"),
                     "deploy/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n" + body})
    with pytest.raises(PermanentError, match=f"^deploy/bad.yaml: {message}"):
        render(tmp_path, "deploy")


def test_anchors_merge_keys_and_deep_schemas_within_bounds_render(tmp_path):
    deep = "{a: " * 150 + "x" + "}" * 150
    write(tmp_path, {"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: &l {app: web}\n"
                                "  annotations:\n    <<: *l\n    deep: ok\n"
                                "data:\n  k: v\n---\n" + _alias_bomb(4) +
                                f"---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ndata: {{k: {deep}}}\n"})
    got = render(tmp_path)
    assert [m.ref for m in got] == ["ConfigMap/a", "ConfigMap/bomb", "Secret/s"]
    assert got[0].obj["metadata"]["annotations"] == {"app": "web", "deep": "ok"}
    assert len(json.dumps(got[1].obj)) > 9 ** 4 * 5  # 6561 "lol"s, each a value in the JSON sent
