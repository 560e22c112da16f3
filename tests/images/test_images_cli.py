"""`pullbridge images scan` reads Redis like the other verbs: a suspended repository is
never written back, a write-back without a reachable Redis is refused, and a dry run
without one only warns (real registry, bare repo, the stack's Redis)."""

from __future__ import annotations

import json

import pytest

from pullbridge import keys
from pullbridge.cli import main
from tests.images.helpers import NEW, OLD, bare_git, day, make_config

UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.fixture
def config_file(demo, registry, image_name, tmp_path, monkeypatch):
    repo, _, _ = demo
    registry.push_image(image_name, NEW, day(5))
    path = tmp_path / "pullbridge.yaml"
    path.write_text(json.dumps(make_config(repo, registry).model_dump(mode="json", exclude_defaults=True)))
    monkeypatch.delenv("REDIS_URL", raising=False)
    return str(path)


def test_a_suspended_repository_is_not_written_back_from_the_cli(demo, config_file, redis_conn, stack, capsys):
    repo, _, _ = demo
    redis_conn.hset(keys.state("images-demo"), "suspended", "1")
    head = bare_git(repo, "rev-parse", "main").strip()
    assert main(["images", "scan", "images-demo", "--config", config_file, "--redis-url", stack.redis_test_url]) == 0
    assert capsys.readouterr().out.splitlines() == ["note: repository is suspended", "nothing to change"]
    assert bare_git(repo, "rev-parse", "main").strip() == head

    redis_conn.hdel(keys.state("images-demo"), "suspended")
    assert main(["images", "scan", "images-demo", "--config", config_file, "--redis-url", stack.redis_test_url]) == 0
    out = capsys.readouterr().out.splitlines()
    sha = bare_git(repo, "rev-parse", "main").strip()
    assert out[0] == f"changed: my-demo:deployment/fluxdemo container flask: {OLD} -> {NEW} (fluxdemo.yaml)"
    assert out[1].startswith(f"pushed {sha[:12]} to main; sync requested (") and "None" not in out[1]
    assert [m.decode() for m in redis_conn.zrange(keys.wanted("images-demo"), 0, -1)] == [sha]


def test_without_redis_a_write_back_is_refused_and_a_dry_run_only_warns(demo, config_file, capsys):
    repo, _, _ = demo
    head = bare_git(repo, "rev-parse", "main").strip()
    assert main(["images", "scan", "images-demo", "--config", config_file, "--redis-url", UNREACHABLE]) == 2
    err = capsys.readouterr().err
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in err and "a write-back needs Redis" in err
    assert bare_git(repo, "rev-parse", "main").strip() == head

    assert main(["images", "scan", "images-demo", "--dry-run", "--config", config_file,
                 "--redis-url", UNREACHABLE]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"would change: my-demo:deployment/fluxdemo container flask: {OLD} -> {NEW} (fluxdemo.yaml)"]
    assert "warning: cannot reach Redis" in captured.err and "suspension not checked" in captured.err
    assert bare_git(repo, "rev-parse", "main").strip() == head


def test_scan_refuses_a_write_back_without_redis(demo, registry, image_name):
    from worker.images.scan import scan
    from worker.images.writeback import WriteBackError

    repo, _, _ = demo
    registry.push_image(image_name, NEW, day(5))
    config = make_config(repo, registry)
    head = bare_git(repo, "rev-parse", "main").strip()
    with pytest.raises(WriteBackError) as err:
        scan(None, config, config.repos[0])
    assert "needs Redis" in str(err.value) and not err.value.temporary
    assert bare_git(repo, "rev-parse", "main").strip() == head
    assert [c.new_tag for c in scan(None, config, config.repos[0], dry_run=True).changes] == [NEW]
