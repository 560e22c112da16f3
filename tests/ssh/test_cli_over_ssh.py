"""Operator verbs that fetch (diff, rollback) use the ``ssh:`` section of ``--config FILE``.

Against the real sshd and the real stack: the deploy key and pinned host keys are named only in
the file given with ``--config`` ($PULLBRIDGE_CONFIG, $PULLBRIDGE_IDENTITY and
$PULLBRIDGE_KNOWN_HOSTS unset, the default key directory empty), so a verb that fetched with
anything but that file's settings would find no key.
"""

from __future__ import annotations

import json

import git
import pytest

from pullbridge.cli import main
from pullbridge.identity import ensure_file_identity
from pullbridge.known_hosts import record, scan
from pullbridge.repostate import read

pytestmark = pytest.mark.stack


@pytest.fixture
def ssh_repo(sshd, stack, redis_conn, namespace, tmp_path, monkeypatch, capsys):
    """A repo served over SSH whose key and known_hosts only the config file names."""
    key = tmp_path / "keys" / "identity"
    sshd.authorize(ensure_file_identity(key, comment="pullbridge@test").public_line)
    known = tmp_path / "keys" / "known_hosts"
    record(known, sshd.host, sshd.port, scan(sshd.host, sshd.port))
    name = f"{tmp_path.name}.git"
    bare = sshd.bare_repo(name)
    seed = git.Repo.init(tmp_path / "seed", initial_branch="main")
    (tmp_path / "seed" / "cm.yaml").write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: over-ssh\n  namespace: {namespace}\n"
        "data:\n  a: '1'\n")
    seed.index.add(["cm.yaml"])
    seed.index.commit("seed")
    seed.git.push(str(bare), "main")
    config = tmp_path / "pullbridge.yaml"
    config.write_text(json.dumps({
        "ssh": {"identity_file": str(key), "known_hosts_file": str(known)},
        "worker": {"inventory_namespace": namespace},
        "repos": [{"name": "app", "url": sshd.url(name), "provider": "generic",
                   "secret_env": "PB_TEST_SECRET", "namespace": namespace}]}))
    for var in ("PULLBRIDGE_CONFIG", "PULLBRIDGE_IDENTITY", "PULLBRIDGE_KNOWN_HOSTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty-config-home"))
    monkeypatch.setenv("PULLBRIDGE_CACHE_DIR", str(tmp_path / "mirrors"))
    monkeypatch.setenv("REDIS_URL", stack.redis_test_url)
    monkeypatch.setenv("PB_TEST_SECRET", "unused")

    def run(*argv):
        capsys.readouterr()
        code = main([*argv, "--config", str(config)])
        out, err = capsys.readouterr()
        return code, out, err

    return run, seed.head.commit.hexsha, redis_conn


def test_diff_fetches_with_the_key_of_the_config_file(ssh_repo, namespace):
    run, sha, _ = ssh_repo
    code, out, err = run("diff", "app")
    assert code == 1, err  # 1: differences (the ConfigMap would be created), not 2: no key
    assert f"+ ConfigMap/{namespace}/over-ssh created" in out
    assert sha[:12] in out


def test_rollback_fetches_with_the_key_of_the_config_file(ssh_repo):
    run, sha, conn = ssh_repo
    code, out, err = run("rollback", "app", sha[:10])
    assert code == 0, err
    assert read(conn, "app").get("held_sha") == sha
