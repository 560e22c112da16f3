"""Fetch and push over SSH with git_env against a real sshd: strict host keys, only our key."""

from __future__ import annotations

import os
import subprocess
import time

import git
import pytest

from pullbridge.config import SshSettings, parse_config
from pullbridge.identity import ensure_file_identity
from pullbridge.known_hosts import HostKey, record, scan
from worker.errors import PermanentError, TemporaryError
from worker.fetch import Mirror
from worker.periodic import remote_head
from worker.ssh import SshSetupError, git_env, ssh_host_port


def _repo_config(url, **extra):
    data = {"repos": [{"name": "demo", "url": url, "provider": "generic", "secret_env": "X", **extra}]}
    return parse_config(data).repos[0]


@pytest.fixture
def setup(sshd, tmp_path):
    """A deploy key authorized on the sshd, its host keys pinned, and a bare repo with one commit."""
    key = tmp_path / "identity"
    ident = ensure_file_identity(key, comment="pullbridge@test")
    sshd.authorize(ident.public_line)
    known = tmp_path / "known_hosts"
    record(known, sshd.host, sshd.port, scan(sshd.host, sshd.port))
    name = f"{tmp_path.name}.git"
    bare = sshd.bare_repo(name)
    seed = git.Repo.init(tmp_path / "seed", initial_branch="main")
    (tmp_path / "seed" / "cm.yaml").write_text("kind: ConfigMap\n")
    seed.index.add(["cm.yaml"])
    seed.index.commit("seed")
    seed.git.push(str(bare), "main")
    settings = SshSettings(identity_file=str(key), known_hosts_file=str(known))
    return sshd, settings, name, seed.head.commit.hexsha, tmp_path


def test_url_kinds():
    assert ssh_host_port("ssh://git@host.example:2222/org/repo.git") == ("host.example", 2222)
    assert ssh_host_port("ssh://git@host.example/org/repo.git") == ("host.example", 22)
    assert ssh_host_port("git@github.com:org/repo.git") == ("github.com", 22)
    assert ssh_host_port("https://github.com/org/repo.git") is None
    assert ssh_host_port("file:///srv/git/repo.git") is None
    assert git_env(_repo_config("https://example.com/org/repo.git")) == {}
    assert git_env(_repo_config("file:///srv/repo.git")) == {}


def test_clone_fetch_and_push_over_ssh(setup):
    sshd, settings, name, seed_sha, tmp = setup
    url_kind = "ssh"
    url = sshd.url(name)
    repo_cfg = _repo_config(url)
    env = git_env(repo_cfg, settings)
    assert "StrictHostKeyChecking=yes" in env["GIT_SSH_COMMAND"]
    assert "BatchMode=yes" in env["GIT_SSH_COMMAND"]
    clone = git.Repo.clone_from(url, tmp / f"clone-{url_kind}", env=env)
    assert clone.head.commit.hexsha == seed_sha
    # push a new commit over ssh
    (tmp / f"clone-{url_kind}" / "new.yaml").write_text("kind: Secret\n")
    clone.index.add(["new.yaml"])
    new_sha = clone.index.commit("from pullbridge").hexsha
    with clone.git.custom_environment(**env):
        clone.git.push("origin", "main")
    assert git.Repo(sshd.root / name).commit("main").hexsha == new_sha
    # a second clone fetches it
    other = git.Repo.clone_from(url, tmp / f"other-{url_kind}", env=env)
    (tmp / f"clone-{url_kind}" / "more.yaml").write_text("kind: Namespace\n")
    clone.index.add(["more.yaml"])
    newest = clone.index.commit("more").hexsha
    with clone.git.custom_environment(**env):
        clone.git.push("origin", "main")
    with other.git.custom_environment(**env):
        other.git.fetch("origin", newest)
    assert other.commit("FETCH_HEAD").hexsha == newest


def test_scp_like_url_works(setup):
    sshd, settings, name, seed_sha, tmp = setup
    # scp-like URLs cannot name a port: reach the test port through an ssh_config Host alias
    # (as an operator would in ~/.ssh/config); the pinned key is looked up via HostKeyAlias.
    env = git_env(_repo_config(sshd.url(name)), settings)
    alias_cfg = tmp / "ssh_config"
    alias_cfg.write_text(f"Host pbtest\n  HostName {sshd.host}\n  Port {sshd.port}\n"
                         f"  HostKeyAlias [{sshd.host}]:{sshd.port}\n")
    env["GIT_SSH_COMMAND"] = env["GIT_SSH_COMMAND"].replace("ssh ", f"ssh -F {alias_cfg} ", 1)
    scp_url = f"{sshd.user}@pbtest:{sshd.root / name}"
    assert ssh_host_port(scp_url) == ("pbtest", 22)
    clone = git.Repo.clone_from(scp_url, tmp / "scp-clone", env=env)
    assert clone.head.commit.hexsha == seed_sha


def test_unknown_host_key_is_refused(setup):
    sshd, settings, name, _, tmp = setup
    # The file pins a different key for this host: ssh must refuse, not ask or replace it.
    _pin_an_impostor(settings, sshd, tmp)
    before = settings.known_hosts_path().read_text()
    env = git_env(_repo_config(sshd.url(name)), settings)
    with pytest.raises(git.GitCommandError) as err:
        git.Repo.clone_from(sshd.url(name), tmp / "refused", env=env)
    assert "Host key verification failed" in str(err.value) or "REMOTE HOST IDENTIFICATION" in str(err.value)
    assert settings.known_hosts_path().read_text() == before


def test_host_missing_from_known_hosts_is_refused_before_git_runs(setup):
    sshd, settings, name, _, tmp = setup
    empty = tmp / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(SshSetupError, match=f"known-hosts add {sshd.host} --port {sshd.port}"):
        git_env(_repo_config(sshd.url(name)), SshSettings(identity_file=settings.identity_file,
                                                            known_hosts_file=str(empty)))
    # and ssh itself refuses too (strict: no trust on first use)
    env = git_env(_repo_config(sshd.url(name)), settings)
    env["GIT_SSH_COMMAND"] = env["GIT_SSH_COMMAND"].replace(str(settings.known_hosts_path()), str(empty))
    with pytest.raises(git.GitCommandError, match="Host key verification failed"):
        git.Repo.clone_from(sshd.url(name), tmp / "tofu", env=env)
    assert empty.read_text() == ""


def test_a_key_the_server_does_not_know_is_refused(setup):
    sshd, settings, name, _, tmp = setup
    other = tmp / "other-identity"
    ensure_file_identity(other)
    repo_cfg = _repo_config(sshd.url(name), ssh_key_file=str(other))
    env = git_env(repo_cfg, settings)
    assert str(other) in env["GIT_SSH_COMMAND"]
    with pytest.raises(git.GitCommandError, match="Permission denied"):
        git.Repo.clone_from(sshd.url(name), tmp / "denied", env=env)


def test_world_readable_key_is_refused_before_git_runs(setup):
    sshd, settings, name, _, _ = setup
    os.chmod(settings.identity_file, 0o644)
    with pytest.raises(SshSetupError, match="chmod 600"):
        git_env(_repo_config(sshd.url(name)), settings)


def test_without_config_argument_the_config_file_is_used(setup, tmp_path, monkeypatch):
    sshd, settings, name, seed_sha, tmp = setup
    cfg = tmp_path / "pullbridge.yaml"
    cfg.write_text(f"ssh:\n  identity_file: {settings.identity_file}\n"
                   f"  known_hosts_file: {settings.known_hosts_file}\n")
    monkeypatch.setenv("PULLBRIDGE_CONFIG", str(cfg))
    monkeypatch.delenv("PULLBRIDGE_IDENTITY", raising=False)
    env = git_env(_repo_config(sshd.url(name)))
    clone = git.Repo.clone_from(sshd.url(name), tmp / "via-config", env=env)
    assert clone.head.commit.hexsha == seed_sha
    cfg.write_text("ssh:\n  identity_fil: typo\n")
    os.utime(cfg, ns=(1, 1))  # a different mtime: the file is read again
    with pytest.raises(SshSetupError, match="ssh.identity_fil: unknown key"):
        git_env(_repo_config(sshd.url(name)))


def test_an_agent_holding_an_authorized_key_is_not_used(setup):
    """Only the configured key counts: a loaded ssh-agent must not rescue a wrong key."""
    sshd, settings, name, _, tmp = setup
    sock = tmp / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        while not sock.exists():
            if agent.poll() is not None:
                pytest.fail("ssh-agent exited")
            time.sleep(0.02)
        agent_env = dict(os.environ, SSH_AUTH_SOCK=str(sock))
        subprocess.run(["ssh-add", "-q", str(settings.identity_file)], env=agent_env, check=True,
                       capture_output=True)
        other = tmp / "unauthorized"
        ensure_file_identity(other)
        env = git_env(_repo_config(sshd.url(name), ssh_key_file=str(other)), settings)
        with pytest.raises(git.GitCommandError, match="Permission denied"):
            git.Repo.clone_from(sshd.url(name), tmp / "agent-clone", env={**env, "SSH_AUTH_SOCK": str(sock)})
        # the same agent does authenticate plain ssh, so the refusal above is ours
        plain = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                                "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=no",
                                "-p", str(sshd.port), f"{sshd.user}@{sshd.host}", "true"],
                               env=agent_env, capture_output=True, text=True)
        assert plain.returncode == 0, plain.stderr
    finally:
        agent.terminate()
        agent.wait()


def test_paths_with_spaces_and_percent_signs(setup):
    sshd, settings, name, seed_sha, tmp = setup
    odd = tmp / "dir with space %d"
    odd.mkdir()
    key, known = odd / "identity", odd / "known hosts"
    key.write_bytes(settings.identity_path().read_bytes())
    os.chmod(key, 0o600)
    known.write_bytes(settings.known_hosts_path().read_bytes())
    env = git_env(_repo_config(sshd.url(name)),
                  SshSettings(identity_file=str(key), known_hosts_file=str(known)))
    clone = git.Repo.clone_from(sshd.url(name), tmp / "odd-clone", env=env)
    assert clone.head.commit.hexsha == seed_sha


def _mirror(url, settings, root):
    """The worker's mirror of ``url``, with ``settings`` as the config's ssh: section."""
    config = parse_config({"ssh": settings.model_dump(),
                           "repos": [{"name": "demo", "url": url, "provider": "generic", "secret_env": "X"}]})
    return Mirror(config.repos[0], root=root, config=config)


def _pin_an_impostor(settings, sshd, tmp):
    """Pin another key for the sshd, as if the host's key had changed."""
    impostor = tmp / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    kind, blob = impostor.with_suffix(".pub").read_text().split()[:2]
    record(settings.known_hosts_path(), sshd.host, sshd.port, [HostKey("x", kind, blob)])


def test_a_sync_refused_for_a_changed_host_key_says_what_to_run(setup):
    """ssh's long MITM warning must not hide what to do, and a retry cannot help."""
    sshd, settings, name, _, tmp = setup
    _pin_an_impostor(settings, sshd, tmp)
    with pytest.raises(PermanentError) as refused:
        _mirror(sshd.url(name), settings, tmp / "cache").fetch()
    message = str(refused.value)
    assert f"host key of [{sshd.host}]:{sshd.port} is not the one pinned in {settings.known_hosts_path()}" in message
    assert message.endswith(f"run `pullbridge known-hosts add {sshd.host} --port {sshd.port}`")


def test_the_periodic_head_check_refused_for_a_changed_host_key_says_what_to_run(setup, monkeypatch):
    sshd, settings, name, _, tmp = setup
    _pin_an_impostor(settings, sshd, tmp)
    monkeypatch.delenv("PULLBRIDGE_CONFIG", raising=False)
    monkeypatch.setenv("PULLBRIDGE_IDENTITY", settings.identity_file)
    monkeypatch.setenv("PULLBRIDGE_KNOWN_HOSTS", settings.known_hosts_file)
    with pytest.raises(TemporaryError) as refused:  # the check tries again next interval
        remote_head(_repo_config(sshd.url(name)))
    assert str(refused.value).startswith(f"git ls-remote failed: repo demo: the SSH host key of "
                                         f"[{sshd.host}]:{sshd.port} is not the one pinned")
    assert str(refused.value).endswith(f"run `pullbridge known-hosts add {sshd.host} --port {sshd.port}`")


def test_a_sync_refused_for_its_deploy_key_says_which_key_to_add(setup):
    sshd, settings, name, _, tmp = setup
    other = tmp / "not authorized"
    ensure_file_identity(other)
    with pytest.raises(PermanentError) as refused:
        _mirror(sshd.url(name), SshSettings(identity_file=str(other), known_hosts_file=settings.known_hosts_file),
                tmp / "cache").fetch()
    assert str(refused.value) == (
        f"repo demo: [{sshd.host}]:{sshd.port} refused the deploy key {other}; add the public key "
        f"`pullbridge identity --file '{other}'` prints to the repository as a deploy key")


@pytest.mark.parametrize("answer", [
    "The project you were looking for could not be found or you don't have permission to view it.",  # GitLab
    "Gitea: Cannot find repository: acme/app",
    "Forgejo: The repository you are trying to reach either does not exist or you are not authorized to view it.",
])
def test_a_repository_the_host_says_is_missing_or_not_ours_is_permanent(setup, answer):
    """Git hosts answer SSH with a forced command; theirs says the repository is not there (or the
    deploy key may not read it): retrying cannot help, and the host is not 'unreachable'."""
    sshd, settings, name, _, tmp = setup
    public = ensure_file_identity(settings.identity_file).public_line
    sshd.authorize(f'command="echo \\"{answer}\\" >&2; exit 1",restrict {public}')
    with pytest.raises(PermanentError, match="git fetch failed: ") as missing:
        _mirror(sshd.url(name), settings, tmp / "cache").fetch()
    assert answer.split(":")[-1].strip() in str(missing.value)
