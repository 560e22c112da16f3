"""`pullbridge notify status|alert`: try commit statuses and alerts by hand.

Why: a wrong token, API URL or webhook URL only shows up when the first sync
fails to report.  These verbs post once, right now (no queue, no retries),
and print what the host answered, so an operator can check the settings
before relying on them.  Secrets are never printed.
"""

from __future__ import annotations


from pullbridge.cli import CommandError
from pullbridge.commands import common
from pullbridge.config import ConfigError


def register(sub) -> None:
    p = sub.add_parser("notify", help="try commit statuses and alerts by hand")
    verbs = p.add_subparsers(dest="notify_command", metavar="VERB")
    verbs.required = True
    status = verbs.add_parser("status", help="post one commit status now")
    status.add_argument("repo", help="repository name from the config")
    status.add_argument("sha", help="full commit sha")
    status.add_argument("--state", default="pending",
                        choices=["pending", "running", "success", "failure", "error"])
    status.add_argument("--description", default="Pullbridge status check")
    common.add_config_option(status)
    status.set_defaults(func=cmd_status)
    alert = verbs.add_parser("alert", help="send a test alert to every configured destination")
    alert.add_argument("--repo", help="repository named in the test alert (default: the first)")
    common.add_config_option(alert)
    alert.set_defaults(func=cmd_alert)


def cmd_status(args) -> int:
    from worker.githosts import build_request, interpret
    from worker.outbound import PermanentError, TemporaryError, send_json
    from worker.status import status_target, target_url

    config = common.load(args)
    repo = common.repo_named(config, args.repo)
    if repo.status is None:
        raise CommandError(f"repository {repo.name} has no `status:` settings")
    try:
        token = repo.status.usable_token()
    except ConfigError as exc:
        raise CommandError(f"status token: {exc}") from None
    target = status_target(config, repo)
    request = build_request(target, token, args.sha, args.state, args.description, target_url(config, None))
    print(f"POST {request.url} ({target.provider}, context {target.context!r}, state {args.state})")
    try:
        outcome = interpret(target, send_json(request.url, request.payload, request.headers,
                                              repo.status.timeout), "status")
    except TemporaryError as exc:
        print(f"temporary failure (a job would retry): {exc}")
        return 2
    except PermanentError as exc:
        print(f"refused: {exc}")
        return 2
    print(f"ok: {outcome}")
    return 0


def cmd_alert(args) -> int:
    from worker.alerts import alert_time, slack_message, target_key
    from worker.outbound import PermanentError, TemporaryError, check, send_json

    config = common.load(args)
    if not config.alerts:
        raise CommandError("no `alerts:` destinations in the configuration")
    repo_name = args.repo or (config.repos[0].name if config.repos else "example")
    alert = {"source": "pullbridge", "event": "test", "repo": repo_name, "state": "test",
             "sync_id": None, "summary": "Test alert from `pullbridge notify alert`.", "url": None, "at": alert_time()}
    failures = 0
    for target in config.alerts:
        label = target_key(target)
        try:
            url = target.usable_url()
            payload = slack_message(alert) if target.kind == "slack" else alert
            check(send_json(url, payload, {}, target.timeout), label)
            print(f"{label}: sent")
        except (ConfigError, TemporaryError, PermanentError) as exc:
            failures += 1
            print(f"{label}: failed: {exc}")
    return 2 if failures else 0
