"""Only kustomizations the sync's render reads move a tag: a kustomization lying in a
plain-YAML repository, or an overlay the rendered one does not lead to, is never
rendered, so the workload's own image line moves (real registry, bare repo, Redis)."""

from __future__ import annotations

from pathlib import Path

from tests.images.helpers import NEW, OLD, bare_git, day, make_config
from worker.images.scan import scan


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


def test_rendered_kustomizations_follow_resources_bases_and_components(tmp_path: Path):
    from worker.images.kustomize import rendered_kustomizations

    def write(path: str, text: str) -> None:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)

    write("deploy/prod/kustomization.yaml", "resources: [../base, app.yaml, https://example.com/x.yaml]\n"
                                             "bases: [../legacy]\ncomponents: [../tags]\n")
    write("deploy/base/kustomization.yml", "resources: [../prod, ../../outside-not-a-dir]\n")  # a cycle
    write("deploy/legacy/Kustomization", "resources: []\n")
    write("deploy/tags/kustomization.yaml", "kind: Component\n")
    write("deploy/staging/kustomization.yaml", "resources: [../base]\n")  # not reached from prod
    write("deploy/broken/kustomization.yaml", "resources: [\n")
    found = [p.relative_to(tmp_path.resolve()).as_posix() for p in rendered_kustomizations(tmp_path, "deploy/prod")]
    assert found == ["deploy/base/kustomization.yml", "deploy/legacy/Kustomization",
                     "deploy/prod/kustomization.yaml", "deploy/tags/kustomization.yaml"]
    assert rendered_kustomizations(tmp_path, "deploy") == []  # plain YAML there: nothing rendered by kustomize
    assert [p.name for p in rendered_kustomizations(tmp_path, "deploy/broken")] == ["kustomization.yaml"]
