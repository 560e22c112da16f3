"""`pullbridge identity`: show (creating once) or rotate the SSH deploy key.

Like ``fluxctl identity``: prints the OpenSSH public key on stdout, ready to
paste into the git host as a deploy key; what happened (created, reused,
rotated) goes to stderr so ``pullbridge identity > key.pub`` stays clean.
"""

from __future__ import annotations

import os
import sys

from pullbridge.cli import CommandError
from pullbridge.config import CONFIG_ENV, ConfigError, SshSettings, load_config
from pullbridge.identity import (IdentityError, ensure_file_identity, ensure_secret_identity,
                                 key_bits)


def register(sub) -> None:
    p = sub.add_parser(
        "identity", help="show the SSH deploy key (created on first use); --rotate makes a new one",
        description="Print the public half of Pullbridge's SSH deploy key, creating the key pair "
                    "(ed25519) on first use. Add it to the git host as a deploy key (write access "
                    "only if Pullbridge must push).")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--file", metavar="PATH",
                       help="key file (default: ssh.identity_file from the config, "
                            "$PULLBRIDGE_IDENTITY, or ~/.config/pullbridge/identity)")
    where.add_argument("--secret", metavar="NAMESPACE/NAME",
                       help="keep the key in this Kubernetes Secret (type kubernetes.io/ssh-auth)")
    p.add_argument("--kubeconfig", help="kubeconfig for --secret (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
    p.add_argument("--config", metavar="FILE", help=f"configuration file (default: ${CONFIG_ENV} if set)")
    p.add_argument("--rotate", "--regenerate", action="store_true",
                   help="replace the key with a new one; the old key stops working for Pullbridge")
    p.add_argument("--comment", help="comment after the public key (default: pullbridge@HOSTNAME)")
    p.add_argument("-l", "--fingerprint", action="store_true",
                   help="print the SHA256 fingerprint instead of the public key")
    p.set_defaults(func=cmd_identity)


def ssh_settings(config_path: str | None) -> SshSettings:
    """The ssh section of the configuration, or the defaults when no file is given."""
    path = config_path or os.environ.get(CONFIG_ENV)
    if not path:
        return SshSettings()
    try:
        return load_config(path).ssh
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def kube_client(kubeconfig: str | None):
    """An ApiClient from --kubeconfig or $KUBECONFIG, else in-cluster, else ~/.kube/config."""
    from kubernetes import client, config

    path = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if not path and os.environ.get("KUBERNETES_SERVICE_HOST"):
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        return config.new_client_from_config(config_file=path.split(os.pathsep)[0] if path else None)
    except Exception as exc:  # ConfigException, a missing or unreadable file...
        raise CommandError(f"cannot load the Kubernetes configuration: {str(exc)[:300]}") from None


def cmd_identity(args) -> int:
    try:
        if args.secret:
            namespace, sep, name = args.secret.partition("/")
            if not sep or not namespace or not name or "/" in name:
                raise CommandError("--secret must be NAMESPACE/NAME")
            with kube_client(args.kubeconfig) as api:
                ident = ensure_secret_identity(api, namespace, name, rotate=args.rotate,
                                               comment=args.comment)
        else:
            path = args.file or ssh_settings(args.config).identity_path()
            ident = ensure_file_identity(path, rotate=args.rotate, comment=args.comment)
    except IdentityError as exc:
        raise CommandError(str(exc)) from None
    if args.rotate:
        print(f"Rotated the deploy key in {ident.location}: new fingerprint {ident.fingerprint}.\n"
              "The OLD KEY NO LONGER WORKS for Pullbridge: fetches and pushes over SSH fail until the "
              "new public key below is added as a deploy key on every git host that had the old one "
              "(then delete the old key there). Workers read the key on every fetch; a mounted Secret "
              "is refreshed by the kubelet within a minute or so.",
              file=sys.stderr)
    elif ident.created:
        print(f"Created a new deploy key in {ident.location} ({ident.fingerprint}). "
              "Add this public key to the git host as a deploy key:", file=sys.stderr)
    if args.fingerprint:
        kind = ident.public_line.split()[0].removeprefix("ssh-").upper()
        comment = " ".join(ident.public_line.split()[2:])
        print(f"{key_bits(ident.public_line)} {ident.fingerprint} {comment} ({kind})")
    else:
        print(ident.public_line)
    return 0
