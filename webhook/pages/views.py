"""The page routes: ``/``, ``/repos/<name>``, ``/syncs/<id>``, ``/queue`` and the operator login.

Every page reads Redis through the app's pooled client and renders a
template; every text that came from outside Pullbridge's own code (errors,
job failures) goes through the redactor before it is shown.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import (Response, abort, current_app, g, make_response, redirect, render_template,
                   request, url_for)
from redis.exceptions import RedisError, ResponseError

from webhook.pages import auth, bp, queues, sync_jobs
from webhook.pages import view_model as vm

PAST_ANY_PAGE = 10**18
log = logging.getLogger("pullbridge.webhook.pages")

REDACTOR_TTL = 30.0
_redactor_lock = threading.Lock()

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


def _intake():
    return current_app.extensions["pullbridge"]


def _config():
    return _intake().config


def _conn():
    return _intake().conn


def redactor() -> vm.Redactor:
    """Masks every configured secret; secret values are re-read at most every 30 s."""
    if "pb_redactor" not in g:
        config = _config()
        token = auth.operator_token(config)
        with _redactor_lock:  # cached per app: (read at, operator token, redactor)
            cached = current_app.extensions.get("pullbridge_pages_redactor")
            if cached is None or time.monotonic() - cached[0] > REDACTOR_TTL or cached[1] != token:
                cached = (time.monotonic(), token, vm.Redactor(vm.configured_secrets(config, token)))
                current_app.extensions["pullbridge_pages_redactor"] = cached
        g.pb_redactor = cached[2]
    return g.pb_redactor


@bp.app_template_filter("redact")
def redact_filter(text) -> str:
    return redactor()(text)


@bp.context_processor
def page_context():
    config = _config()
    operator = auth.is_operator(config, request)
    cookie = request.cookies.get(auth.COOKIE)
    return {
        "operator": operator,
        "token_configured": auth.operator_token(config) is not None,
        "csrf_token": auth.csrf_token(config, cookie) if operator and cookie else "",
        "csrf_field": auth.CSRF_FIELD,
        "now": time.time(),
    }


@bp.before_request
def protect():
    """``server.protect_pages``: the read-only pages need the operator token too."""
    if request.endpoint in ("pages.login", "pages.static"):
        return None
    config = _config()
    if not config.server.protect_pages or auth.is_operator(config, request):
        return None
    if auth.operator_token(config) is None:
        return _page("message.html", 503, title="Pages are closed",
                     message="server.protect_pages is on but no operator token is configured "
                             "(server.operator_token_env), so nobody can open these pages.")
    if auth.bearer(request) is not None:  # 403, as a POST with a wrong token gets (docs/pages.md)
        return _page("message.html", 403, title="Wrong operator token", message="The operator token is wrong.")
    here = auth.safe_next(request.full_path.rstrip("?"))
    if request.method == "GET" and request.headers.get("Sec-Fetch-Site") == "cross-site":
        # A link on another site (a commit status on the git host): the browser left out the
        # SameSite=Strict session cookie.  Loading the page again from this page sends it;
        # only without a session does that second load lead to the login.
        return _page("message.html", 200, title="Opening the page", refresh=here,
                     message="This page needs the operator login; opening it from this site.")
    return redirect(url_for("pages.login", next=here))


@bp.after_request
def security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "pages.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(404)
def not_found(_exc):
    return _page("message.html", 404, title="Not found",
                 message=getattr(g, "pb_not_found", "There is no such page."))


@bp.errorhandler(RedisError)
def redis_down(exc):
    log.warning("pages: Redis error: %s", type(exc).__name__)
    return _page("message.html", 503, title="Redis is unavailable",
                 message="The pages read everything from Redis, which does not answer right now. Try again shortly.")


@bp.errorhandler(ResponseError)
def redis_refused(exc):
    """Redis answered, with an error (a wrong key type, out of memory, ...): not an outage."""
    log.error("pages: Redis refused a command for %s: %s", request.path, exc)
    return _page("message.html", 500, title="Redis refused this page's request",
                 message="Redis is up but answered this page's request with an error; "
                         "the receiver's log has the error.")


def _page(template: str, status: int = 200, **context):
    return make_response(render_template(f"pages/{template}", **context), status)


@bp.get("/")
def overview():
    config = _config()
    rows = vm.repo_rows(_conn(), config)
    return _page("overview.html", rows=rows, depths=queues.depths(_conn()))


@bp.get("/repos/<name>")
def repo_page(name: str):
    config = _config()
    repo = config.repo(name)
    if repo is None:
        g.pb_not_found = f"No repository named {name!r} is configured."
        abort(404)
    raw = request.args.get("page", "1").strip()
    try:  # a number past any history is the last page (history_page clamps); int() refuses > 4300 digits
        page = PAST_ANY_PAGE if raw.isdecimal() and len(raw) > 18 else max(1, int(raw))
    except ValueError:
        page = 1
    conn = _conn()
    entries, total, page = vm.history_page(conn, name, page)
    row = next(r for r in vm.repo_rows(conn, config) if r.name == name)
    for entry in entries:
        entry["commit_url"] = vm.commit_url(repo, entry.get("sha"))
    pages = max(1, -(-total // vm.HISTORY_PAGE))
    return _page("repo.html", repo=repo, row=row, entries=entries, page=page, pages=pages, total=total,
                 limit=config.worker.history_limit, clone_url=vm.display_url(repo.url))


@bp.get("/syncs/<sync_id>")
def sync_page(sync_id: str):
    config = _config()
    record = vm.sync_record(_conn(), sync_id)
    job = sync_jobs.job_sync(_conn(), config, sync_id) if record is None else None
    if job is not None and (job.sync_id or job.next_job_id):  # a pending status's link: the job's sync
        return redirect(url_for("pages.sync_page", sync_id=job.sync_id or job.next_job_id))
    if job is not None:
        return _page("sync_job.html", job=job, repo=config.repo(job.repo))
    if record is None:
        g.pb_not_found = (f"No sync with id {sync_id!r} is kept. Sync records are kept for 7 days; "
                          "the repository's page lists the newest syncs.")
        abort(404)
    repo = config.repo(record.get("repo", ""))
    state = vm.repo_state(_conn(), repo.name) if repo else {}
    changes = vm.change_rows(record)
    error = vm.parse_error(record.get("error_in_full") or record.get("error"))
    failed_objects = {o["object"] for o in error["objects"]} if error else set()
    for row in changes:
        row["failed"] = row["object"] in failed_objects
    css, sentence = vm.headline(record)
    return _page("sync.html", record=record, repo=repo, changes=changes, error=error, drift=vm.drift_rows(record),
                 phases=vm.phase_rows(record), headline_class=css, headline=sentence,
                 commit_url=vm.commit_url(repo, record.get("sha")),
                 latest_id=state.get("last_sync_id"), applied_sha=state.get("applied_sha"),
                 counts=record.get("counts") or {}, actions=vm.ACTION_ORDER)


@bp.get("/queue")
def queue_page():
    conn = _conn()
    outcome, job_id = request.args.get("done", ""), request.args.get("job", "")
    notice = queues.OUTCOMES.get(outcome) if queues.is_job_id(job_id) else None
    return _page("queue.html", notice=notice, notice_ok=outcome in ("retried", "deleted"),
                 notice_job=job_id, depths=queues.depths(conn), running=queues.running(conn),
                 scheduled=queues.scheduled(conn), failed=queues.failed(conn), limit=queues.LIST_LIMIT)


@bp.post("/queue/<queue_name>/<job_id>/<action>")
def job_action(queue_name: str, job_id: str, action: str):
    config = _config()
    allowed, why = auth.may_change(config, request)
    if not allowed:
        log.warning("pages: refused %s of job %s: %s", action, job_id, why)
        return _page("message.html", 403, title="Not allowed", message=why,
                     back=url_for("pages.login", next=url_for("pages.queue_page")))
    if action not in ("retry", "delete"):
        abort(404)
    try:
        (queues.retry if action == "retry" else queues.delete)(_conn(), queue_name, job_id)
    except queues.JobActionError as exc:
        log.info("pages: %s of job %s not done: %s", action, job_id, exc)
        outcome = exc.code
    else:
        outcome = "retried" if action == "retry" else "deleted"
        log.info("pages: operator %s job %s on %s", outcome, job_id, queue_name)
    if auth.bearer(request) is not None:
        return Response(status=204 if outcome in ("retried", "deleted") else 409)
    return redirect(url_for("pages.queue_page", done=outcome, job=job_id), 303)


@bp.route("/login", methods=["GET", "POST"])
def login():
    config = _config()
    target = auth.safe_next(request.values.get("next"))
    if request.method == "GET":
        return _page("login.html", next=target, failed=False)
    if not auth.same_origin(config, request):
        return _page("message.html", 403, title="Not allowed", message="The request came from another site.")
    if not auth.token_matches(config, request.form.get("token")):
        log.warning("pages: failed operator login from %s", request.remote_addr)
        return _page("login.html", 403, next=target, failed=True)
    response = redirect(target, 303)
    response.set_cookie(auth.COOKIE, auth.new_session(config), max_age=auth.SESSION_SECONDS, httponly=True,
                        samesite="Strict", path="/",
                        secure=request.is_secure or config.server.public_url.startswith("https://"))
    return response


@bp.post("/logout")
def logout():
    allowed, why = auth.may_change(_config(), request)
    if not allowed:
        return _page("message.html", 403, title="Not allowed", message=why)
    response = redirect(url_for("pages.overview"), 303)
    response.delete_cookie(auth.COOKIE, path="/", samesite="Strict")
    return response
