"""A scan moves the one value the sync's render deploys (real registry, bare repo, Redis,
and kubectl kustomize on the branch before and after): a kustomization lying in a
plain-YAML repository, or an overlay the rendered one does not lead to, is never
rendered, so the workload's own image line moves; in a kustomize path the patch or the
outermost ``images:`` entry kustomize applies last moves, and a file no kustomization
builds is left alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.tree_support import COMPONENT
from tests.images.helpers import NEW, OLD, bare_git, day, demo_manifest, make_config
from worker.images.scan import scan
from worker.render import render


def test_a_kustomization_in_a_plain_yaml_repo_is_not_what_is_deployed(demo, registry, image_name, redis_conn):
    repo, image, files = demo
    stray = f"resources: [../../fluxdemo.yaml]\nimages:\n  - name: {image}\n    newTag: {OLD}\n"
    repo.commit_and_push("an overlay for another setup", {"other/prod/kustomization.yaml": stray})
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)
    before = bare_git(repo, "rev-parse", "main").strip()

    result = scan(redis_conn, config, config.repos[0])

    assert result.skipped == [] and result.errors == []
    assert [c.describe() for c in result.changes] == [f"my-demo:deployment/fluxdemo container flask: {OLD} -> {NEW}"]
    assert bare_git(repo, "diff", "--name-only", before, result.sha).split() == ["fluxdemo.yaml"]
    assert bare_git(repo, "show", "main:other/prod/kustomization.yaml") == stray


def test_an_overlay_the_rendered_kustomization_does_not_reach_is_ignored(demo, registry, image_name, redis_conn):
    repo, image, files = demo
    root = ("resources: [namespace.yaml, nginx-conf.yaml, fluxdemo.yaml]\n"
            f"images:\n  - name: {image}\n    newTag: {OLD}\n")
    overlay = f"resources: [../..]\nimages:\n  - name: {image}\n    newTag: {OLD}\n"
    repo.commit_and_push("kustomize", {"kustomization.yaml": root, "overlays/prod/kustomization.yaml": overlay})
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)
    before = bare_git(repo, "rev-parse", "main").strip()

    result = scan(redis_conn, config, config.repos[0])

    assert result.skipped == [] and result.errors == []
    assert [c.describe() for c in result.changes] == [
        f"my-demo:deployment/fluxdemo container flask: {OLD} -> {NEW} (kustomization.yaml images: {image})"]
    assert bare_git(repo, "diff", "--name-only", before, result.sha).split() == ["kustomization.yaml"]
    assert bare_git(repo, "show", "main:overlays/prod/kustomization.yaml") == overlay


def _rendered_flask_images(repo, tmp_path: Path, subdir: str) -> dict[str, str]:
    """Deployment name -> flask image, as ``kubectl kustomize`` renders the branch's head."""
    tree = tmp_path / "rendered"
    subprocess.run(["git", "clone", "-q", "--branch", repo.branch, repo.file_url, str(tree)], check=True)
    return {m.name: c["image"] for m in render(tree, subdir) if m.kind == "Deployment"
            for c in m.obj["spec"]["template"]["spec"]["containers"] if c["name"] == "flask"}


def test_a_shared_base_entry_outside_the_path_does_not_take_the_overlay_update(demo, registry, image_name,
                                                                               redis_conn, tmp_path):
    # kustomize applies the shared base's images: to the base's own resources only:
    # moving it would change staging and leave prod's deployed tag old
    repo, image, files = demo
    shared = f"resources: [worker.yaml]\nimages:\n  - name: {image}\n    newTag: {OLD}\n"
    worker = demo_manifest(f"{image}:v0", f"{image}-nginx:1.27", {}).replace("name: fluxdemo", "name: shared-worker")
    repo.commit_and_push("prod and a shared base", {
        "apps/prod/kustomization.yaml": "resources: [deployment.yaml, ../../shared]\n",
        "apps/prod/deployment.yaml": files["fluxdemo.yaml"],
        "apps/staging/kustomization.yaml": "resources: [../../shared]\n",
        "shared/kustomization.yaml": shared, "shared/worker.yaml": worker})
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)
    prod = config.repos[0].model_copy(update={"path": "apps/prod"})
    before = bare_git(repo, "rev-parse", "main").strip()
    assert _rendered_flask_images(repo, tmp_path / "before", "apps/prod") == {
        "fluxdemo": f"{image}:{OLD}", "shared-worker": f"{image}:{OLD}"}

    result = scan(redis_conn, config, prod)

    assert result.skipped == [] and result.errors == []
    assert [c.describe() for c in result.changes] == [f"my-demo:deployment/fluxdemo container flask: {OLD} -> {NEW}"]
    assert bare_git(repo, "diff", "--name-only", before, result.sha).split() == ["apps/prod/deployment.yaml"]
    assert bare_git(repo, "show", "main:shared/kustomization.yaml") == shared
    assert _rendered_flask_images(repo, tmp_path / "after", "apps/prod") == {
        "fluxdemo": f"{image}:{NEW}", "shared-worker": f"{image}:{OLD}"}


PATCH = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: fluxdemo, namespace: my-demo}}\n"
         "spec:\n  template:\n    spec:\n      containers:\n        - name: flask\n          image: {image}:{old}\n")


@pytest.mark.parametrize("layout, moved", [
    # a base's entry sets the base's own resources
    ({"kustomization.yaml": "resources: [namespace.yaml, nginx-conf.yaml, app]\n",
      "app/kustomization.yaml": "resources: [fluxdemo.yaml]\nimages:\n  - name: {image}\n    newTag: {old}\n"},
     ["app/kustomization.yaml"]),
    # an overlay chain: the middle kustomization's entry sets its base's resources
    ({"kustomization.yaml": "resources: [namespace.yaml, nginx-conf.yaml, mid]\n",
      "mid/kustomization.yaml": "resources: [../app]\nimages:\n  - name: {image}\n    newTag: {old}\n",
      "app/kustomization.yaml": "resources: [fluxdemo.yaml]\n"},
     ["mid/kustomization.yaml"]),
    # a component's entry sets its parent's resources, those of its bases included
    ({"kustomization.yaml": "resources: [namespace.yaml, nginx-conf.yaml, app]\ncomponents: [tags]\n",
      "app/kustomization.yaml": "resources: [fluxdemo.yaml]\n",
      "tags/kustomization.yaml": COMPONENT + "images:\n  - name: {image}\n    newTag: {old}\n"},
     ["tags/kustomization.yaml"]),
    # ... but not what a later component adds: that workload's own line moves
    ({"kustomization.yaml": "resources: [namespace.yaml, nginx-conf.yaml, app]\ncomponents: [tags, late]\n",
      "app/kustomization.yaml": "resources: [fluxdemo.yaml]\n",
      "tags/kustomization.yaml": COMPONENT + "images:\n  - name: {image}\n    newTag: {old}\n",
      "late/kustomization.yaml": COMPONENT + "resources: [late.yaml]\n", "late/late.yaml": None},
     ["late/late.yaml", "tags/kustomization.yaml"]),
    # of nested entries for one image, the outer one is applied last: it moves, the inner one is not deployed
    ({"kustomization.yaml": "resources: [namespace.yaml, nginx-conf.yaml, app]\n"
                            "images:\n  - name: {image}\n    newTag: {old}\n",
      "app/kustomization.yaml": "resources: [fluxdemo.yaml]\nimages:\n  - name: {image}\n    newTag: v0-inner\n"},
     ["kustomization.yaml"]),
    # a parent's entry is applied after its components'
    ({"kustomization.yaml": "resources: [namespace.yaml, nginx-conf.yaml, app]\ncomponents: [tags]\n"
                            "images:\n  - name: {image}\n    newTag: {old}\n",
      "app/kustomization.yaml": "resources: [fluxdemo.yaml]\n",
      "tags/kustomization.yaml": COMPONENT + "images:\n  - name: {image}\n    newTag: v0-tags\n"},
     ["kustomization.yaml"]),
    # a later component's entry is applied after an earlier one's
    ({"kustomization.yaml": "resources: [namespace.yaml, nginx-conf.yaml, app]\ncomponents: [first, second]\n",
      "app/kustomization.yaml": "resources: [fluxdemo.yaml]\n",
      "first/kustomization.yaml": COMPONENT + "images:\n  - name: {image}\n    newTag: v0-first\n",
      "second/kustomization.yaml": COMPONENT + "images:\n  - name: {image}\n    newTag: {old}\n"},
     ["second/kustomization.yaml"]),
    # a patch's image replaces the workload's: the patch moves (the workload's annotations still apply)
    ({"kustomization.yaml": "resources: [namespace.yaml, nginx-conf.yaml, app]\npatches:\n  - path: patch.yaml\n",
      "app/kustomization.yaml": "resources: [fluxdemo.yaml]\n", "patch.yaml": PATCH},
     ["patch.yaml"]),
    ({"kustomization.yaml": "resources: [namespace.yaml, nginx-conf.yaml, app]\npatchesStrategicMerge: [patch.yaml]\n",
      "app/kustomization.yaml": "resources: [fluxdemo.yaml]\n", "patch.yaml": PATCH},
     ["patch.yaml"]),
    # a workload file under the path that no kustomization builds is never deployed: left alone
    ({"kustomization.yaml": "resources: [namespace.yaml, nginx-conf.yaml, app]\n",
      "app/kustomization.yaml": "resources: [fluxdemo.yaml]\n", "app/retired.yaml": None},
     ["app/fluxdemo.yaml"]),
])
def test_the_entry_of_the_kustomization_that_builds_the_workload_moves(demo, registry, image_name, redis_conn,
                                                                       tmp_path, layout, moved):
    repo, image, files = demo
    repo.remove("fluxdemo.yaml")
    late = files["fluxdemo.yaml"].replace("name: fluxdemo", "name: late")  # None in a layout: this workload
    repo.commit_and_push("kustomize", {"app/fluxdemo.yaml": files["fluxdemo.yaml"], **{
        p: late if t is None else t.format(image=image, old=OLD) for p, t in layout.items()}})
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)
    before = bare_git(repo, "rev-parse", "main").strip()
    rendered = _rendered_flask_images(repo, tmp_path / "before", ".")
    assert set(rendered.values()) == {f"{image}:{OLD}"}

    result = scan(redis_conn, config, config.repos[0])

    assert result.skipped == [] and result.errors == []
    assert bare_git(repo, "diff", "--name-only", before, result.sha).split() == moved
    assert _rendered_flask_images(repo, tmp_path / "after", ".") == {name: f"{image}:{NEW}" for name in rendered}


@pytest.mark.parametrize("overlay_entry", [True, False])
def test_a_base_outside_the_path_takes_updates_through_the_overlay_entry_only(demo, registry, image_name, redis_conn,
                                                                              tmp_path, overlay_entry):
    # a base is built by other paths too: its files are never edited for this one
    repo, image, files = demo
    overlay = "resources: [../../base]\n" + (f"images:\n  - name: {image}\n    newTag: {OLD}\n" if overlay_entry else "")
    repo.commit_and_push("an overlay of a base", {
        "base/kustomization.yaml": "resources: [fluxdemo.yaml]\n", "base/fluxdemo.yaml": files["fluxdemo.yaml"],
        "clusters/prod/kustomization.yaml": overlay})
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)
    prod = config.repos[0].model_copy(update={"path": "clusters/prod"})
    before = bare_git(repo, "rev-parse", "main").strip()

    result = scan(redis_conn, config, prod)

    assert result.errors == []
    if overlay_entry:
        assert result.skipped == []
        assert bare_git(repo, "diff", "--name-only", before, result.sha).split() == ["clusters/prod/kustomization.yaml"]
        assert _rendered_flask_images(repo, tmp_path, "clusters/prod") == {"fluxdemo": f"{image}:{NEW}"}
        return
    line = files["fluxdemo.yaml"].splitlines().index(f"          image: {image}:{OLD}") + 1
    assert result.sha is None and result.skipped == [
        f"my-demo:deployment/fluxdemo container flask: its tag is set by base/fluxdemo.yaml line {line} ({image}:{OLD}); "
        f"{NEW} is wanted, but that file is outside the repository path clusters/prod, and other paths may build it too"]
    assert bare_git(repo, "rev-parse", "main").strip() == before


def test_a_tag_set_by_an_inline_patch_is_reported(demo, registry, image_name, redis_conn):
    repo, image, files = demo
    inline = PATCH.format(image=image, old=OLD).replace("\n", "\n      ")
    repo.commit_and_push("an inline patch", {"kustomization.yaml": (
        f"resources: [namespace.yaml, nginx-conf.yaml, fluxdemo.yaml]\npatches:\n  - patch: |-\n      {inline}\n")})
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)
    before = bare_git(repo, "rev-parse", "main").strip()

    result = scan(redis_conn, config, config.repos[0])

    assert result.errors == [] and result.sha is None
    assert result.skipped == [
        f"my-demo:deployment/fluxdemo container flask: {NEW} is wanted, but its tag is set by nothing the automation "
        "can change "
        "(an inline or JSON patch, a replacement or a value spread over lines)"]
    assert bare_git(repo, "rev-parse", "main").strip() == before
