"""Server-rendered pages for developers and operators: repos, history, one sync, the queue.

Why it exists: a commit status links a developer to ``/syncs/<id>``; that
page, and the overview, repository and queue pages, must answer "did my
commit make it, and if not, which object in which file is wrong?" without
a front-end build, JavaScript or access to worker logs.

``register(app)`` adds the blueprint to the receiver's Flask app (it reads
the configuration and Redis client the app already holds).  The webhook
route (``webhook.hooks``) and the health and metrics blueprint are outside
it and are never affected by the operator token rules (see ``webhook.pages.auth``).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from flask import Blueprint, Flask

bp = Blueprint("pages", __name__, template_folder="../templates", static_folder="static",
               static_url_path="/assets")


def register(app: Flask) -> None:
    from webhook.pages import views  # noqa: F401 - attaches the routes to bp

    app.register_blueprint(bp)
    app.jinja_env.filters.update(reltime=reltime, abstime=abstime, isotime=isotime, seconds=seconds)


def reltime(ts, now: float | None = None) -> str:
    """'3 min ago' / 'in 20 s' for a unix time; '' for none."""
    if ts in (None, ""):
        return ""
    delta = (now or time.time()) - float(ts)
    future = delta < 0
    delta = abs(delta)
    for limit, unit, size in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600), (float("inf"), "d", 86400)):
        if delta < limit:
            amount = int(delta // size)
            break
    if unit == "s" and amount < 5:
        return "just now"
    return f"in {amount} {unit}" if future else f"{amount} {unit} ago"


def abstime(ts) -> str:
    if ts in (None, ""):
        return ""
    return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def isotime(ts) -> str:
    if ts in (None, ""):
        return ""
    return datetime.fromtimestamp(float(ts), timezone.utc).isoformat(timespec="seconds")


def seconds(value) -> str:
    if value in (None, ""):
        return ""
    value = float(value)
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
