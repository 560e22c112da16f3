"""`pullbridge demo`: the whole flow on the local stack (the README's first command)."""

from __future__ import annotations

from pullbridge.cli import CommandError


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the Flux demo's scenario end to end on the local stack",
                       description="Pushes the demo manifests to a local git repo, starts the web and "
                                   "worker processes, delivers signed push webhooks and reads the result "
                                   "back from the API server. Needs `pullbridge stack up`. Cleans up on exit.")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from pullbridge.demo import run_demo
    from pullbridge.stack import Stack

    if any(not state.startswith("running") for _, state in Stack().status()):
        raise CommandError("the local stack is not running: run `pullbridge stack up` (or ./dev demo)")
    return run_demo()
