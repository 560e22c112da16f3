"""Finding automated containers and editing one image line, byte for byte (pure logic)."""

import difflib

import pytest
from hypothesis import given, settings, strategies as st

from worker.images.kustomize import overrides_in_text, replace_tag
from worker.images.manifests import (EditError, containers_in_text, find_containers,
                                     replace_image)

MULTI = """\
# a multi-document file with comments, odd quoting and indentation
apiVersion: v1
kind: ConfigMap   # not a workload
metadata: {name: cm}
data:
  image: "not/an:image"
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
  namespace: jobs
  annotations:
    flux.weave.works/automated: 'true'
    flux.weave.works/tag.migrate: semver:~1.8
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          initContainers:
          -   name: migrate
              image:   'registry.local:5000/app/migrate:1.8.0'    # pinned by policy
          containers:
          - {name: run, image: "registry.local:5000/app/run:1.0"}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  template:
    spec:
      containers:
        - name: db
          image: postgres:16   # trailing comment
"""


def test_finds_workloads_containers_and_init_containers():
    found = {(c.workload, c.container): c for c in containers_in_text(MULTI, "all.yaml")}
    assert set(found) == {("jobs:cronjob/nightly", "migrate"), ("jobs:cronjob/nightly", "run"),
                          ("default:statefulset/db", "db")}
    migrate = found[("jobs:cronjob/nightly", "migrate")]
    assert migrate.init and migrate.policy.automated and repr(migrate.filter) == "semver:~1.8"
    assert migrate.image == "registry.local:5000/app/migrate:1.8.0"


@pytest.mark.parametrize("workload, container, old, new", [
    ("jobs:cronjob/nightly", "migrate", "registry.local:5000/app/migrate:1.8.0",
     "registry.local:5000/app/migrate:1.8.10"),
    ("jobs:cronjob/nightly", "run", "registry.local:5000/app/run:1.0", "registry.local:5000/app/run:1.1"),
    ("default:statefulset/db", "db", "postgres:16", "postgres:16.4-bookworm"),
])
def test_edit_changes_only_that_line(workload, container, old, new):
    target = next(c for c in containers_in_text(MULTI, "all.yaml")
                  if (c.workload, c.container) == (workload, container))
    edited = replace_image(MULTI, target, new)
    diff = [d for d in difflib.ndiff(MULTI.splitlines(True), edited.splitlines(True)) if d[0] in "+-"]
    assert len(diff) == 2 and diff[0] == "- " + MULTI.splitlines(True)[target.line]
    assert diff[1] == "+ " + MULTI.splitlines(True)[target.line].replace(old, new)
    assert MULTI.encode().replace(old.encode(), new.encode()) == edited.encode()


def test_edit_refuses_when_the_file_moved_on():
    target = next(c for c in containers_in_text(MULTI, "all.yaml") if c.container == "db")
    with pytest.raises(EditError):
        replace_image(MULTI.replace("postgres:16", "postgres:15"), target, "postgres:17")
    folded = MULTI.replace("image: postgres:16   # trailing comment", "image:\n            postgres:16")
    target = next(c for c in containers_in_text(folded, "all.yaml") if c.container == "db")
    assert replace_image(folded, target, "postgres:17").count("postgres:17") == 1


def test_find_containers_walks_the_repo_path_and_reports_bad_files(tmp_path):
    (tmp_path / "deploy" / "nested").mkdir(parents=True)
    (tmp_path / "deploy" / "nested" / "all.yml").write_text(MULTI)
    (tmp_path / "deploy" / "broken.yaml").write_text("a: [unclosed\n")
    (tmp_path / "deploy" / "latin1.yaml").write_bytes(b"a: caf\xe9\n")
    (tmp_path / "deploy" / ".hidden").mkdir()
    (tmp_path / "deploy" / ".hidden" / "x.yaml").write_text(MULTI)
    (tmp_path / "outside.yaml").write_text(MULTI)
    found, problems = find_containers(tmp_path, "deploy")
    assert {c.path for c in found} == {"deploy/nested/all.yml"}
    assert [p for p, _ in problems.files] == ["deploy/broken.yaml", "deploy/latin1.yaml"]


def test_a_file_symlinked_out_of_the_repository_is_never_read(tmp_path):
    """Read, its workloads (another tenant's checkout) were scanned and edited, and a parse error
    quoted its lines (the worker's key) in the scan's report."""
    (tmp_path / "worker-key").write_text("-----BEGIN KEY-----\nsecret: [AAAAB3NzaC1yc2E\n")
    (tmp_path / "tenant.yaml").write_text(MULTI)
    (tmp_path / "repo" / "deploy").mkdir(parents=True)
    (tmp_path / "repo" / "deploy" / "key.yaml").symlink_to(tmp_path / "worker-key")
    (tmp_path / "repo" / "deploy" / "tenant.yaml").symlink_to("../../tenant.yaml")
    found, problems = find_containers(tmp_path / "repo", "deploy")
    assert found == []
    assert problems.files == [(f"deploy/{name}.yaml", "symlink leads outside the repository: not read")
                              for name in ("key", "tenant")]


def test_crlf_file_keeps_every_other_byte(tmp_path):
    from worker.images.writeback import ImageChange, apply_changes

    crlf = MULTI.replace("\n", "\r\n").encode()
    (tmp_path / "all.yaml").write_bytes(crlf)
    found, _ = find_containers(tmp_path)
    target = next(c for c in found if c.container == "db")
    change = ImageChange(path="all.yaml", workload=target.workload, container="db", old_image="postgres:16",
                         new_image="postgres:17", old_tag="16", new_tag="17", target=target)
    assert apply_changes(tmp_path, [change]) == ["all.yaml"]
    assert (tmp_path / "all.yaml").read_bytes() == crlf.replace(b"postgres:16", b"postgres:17")


_name = st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(host=st.sampled_from(["", "127.0.0.1:5000/", "ghcr.io/"]), name=_name, old=_tag, new=_tag,
       quote=st.sampled_from(["", "'", '"']), indent=st.sampled_from([2, 4]),
       comment=st.sampled_from(["", "   # pinned?", " #x"]), crlf=st.booleans())
def test_any_reference_style_changes_only_its_characters(host, name, old, new, quote, indent, comment, crlf):
    pad = " " * indent
    old_image, new_image = f"{host}{name}:{old}", f"{host}{name}:{new}"
    text = (f"kind: DaemonSet  # agent\nmetadata:\n{pad}name: agent\nspec:\n{pad}template:\n"
            f"{pad * 2}spec:\n{pad * 3}containers:\n{pad * 3}- name: a\n"
            f"{pad * 3}  image: {quote}{old_image}{quote}{comment}\n")
    if crlf:
        text = text.replace("\n", "\r\n")
    (target,) = containers_in_text(text, "ds.yaml")
    edited = replace_image(text, target, new_image)
    assert edited == text.replace(f"image: {quote}{old_image}{quote}", f"image: {quote}{new_image}{quote}")


def test_kustomization_images_that_set_a_tag_or_digest_are_found():
    text = ("resources: [app.yaml, overlay]\n"
            "images:\n"
            "  - name: registry.local:5000/team/app\n"
            "    newTag: v2\n"
            "  - name: nginx\n"
            "    newName: mirror.local/nginx\n"  # a new name keeps the workload's tag: not an override
            "  - name: redis\n"
            "    digest: sha256:" + "a" * 64 + "\n"
            "  - {name: busybox, newTag: '1.36'}\n")
    found = overrides_in_text(text, "deploy/kustomization.yaml")
    assert [(o.path, o.name, o.value, o.line, o.column) for o in found] == [
        ("deploy/kustomization.yaml", "registry.local:5000/team/app", "newTag: v2", 3, 12),
        ("deploy/kustomization.yaml", "redis", "digest: sha256:" + "a" * 64, 7, 12),
        ("deploy/kustomization.yaml", "busybox", "newTag: 1.36", 8, 28)]


@pytest.mark.parametrize("written, new_tag, expected", [
    ("newTag: v1", "v2", "newTag: v2"),
    ("newTag: 'v1'", "v2", "newTag: 'v2'"),
    ('newTag: "v1"  # pinned by the bot', "v2", 'newTag: "v2"  # pinned by the bot'),
    ("newTag: 1.9", "1.10", "newTag: '1.10'"),      # a plain 1.10 is a number to YAML, and kustomize refuses it
    ("newTag: v1.9", "1.10.0", "newTag: 1.10.0"),   # two dots: a string already
    ("newTag: develop-v1", "true", "newTag: 'true'"),
])
def test_replace_tag_changes_only_the_new_tag_value(written, new_tag, expected):
    text = f"resources: [app.yaml]\nimages:\n  - name: team/app  # the API\n    {written}\n  - name: other\n    newTag: v1\n"
    (override, other) = overrides_in_text(text, "kustomization.yaml")
    edited = replace_tag(text, override, new_tag)
    assert edited == text.replace(f"    {written}\n", f"    {expected}\n", 1)
    (moved, same) = overrides_in_text(edited, "kustomization.yaml")
    assert moved.raw == new_tag and same == other


def test_replace_tag_in_flow_style_and_crlf():
    text = "images: [{name: busybox, newTag: '1.36'}, {name: app, newTag: v1}]\r\nresources: [a.yaml]\r\n"
    busybox, app = overrides_in_text(text, "Kustomization")
    assert replace_tag(text, app, "v2") == text.replace("newTag: v1}", "newTag: v2}")
    assert replace_tag(text, busybox, "1.37") == text.replace("'1.36'", "'1.37'")


def test_replace_tag_refuses_what_it_cannot_change_in_place():
    text = "images:\n  - name: app\n    newTag: v1\n  - name: pinned\n    digest: sha256:" + "a" * 64 + "\n"
    app, pinned = overrides_in_text(text, "kustomization.yaml")
    with pytest.raises(EditError, match="no one-line newTag"):
        replace_tag(text, pinned, "v2")
    with pytest.raises(EditError, match="no longer v1"):
        replace_tag(text.replace("newTag: v1", "newTag: v9"), app, "v2")
    folded = "images:\n  - name: app\n    newTag: >-\n      v1\n"
    (block,) = overrides_in_text(folded, "kustomization.yaml")
    assert block.raw == "v1" and block.line == -1
    with pytest.raises(EditError):
        replace_tag(folded, block, "v2")


def test_a_symlink_leading_nowhere_or_in_a_loop_is_reported_and_the_rest_scanned(tmp_path):
    """Reading one raised OSError out of the scan: no workload of the repository was scanned."""
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "all.yaml").write_text(MULTI)
    (tmp_path / "deploy" / "gone.yaml").symlink_to("missing.yaml")
    (tmp_path / "deploy" / "loop-a.yaml").symlink_to("loop-b.yaml")
    (tmp_path / "deploy" / "loop-b.yaml").symlink_to("loop-a.yaml")
    found, problems = find_containers(tmp_path, "deploy")
    assert {c.path for c in found} == {"deploy/all.yaml"}
    assert problems.files == [("deploy/gone.yaml", "cannot read: No such file or directory"),
                              ("deploy/loop-a.yaml", "cannot read: Too many levels of symbolic links"),
                              ("deploy/loop-b.yaml", "cannot read: Too many levels of symbolic links")]


ALIAS_BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))


@pytest.mark.parametrize("text, problem", [
    (MULTI + "---\nnested: " + "[" * 5000 + "]" * 5000 + "\n", "line 39: YAML nested deeper than 200 levels"),
    (MULTI + "---\n" + ALIAS_BOMB, "YAML aliases expand the document by more than 100000 values"),
    (MULTI + "---\nself: &a [*a]\n", "line 39: YAML alias *a lies inside the node it names"),
])
def test_yaml_unsafe_to_load_is_reported_as_the_render_refuses_it_and_the_rest_scanned(tmp_path, text, problem):
    """Nesting a few hundred deep raised RecursionError out of the scan (ruamel.yaml composes a
    call per level): no workload of the repository was scanned while the file stood."""
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "all.yaml").write_text(MULTI)
    (tmp_path / "deploy" / "hostile.yaml").write_text(text)
    found, problems = find_containers(tmp_path, "deploy")
    assert {c.path for c in found} == {"deploy/all.yaml"}
    ((path, why),) = problems.files
    assert path == "deploy/hostile.yaml" and why.startswith("line ") and problem in why


def test_yaml_files_past_the_render_bound_are_not_read(tmp_path):
    """Read, they took ruamel.yaml about 2 s and 30 MiB of memory per MiB: a scan of 32 MiB ran for
    minutes and past a worker's 1 GiB, for a path the sync refuses to render anyway."""
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "all.yaml").write_text(MULTI)
    with open(tmp_path / "deploy" / "huge.yaml", "wb") as huge:
        huge.truncate(32 * 1024 * 1024)
    found, problems = find_containers(tmp_path, "deploy")
    assert found == []
    assert problems.files == [("deploy", "no image is changed: its YAML files total 32.0 MiB, more than the "
                                         "32 MiB Pullbridge renders")]


SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n"


@pytest.mark.parametrize("body, why", [
    ('  password: "hunter2\\q"\n', "line 5: invalid YAML: found unknown escape character 'q'"),
    ("  password: hunter2\n  password: hunter3\n", "line 6: invalid YAML: a key is given twice in one mapping"),
    ("  password: !!timestamp hunter2\n", "line 5: invalid YAML: a value does not match its explicit tag"),
    ("  password: !!int hunter2\n", "invalid YAML: a value does not match its explicit tag"),
    ("  password: !!float hunter2\n", "invalid YAML: a value does not match its explicit tag"),
    ("  password: !!bool hunter2\n", "invalid YAML: a value does not match its explicit tag"),
    ("  password: !!set hunter2\n", "invalid YAML: a value does not match its explicit tag"),
])
def test_a_file_that_does_not_load_is_reported_in_one_line_quoting_no_value(tmp_path, body, why):
    """ruamel.yaml's messages quote the lines around the problem (a Secret's value) over several
    lines, into the scan's report and the worker's log; a value not matching its tag raised
    IndexError, KeyError or AttributeError out of the scan."""
    (tmp_path / "all.yaml").write_text(MULTI)
    (tmp_path / "secret.yaml").write_text(SECRET + body)
    found, problems = find_containers(tmp_path)
    assert {c.path for c in found} == {"all.yaml"}
    assert problems.files == [("secret.yaml", why)]


def test_nesting_within_the_bounds_too_deep_for_the_stack_it_is_read_on_is_reported(tmp_path):
    """ruamel.yaml takes about four calls per level: 199 levels, read by a caller 250 calls deep,
    raised RecursionError out of the scan."""
    (tmp_path / "all.yaml").write_text(MULTI)
    (tmp_path / "deep.yaml").write_text("x: " + "[" * 199 + "]" * 199 + "\n")

    def called_from_deep(levels: int):
        return find_containers(tmp_path) if levels == 0 else called_from_deep(levels - 1)

    found, problems = called_from_deep(250)
    assert {c.path for c in found} == {"all.yaml"}
    assert problems.files == [("deep.yaml", "YAML nested too deep for the image scan to read")]


def test_a_symlinked_folder_inside_the_repository_is_scanned_once_as_the_sync_reads_it(tmp_path, tmp_path_factory):
    """The sync follows it (and deploys its workloads); the scan did not, so they were never
    automated."""
    outside = tmp_path_factory.mktemp("other-tenant")
    (outside / "tenant.yaml").write_text(MULTI)
    (tmp_path / ".apps").mkdir()
    (tmp_path / ".apps" / "all.yaml").write_text(MULTI)
    (tmp_path / "apps").symlink_to(".apps")
    (tmp_path / "apps-again").symlink_to("apps")
    (tmp_path / ".apps" / "up").symlink_to("..")  # a loop
    (tmp_path / "other").symlink_to(outside)
    found, problems = find_containers(tmp_path)
    assert {(c.path, c.real_path) for c in found} == {("apps/all.yaml", ".apps/all.yaml")}
    assert problems.files == []
