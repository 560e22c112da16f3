"""What the pages show, read from Redis and the configuration, shaped for templates.

Why it exists: the templates should only lay things out.  Deciding what
state a repository is in, where a commit can be seen on its git host, how an
object reference splits into kind/namespace/name and which text must be
masked before it reaches a page all happens here, where it can be unit
tested without a browser.

What is read (the contract with the workers):

* ``keys.state(repo)`` HASH: ``applied_sha``, ``applied_at``, ``last_result``,
  ``last_error``, ``last_sync_id``, ``last_sync_at`` (worker.history.save);
  ``suspended``, ``suspended_at``, ``suspended_by`` (pullbridge.repostate);
  ``held_sha`` (pullbridge.repostate, a rollback hold); ``last_check_at`` (every
  periodic run) and ``last_drift_at``, ``last_drift_objects``,
  ``last_drift_corrected`` (worker.periodic; drift left in place, as in report
  mode, shows the repo as drifted until a later sync).  Without
  ``last_check_at`` the newest ``drift``/``periodic``/``reconcile`` record in
  the history stands for the last drift check.
* ``keys.history(repo)`` LIST of record summaries, newest first.
* ``keys.sync_record(id)`` one full record; its ``changes`` are
  ``{object, action, source, detail}``; ``error_in_full``, when set, is
  ``error`` naming every invalid object, not the first ten; drift diffs are its ``drift_entries``
  (worker.periodic.DriftRecord: ``{object, field, live, declared, manager,
  changed_at, corrected}``) or a change's ``diffs`` list.  For a sync job's
  id instead, the RQ job and the newest history entry with that ``job_id``
  (``webhook.pages.sync_jobs``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from redis import Redis

from pullbridge import keys
from pullbridge.config import Config, RepoConfig
from worker.secretmask import HIDDEN

TRUE = ("1", "true", "yes", "on")
ACTION_ORDER = ("created", "configured", "deleted", "skipped", "unchanged")
HISTORY_PAGE = 25
DRIFT_REASONS = ("drift", "periodic", "reconcile")  # syncs that compare the cluster with Git
DRIFT_LOOKBACK = 20

# "Kind/ns/name (file, doc N): message", as worker.apply and worker.render word errors;
# several are joined with "; " after a summary ("validation failed, nothing applied: ").
_OBJECT_ERROR_RE = re.compile(r"(?P<object>[A-Z][\w.]*/[^\s()/;]+(?:/[^\s()/;]+)?) \((?P<file>[^()]*?), doc (?P<doc>\d+)\): ")
_MORE_RE = re.compile(r"\s*\(and (?P<more>\d+) more\)\s*$")
_SOURCE_RE = re.compile(r"^(?P<file>.*), doc (?P<doc>\d+)$")
_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)[^/@\s]+@")


@dataclass
class RepoRow:
    """One repository on the overview page."""

    name: str
    state: str          # synced | failing | retrying | drifted | suspended | held | never synced
    state_text: str
    applied_sha: str | None
    applied_at: float | None
    last_sync_at: float | None
    last_sync_id: str | None
    last_result: str | None
    last_error: str
    last_drift_check_at: float | None
    last_check_result: str  # what the last periodic check said (worker.periodic.record_check)
    held_sha: str | None
    suspended: bool
    syncing: bool
    queued: bool
    branch: str
    mode: str
    commit_url: str | None
    notes: list[str] = field(default_factory=list)


def _float(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def classify(state: dict[str, str], latest: dict | None) -> tuple[str, str]:
    """The repository's state word and a plain sentence for it."""
    result = state.get("last_result") or (latest or {}).get("result")
    if (state.get("suspended") or "").lower() in TRUE:
        return "suspended", "Suspended: neither synced nor corrected until resumed"
    if state.get("held_sha"):
        return "held", f"Rolled back and held at {state['held_sha'][:12]} until resumed"
    if result == "failure":
        return "failing", "The last sync failed"
    if result == "retrying":
        return "retrying", "The last sync failed and will be retried"
    drifted = drifted_left(state)
    if drifted > 0:
        return "drifted", f"{drifted} object{'s' if drifted != 1 else ''} drifted from Git"
    if result in ("success", "skipped") or state.get("applied_sha"):
        return "synced", "In sync with Git"
    return "never synced", "No sync has run yet"


def drifted_left(state: dict) -> int:
    """Objects the last drift scan found and did not correct (report mode), unless a sync came since."""
    found = int(_float(state.get("last_drift_objects")) or 0)
    corrected = int(_float(state.get("last_drift_corrected")) or 0)
    drift_at = _float(state.get("last_drift_at")) or 0.0
    if drift_at < (_float(state.get("last_sync_at")) or 0.0):
        return 0
    return max(0, found - corrected)


def repo_rows(conn: Redis, config: Config) -> list[RepoRow]:
    """Every configured repository, read in one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        for repo in config.repos:
            pipe.hgetall(keys.state(repo.name))
            pipe.lrange(keys.history(repo.name), 0, DRIFT_LOOKBACK - 1)
            pipe.exists(keys.lock(repo.name))
            pipe.exists(keys.queued(repo.name))
        replies = pipe.execute()
    rows = []
    for i, repo in enumerate(config.repos):
        raw_state, raw_recent, locked, queued = replies[4 * i:4 * i + 4]
        state = {_text(k): _text(v) for k, v in raw_state.items()}
        recent = [json.loads(x) for x in raw_recent]
        latest = recent[0] if recent else None
        drift_check = _float(state.get("last_check_at")) or next(
            (e.get("finished_at") for e in recent if e.get("reason") in DRIFT_REASONS), None)
        word, text = classify(state, latest)
        applied = state.get("applied_sha") or None
        rows.append(RepoRow(
            name=repo.name, state=word, state_text=text, applied_sha=applied,
            applied_at=_float(state.get("applied_at")),
            last_sync_at=_float(state.get("last_sync_at")) or (latest or {}).get("finished_at"),
            last_sync_id=state.get("last_sync_id") or (latest or {}).get("id"),
            last_result=state.get("last_result") or (latest or {}).get("result"),
            last_error=state.get("last_error") or "",
            last_drift_check_at=drift_check,
            last_check_result=state.get("last_check_result") or "",
            held_sha=state.get("held_sha") or None,
            suspended=word == "suspended", syncing=bool(locked), queued=bool(queued),
            branch=repo.branch, mode=repo.mode,
            commit_url=commit_url(repo, applied) if applied else None,
        ))
    return rows


def history_page(conn: Redis, repo_name: str, page: int, size: int = HISTORY_PAGE) -> tuple[list[dict], int, int]:
    """One page of a repository's history (newest first), the number of entries kept and the page shown.

    A page past the last shows the last one, so no index Redis would refuse is ever sent.
    """
    total = int(conn.llen(keys.history(repo_name)))
    page = max(1, min(page, -(-total // size)))
    start = (page - 1) * size
    raw = conn.lrange(keys.history(repo_name), start, start + size - 1)
    return [json.loads(x) for x in raw], total, page


def repo_state(conn: Redis, repo_name: str) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in conn.hgetall(keys.state(repo_name)).items()}


def sync_record(conn: Redis, sync_id: str) -> dict | None:
    raw = conn.get(keys.sync_record(sync_id))
    return json.loads(raw) if raw else None


# -- git host links ---------------------------------------------------------

def web_base(repo: RepoConfig) -> str | None:
    """The repository's web page on its git host, derived from the clone URL (no credentials)."""
    url = repo.url
    scp = re.match(r"^[\w.-]+@(?P<host>[\w.-]+):(?P<path>.+)$", url)
    if scp:
        scheme, netloc, path = "https", scp["host"], scp["path"]
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ssh") or not parts.hostname:
            return None
        scheme = parts.scheme if parts.scheme in ("http", "https") else "https"
        netloc = parts.hostname if parts.scheme == "ssh" else parts.netloc.rpartition("@")[2]
        path = parts.path
    path = path.strip("/").removesuffix(".git")
    if not path:
        return None
    if repo.provider == "bitbucket-server":
        segments = path.split("/")
        if len(segments) >= 3 and segments[-3] == "scm":
            prefix = "/".join(segments[:-3])
            project, name = segments[-2], segments[-1]
            return f"{scheme}://{netloc}/{prefix + '/' if prefix else ''}projects/{project}/repos/{name}"
        return None
    return f"{scheme}://{netloc}/{path}"


def commit_url(repo: RepoConfig | None, sha: str | None) -> str | None:
    """Where a commit can be seen on the git host, when the provider says how."""
    if repo is None or not sha or not re.fullmatch(r"[0-9a-fA-F]{7,64}", sha):
        return None
    base = web_base(repo)
    if base is None or repo.provider == "generic":
        return None
    if repo.provider == "gitlab":
        return f"{base}/-/commit/{sha}"
    if repo.provider == "bitbucket-server":
        return f"{base}/commits/{sha}"
    return f"{base}/commit/{sha}"  # github, gitea/forgejo


def display_url(url: str) -> str:
    """A clone URL without any user:password@ part."""
    return _USERINFO_RE.sub(lambda m: m["scheme"], url)


# -- one sync ---------------------------------------------------------------

def split_ref(ref: str) -> tuple[str, str, str]:
    """``Kind/ns/name`` or ``Kind/name`` -> (kind, namespace, name)."""
    parts = (ref or "").split("/")
    if len(parts) >= 3:
        return parts[0], parts[1], "/".join(parts[2:])
    if len(parts) == 2:
        return parts[0], "", parts[1]
    return "", "", ref or ""


def split_source(source: str) -> tuple[str, str]:
    """``deploy/app.yaml, doc 2`` -> (file, doc index)."""
    m = _SOURCE_RE.match(source or "")
    return (m["file"], m["doc"]) if m else (source or "", "")


def parse_error(error: str | None) -> dict | None:
    """Split an error into its summary and the objects (with file and doc) it names.

    ``{"summary": str, "objects": [{object, kind, namespace, name, file, doc, message}],
    "more": int, "text": the whole error}``; ``objects`` is empty when none is named.
    """
    if not error:
        return None
    more = _MORE_RE.search(error)
    body = error[:more.start()] if more else error
    matches = list(_OBJECT_ERROR_RE.finditer(body))
    objects = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(body)
        kind, namespace, name = split_ref(m["object"])
        objects.append({"object": m["object"], "kind": kind, "namespace": namespace, "name": name,
                        "file": m["file"], "doc": m["doc"],
                        "message": body[m.end():end].strip().removesuffix(";").strip()})
    summary = body[:matches[0].start()].strip().removesuffix(":").strip() if matches else error
    return {"summary": summary, "objects": objects, "more": int(more["more"]) if more else 0, "text": error}


def change_rows(record: dict) -> list[dict]:
    """The change set as rows, ordered by what matters: changes first, unchanged last."""
    rows = []
    for change in record.get("changes") or []:
        kind, namespace, name = split_ref(change.get("object", ""))
        file, doc = split_source(change.get("source", ""))
        rows.append({"object": change.get("object", ""), "action": change.get("action", ""),
                     "kind": kind, "namespace": namespace, "name": name, "file": file, "doc": doc,
                     "detail": change.get("detail", "")})
    rank = {a: i for i, a in enumerate(ACTION_ORDER)}
    rows.sort(key=lambda r: (rank.get(r["action"], len(rank)), r["kind"], r["namespace"], r["name"]))
    return rows


def drift_rows(record: dict) -> list[dict]:
    """Drift diffs of a record (field, live, declared, manager), Secret values hidden."""
    entries = record.get("drift_entries")
    if entries is None and isinstance(record.get("drift"), list):
        entries = record["drift"]
    raw = list(entries or [])
    for change in record.get("changes") or []:
        for diff in change.get("diffs") or []:
            raw.append({"object": change.get("object", ""), **diff})
    rows = []
    for diff in raw:
        obj = diff.get("object", "")
        kind, namespace, name = split_ref(obj)
        field_path = str(diff.get("field", ""))
        hidden = kind == "Secret" and not field_path.startswith("metadata")
        rows.append({"object": obj, "kind": kind, "namespace": namespace, "name": name, "field": field_path,
                     "live": HIDDEN if hidden else show_value(diff.get("live")),
                     "declared": HIDDEN if hidden else show_value(diff.get("declared")),
                     "manager": diff.get("manager") or "", "changed_at": diff.get("changed_at") or diff.get("time"),
                     "corrected": diff.get("corrected")})
    return rows


def show_value(value) -> str:
    if value is None:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def phase_rows(record: dict) -> list[dict]:
    phases = record.get("phases") or {}
    longest = max(phases.values(), default=0) or 1
    return [{"name": name, "seconds": float(secs), "share": round(100 * float(secs) / longest)}
            for name, secs in phases.items()]


def headline(record: dict) -> tuple[str, str]:
    """(css class, one sentence) answering "did my commit make it?"."""
    sha = (record.get("sha") or "")[:12]
    result = record.get("result")
    counts = record.get("counts") or {}
    changed = sum(counts.get(a, 0) for a in ("created", "configured", "deleted"))
    if result == "success" and record.get("dry_run"):
        return "ok", f"Report mode: {sha} was checked; {changed} object(s) would change (nothing was written)"
    if result == "success" and record.get("reason") == "drift":
        return "ok", f"Drift corrected: {changed} object(s) put back as {sha} declares them"
    if result == "success":
        return "ok", f"Applied {sha}: {changed} object(s) changed, {counts.get('unchanged', 0)} unchanged"
    if result == "failure":
        return "bad", f"Sync of {sha or 'the branch'} failed; nothing more will be tried for this commit"
    if result == "retrying":
        return "warn", f"Sync of {sha or 'the branch'} failed for now and will be retried"
    if result == "skipped":
        return "muted", "Nothing to apply: no wanted commit was newer than the applied one"
    if result == "running":
        return "warn", "Sync running"
    return "muted", f"Result: {result}"


# -- masking ----------------------------------------------------------------

class Redactor:
    """Replaces every configured secret value (and URL credentials) in text shown on a page.

    A value is masked without its surrounding whitespace: that is how it is used (a status token
    or alert URL read from a variable ending in a newline is stripped) and how a text quotes it."""

    def __init__(self, secrets: list[bytes]):
        values = (s.strip().decode(errors="replace") for s in secrets if s)
        self.values = sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)

    def __call__(self, text) -> str:
        if text is None:
            return ""
        text = _USERINFO_RE.sub(lambda m: m["scheme"] + "***@", str(text))
        for value in self.values:
            if value in text:
                text = text.replace(value, "[secret]")
        return text


def configured_secrets(config: Config, operator_token: bytes | None) -> list[bytes]:
    """Every secret the configuration can name, read now (unreadable ones are skipped)."""
    found = [operator_token] if operator_token else []
    sources = []
    for repo in config.repos:
        sources.append(repo.secret)
        if repo.status is not None:
            sources.append(repo.status.token())
    for target in config.alerts:
        sources.append(target.url())
    sources += [hook.secret for hook in config.images.hooks]
    sources += [registry.password for registry in config.images.registries if registry.password is not None]
    for source in sources:
        try:
            found.append(source.value())
        except Exception:  # noqa: BLE001 - an unreadable secret cannot leak either
            continue
    return found


def now() -> float:
    return time.time()
