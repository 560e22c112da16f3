"""`pullbridge config check`: validate a configuration file, naming each error's key path.

Errors go to stderr as ``pullbridge: FILE: KEY: problem`` (exit 2), like every
verb's; the "ok" line goes to stdout (exit 0).
"""

from __future__ import annotations

import os
import sys

from pullbridge.config import CONFIG_ENV, ConfigError, check_secrets, load_config


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
    names = ", ".join(r.name for r in config.repos) or "none"
    print(f"{path}: ok ({len(config.repos)} repositories: {names})")
    return 0
