"""Image scans of files whose names Git allows but text cannot show as they are: bytes that
are not UTF-8, a newline, a mark that reorders text.  A real repository on the stack's git
host, a real registry: the scan's report and write-back commit name such a file escaped, as
the sync does (``worker.render``), and never crash on it."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.images.helpers import automated_workload, bare_git, day, make_config
from worker.images.scan import scan

NAMES = {  # as written in the repository -> as reports name it
    os.fsdecode(b"caf\xe9.yaml"): "deploy/caf\\xe9.yaml",
    "two\nlines.yaml": "deploy/two\\nlines.yaml",
    "x\u202egnp.yaml": "deploy/x\\u202egnp.yaml",
}


@pytest.mark.parametrize("name", list(NAMES), ids=["not-utf8", "newline", "bidi"])
def test_a_file_name_text_cannot_show_is_named_escaped_in_the_scan_and_its_commit(
        git_repo, registry, image_name, redis_conn, name):
    repo = git_repo("images-names")
    image = f"{registry.host}/{image_name}"
    workload = automated_workload("odd", f"{image}:1.0.0", "semver:~1")
    (repo.work / "deploy").mkdir()
    (repo.work / "deploy" / name).write_text(workload)
    repo.commit_and_push("a workload in a file with an odd name")
    registry.push_image(image_name, "1.0.0", day(1))
    registry.push_image(image_name, "1.1.0", day(2))
    config = make_config(repo, registry)

    result = scan(redis_conn, config, config.repos[0])

    shown = NAMES[name]
    assert result.errors == [] and result.skipped == []
    assert [(c.path, c.new_tag) for c in result.changes] == [(shown, "1.1.0")]
    json.dumps(result.as_dict()).encode()  # what RQ keeps and pages show: text that can be encoded
    message = bare_git(repo, "show", "-s", "--format=%B", result.sha)
    assert f"{shown}: {image}:1.0.0 -> {image}:1.1.0" in message
    # the file was edited under its real name: its one image line, and nothing else in the commit
    real = os.fsencode(f"deploy/{name}")
    assert bare_git_bytes(repo, "show", "--name-only", "-z", "--format=", result.sha) == real + b"\0"
    assert bare_git_bytes(repo, "cat-file", "blob", b"main:" + real) == \
        workload.replace(f"{image}:1.0.0", f"{image}:1.1.0").encode()


def bare_git_bytes(repo, *args: str | bytes) -> bytes:
    """Git's output as bytes: the names in it need not be UTF-8."""
    return subprocess.run(["git", "--git-dir", str(repo.bare), *args], check=True, capture_output=True).stdout


def test_a_kustomization_in_a_folder_named_with_a_bidi_mark_moves_its_tag_named_escaped(
        git_repo, registry, image_name, redis_conn):
    repo = git_repo("images-names-kustomize")
    image = f"{registry.host}/{image_name}"
    folder = "x\u202egnp"
    base = f"resources: [app.yaml]\nimages:\n  - name: {image}\n    newTag: 1.0.0\n"
    repo.commit_and_push("a base in an odd folder", {
        "kustomization.yaml": f'resources: ["{folder}"]\n',
        f"{folder}/kustomization.yaml": base,
        f"{folder}/app.yaml": automated_workload("odd", f"{image}:0.1.0", "semver:~1")})
    registry.push_image(image_name, "1.0.0", day(1))
    registry.push_image(image_name, "1.1.0", day(2))
    config = make_config(repo, registry)

    result = scan(redis_conn, config, config.repos[0])

    assert result.errors == [] and result.skipped == []
    assert [c.describe() for c in result.changes] == [
        f"shop:deployment/odd container app: 1.0.0 -> 1.1.0 (x\\u202egnp/kustomization.yaml images: {image})"]
    assert bare_git(repo, "show", f"main:{folder}/kustomization.yaml") == base.replace("1.0.0", "1.1.0")
