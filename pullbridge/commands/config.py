"""`pullbridge config check`: validate a configuration file, naming each error's key path.

Errors go to stderr as ``pullbridge: FILE: KEY: problem`` (exit 2), like every
verb's; the "ok" line goes to stdout (exit 0).  A setting that is valid but
almost surely not meant is a warning on stderr, ``pullbridge: FILE: KEY:
warning: ...``, and leaves the exit status 0 (``warnings``).
"""

from __future__ import annotations

import os
import sys

from pullbridge.config import CONFIG_ENV, Config, ConfigError, check_secrets, load_config


def register(sub) -> None:
    p = sub.add_parser("config", help="work with the configuration file")
    verbs = p.add_subparsers(dest="config_command", metavar="VERB")
    verbs.required = True
    check = verbs.add_parser("check", help="validate a configuration file")
    check.add_argument("file", nargs="?", help=f"YAML file (default: ${CONFIG_ENV})")
    check.add_argument("--no-secrets", action="store_true",
                       help="do not check that each secret can be read")
    check.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    path = args.file or os.environ.get(CONFIG_ENV)
    try:
        config = load_config(path)
    except ConfigError as exc:
        source = exc.source or path or "configuration"
        for key, msg in exc.problems:
            print(f"pullbridge: {source}: {key + ': ' if key else ''}{msg}", file=sys.stderr)
        return 2
    problems = [] if args.no_secrets else check_secrets(config)
    for key, msg in problems:
        print(f"pullbridge: {path}: {key}: {msg}", file=sys.stderr)
    if problems:
        return 2
    for key, msg in warnings(config):
        print(f"pullbridge: {path}: {key}: warning: {msg}", file=sys.stderr)
    names = ", ".join(r.name for r in config.repos) or "none"
    print(f"{path}: ok ({len(config.repos)} repositories: {names})")
    return 0


def warnings(config: Config) -> list[tuple[str, str]]:
    """What is valid but almost surely a mistake: a receiver with no repository (every
    webhook gets 404), and commit statuses whose links point at the default
    ``server.public_url``, an address only the receiver's own machine can open."""
    found = []
    if not config.repos:
        found.append(("repos", "no repository is configured; every webhook will be answered 404"))
    posting = [r.name for r in config.repos if r.status is not None and r.status.enabled]
    if posting and "public_url" not in config.server.model_fields_set:
        found.append(("server.public_url", f"not set, so the commit statuses of {', '.join(posting)} link to "
                      f"{config.server.public_url}, which only this machine can open"))
    return found
