"""Alerts to operators: sync failed or recovered, drift corrected, found or not corrected,
drift checks failing or recovered.

Why it exists: an operator wants to hear when a repository starts failing
and when it is fine again, not once per retry.  The sync engine calls
``sync_finished`` after every sync attempt and ``drift_alert`` after a drift
check that recorded drift (``drift_corrected``; ``drift_failed`` when some of
it could not be corrected; ``drift_found`` in report mode); this module keeps the last alerted state per repository in
Redis (``keys.alert_state``: ``ok`` or ``failing``) and queues an alert only
when that state changes:

* failure after ok (or after nothing)  -> ``sync_failed``, once;
* success after failing               -> ``sync_recovered``, once;
* anything else                       -> nothing.

The periodic drift check calls ``drift_check_finished`` the same way, with a
state of its own (``keys.drift_check_alert_state``): ``drift_check_failed``
once when checks can no longer look at the cluster (RBAC revoked, the API
server refusing), ``drift_check_recovered`` once when one looks again.

Swapping the state and queueing the alert jobs is one Redis transaction
(WATCH/MULTI), so two workers finishing at once cannot both alert, and a
crash cannot record the state without its alert.  A drift alert is sent
once per sync id (a retried drift job does not alert twice).

Each alert is its own retried RQ job per destination (worker.outbound's
policy), on the status queue, so a Slack outage never delays a sync and one
destination's retries do not resend to the others.  Destinations come from
the global ``alerts:`` config; their URLs are secrets, read when sending and
never put in job arguments or logs.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from redis import Redis, WatchError
from rq import Queue, Retry

from pullbridge import keys
from pullbridge.config import Config, ConfigError, RepoConfig
from pullbridge.config_types import SecretUnusable
from pullbridge.notify_config import AlertTarget
from pullbridge.queueing import retry_intervals
from worker.outbound import PermanentError, TemporaryError, check, job_config, run_job, send_json

log = logging.getLogger(__name__)

SUCCESS_STATES = {"success", "succeeded", "synced", "noop"}
FAILURE_STATES = {"failure", "failed", "error"}
DRIFT_ONCE_TTL = 7 * 86400
SLACK_TEXT_MAX = 3000  # a Slack section block's text limit
ICONS = {"sync_failed": ":red_circle:", "sync_recovered": ":large_green_circle:",
         "drift_corrected": ":wrench:", "drift_failed": ":warning:", "drift_found": ":mag:",
         "drift_check_failed": ":no_entry:", "drift_check_recovered": ":white_check_mark:", "test": ":bell:"}
STATE_OF = {"sync_failed": "failing", "sync_recovered": "ok",
            "drift_check_failed": "failing", "drift_check_recovered": "ok"}
TITLES = {"sync_failed": "sync failed", "sync_recovered": "sync recovered",
          "drift_corrected": "drift corrected", "drift_failed": "drift not corrected",
          "drift_found": "drift found", "drift_check_failed": "drift check failing",
          "drift_check_recovered": "drift check recovered", "test": "test alert"}


def alert_time() -> str:
    """An alert's ``at``: now, in UTC, as docs/notifications.md shows it (``2026-01-02T03:04:05Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def target_key(target: AlertTarget) -> str:
    """Names a destination without its URL; survives reordering of the config list."""
    return f"{target.kind}:{target.url().describe()}"


def sync_finished(conn: Redis, config: Config, repo: RepoConfig, result_state: str,
                  sync_id: str | None, summary: str) -> list[str]:
    """Call at the end of every sync attempt; returns the ids of alert jobs queued (often none).

    ``result_state``: 'success' (also 'synced', 'noop') or 'failure' (also
    'failed', 'error').  Never raises: alerting must not break a sync.
    """
    if result_state in SUCCESS_STATES:
        failing = False
    elif result_state in FAILURE_STATES:
        failing = True
    else:
        log.warning("alerts: unknown sync result %r for %s; ignored", result_state, repo.name)
        return []
    return _on_change(conn, config, repo, keys.alert_state(repo.name), failing,
                      ("sync_failed", "sync_recovered"), sync_id, summary)


def drift_check_finished(conn: Redis, config: Config, repo: RepoConfig, looked: bool, summary: str) -> list[str]:
    """Call after every periodic drift check: ``looked`` False when it could not look at the
    cluster (its scan failed: RBAC, the API server).  ``drift_check_failed`` once when checks
    start failing, ``drift_check_recovered`` once when one looks again.  Never raises."""
    return _on_change(conn, config, repo, keys.drift_check_alert_state(repo.name), not looked,
                      ("drift_check_failed", "drift_check_recovered"), None, summary)


def _on_change(conn: Redis, config: Config, repo: RepoConfig, state_key: str, failing: bool,
               events: tuple[str, str], sync_id: str | None, summary: str) -> list[str]:
    """Record ``ok`` or ``failing`` in ``state_key``; alert ``events[0]`` when it turns failing,
    ``events[1]`` when it turns ok after failing (the first ok ever tells nothing)."""
    new_state = "failing" if failing else "ok"
    try:
        with conn.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(state_key)
                    raw = pipe.get(state_key)
                    previous = raw.decode() if raw else None
                    if previous == new_state:
                        pipe.unwatch()
                        return []
                    event = events[0] if failing else (events[1] if previous == "failing" else None)
                    pipe.multi()
                    pipe.set(state_key, new_state)
                    job_ids = _enqueue(pipe, conn, config, repo, event, sync_id, summary) if event else []
                    pipe.execute()
                    return job_ids
                except WatchError:
                    continue
    except Exception:  # noqa: BLE001 - alerting never raises into the sync
        log.exception("alerts: could not record the %s state of %s", events[0].rsplit("_", 1)[0].replace("_", " "),
                      repo.name)
        return []


def drift_alert(conn: Redis, config: Config, repo: RepoConfig, event: str, sync_id: str,
                summary: str) -> list[str]:
    """Call after a drift check recorded drift (``event``: drift_corrected, drift_failed or
    drift_found); alerts once per ``sync_id``.  Never raises."""
    try:
        once_key = keys.alert_once(f"drift:{repo.name}:{sync_id}")
        with conn.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(once_key)
                    if pipe.exists(once_key):
                        pipe.unwatch()
                        return []
                    pipe.multi()
                    pipe.set(once_key, "1", ex=DRIFT_ONCE_TTL)
                    job_ids = _enqueue(pipe, conn, config, repo, event, sync_id, summary)
                    pipe.execute()
                    return job_ids
                except WatchError:
                    continue
    except Exception:  # noqa: BLE001
        log.exception("alerts: could not queue the drift alert of %s", repo.name)
        return []


def _enqueue(pipe, conn: Redis, config: Config, repo: RepoConfig, event: str,
             sync_id: str | None, summary: str) -> list[str]:
    alert = {
        "source": "pullbridge",
        "event": event,
        "repo": repo.name,
        "state": STATE_OF.get(event, event),
        "sync_id": sync_id,
        "summary": summary or "",
        "url": config.server.public_url.rstrip("/") + (f"/syncs/{sync_id}" if sync_id else f"/repos/{repo.name}"),
        "at": alert_time(),
    }
    queue = Queue(keys.STATUS_QUEUE, connection=conn)
    job_ids = []
    for target in config.alerts:
        if not target.wants(event, repo.name):
            continue
        retry = Retry(max=target.retries, interval=retry_intervals(target.backoff)) \
            if target.retries else None
        job = queue.enqueue_call(
            "worker.alerts.send",
            args=(target_key(target), alert),
            retry=retry,
            timeout=int(target.timeout + 30),
            result_ttl=3600,
            failure_ttl=7 * 86400,
            description=f"alert {event} {repo.name} -> {target.kind}",
            pipeline=pipe,
        )
        job_ids.append(job.id)
    return job_ids


def send(target: str, alert: dict) -> str:
    """The RQ job: deliver one alert to one destination.  Returns 'sent' or 'dropped'."""
    what = f"alert {alert.get('event')} {alert.get('repo')} -> {target.split(':', 1)[0]}"

    def attempt():
        config = job_config()
        destination = next((t for t in config.alerts if target_key(t) == target), None)
        if destination is None:
            log.info("%s: destination no longer configured; dropped", what)
            return "dropped"
        try:
            url = destination.usable_url()
        except SecretUnusable as exc:  # empty, or not an http(s) URL: no retry mends it
            raise PermanentError(f"{what}: {exc}") from None
        except ConfigError as exc:
            raise TemporaryError(f"{what}: URL unreadable: {exc}") from None
        payload = slack_message(alert) if destination.kind == "slack" else alert
        check(send_json(url, payload, {}, destination.timeout), what)
        log.info("%s: sent", what)
        return "sent"

    return run_job(what, attempt)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(alert: dict) -> dict:
    """A Slack-compatible incoming-webhook body: ``text`` (also the fallback) plus one section block."""
    event = alert["event"]
    head = f"{ICONS.get(event, '')} Pullbridge: {TITLES.get(event, event)} for *{_slack_escape(alert['repo'])}*"
    if alert.get("url"):
        link = f"sync {alert['sync_id']}" if alert.get("sync_id") else "repo page"
        head += f" (<{alert['url']}|{_slack_escape(link)}>)"
    summary = _slack_escape(alert.get("summary") or "")
    text = head + (f"\n{summary}" if summary else "")
    if len(text) > SLACK_TEXT_MAX:
        text = text[: SLACK_TEXT_MAX - 1] + "…"
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
