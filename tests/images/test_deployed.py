"""Which containers a kustomization's ``images:`` entry sets, checked against the real
``kubectl kustomize`` the sync renders with: an entry applies to what its kustomization
builds (a base's entry to the base's resources, a parent's to its bases' too), a
component's to what its parent holds when the component is reached, never a shared base's
entry to the overlay that includes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.images.kustomize import kustomization_builds, kustomize_tag_overrides, real_path
from worker.images.manifests import find_containers
from worker.render import render

# one image name per kustomization that has an entry, so that at most one entry sets each container
NAMES = ("shared", "base", "mid", "top", "first", "second")
COMPONENT = "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"


def deployment(name: str) -> str:
    containers = "".join(f"      - {{name: {n}, image: reg.example/{n}:v0}}\n" for n in NAMES)
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\n"
            f"spec:\n  template:\n    spec:\n      containers:\n{containers}")


def entry(name: str, tag: str) -> str:
    return f"images:\n  - name: reg.example/{name}\n    newTag: {tag}\n"


LAYOUT = {
    # the review's layout: a shared base outside the repository path, used by staging too
    "shared/kustomization.yaml": "resources: [worker.yaml]\n" + entry("shared", "S"),
    "shared/worker.yaml": deployment("shared-worker"),
    "apps/prod/kustomization.yaml": "resources: [deployment.yaml, ../../shared]\n",
    "apps/prod/deployment.yaml": deployment("prod-app"),
    "apps/staging/kustomization.yaml": "resources: [../../shared]\n",
    # an overlay chain top -> mid -> base, with two components in order
    "base/kustomization.yaml": "resources: [base.yaml]\n" + entry("base", "B"),
    "base/base.yaml": deployment("base-app"),
    "mid/kustomization.yaml": "resources: [mid.yaml, ../base]\n" + entry("mid", "M"),
    "mid/mid.yaml": deployment("mid-app"),
    "top/kustomization.yaml": ("resources: [top.yaml, ../mid]\ncomponents: [../first, ../second]\n"
                               + entry("top", "T")),
    "top/top.yaml": deployment("top-app"),
    "first/kustomization.yaml": COMPONENT + "resources: [first.yaml]\n" + entry("first", "F"),
    "first/first.yaml": deployment("first-app"),
    "second/kustomization.yaml": COMPONENT + "resources: [second.yaml]\n" + entry("second", "C"),
    "second/second.yaml": deployment("second-app"),
}


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for path, text in LAYOUT.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    return tmp_path


def predicted_and_rendered(checkout: Path, subdir: str) -> tuple[dict, dict]:
    """(name, container) -> image, as the entries that set it predict and as kubectl renders it."""
    overrides = kustomize_tag_overrides(checkout, subdir)
    predicted = {}
    for c in find_containers(checkout, ".")[0]:  # every file of the checkout, not only the path's
        setting = [o for o in overrides if o.sets_tag_of(real_path(checkout, c.path), c.image)]
        assert len(setting) <= 1, (c.label, setting)
        predicted[(c.workload.rpartition("/")[2], c.container)] = setting[0].deployed if setting else c.image
    rendered = {(m.name, c["name"]): c["image"] for m in render(checkout, subdir)
                for c in m.obj["spec"]["template"]["spec"]["containers"]}
    return {key: predicted[key] for key in rendered}, rendered


@pytest.mark.parametrize("subdir", ["apps/prod", "apps/staging", "shared", "base", "mid", "top"])
def test_the_containers_an_entry_sets_are_those_kubectl_kustomize_changes(checkout, subdir):
    predicted, rendered = predicted_and_rendered(checkout, subdir)
    assert predicted == rendered


def test_a_shared_base_entry_sets_only_the_base_own_workloads(checkout):
    _, rendered = predicted_and_rendered(checkout, "apps/prod")
    assert rendered[("prod-app", "shared")] == "reg.example/shared:v0"
    assert rendered[("shared-worker", "shared")] == "reg.example/shared:S"
    (shared,) = kustomize_tag_overrides(checkout, "apps/prod")
    assert shared.path == "shared/kustomization.yaml" and shared.builds == {"shared/worker.yaml"}
    assert not shared.sets_tag_of("apps/prod/deployment.yaml", "reg.example/shared:v0")


def test_entries_of_an_overlay_chain_and_of_components(checkout):
    _, rendered = predicted_and_rendered(checkout, "top")
    # a parent's entry sets its bases' workloads; a base's entry its own
    assert rendered[("base-app", "mid")] == "reg.example/mid:M" and rendered[("top-app", "mid")] == "reg.example/mid:v0"
    assert rendered[("base-app", "base")] == "reg.example/base:B"
    assert rendered[("mid-app", "base")] == "reg.example/base:v0"
    # a component's entry sets what its parent holds when it is reached, not what a later component adds
    assert rendered[("top-app", "first")] == rendered[("base-app", "first")] == "reg.example/first:F"
    assert rendered[("second-app", "first")] == "reg.example/first:v0"
    assert rendered[("first-app", "second")] == rendered[("top-app", "second")] == "reg.example/second:C"
    builds = {file.relative_to(checkout.resolve()).as_posix(): {f.name for f in files}
              for file, files in kustomization_builds(checkout, "top").items()}
    assert builds == {
        "base/kustomization.yaml": {"base.yaml"},
        "mid/kustomization.yaml": {"mid.yaml", "base.yaml"},
        "top/kustomization.yaml": {"top.yaml", "mid.yaml", "base.yaml", "first.yaml", "second.yaml"},
        "first/kustomization.yaml": {"top.yaml", "mid.yaml", "base.yaml", "first.yaml"},
        "second/kustomization.yaml": {"top.yaml", "mid.yaml", "base.yaml", "first.yaml", "second.yaml"},
    }


def test_a_component_two_kustomizations_include_sets_what_each_parent_holds(checkout):
    files = {"tags/kustomization.yaml": COMPONENT + entry("first", "F2"),
             "left/kustomization.yaml": "resources: [../base]\ncomponents: [../tags]\n",
             "right/kustomization.yaml": "resources: [right.yaml]\ncomponents: [../tags]\n",
             "right/right.yaml": deployment("right-app"),
             "both/kustomization.yaml": "resources: [../left, ../right]\n"}
    for path, text in files.items():
        (checkout / path).parent.mkdir(exist_ok=True)
        (checkout / path).write_text(text)
    predicted, rendered = predicted_and_rendered(checkout, "both")
    assert predicted == rendered
    assert rendered[("base-app", "first")] == rendered[("right-app", "first")] == "reg.example/first:F2"
