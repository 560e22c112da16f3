"""The YAML configuration shared by the web receiver and the workers.

Why it exists: both processes must agree on which repositories exist, where
they are fetched from, how their webhooks are verified and how their jobs are
retried.  The file is validated strictly (unknown keys are errors) so a typo
never silently turns a setting off, and every error names its key path, e.g.
``repos[1].provider: Input should be 'github', 'gitlab', ...``.

Secrets are never stored in the file: a repository names an environment
variable (``secret_env``) or a file (``secret_file``) and the value is read
when needed.  ``Secret`` objects never print their value.

The pieces every settings block uses (strict model, durations, ``Secret``,
``ConfigError``) live in ``pullbridge.config_types``; image automation's
settings in ``pullbridge.image_config``.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from pullbridge.config_types import (NAME_RE, SIGNING_SECRET_PREFIX, ConfigError, KeyProblem, Secret, StrictModel,
                                     lowercase_name, parse_duration, signing_key, yaml_problem)
from pullbridge.image_config import ImagesSettings, RepoImages
from pullbridge.notify_config import AlertTarget, StatusSettings, check_status
from pullbridge.repo_url import PAYLOAD_NAMES, URL_FORMS, hosted_name

CONFIG_ENV = "PULLBRIDGE_CONFIG"
DEFAULT_MAX_BODY = 3 * 1024 * 1024
PROVIDERS = ("github", "gitlab", "gitea", "bitbucket-server", "generic")
# What `events:` may list: the providers' push events all arrive as `push` (``webhook.events``);
# a ping is always answered and no other event ever syncs.
REPO_EVENTS = ("push",)


class JobSettings(StrictModel):
    """Retries, backoff, timeout and apply concurrency; global with per-repo overrides."""

    retries: int = Field(3, ge=0, le=100)
    backoff: list[float] = Field(default_factory=lambda: [5.0, 30.0, 120.0])
    job_timeout: float = 600.0
    concurrency: int = Field(8, ge=1, le=256)

    @field_validator("backoff", mode="before")
    @classmethod
    def _backoff(cls, v):
        items = v if isinstance(v, list) else [v]
        return [parse_duration(x) for x in items]

    @field_validator("job_timeout", mode="before")
    @classmethod
    def _timeout(cls, v):
        return parse_duration(v)


class RepoConfig(StrictModel):
    name: str
    url: str
    branch: str = "main"
    path: str = "."
    provider: Literal["github", "gitlab", "gitea", "bitbucket-server", "generic"]
    repository: str | None = Field(
        None, validate_default=True,
        description="owner/name as the git host names it; checked against the payload. Default: derived "
                    "from url for the providers whose payload names the repository")
    secret_env: str | None = None
    secret_file: str | None = None
    events: list[Literal[REPO_EVENTS]] = Field(default_factory=lambda: list(REPO_EVENTS), min_length=1)
    paths: list[str] = Field(default_factory=list, description="only pushes touching these globs sync")
    interval: float = 300.0
    mode: Literal["apply", "report"] = "apply"
    allow_empty: bool = False
    retries: int | None = Field(None, ge=0, le=100)
    backoff: list[float] | None = None
    job_timeout: float | None = None
    concurrency: int | None = Field(None, ge=1, le=256)
    status: StatusSettings | None = Field(
        None, description="commit statuses back to the git host; absent: none are posted")
    ssh_key_file: str | None = None
    images: RepoImages = Field(default_factory=RepoImages)
    namespace: str | None = Field(None, description="namespace for namespaced objects that name none")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v):
        if v is not None and not NAME_RE.match(v):
            raise ValueError("must be a valid namespace name")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return lowercase_name(v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^(https?|ssh|file)://", v) and not re.match(r"^[\w.-]+@[\w.-]+:", v):
            raise ValueError("must be an https://, http://, ssh://, file:// or user@host:path URL")
        return v

    @field_validator("repository")
    @classmethod
    def _repository(cls, v: str | None, info: ValidationInfo) -> str | None:
        provider, url = info.data.get("provider"), info.data.get("url")
        if v is not None or provider not in PAYLOAD_NAMES or url is None:
            return v  # given, not checked (generic), or url/provider already wrong
        derived = hosted_name(provider, url)
        if derived is None:
            raise ValueError(f"required: cannot be derived from url (for {provider}, a URL like "
                             f"{URL_FORMS[provider]}); set it to the payload's {PAYLOAD_NAMES[provider]}")
        return derived

    @field_validator("branch")
    @classmethod
    def _branch(cls, v: str) -> str:
        if not v or ".." in v or v.startswith(("/", "-")) or v.endswith((".", "/", ".lock")) \
                or re.search(r"[\x00-\x20~^:?*\[\\\x7f]", v):
            raise ValueError("is not a valid branch name")
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        p = Path(v)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError("must be a relative path inside the repository")
        return v

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, v):
        return parse_duration(v, minimum=10)

    @field_validator("backoff", mode="before")
    @classmethod
    def _backoff(cls, v):
        if v is None:
            return v
        items = v if isinstance(v, list) else [v]
        return [parse_duration(x) for x in items]

    @field_validator("job_timeout", mode="before")
    @classmethod
    def _timeout(cls, v):
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _secret(self):
        if bool(self.secret_env) == bool(self.secret_file):
            raise ValueError("exactly one of secret_env or secret_file is required")
        check_status(self)
        return self

    @property
    def repository_may_have_url_root(self) -> bool:
        """A GitLab ``repository`` derived from ``url`` (not given) is the URL's whole path: under a
        relative URL root (https://host/gitlab/group/name.git) it begins with what payloads leave out."""
        return self.provider == "gitlab" and "repository" not in self.model_fields_set

    @property
    def secret(self) -> Secret:
        return Secret(env=self.secret_env, file=self.secret_file)

    def secret_problem(self, value: bytes) -> str | None:
        """Why the webhook secret ``value`` (read, not empty) cannot verify this provider's
        deliveries (``is ...``, never quoting it), or None.  `config check` reports it and the
        receiver answers 500 misconfigured, not a 401 per delivery."""
        if self.provider == "gitlab" and value.startswith(SIGNING_SECRET_PREFIX) and signing_key(value) is None:
            return "is a GitLab signing secret (whsec_...) whose key is not valid base64"
        return None

    def jobs(self, defaults: JobSettings) -> JobSettings:
        """This repo's job settings: its own values over the global ones."""
        own = {k: getattr(self, k) for k in ("retries", "backoff", "job_timeout", "concurrency")
               if getattr(self, k) is not None}
        return defaults.model_copy(update=own)


class ServerSettings(StrictModel):
    max_body_bytes: int = Field(DEFAULT_MAX_BODY, ge=1024, le=100 * 1024 * 1024)
    public_url: str = "http://127.0.0.1:8080"
    signature_tolerance: float = 300.0
    dedup_ttl: float = 86400.0
    # How long a push may wait for Redis before its 503: under the 10 s GitHub and GitLab wait.
    queue_timeout: float = Field(5.0, lt=10.0)
    operator_token_env: str | None = None
    protect_pages: bool = False

    @field_validator("signature_tolerance", "dedup_ttl", "queue_timeout", mode="before")
    @classmethod
    def _durations(cls, v):
        return parse_duration(v)

    @model_validator(mode="after")
    def _replays_stay_duplicates(self):
        # A Standard Webhooks timestamp is accepted up to signature_tolerance ahead of or behind
        # the clock, so a signed delivery can be replayed up to twice that after it first came.
        if self.dedup_ttl <= 2 * self.signature_tolerance:
            raise KeyProblem("dedup_ttl", (
                f"must be longer than twice server.signature_tolerance ({self.signature_tolerance:g}s), "
                f"got {self.dedup_ttl:g}s: a signed delivery replayed after its id expired would be "
                "taken as new"))
        return self


IDENTITY_ENV = "PULLBRIDGE_IDENTITY"
KNOWN_HOSTS_ENV = "PULLBRIDGE_KNOWN_HOSTS"


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "pullbridge"


def user_path(value: str | os.PathLike) -> Path:
    """A key or known_hosts path as the operator wrote it, with a leading ``~`` expanded.

    Every reader and writer of those files goes through this, so ``~/pb/identity`` names the
    same file for `pullbridge identity`, `known-hosts list` and the worker's ssh.
    """
    return Path(value).expanduser()


class SshSettings(StrictModel):
    """Where the deploy key and the pinned known_hosts live (fetch/push over SSH).

    Unset paths fall back to $PULLBRIDGE_IDENTITY / $PULLBRIDGE_KNOWN_HOSTS,
    then to ``~/.config/pullbridge/identity`` and ``.../known_hosts``.  A repo's
    ``ssh_key_file`` overrides the identity for that repo only.  A leading ``~``
    in any of them is the user's home directory (``user_path``).
    """

    identity_file: str | None = None
    known_hosts_file: str | None = None
    connect_timeout: float = 30.0

    @field_validator("connect_timeout", mode="before")
    @classmethod
    def _timeout(cls, v):
        return parse_duration(v)

    def identity_path(self) -> Path:
        return user_path(self.identity_file or os.environ.get(IDENTITY_ENV) or _config_home() / "identity")

    def known_hosts_path(self) -> Path:
        return user_path(self.known_hosts_file or os.environ.get(KNOWN_HOSTS_ENV)
                         or _config_home() / "known_hosts")

    def key_path(self, repo: RepoConfig) -> Path:
        """The deploy key for ``repo``: its own ``ssh_key_file``, else the shared identity."""
        return user_path(repo.ssh_key_file) if repo.ssh_key_file else self.identity_path()

class WorkerSettings(StrictModel):
    """Sync worker settings shared by every repo."""

    inventory_namespace: str = "pullbridge-system"
    default_namespace: str = "default"
    history_limit: int = Field(50, ge=1, le=10000)
    lock_ttl: float = 30.0
    lock_wait: float = 10.0

    @field_validator("inventory_namespace", "default_namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must be a valid namespace name")
        return v

    @field_validator("lock_ttl", "lock_wait", mode="before")
    @classmethod
    def _durations(cls, v):
        return parse_duration(v)


class Config(StrictModel):
    server: ServerSettings = Field(default_factory=ServerSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    ssh: SshSettings = Field(default_factory=SshSettings)
    repos: list[RepoConfig] = Field(default_factory=list)
    images: ImagesSettings = Field(default_factory=ImagesSettings)
    alerts: list[AlertTarget] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self):
        seen: dict[str, int] = {}
        for i, repo in enumerate(self.repos):
            if repo.name in seen:
                raise KeyProblem(f"repos[{i}].name",
                                 f"repository name {repo.name!r} is already used by repos[{seen[repo.name]}]")
            seen[repo.name] = i
        for i, target in enumerate(self.alerts):
            unknown = [name for name in target.repos if name not in seen]
            if unknown:
                raise KeyProblem(f"alerts[{i}].repos", f"unknown repository {unknown[0]!r}")
        return self

    @cached_property
    def repos_by_name(self) -> dict[str, RepoConfig]:
        """What ``repo`` looks up.  A cached property, not a private attribute:
        pydantic serves those through ``__getattr__``, which cost 1.8 µs per
        lookup against 0.05 µs for this, on every webhook delivery."""
        return {repo.name: repo for repo in self.repos}

    def repo(self, name: str) -> RepoConfig | None:
        """The repository named ``name`` (every webhook looks one up: a dict, not a scan)."""
        return self.repos_by_name.get(name)

    def repo_jobs(self, repo: RepoConfig) -> JobSettings:
        return repo.jobs(self.jobs)


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_config(data, source: str = "") -> Config:
    """Validate already-loaded YAML data; raise ConfigError naming each key path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("", "the top level must be a mapping")], source)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            loc, msg = _loc(err["loc"]), err["msg"].removeprefix("Value error, ")
            cause = err.get("ctx", {}).get("error")
            if isinstance(cause, KeyProblem):
                loc = f"{loc}.{cause.key}" if loc else cause.key
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            problems.append((loc, msg))
        raise ConfigError(problems, source) from None


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and validate the YAML file at ``path`` (default: $PULLBRIDGE_CONFIG)."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError([("", f"no configuration: set {CONFIG_ENV} to the path of a YAML file")])
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([("", f"cannot read {path}: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([("", f"cannot read {path}: not UTF-8 text")]) from None
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise ConfigError([("", yaml_problem(exc))], str(path)) from None
    except (ValueError, TypeError):  # `!!int x`
        raise ConfigError([("", "invalid YAML: a value does not match its explicit tag")], str(path)) from None
    return parse_config(data, str(path))


def check_secrets(config: Config) -> list[tuple[str, str]]:
    """Problems with secrets that cannot be read now (values are never shown)."""
    problems = []
    for i, repo in enumerate(config.repos):
        problems += _unreadable(f"repos[{i}].secret", repo.secret, repo.secret_problem)
        if repo.status is not None:
            problems += _unreadable(f"repos[{i}].status.token", repo.status.token(), repo.status.token_problem)
    for i, target in enumerate(config.alerts):
        problems += _unreadable(f"alerts[{i}].url", target.url(), target.url_problem)
    for i, hook in enumerate(config.images.hooks):
        problems += _unreadable(f"images.hooks[{i}].secret", hook.secret)
    for i, reg in enumerate(config.images.registries):
        try:
            reg.credentials()
        except ConfigError as exc:
            problems.append((f"images.registries[{i}]", exc.problems[0][1]))
    return problems


def _unreadable(prefix: str, secret: Secret, problem_of=None) -> list[tuple[str, str]]:
    """The problem, if any, of the secret named by ``<prefix>_env`` or ``<prefix>_file``, at that
    key: it cannot be read, it is empty, or ``problem_of(value)`` says what else is wrong."""
    try:
        secret.usable_value(problem_of)
    except ConfigError as exc:
        return [(f"{prefix}_env" if secret.env else f"{prefix}_file", exc.problems[0][1])]
    return []
