"""Settings of image automation: registries, registry webhooks and per-repo policy.

Why it exists: image automation (``worker.images``) has the most settings of
any feature; kept apart from ``pullbridge.config`` they can be read on their
own.  ``pullbridge.config`` places them under ``images:``, ``images.registries``,
``images.hooks`` and each repository's ``images:``.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from pullbridge.config_types import Secret, StrictModel, lowercase_name, parse_duration


class RegistryConfig(StrictModel):
    """How to reach one container registry: credentials by reference, never inline."""

    host: str = Field(description="host[:port] as written in image references, e.g. ghcr.io")
    username_env: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    insecure: bool = Field(False, description="plain http instead of https (loopback registries)")

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9.-]+(:\d{1,5})?\Z", v):
            raise ValueError("must be host or host:port, without a scheme or path")
        return v.lower()

    @model_validator(mode="after")
    def _credentials(self):
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        if bool(self.username_env) != bool(self.password_env or self.password_file):
            raise ValueError("username_env and a password (password_env or password_file) go together")
        return self

    @property
    def password(self) -> Secret | None:
        """Where the password is kept; None for anonymous access."""
        return Secret(env=self.password_env, file=self.password_file) if self.username_env else None

    def credentials(self) -> tuple[str, str] | None:
        """(username, password) read now, or None for anonymous access."""
        if self.password is None:
            return None
        return Secret(env=self.username_env).value().decode(), self.password.value().decode()


class RegistryHookConfig(StrictModel):
    """A registry notification endpoint: POST /hooks/registry/<name>, verified by a shared secret."""

    name: str
    secret_env: str | None = None
    secret_file: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return lowercase_name(v)

    @model_validator(mode="after")
    def _secret(self):
        if bool(self.secret_env) == bool(self.secret_file):
            raise ValueError("exactly one of secret_env or secret_file is required")
        return self

    @property
    def secret(self) -> Secret:
        return Secret(env=self.secret_env, file=self.secret_file)


class ImagesSettings(StrictModel):
    """Global image automation settings: registries, their webhooks, the read cache."""

    registries: list[RegistryConfig] = Field(default_factory=list)
    hooks: list[RegistryHookConfig] = Field(default_factory=list)
    cache_ttl: float = 300.0

    @field_validator("cache_ttl", mode="before")
    @classmethod
    def _ttl(cls, v):
        return parse_duration(v)

    @model_validator(mode="after")
    def _unique(self):
        for what, names in (("registry host", [r.host for r in self.registries]),
                            ("hook name", [h.name for h in self.hooks])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what} {dupes[0]!r} is used twice")
        return self

    def registry(self, host: str) -> RegistryConfig | None:
        return next((reg for reg in self.registries if reg.host == host.lower()), None)

    def hook(self, name: str) -> RegistryHookConfig | None:
        return next((hook for hook in self.hooks if hook.name == name), None)


class RepoImages(StrictModel):
    """Per-repository image update automation (write-back commits)."""

    enabled: bool = False
    interval: float = 300.0
    author_name: str = "Pullbridge"
    author_email: str = "pullbridge@localhost"
    dry_run: bool = False
    push_attempts: int = Field(5, ge=1, le=50)

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, v):
        return parse_duration(v, minimum=10)

    @field_validator("author_name", "author_email")
    @classmethod
    def _author(cls, v: str) -> str:
        if not v.strip() or re.search(r"[<>\n\x00]", v):
            raise ValueError("must be non-empty, without '<', '>' or newlines")
        return v
