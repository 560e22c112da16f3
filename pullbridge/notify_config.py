"""Configuration of what Pullbridge tells the outside world: commit statuses and alerts.

Why a module of its own: these settings carry their own secrets (API tokens,
Slack webhook URLs, which are secrets too) and provider-dependent defaults
(API base URL, project path, status context).  Keeping them here keeps
``config.py`` about repositories and jobs.

Both models are strict like the rest of the file: an unknown key is an error.
Defaults that depend on the repository (API URL, project, context) are
resolved by the ``status_*`` functions below, so the worker and
``pullbridge config check`` agree on them.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from pullbridge.config_types import Secret, StrictModel, parse_duration
from pullbridge.repo_url import host_and_path

STATUS_PROVIDERS = ("github", "gitlab", "gitea", "bitbucket-server")
ALERT_EVENTS = ("sync_failed", "sync_recovered", "drift_corrected", "drift_failed", "drift_found",
                "drift_check_failed", "drift_check_recovered")
CONTEXT_MAX = 255  # GitLab's `name` and a sane bound for GitHub's `context`


def printable_ascii(value: bytes) -> bool:
    """Does ``value`` (a secret as ``Secret.value`` reads it: stripped) hold only printable ASCII
    (no space)?  A token or URL that does not cannot be sent: the HTTP client refuses it in an
    error that quotes it whole (a second line, say an old token or URL kept below the new one)."""
    return all(0x21 <= byte <= 0x7E for byte in value)


def _durations(v):
    """Retry intervals: durations like 30s or 5m; 0 means retry at once."""
    items = v if isinstance(v, list) else [v]
    if not items:
        raise ValueError("give at least one interval")
    return [0.0 if x in (0, "0", "0s") else parse_duration(x) for x in items]


class StatusSettings(StrictModel):
    """Per repository: where and how commit statuses are posted.

    ``status:`` absent means no statuses.  The token comes from ``token_env``
    or ``token_file`` (exactly one).  Everything else has a default derived
    from the repository's provider and URL.
    """

    enabled: bool = True
    api_url: str | None = Field(
        None, description="API base: https://api.github.com, https://host/api/v3 (GitHub Enterprise), "
                          "https://host/api/v4 (GitLab), https://host/api/v1 (Gitea/Forgejo), "
                          "https://host[/context] (Bitbucket Server)")
    token_env: str | None = None
    token_file: str | None = None
    context: str | None = Field(None, min_length=1, max_length=CONTEXT_MAX,
                                description="status context/name; default pullbridge/<repo name>")
    project: str | None = Field(
        None, description="owner/name (GitHub, Gitea) or GitLab path_with_namespace or numeric id")
    retries: int = Field(5, ge=0, le=20)
    backoff: list[float] = Field(default_factory=lambda: [2.0, 5.0, 15.0, 30.0, 60.0])
    timeout: float = Field(10.0, gt=0, le=120)

    @field_validator("backoff", mode="before")
    @classmethod
    def _backoff(cls, v):
        return _durations(v)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, v):
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _token(self):
        if bool(self.token_env) == bool(self.token_file):
            raise ValueError("exactly one of token_env or token_file is required")
        return self

    def token(self):
        return Secret(env=self.token_env, file=self.token_file)

    @staticmethod
    def token_problem(value: bytes) -> str | None:
        """Why the token ``value`` cannot go in an HTTP header (``printable_ascii``), never quoting it
        (``Secret.usable_value`` refuses an empty one first)."""
        return None if printable_ascii(value) else "holds a space, line break or other character no API token has"

    def usable_token(self) -> str:
        """The token, read now; ``ConfigError`` naming where it is kept when it is unusable."""
        return self.token().usable_value(self.token_problem).decode()


class AlertTarget(StrictModel):
    """One alert destination: a Slack-compatible incoming webhook or a generic JSON webhook.

    The URL is a secret (a Slack webhook URL lets anyone post), so it comes
    from ``url_env`` or ``url_file`` and never appears in logs or job args.
    """

    kind: Literal["slack", "webhook"]
    url_env: str | None = None
    url_file: str | None = None
    events: list[Literal[ALERT_EVENTS]] = Field(
        default_factory=lambda: list(ALERT_EVENTS))
    repos: list[str] = Field(default_factory=list, description="only these repos; empty: all")
    retries: int = Field(5, ge=0, le=20)
    backoff: list[float] = Field(default_factory=lambda: [5.0, 30.0, 120.0, 300.0, 900.0])
    timeout: float = Field(10.0, gt=0, le=120)

    @field_validator("backoff", mode="before")
    @classmethod
    def _backoff(cls, v):
        return _durations(v)

    @model_validator(mode="after")
    def _url(self):
        if bool(self.url_env) == bool(self.url_file):
            raise ValueError("exactly one of url_env or url_file is required")
        if not self.events:
            raise ValueError("events must name at least one of " + ", ".join(ALERT_EVENTS))
        return self

    def url(self):
        return Secret(env=self.url_env, file=self.url_file)

    @staticmethod
    def url_problem(value: bytes) -> str | None:
        """Why the URL ``value`` cannot be posted to (never quoting it: the URL is the secret)."""
        if not value.startswith((b"https://", b"http://")):
            return "is not an http(s) URL"
        return None if printable_ascii(value) else "holds a space, line break or other character no URL has"

    def usable_url(self) -> str:
        """The URL, read now; ``ConfigError`` naming where it is kept when it is unusable."""
        return self.url().usable_value(self.url_problem).decode()

    def wants(self, event: str, repo_name: str) -> bool:
        return event in self.events and (not self.repos or repo_name in self.repos)


# --- defaults that depend on the repository --------------------------------------------------

def status_api_url(repo) -> str:
    """The API base URL statuses are posted under (no trailing slash)."""
    if repo.status and repo.status.api_url:
        return repo.status.api_url
    scheme, host, path = host_and_path(repo.url)
    if not host:
        raise ValueError("status.api_url is required: no host in the repository URL")
    if repo.provider == "github":
        if host.lower() in ("github.com", "www.github.com"):
            return "https://api.github.com"
        return f"{scheme}://{host}/api/v3"
    if repo.provider == "gitlab":
        return f"{scheme}://{host}/api/v4"
    if repo.provider == "bitbucket-server":  # the base URL: with its context path, what precedes /scm/
        context = path.partition("/scm/")[0] if "/scm/" in path else ""
        return f"{scheme}://{host}{context.rstrip('/')}"
    return f"{scheme}://{host}/api/v1"


def status_project(repo) -> str:
    """owner/name, or for GitLab the project path or numeric id: ``status.project``, else
    ``repository`` (which the configuration derives from ``url`` when it is not given).

    A GitLab served under a relative URL root gives a clone URL whose path begins with the root
    (``/gitlab/group/app.git``), which the URL alone cannot tell from a group; a ``status.api_url``
    under that root (``https://host/gitlab/api/v4``) tells it, and it is left out of a derived path."""
    project = ((repo.status.project if repo.status else None) or repo.repository).strip("/")
    if repo.provider == "gitlab" and not (repo.status and repo.status.project) and repo.repository_may_have_url_root:
        project = project.removeprefix(gitlab_url_root(status_api_url(repo)))
    if repo.provider == "gitlab":
        if not (project.isdigit() or re.fullmatch(r"[\w.-]+(/[\w.-]+)+", project)):
            raise ValueError(f"status.project {project!r} is not a GitLab project path or numeric id")
    elif not re.fullmatch(r"~?[\w.-]+/[\w.-]+" if repo.provider == "bitbucket-server" else r"[\w.-]+/[\w.-]+",
                          project):
        raise ValueError(f"status.project {project!r} must be owner/name"
                         + (" (PROJECT/slug, ~user/slug)" if repo.provider == "bitbucket-server" else ""))
    return project


def gitlab_url_root(api_url: str) -> str:
    """``gitlab/`` of ``https://host/gitlab/api/v4``: the relative URL root a GitLab API is served
    under, with a trailing slash (empty when there is none)."""
    path = urlsplit(api_url).path.rstrip("/")
    root = path.removesuffix("/api/v4").strip("/") if path.endswith("/api/v4") else ""
    return f"{root}/" if root else ""


def status_context(repo) -> str:
    return (repo.status.context if repo.status else None) or f"pullbridge/{repo.name}"


def check_status(repo) -> None:
    """Raise ValueError when the repository's status settings cannot work."""
    if repo.status is None:
        return
    if repo.provider not in STATUS_PROVIDERS:
        raise ValueError(f"status: commit statuses are supported for {', '.join(STATUS_PROVIDERS)}, "
                         f"not {repo.provider}")
    status_api_url(repo)
    status_project(repo)
    if len(status_context(repo)) > CONTEXT_MAX:
        raise ValueError(f"status.context: at most {CONTEXT_MAX} characters")
