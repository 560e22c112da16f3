"""`pullbridge known-hosts add|remove|list`: the pinned SSH host keys the workers trust."""

from __future__ import annotations

import hmac

from pullbridge.cli import CommandError
from pullbridge.commands.identity import ssh_settings
from pullbridge.known_hosts import (KnownHostsError, host_pattern, read_entries, record, scan,
                                    validate_host)


def register(sub) -> None:
    p = sub.add_parser("known-hosts", help="pin the SSH host keys of git hosts (strict checking)")
    verbs = p.add_subparsers(dest="known_hosts_command", metavar="VERB")
    verbs.required = True
    common = {"metavar": "PATH", "help": "known_hosts file (default: ssh.known_hosts_file from the "
              "config, $PULLBRIDGE_KNOWN_HOSTS, or ~/.config/pullbridge/known_hosts)"}
    add = verbs.add_parser(
        "add", help="scan a host's keys with ssh-keyscan and pin them",
        description="Fetch HOST's SSH host keys with ssh-keyscan, print their SHA256 fingerprints and "
                    "pin them (replacing keys pinned before for HOST:PORT). Compare the fingerprints "
                    "with the ones your git host publishes, or pass --fingerprint to require a match.")
    add.add_argument("host")
    add.add_argument("--port", type=int, default=22)
    add.add_argument("--fingerprint", action="append", default=[], metavar="SHA256:...",
                     help="only pin if the host offers a key with this fingerprint (repeatable); "
                          "only matching keys are pinned")
    add.add_argument("--file", **common)
    add.add_argument("--config", metavar="FILE", help="configuration file (default: $PULLBRIDGE_CONFIG)")
    add.set_defaults(func=cmd_add)
    rm = verbs.add_parser("remove", help="stop trusting a host (its pinned keys are removed)")
    rm.add_argument("host")
    rm.add_argument("--port", type=int, default=22)
    rm.add_argument("--file", **common)
    rm.add_argument("--config", metavar="FILE", help="configuration file (default: $PULLBRIDGE_CONFIG)")
    rm.set_defaults(func=cmd_remove)
    ls = verbs.add_parser("list", help="show the pinned host keys with their fingerprints")
    ls.add_argument("--file", **common)
    ls.add_argument("--config", metavar="FILE", help="configuration file (default: $PULLBRIDGE_CONFIG)")
    ls.set_defaults(func=cmd_list)


def _path(args):
    return args.file or ssh_settings(args.config).known_hosts_path()


def cmd_add(args) -> int:
    if not 0 < args.port < 65536:
        raise CommandError(f"--port {args.port} is not a TCP port")
    path = _path(args)
    try:
        keys = scan(args.host, args.port)
        if args.fingerprint:
            wanted = [f if f.startswith("SHA256:") else "SHA256:" + f for f in args.fingerprint]
            keys = [k for k in keys if any(hmac.compare_digest(k.fingerprint, w) for w in wanted)]
            if not keys:
                raise CommandError(
                    f"{args.host}:{args.port} offers no key with fingerprint {', '.join(wanted)}; "
                    "nothing pinned (is this the right host, or is someone in the middle?)")
        pinned = record(path, args.host, args.port, keys)
    except KnownHostsError as exc:
        raise CommandError(str(exc)) from None
    print(f"Pinned {len(pinned)} host key(s) in {path}:")
    for key in pinned:
        print(key.describe())
    return 0


def cmd_remove(args) -> int:
    path = _path(args)
    try:
        validate_host(args.host)
        pattern = host_pattern(args.host, args.port)
        before = [e for e in read_entries(path) if e.names(pattern)]
        if not before:
            raise CommandError(f"{path}: no keys pinned for {pattern}")
        record(path, args.host, args.port, [])
    except KnownHostsError as exc:
        raise CommandError(str(exc)) from None
    print(f"Removed {len(before)} host key(s) for {pattern} from {path}; Pullbridge no longer "
          "connects to it over SSH.")
    return 0


def cmd_list(args) -> int:
    path = _path(args)
    try:
        entries = read_entries(path)
    except KnownHostsError as exc:
        raise CommandError(str(exc)) from None
    if not entries:
        print(f"{path}: no pinned host keys (add one with `pullbridge known-hosts add HOST`)")
        return 0
    for entry in entries:
        print(entry.describe())
    return 0
