"""The git SSH transport for the worker: deploy key plus pinned host keys, nothing else.

Why it exists: GitPython shells out to ``git``, which runs ``ssh``; by default
ssh would use whatever keys, agent and known_hosts the worker's user happens
to have and would ask questions on a terminal.  ``git_env(repo, config)``
returns the environment for one fetch or push that makes ssh use exactly the
configured deploy key (``IdentitiesOnly``, no agent), trust exactly the
pinned known_hosts (``StrictHostKeyChecking=yes``, no global file) and never
prompt (``BatchMode``).  Non-SSH URLs get an empty dict.

Usage (the fetch module)::

    env = git_env(repo, config)   # config optional: else $PULLBRIDGE_CONFIG's ssh section
    with git_repo.git.custom_environment(**env):
        git_repo.remote().fetch(...)

Problems an operator must fix (missing or world-readable key, host not in
known_hosts) raise ``SshSetupError`` before git runs: retrying will not help.
Those only the connection shows (the host's key is not the pinned one, the
host refused the deploy key) are put in the operator's words by ``refusal``.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from urllib.parse import urlsplit

from pullbridge.config import CONFIG_ENV, Config, ConfigError, RepoConfig, SshSettings, load_config
from pullbridge.identity import IdentityError, check_key_file
from pullbridge.known_hosts import KnownHostsError, host_pattern, lookup

SSH_URL_RE = re.compile(r"^(?:ssh|git\+ssh|ssh\+git)://", re.IGNORECASE)
SCP_URL_RE = re.compile(r"^(?:[^@/:]+@)?(\[[^\]]+\]|[^:/]+):(?!//)")
# What ssh writes when the host's key is not the pinned one (changed, or of another type) ...
HOST_KEY_REFUSED = re.compile(r"host key verification failed|remote host identification has changed", re.I)
# ... and when the host accepted none of the keys offered (only the deploy key is).
KEY_REFUSED = re.compile(r"permission denied \(publickey", re.I)


class SshSetupError(Exception):
    """SSH is not set up for this repository; permanent until the operator acts."""


def ssh_host_port(url: str) -> tuple[str, int] | None:
    """(host, port) for ssh:// and scp-like ``user@host:path`` URLs, else None; the host
    lowercased for both, as ssh does."""
    if SSH_URL_RE.match(url):
        parts = urlsplit(url)
        if not parts.hostname:
            return None
        return parts.hostname, parts.port or 22
    if "://" in url:
        return None
    m = SCP_URL_RE.match(url)
    if not m or "@" not in url.split(":", 1)[0]:
        return None  # plain "host:path" is ambiguous with local paths; config requires user@
    return m.group(1).strip("[]").lower(), 22


def _ssh_path(path: str) -> str:
    """A path as ssh reads it in a -i / -o value: '%' is a token prefix there, spaces split."""
    path = str(path).replace("%", "%%")
    return f'"{path}"' if any(c.isspace() for c in path) else path


def ssh_command(key_file: str, known_hosts_file: str, connect_timeout: float = 30.0) -> str:
    """The GIT_SSH_COMMAND string (shell-quoted: git runs it through the shell)."""
    return shlex.join([
        "ssh",
        # IdentityFile rather than -i: ssh stats a -i path literally but then expands %-tokens
        # in it, so only the config-option form handles any path.
        "-o", f"IdentityFile={_ssh_path(key_file)}",
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", f"UserKnownHostsFile={_ssh_path(known_hosts_file)}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UpdateHostKeys=no",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={max(1, int(connect_timeout))}",
    ])


def _settings_from_env() -> SshSettings:
    """The ``ssh:`` section of $PULLBRIDGE_CONFIG (re-read only when the file changes)."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        return SshSettings()
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        mtime = None
    return _load_ssh_settings(path, mtime)


def _settings(config: Config | SshSettings | None) -> SshSettings:
    if isinstance(config, Config):
        return config.ssh
    return config or _settings_from_env()


@functools.lru_cache(maxsize=4)
def _load_ssh_settings(path: str, mtime) -> SshSettings:
    try:
        return load_config(path).ssh
    except ConfigError as exc:
        raise SshSetupError(str(exc)) from None


def git_env(repo: RepoConfig, config: Config | SshSettings | None = None) -> dict[str, str]:
    """Environment for git fetch/push of ``repo``: {} unless its URL is SSH.

    Without ``config`` the ``ssh:`` section of $PULLBRIDGE_CONFIG is used (then
    $PULLBRIDGE_IDENTITY / $PULLBRIDGE_KNOWN_HOSTS, then the defaults).
    """
    target = ssh_host_port(repo.url)
    if target is None:
        return {}
    settings = _settings(config)
    key_file = str(settings.key_path(repo))
    known_hosts = settings.known_hosts_path()
    try:
        check_key_file(key_file)
    except IdentityError as exc:
        raise SshSetupError(f"repo {repo.name}: {exc}") from None
    host, port = target
    try:
        pinned = lookup(known_hosts, host, port)
    except KnownHostsError as exc:
        raise SshSetupError(f"repo {repo.name}: {exc}") from None
    if pinned == []:
        raise SshSetupError(
            f"repo {repo.name}: no host key pinned for {host_pattern(host, port)} in {known_hosts}; "
            f"check the host's fingerprint and run {_pin_command(host, port)}")
    return {
        "GIT_SSH_COMMAND": ssh_command(key_file, str(known_hosts), settings.connect_timeout),
        "GIT_SSH_VARIANT": "ssh",
        "GIT_TERMINAL_PROMPT": "0",
    }


def _pin_command(host: str, port: int) -> str:
    port_opt = f" --port {port}" if port != 22 else ""
    return f"`pullbridge known-hosts add {host}{port_opt}`"


def refusal(repo: RepoConfig, config: Config | SshSettings | None, git_stderr: str) -> str | None:
    """What the operator must do when ssh refused the host's key or the host refused the deploy
    key, from git's message; None for any other failure (or a URL that is not SSH)."""
    target = ssh_host_port(repo.url)
    if target is None:
        return None
    host, port = target
    try:
        settings = _settings(config)
    except SshSetupError:
        return None
    if HOST_KEY_REFUSED.search(git_stderr):
        return (f"repo {repo.name}: the SSH host key of {host_pattern(host, port)} is not the one pinned in "
                f"{settings.known_hosts_path()}, so the connection was refused (it may be intercepted). "
                f"If the host really changed its key, compare the new fingerprint with the one the host "
                f"publishes and run {_pin_command(host, port)}")
    if KEY_REFUSED.search(git_stderr):
        key = settings.key_path(repo)
        return (f"repo {repo.name}: {host_pattern(host, port)} refused the deploy key {key}; add the public "
                f"key `pullbridge identity --file {shlex.quote(str(key))}` prints to the repository as a deploy key")
    return None
