"""Which value in Git sets the tag of each container a sync deploys, checked against the
real ``kubectl kustomize`` the sync renders with: an image line or an ``images:`` entry,
whichever kustomize applies last (a patch over the line it patches, an entry over the
patches of its kustomization, an outer entry over an inner one, a parent's over its
components', a later component's over an earlier one's), following renames; no source
when an inline patch sets it; a file no kustomization builds is not deployed at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tree_support import COMPONENT, write
from worker.images.deployed import deployed_containers
from worker.images.kustomize import TagOverride, build_inputs
from worker.render import render



def workload(name: str, **images: str) -> str:
    """Deployment ``name`` with these container images: a resource, or a strategic merge patch of one."""
    lines = "".join(f"      - {{name: {c}, image: '{i}'}}\n" for c, i in images.items())
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\n"
            f"spec:\n  template:\n    spec:\n      containers:\n{lines}")


def deployment(name: str, *containers: str) -> str:
    return workload(name, **{c: f"reg.example/{c}:v0" for c in containers})


def images(*entries: str) -> str:
    return "images:\n" + "".join(f"  - {{{e}}}\n" for e in entries)


LAYOUT = {
    # top -> mid -> base, two components on top; each level sets some of the same images
    "base/kustomization.yaml": "resources: [base.yaml]\n" + images(
        "name: reg.example/nested, newTag: B", "name: reg.example/old, newName: reg.example/renamed, newTag: B"),
    "base/base.yaml": deployment("base-app", "nested", "patched", "patchset", "old", "inline"),
    "mid/kustomization.yaml": (
        "resources: [mid.yaml, ../base]\npatches:\n  - path: patch.yaml\n"
        "  - patch: |-\n      apiVersion: apps/v1\n      kind: Deployment\n      metadata: {name: base-app}\n"
        "      spec: {template: {spec: {containers: [{name: inline, image: reg.example/inline:I}]}}}\n"
        + images("name: reg.example/nested, newTag: M", "name: reg.example/patchset, newTag: M")),
    "mid/patch.yaml": workload("base-app", patched="reg.example/patched:P", patchset="reg.example/patchset:P"),
    "mid/mid.yaml": deployment("mid-app", "nested", "smp"),
    "top/kustomization.yaml": (
        "resources: [top.yaml, ../mid]\ncomponents: [../first, ../second]\npatchesStrategicMerge: [smp.yaml]\n"
        + images("name: reg.example/nested, newTag: T", "name: reg.example/comp, newTag: T",
                 "name: reg.example/old, newTag: T")),
    "top/smp.yaml": workload("mid-app", smp="reg.example/smp:S"),
    "top/top.yaml": deployment("top-app", "nested", "comp", "second"),
    "top/unused.yaml": deployment("unused-app", "nested"),  # under the path, built by nothing
    "first/kustomization.yaml": COMPONENT + images("name: reg.example/comp, newTag: F",
                                                   "name: reg.example/second, newTag: F"),
    "second/kustomization.yaml": COMPONENT + images("name: reg.example/second, newTag: C"),
    # a shared base outside the path: its entry sets its own workload only
    "shared/kustomization.yaml": "resources: [worker.yaml]\n" + images("name: reg.example/shared, newTag: S"),
    "shared/worker.yaml": deployment("shared-worker", "shared"),
    "apps/prod/kustomization.yaml": "resources: [deployment.yaml, ../../shared]\n",
    "apps/prod/deployment.yaml": deployment("prod-app", "shared"),
}

EXPECTED = {
    "top": {
        ("base-app", "nested"): "top/kustomization.yaml images: reg.example/nested",  # outermost entry
        ("base-app", "patched"): "mid/patch.yaml",                                    # the patch, not base.yaml
        ("base-app", "patchset"): "mid/kustomization.yaml images: reg.example/patchset",  # entry after patch
        ("base-app", "old"): "base/kustomization.yaml images: reg.example/old",       # renamed: top's misses
        ("base-app", "inline"): None,                                                 # an inline patch
        ("mid-app", "nested"): "top/kustomization.yaml images: reg.example/nested",
        ("mid-app", "smp"): "top/smp.yaml",
        ("top-app", "nested"): "top/kustomization.yaml images: reg.example/nested",
        ("top-app", "comp"): "top/kustomization.yaml images: reg.example/comp",       # parent after component
        ("top-app", "second"): "second/kustomization.yaml images: reg.example/second",  # later component
    },
    "apps/prod": {
        ("prod-app", "shared"): "apps/prod/deployment.yaml",
        ("shared-worker", "shared"): "shared/kustomization.yaml images: reg.example/shared",
    },
}


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    write(tmp_path, LAYOUT)
    return tmp_path


def _where(source) -> str | None:
    if isinstance(source, TagOverride):
        return f"{source.path} images: {source.name}"
    return None if source is None else source.path


@pytest.mark.parametrize("subdir", sorted(EXPECTED))
def test_each_deployed_tag_comes_from_the_value_kubectl_kustomize_applies_last(checkout, subdir):
    deployed, problems = deployed_containers(checkout, subdir)

    assert problems.files == []
    rendered = {(m.name, c["name"]): c["image"] for m in render(checkout, subdir)
                for c in m.obj["spec"]["template"]["spec"]["containers"]}
    key = {id(d): (d.container.workload.rpartition("/")[2], d.container.container) for d in deployed}
    assert {key[id(d)]: d.container.image for d in deployed} == rendered
    assert {key[id(d)]: _where(d.source) for d in deployed} == EXPECTED[subdir]
    assert all((checkout / path).read_text() == text for path, text in LAYOUT.items())  # only a copy was marked


def test_a_source_value_is_the_deployed_one(checkout):
    deployed, _ = deployed_containers(checkout, "top")
    by_key = {(d.container.workload.rpartition("/")[2], d.container.container): d for d in deployed}
    assert by_key[("base-app", "old")].container.image == "reg.example/renamed:B"
    assert by_key[("base-app", "old")].source.raw == "B"
    assert by_key[("base-app", "patched")].source.image == "reg.example/patched:P"


def test_a_plain_yaml_path_deploys_every_file_as_written(checkout):
    (checkout / "plain").mkdir()
    (checkout / "plain" / "app.yaml").write_text(deployment("plain-app", "nested"))
    (checkout / "plain" / "other").mkdir()
    (checkout / "plain" / "other" / "kustomization.yaml").write_text(
        "resources: [../app.yaml]\n" + images("name: reg.example/nested, newTag: K"))
    (deployed,), problems = deployed_containers(checkout, "plain")
    assert problems.files == [] and deployed.source is deployed.container
    assert (deployed.container.path, deployed.container.image) == ("plain/app.yaml", "reg.example/nested:v0")


def test_a_path_that_does_not_render_is_reported_and_deploys_nothing(checkout):
    (checkout / "top" / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    deployed, problems = deployed_containers(checkout, "top")
    assert deployed == []
    ((path, why),) = problems.files
    assert path == "top" and why.startswith("no image is changed while the path does not render: "
                                            "top/kustomization.yaml: kustomize failed: ")
    assert str(checkout) not in why


def test_a_path_that_does_not_render_is_reported_with_the_paths_of_the_repository_not_of_a_copy(checkout):
    (checkout / "top" / "kustomization.yaml").write_text("resources: [..]\n")
    deployed, problems = deployed_containers(checkout, "top")
    assert deployed == []
    ((path, why),) = problems.files
    assert why.endswith("cycle detected: candidate root '.' contains visited root 'top'"), why


def test_a_base_outside_the_repository_is_reported_and_neither_read_nor_deployed(checkout, tmp_path_factory):
    outside = tmp_path_factory.mktemp("other-tenant")
    (outside / "kustomization.yaml").write_text("resources: [app.yaml]\n")
    (outside / "app.yaml").write_text(deployment("other-app", "nested"))
    (checkout / "top" / "other").symlink_to(outside)
    (checkout / "top" / "kustomization.yaml").write_text("resources: [top.yaml, other]\n")
    assert [p.name for p in build_inputs(checkout, "top")[1]] == ["top.yaml"]
    deployed, problems = deployed_containers(checkout, "top")
    assert deployed == []
    assert problems.files == [("top", "no image is changed while the path does not render: "
                                      "top/kustomization.yaml: resources entry 'other' leads outside the repository")]


def test_the_files_the_render_reads_follow_resources_bases_components_and_patches(tmp_path: Path):
    def write_one(path: str, text: str = "") -> None:
        write(tmp_path, {path: text})

    write_one("deploy/prod/kustomization.yaml",
          "resources: [../base, app.yaml, https://example.com/x.yaml]\nbases: [../legacy]\ncomponents: [../tags]\n"
          "patchesStrategicMerge: [smp.yaml, \"kind: Deployment\\nmetadata: {name: x}\\n\"]\n"
          "patches: [{path: patch.yaml}, {patch: 'kind: Deployment'}]\n")
    for name in ("app.yaml", "smp.yaml", "patch.yaml", "unused.yaml"):
        write_one(f"deploy/prod/{name}")
    write_one("deploy/base/kustomization.yml", "resources: [../prod, ../../outside-not-a-dir]\n")  # a cycle
    write_one("deploy/legacy/Kustomization", "resources: []\n")
    write_one("deploy/tags/kustomization.yaml", "kind: Component\n")
    write_one("deploy/staging/kustomization.yaml", "resources: [../base]\n")  # not reached from prod
    write_one("deploy/broken/kustomization.yaml", "resources: [\n")

    def rel(paths: list[Path]) -> list[str]:
        return [p.relative_to(tmp_path.resolve()).as_posix() for p in paths]

    kustomizations, files = build_inputs(tmp_path, "deploy/prod")
    assert rel(kustomizations) == ["deploy/base/kustomization.yml", "deploy/legacy/Kustomization",
                                   "deploy/prod/kustomization.yaml", "deploy/tags/kustomization.yaml"]
    assert rel(files) == ["deploy/prod/app.yaml", "deploy/prod/patch.yaml", "deploy/prod/smp.yaml"]
    assert build_inputs(tmp_path, "deploy") == ([], [])  # plain YAML there: nothing rendered by kustomize
    assert rel(build_inputs(tmp_path, "deploy/broken")[0]) == ["deploy/broken/kustomization.yaml"]


def test_a_kustomization_nested_too_deep_is_reported_as_the_render_refuses_it(checkout):
    """Its images: entries were read first, with ruamel.yaml: RecursionError out of the scan."""
    (checkout / "top" / "kustomization.yaml").write_text(
        "resources: [top.yaml]\nimages: " + "[" * 5000 + "]" * 5000 + "\n")
    deployed, problems = deployed_containers(checkout, "top")
    assert deployed == []
    assert problems.files == [("top", "no image is changed while the path does not render: "
                                      "top/kustomization.yaml: line 2: YAML nested deeper than 200 levels")]


def test_a_kustomization_value_not_matching_its_tag_is_reported_as_kustomize_refuses_it(checkout):
    """Its images: entries were read first, with ruamel.yaml: KeyError out of the scan."""
    (checkout / "top" / "kustomization.yaml").write_text(
        "resources: [top.yaml]\nimages:\n- name: reg.example/nested\n  newTag: !!bool maybe\n")
    deployed, problems = deployed_containers(checkout, "top")
    assert deployed == []
    ((path, why),) = problems.files
    assert path == "top" and why.startswith("no image is changed while the path does not render: "
                                            "top/kustomization.yaml: kustomize failed: ")
