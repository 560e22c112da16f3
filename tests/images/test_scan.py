"""Image scans end to end up to Git: a real docker-registry, a bare repo on the stack's
git host, the stack's Redis.  A new tag becomes a write-back commit on the tracked
branch plus a recorded sync request; humans' commits are never lost."""

from __future__ import annotations

import subprocess

import pytest
from rq import Queue

from pullbridge import keys
from pullbridge.config import parse_config
from tests.images.helpers import NEW, OLD, bare_git, day, demo_manifest, make_config
from worker.images.scan import scan
from worker.render import render

def test_new_glob_tag_becomes_a_commit_and_a_sync_request(demo, registry, image_name, redis_conn):
    repo, image, files = demo
    registry.push_image(image_name, NEW, day(5))
    registry.push_image(image_name, "develop-v1.10.0", day(3))   # higher name, older image: not chosen
    registry.push_image(image_name, "master-4f2a1c", day(9))     # newest, but not develop-v*
    config = make_config(repo, registry)
    before = bare_git(repo, "rev-parse", "main").strip()

    result = scan(redis_conn, config, config.repos[0])

    assert result.errors == [] and result.skipped == []
    assert [c.describe() for c in result.changes] == [f"my-demo:deployment/fluxdemo container flask: {OLD} -> {NEW}"]
    assert result.sha == bare_git(repo, "rev-parse", "main").strip()
    assert bare_git(repo, "rev-parse", f"{result.sha}^").strip() == before
    after = bare_git(repo, "show", f"{result.sha}:fluxdemo.yaml")
    assert after.encode() == files["fluxdemo.yaml"].encode().replace(f"{image}:{OLD}".encode(),
                                                                    f"{image}:{NEW}".encode())
    assert bare_git(repo, "diff", "--name-only", before, result.sha).split() == ["fluxdemo.yaml"]
    assert bare_git(repo, "show", "-s", "--format=%an <%ae>|%cn", result.sha).strip() == \
        "Image Bot <bot@pullbridge.invalid>|Image Bot"
    subject = bare_git(repo, "show", "-s", "--format=%s", result.sha).strip()
    assert "fluxdemo" in subject and "flask" in subject and OLD in subject and NEW in subject
    # the normal sync path gets the commit: wanted sha recorded, one sync job queued
    assert [m.decode() for m in redis_conn.zrange(keys.wanted("images-demo"), 0, -1)] == [result.sha]
    job = Queue(keys.SYNC_QUEUE, connection=redis_conn).fetch_job(result.sync_job)
    assert job.func_name == keys.SYNC_JOB and job.args == ("images-demo",)

    again = scan(redis_conn, config, config.repos[0])
    assert again.sha is None and again.changes == []
    assert bare_git(repo, "rev-parse", "main").strip() == result.sha


@pytest.mark.parametrize("prefix", ["fluxcd.io/", "flux.weave.works/"])
def test_semver_policy_on_cronjob_init_container(git_repo, registry, image_name, redis_conn, prefix):
    repo = git_repo("images-semver")
    image = f"{registry.host}/{image_name}"
    cronjob = f"""\
apiVersion: batch/v1
kind: CronJob
metadata:
  name: migrate
  annotations:
    {prefix}automated: "true"
    {prefix}tag.schema: semver:~1.8
spec:
  schedule: "*/5 * * * *"   # every five minutes
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          initContainers:
            - name: schema
              image: "{image}:1.8.0"
          containers:
            - name: run
              image: {image}-busybox:1.36
"""
    repo.commit_and_push("cronjob", {"jobs/migrate.yml": cronjob})
    registry.push_image(f"{image_name}-busybox", "1.36", day(1))
    for tag, when in (("1.8.0", 1), ("1.8.3", 2), ("v1.8.10", 3), ("1.9.0", 4), ("1.8.11-rc.1", 5)):
        registry.push_image(image_name, tag, day(when))
    config = make_config(repo, registry)
    result = scan(redis_conn, config, config.repos[0])
    assert result.errors == []
    assert [(c.container, c.old_tag, c.new_tag) for c in result.changes] == [("schema", "1.8.0", "v1.8.10")]
    assert bare_git(repo, "show", "main:jobs/migrate.yml") == cronjob.replace(":1.8.0", ":v1.8.10")


def test_regex_policy_and_tags_that_do_not_match(demo, registry, image_name, redis_conn):
    repo, image, files = demo
    text = files["fluxdemo.yaml"].replace("glob:develop-v*", r"'regex:^develop-v1\.\d+\.0$'")
    repo.commit_and_push("regex policy", {"fluxdemo.yaml": text})
    registry.push_image(image_name, "develop-v1.8.1", day(6))     # not x.y.0
    registry.push_image(image_name, "develop-v2-rc", day(7))      # no match
    config = make_config(repo, registry)
    head = bare_git(repo, "rev-parse", "main").strip()
    none = scan(redis_conn, config, config.repos[0])
    assert none.sha is None and none.changes == []
    assert bare_git(repo, "rev-parse", "main").strip() == head
    assert redis_conn.zcard(keys.wanted("images-demo")) == 0

    registry.push_image(image_name, "develop-v1.11.0", day(8))
    from worker.images.cache import forget
    forget(redis_conn, f"{registry.host}/{image_name}")
    result = scan(redis_conn, config, config.repos[0])
    assert [(c.old_tag, c.new_tag) for c in result.changes] == [(OLD, "develop-v1.11.0")]


def test_locked_workload_is_never_touched(demo, registry, image_name, redis_conn):
    repo, image, files = demo
    locked = files["fluxdemo.yaml"].replace("flux.weave.works/automated: 'true'",
                                            "flux.weave.works/automated: 'true'\n    fluxcd.io/locked: 'true'")
    other = locked.replace("name: fluxdemo\n  namespace: my-demo", "name: other\n  namespace: my-demo") \
        .replace("    fluxcd.io/locked: 'true'\n", "")
    repo.commit_and_push("lock fluxdemo", {"fluxdemo.yaml": locked + "---\n" + other})
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)
    result = scan(redis_conn, config, config.repos[0])
    assert [c.workload for c in result.changes] == ["my-demo:deployment/other"]
    assert "my-demo:deployment/fluxdemo container flask: locked" in result.skipped
    text = bare_git(repo, "show", "main:fluxdemo.yaml")
    first, second = text.split("---\n", 1)
    assert first == locked and f"{image}:{NEW}" in second


def test_dry_run_lists_changes_and_commits_nothing(demo, registry, image_name, redis_conn):
    repo, image, _ = demo
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry, dry_run=True)
    head = bare_git(repo, "rev-parse", "main").strip()
    result = scan(redis_conn, config, config.repos[0])
    assert result.dry_run and result.sha is None and result.sync_job is None
    assert [c.as_dict()["new_image"] for c in result.changes] == [f"{image}:{NEW}"]
    assert bare_git(repo, "rev-parse", "main").strip() == head
    assert redis_conn.zcard(keys.wanted("images-demo")) == 0


def test_suspended_repository_is_not_scanned(demo, registry, image_name, redis_conn):
    repo, _, _ = demo
    registry.push_image(image_name, NEW, day(5))
    redis_conn.hset(keys.state("images-demo"), "suspended", "1")
    config = make_config(repo, registry)
    head = bare_git(repo, "rev-parse", "main").strip()
    result = scan(redis_conn, config, config.repos[0])
    assert result.sha is None and result.skipped == ["repository is suspended"]
    assert bare_git(repo, "rev-parse", "main").strip() == head


@pytest.mark.parametrize("transport", ["file", "smart-http"])
def test_concurrent_human_commit_is_kept_and_the_edit_redone(demo, registry, image_name, redis_conn, transport):
    repo, image, files = demo
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry, url=repo.http_url if transport == "smart-http" else None)
    human_text = files["fluxdemo.yaml"].replace("replicas: 1", "replicas: 3  # scaled by a human")

    def human_pushes_first(attempt: int) -> None:
        if attempt == 1:  # after the write-back read and committed, before it pushes
            repo.commit_and_push("scale fluxdemo to 3", {"fluxdemo.yaml": human_text,
                                                          "README.md": "hand-written\n"})

    result = scan(redis_conn, config, config.repos[0], before_push=human_pushes_first)
    assert result.attempts == 2
    log = bare_git(repo, "log", "--format=%s", "main").splitlines()
    assert log[0].startswith("Update image of my-demo:deployment/fluxdemo container flask")
    assert log[1] == "scale fluxdemo to 3"
    assert bare_git(repo, "show", "main:fluxdemo.yaml") == human_text.replace(f"{image}:{OLD}", f"{image}:{NEW}")
    assert bare_git(repo, "show", "main:README.md") == "hand-written\n"
    assert [m.decode() for m in redis_conn.zrange(keys.wanted("images-demo"), 0, -1)] == [result.sha]


def test_human_who_made_the_same_update_wins_without_a_second_commit(demo, registry, image_name, redis_conn):
    repo, image, files = demo
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)
    by_hand = files["fluxdemo.yaml"].replace(f"{image}:{OLD}", f"{image}:{NEW}")

    def human_pushes_first(attempt: int) -> None:
        if attempt == 1:
            repo.commit_and_push("bump flask by hand", {"fluxdemo.yaml": by_hand})

    result = scan(redis_conn, config, config.repos[0], before_push=human_pushes_first)
    assert result.sha is None and result.changes == [] and result.attempts == 2
    assert bare_git(repo, "log", "--format=%s", "-1", "main").strip() == "bump flask by hand"


def test_periodic_requests_respect_the_interval(demo, registry, redis_conn):
    repo, _, _ = demo
    from worker.images.scan import request_due_scans

    config = make_config(repo, registry, interval="10m")
    first = request_due_scans(redis_conn, config)
    assert list(first) == ["images-demo"]
    assert request_due_scans(redis_conn, config) == {}
    assert len(Queue(keys.IMAGES_QUEUE, connection=redis_conn)) == 1
    assert 0 < redis_conn.ttl(keys.image_scan_last("images-demo")) <= 600


def test_cli_dry_run_lists_what_would_change(demo, registry, image_name, redis_conn, stack, tmp_path, monkeypatch,
                                             capsys):
    import json

    from pullbridge.cli import main

    repo, image, _ = demo
    registry.push_image(image_name, NEW, day(5))
    config_file = tmp_path / "pullbridge.yaml"
    config_file.write_text(json.dumps(make_config(repo, registry).model_dump(mode="json", exclude_defaults=True)))
    head = bare_git(repo, "rev-parse", "main").strip()
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["images", "scan", "images-demo", "--dry-run", "--config", str(config_file),
                 "--redis-url", stack.redis_test_url]) == 0
    out = capsys.readouterr().out
    assert f"would change: my-demo:deployment/fluxdemo container flask: {OLD} -> {NEW} (fluxdemo.yaml)" in out
    assert bare_git(repo, "rev-parse", "main").strip() == head


def test_a_stale_scan_marker_does_not_block_scans(demo, registry, redis_conn):
    from worker.images.scan import request_scan

    repo, _, _ = demo
    config = make_config(repo, registry)
    first = request_scan(redis_conn, config, config.repos[0], reason="test")
    assert request_scan(redis_conn, config, config.repos[0], reason="test") == first
    Queue(keys.IMAGES_QUEUE, connection=redis_conn).fetch_job(first).delete()  # its worker died, say
    second = request_scan(redis_conn, config, config.repos[0], reason="test")
    assert second != first and redis_conn.get(keys.image_scan_queued("images-demo")).decode() == second
    assert Queue(keys.IMAGES_QUEUE, connection=redis_conn).job_ids == [second]


def test_a_commit_dropped_by_a_rewind_meanwhile_is_not_pushed_back(demo, registry, image_name, redis_conn):
    repo, image, files = demo
    registry.push_image(image_name, NEW, day(5))
    good = bare_git(repo, "rev-parse", "main").strip()
    repo.commit_and_push("a bad commit", {"bad.txt": "oops\n"})
    config = make_config(repo, registry)

    def human_rewinds(attempt: int) -> None:
        if attempt == 1:  # the write-back committed on top of the bad commit
            bare_git(repo, "update-ref", "refs/heads/main", good)

    result = scan(redis_conn, config, config.repos[0], before_push=human_rewinds)
    assert result.attempts == 2
    assert bare_git(repo, "rev-parse", "main^").strip() == good
    assert bare_git(repo, "ls-tree", "--name-only", "main").split().count("bad.txt") == 0


def test_push_attempts_are_bounded_and_every_human_commit_kept(demo, registry, image_name, redis_conn):
    from worker.images.writeback import WriteBackError

    repo, image, files = demo
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry, push_attempts=3)

    def human_always_first(attempt: int) -> None:
        repo.commit_and_push(f"human {attempt}", {f"notes/{attempt}.txt": "x\n"})

    with pytest.raises(WriteBackError) as err:
        scan(redis_conn, config, config.repos[0], before_push=human_always_first)
    assert "after 3 attempts" in str(err.value) and err.value.temporary
    assert bare_git(repo, "log", "--format=%s", "main").splitlines()[:3] == ["human 3", "human 2", "human 1"]
    assert f"{image}:{OLD}" in bare_git(repo, "show", "main:fluxdemo.yaml")
    assert redis_conn.zcard(keys.wanted("images-demo")) == 0


@pytest.mark.parametrize("transport", ["file", "smart-http"])
def test_a_push_a_hook_refuses_fails_at_once_with_its_reason(demo, registry, image_name, redis_conn, transport):
    from worker.images.writeback import WriteBackError

    repo, image, files = demo
    registry.push_image(image_name, NEW, day(5))
    hook = repo.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected: open a pull request' >&2\nexit 1\n")
    hook.chmod(0o755)
    config = make_config(repo, registry, url=repo.http_url if transport == "smart-http" else None)
    head = bare_git(repo, "rev-parse", "main").strip()

    with pytest.raises(WriteBackError) as err:
        scan(redis_conn, config, config.repos[0])
    assert "push to main refused, and the branch has not moved" in str(err.value)
    assert "main is protected: open a pull request" in str(err.value)
    assert bare_git(repo, "rev-parse", "main").strip() == head
    assert redis_conn.zcard(keys.wanted("images-demo")) == 0


def test_git_errors_never_show_url_credentials(registry, redis_conn, stack):
    from worker.images.writeback import WriteBackError

    url = f"{stack.git_http_url.replace('http://', 'http://bot:hunter2@')}/no-such-repo.git"
    config = parse_config({"repos": [{"name": "images-demo", "url": url, "provider": "generic",
                                      "secret_env": "PB_TEST_UNUSED_SECRET", "images": {"enabled": True}}]})
    with pytest.raises(WriteBackError) as err:
        scan(redis_conn, config, config.repos[0])
    assert "hunter2" not in str(err.value) and "cannot clone" in str(err.value)


def test_ssh_remote_without_a_deploy_key_is_a_permanent_error(redis_conn, tmp_path):
    from worker.images.writeback import WriteBackError

    config = parse_config({"repos": [{"name": "images-demo", "url": "ssh://git@127.0.0.1:1/app.git",
                                      "provider": "generic", "secret_env": "PB_TEST_UNUSED_SECRET",
                                      "ssh_key_file": str(tmp_path / "missing-key"), "images": {"enabled": True}}]})
    with pytest.raises(WriteBackError) as err:
        scan(redis_conn, config, config.repos[0])
    assert not err.value.temporary and "images-demo" in str(err.value)


def test_a_tag_set_by_a_kustomization_moves_in_the_kustomization_not_in_the_workload(demo, registry, image_name,
                                                                                    redis_conn, stack, tmp_path):
    # kustomize's images: newTag is applied after the workloads are read: a tag
    # written back to the Deployment would be committed but never deployed.
    repo, image, files = demo
    kustomization = ("resources: [namespace.yaml, nginx-conf.yaml, fluxdemo.yaml]\n"
                     f"images:\n  - name: {image}  # set by the bot\n    newTag: {OLD}\n")
    repo.commit_and_push("kustomize", {"kustomization.yaml": kustomization})
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)
    before = bare_git(repo, "rev-parse", "main").strip()

    result = scan(redis_conn, config, config.repos[0])

    assert result.errors == [] and result.skipped == []
    assert [c.describe() for c in result.changes] == [
        f"my-demo:deployment/fluxdemo container flask: {OLD} -> {NEW} (kustomization.yaml images: {image})"]
    assert bare_git(repo, "diff", "--name-only", before, result.sha).split() == ["kustomization.yaml"]
    assert bare_git(repo, "show", f"{result.sha}:kustomization.yaml") == kustomization.replace(
        f"newTag: {OLD}", f"newTag: {NEW}")
    assert bare_git(repo, "show", f"{result.sha}:fluxdemo.yaml") == files["fluxdemo.yaml"]
    # what kustomize (kubectl's) renders from the new commit is what gets deployed
    subprocess.run(["git", "clone", "-q", "--branch", repo.branch, repo.file_url, str(tmp_path / "tree")], check=True)
    deployment = next(m for m in render(tmp_path / "tree") if m.kind == "Deployment")
    images = [c["image"] for c in deployment.obj["spec"]["template"]["spec"]["containers"]]
    assert f"{image}:{NEW}" in images and f"{image}:{OLD}" not in images
    assert [m.decode() for m in redis_conn.zrange(keys.wanted("images-demo"), 0, -1)] == [result.sha]
    again = scan(redis_conn, config, config.repos[0])
    assert again.sha is None and again.changes == [] and again.skipped == []


def test_a_kustomization_tag_shared_with_a_workload_that_is_not_automated_is_left_alone(demo, registry, image_name,
                                                                                      redis_conn):
    repo, image, _ = demo
    manual = demo_manifest(f"{image}:{OLD}", f"{image}-nginx:1.27", {}).replace("name: fluxdemo", "name: manual")
    repo.commit_and_push("kustomize", {
        "manual.yaml": manual,
        "kustomization.yaml": ("resources: [namespace.yaml, nginx-conf.yaml, fluxdemo.yaml, manual.yaml]\n"
                               f"images:\n  - name: {image}\n    newTag: {OLD}\n")})
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)
    before = bare_git(repo, "rev-parse", "main").strip()

    result = scan(redis_conn, config, config.repos[0])

    assert result.changes == [] and result.sha is None and result.errors == []
    assert result.skipped == [
        f"my-demo:deployment/fluxdemo container flask: its tag is set by kustomization.yaml (images: {image}, "
        f"newTag: {OLD}); it also sets the tag of my-demo:deployment/manual container flask, which is locked "
        "or not automated"]
    assert bare_git(repo, "rev-parse", "main").strip() == before


def test_a_kustomization_tag_pinned_by_digest_is_reported(demo, registry, image_name, redis_conn):
    repo, image, _ = demo
    digest = "sha256:" + "a" * 64
    repo.commit_and_push("kustomize", {"kustomization.yaml": f"resources: [fluxdemo.yaml]\nimages:\n"
                                                             f"  - name: {image}\n    digest: {digest}\n"})
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)
    before = bare_git(repo, "rev-parse", "main").strip()

    result = scan(redis_conn, config, config.repos[0])

    assert result.changes == [] and result.sha is None and result.errors == []
    assert result.skipped == [f"my-demo:deployment/fluxdemo container flask: its tag is set by kustomization.yaml "
                              f"(images: {image}, digest: {digest}); pinned by digest"]
    assert bare_git(repo, "rev-parse", "main").strip() == before
