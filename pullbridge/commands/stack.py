"""`pullbridge stack up | down | env | status`: the local stack the demo, tests and benchmarks use."""

from __future__ import annotations

import shlex

from pullbridge.cli import CommandError


def register(sub) -> None:
    p = sub.add_parser(
        "stack", help="the local Kubernetes + Redis + git stack (loopback only)",
        description="Start, stop and inspect the local stack: etcd, kube-apiserver, "
                    "kube-controller-manager, Redis (AOF) and a git smart-HTTP server, all on "
                    "127.0.0.1. Directory: $PULLBRIDGE_STACK_DIR (default ~/.cache/pullbridge/stack). "
                    "Ports: PULLBRIDGE_{ETCD,ETCD_PEER,APISERVER,KCM,REDIS,GIT}_PORT.")
    verbs = p.add_subparsers(dest="stack_command", metavar="VERB")
    verbs.required = True
    verbs.add_parser("up", help="install what is missing and start everything (idempotent)").set_defaults(func=cmd_up)
    verbs.add_parser("down", help="stop exactly what `up` started").set_defaults(func=cmd_down)
    verbs.add_parser("env", help="print export lines for a shell to eval").set_defaults(func=cmd_env)
    verbs.add_parser("status", help="show each part and whether it answers").set_defaults(func=cmd_status)


def _stack():
    from pullbridge.stack import Stack
    return Stack()


def cmd_up(args) -> int:
    from pullbridge.stack import StackError
    try:
        _stack().up()
    except StackError as exc:
        raise CommandError(str(exc)) from None
    return 0


def cmd_down(args) -> int:
    _stack().down()
    return 0


def cmd_env(args) -> int:
    stack = _stack()
    for name, value in stack.env().items():
        if name == "PATH":
            print(f'export PATH={shlex.quote(str(stack.bin_dir))}:"$PATH"')
        else:
            print(f"export {name}={shlex.quote(value)}")
    return 0


def cmd_status(args) -> int:
    rows = _stack().status()
    width = max(len(name) for name, _ in rows)
    for name, state in rows:
        print(f"{name:<{width}}  {state}")
    return 0 if all(state.startswith("running") and "not ready" not in state for _, state in rows) else 1
