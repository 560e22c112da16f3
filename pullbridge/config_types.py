"""The building blocks every part of the configuration uses.

Why it exists: the repository settings (``pullbridge.config``), the image
automation settings (``pullbridge.image_config``) and the commit status and
alert settings (``pullbridge.notify_config``) all need the same strict model,
duration parser, secret reference and error; with them here, none of those
modules has to import another lazily to avoid an import cycle.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?\Z")
# A year: more than any setting (interval, timeout, backoff, TTL such as a 30-day dedup_ttl)
# needs; larger values, inf and nan only break the code that turns them into timers (RQ's
# timedelta, math.ceil).
MAX_DURATION = 365 * 86400


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid.

    ``problems`` is a list of ``(key path, message)`` pairs.
    """

    def __init__(self, problems: list[tuple[str, str]], source: str = ""):
        self.problems = problems
        self.source = source
        lines = [f"{path}: {msg}" if path else msg for path, msg in problems]
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(lines))


def yaml_problem(exc: Exception) -> str:
    """A YAML parse error in one line: where and what.  The parser's own text spans several
    lines, quoting the file around the mark and, for a duplicate key, how to silence the check."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    context, at = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and at:  # "while scanning a quoted scalar" where the unclosed quote opened
        problem += f" ({context} at line {at.line + 1}, column {at.column + 1})"
    return f"invalid YAML{where}: {problem}"


class KeyProblem(ValueError):
    """A validator's error about a key below the model it checks: ``key`` is that key's path
    relative to the model (``repos[1].name`` from the top level, ``dedup_ttl`` from
    ``server``), so the error names the key to fix, not the block holding it."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def lowercase_name(value: str) -> str:
    """``value`` when it can name a repository or hook (a DNS label), else ValueError."""
    if not NAME_RE.match(value):
        raise ValueError("must be lowercase letters, digits and '-', at most 63 characters")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(value: str) -> str:
    """A log level name in any case ('debug', 'INFO') -> logging's name; ValueError otherwise
    (an argparse ``type``: the process exits 2 naming the value)."""
    name = str(value).strip().upper()
    if name == "WARN":
        name = "WARNING"
    if name not in LOG_LEVELS:
        raise ValueError(f"unknown log level {value!r} (one of {', '.join(LOG_LEVELS)})")
    return name


def parse_duration(value, minimum: float = 0.0) -> float:
    """'5m', '10s', '1h30m' or a number of seconds -> seconds (more than 0, at least ``minimum``,
    at most ``MAX_DURATION``)."""
    seconds = _duration(value)
    if seconds < minimum:
        raise ValueError(f"must be at least {minimum:g}s")
    if seconds > MAX_DURATION:
        raise ValueError(f"must be at most {MAX_DURATION // 3600}h, got {value!r}")
    return seconds


def _duration(value) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m or 1h")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number of seconds, got {value!r}")
        if value <= 0:
            raise ValueError("must be positive")
        return float(value)
    text = str(value).strip()
    m = DURATION_RE.match(text)
    if not text or not m or not any(m.groups()):
        raise ValueError(f"expected a duration like 30s, 5m or 1h, got {text!r}")
    h, mi, s = (int(g or 0) for g in m.groups())
    seconds = h * 3600 + mi * 60 + s
    if seconds <= 0:
        raise ValueError("must be positive")
    return float(seconds)


class Secret:
    """A secret read from the environment or a file; never shown in repr/str."""

    def __init__(self, env: str | None = None, file: str | None = None):
        self.env = env
        self.file = file

    def value(self) -> bytes:
        if self.env:
            raw = os.environ.get(self.env)
            if raw is None:
                raise ConfigError([("", f"environment variable {self.env} is not set")])
            return raw.encode().strip()  # as a file's: a Secret made --from-file ends in a newline
        if self.file:
            try:
                return Path(self.file).read_bytes().strip()
            except OSError as exc:
                raise ConfigError([("", f"cannot read secret file {self.file}: {exc.strerror}")]) from None
        raise ConfigError([("", "no secret configured")])

    def usable_value(self, problem_of=None) -> bytes:
        """``value()``, refused with ``SecretUnusable`` when it is empty or ``problem_of(value)``
        says what else is wrong with it (a ``ConfigError`` when it cannot be read at all).
        ``config check`` and the receivers use this one check."""
        value = self.value()
        problem = "is empty" if not value else problem_of(value) if problem_of else None
        if problem:
            raise SecretUnusable(self, problem)
        return value

    def describe(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"

    def __repr__(self) -> str:
        return f"Secret({self.describe()})"

    __str__ = __repr__


class SecretUnusable(ConfigError):
    """A secret that was read but cannot be used: ``problem`` says why (``is empty``, ...),
    never quoting it; the message also says where it is kept."""

    def __init__(self, secret: Secret, problem: str):
        super().__init__([("", f"{secret.describe()} {problem}")])
        self.problem = problem


SIGNING_SECRET_PREFIX = b"whsec_"


def signing_key(secret: bytes) -> bytes | None:
    """The HMAC key of a Standard Webhooks signing secret (``whsec_<base64>``, as GitLab's
    signed webhooks use), or None when what follows the prefix is not base64 or decodes to
    nothing; padding may be left out."""
    raw = secret[len(SIGNING_SECRET_PREFIX):].strip()
    try:
        return base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True) or None
    except (binascii.Error, ValueError):
        return None


class StrictModel(BaseModel):
    """A settings block: unknown keys are errors and values cannot change once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
