"""The `pullbridge` command: one entry point, verbs registered by area.

Each area keeps its verbs in its own module under ``pullbridge/commands/``
with a ``register(subparsers)`` function; this file only lists them.  Exit
codes scripts can trust: 0 success, 1 a negative answer (e.g. differences
found), 2 an error or bad usage.  ``main`` turns every error, even one no
verb foresaw, into one ``pullbridge: ...`` line on stderr and exit 2: a
traceback would exit 1, which a script reads as "differences found".
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pullbridge import __version__

# Modules under pullbridge.commands, each with register(subparsers).
COMMAND_MODULES = [
    "stack",
    "config",
    "demo",
    "notify",
    "identity",
    "known_hosts",
    # operator verbs (pullbridge/commands/common.py has what they share)
    "sync",
    "diff",
    "history",
    "rollback",
    "queue",
    "images",
    "suspend",
]

EXIT_OK, EXIT_NEGATIVE, EXIT_ERROR = 0, 1, 2


class CommandError(Exception):
    """A command failed in a way the user can act on; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pullbridge",
        description="Webhook-driven GitOps bridge: a git push makes the cluster pull the declared state.",
    )
    parser.add_argument("--version", action="version", version=f"pullbridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"pullbridge.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"pullbridge: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `pullbridge queue | head -1`: the reader stopped; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # or exit's flush fails again
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - a bug or an error no verb foresaw: still exit 2, not 1
        text = " ".join(str(exc).split())[:300]
        print(f"pullbridge: {args.command}: {type(exc).__name__}{': ' + text if text else ''}",
              file=sys.stderr)
        return EXIT_ERROR
