"""Payloads shaped like the git hosts document them, and the matching signatures.

Shapes follow the documented push events: GitHub's ``push`` (ref, before,
after, created, deleted, forced, base_ref, compare, commits[] with
added/removed/modified, head_commit, repository, pusher, sender), GitLab's
``Push Hook`` (object_kind, event_name, before, after, ref, checkout_sha,
project.path_with_namespace, commits[] (at most 20), total_commits_count,
repository), Gitea's push (GitHub-like plus compare_url) and Bitbucket
Server's ``repo:refs_changed`` (changes[] with ref, refId, fromHash, toHash,
type).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

from webhook.providers import gitlab

ZERO = "0" * 40


def sha(n: int | str) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()


def _commit(commit_id: str, paths: dict[str, list[str]], repo_url: str) -> dict:
    return {
        "id": commit_id,
        "tree_id": sha("tree" + commit_id),
        "distinct": True,
        "message": "Update manifests",
        "timestamp": "2026-11-26T08:00:00Z",
        "url": f"{repo_url}/commit/{commit_id}",
        "author": {"name": "Ada", "email": "ada@example.com", "username": "ada"},
        "committer": {"name": "Ada", "email": "ada@example.com", "username": "ada"},
        "added": paths.get("added", []),
        "removed": paths.get("removed", []),
        "modified": paths.get("modified", []),
    }


def github_push(*, ref="refs/heads/main", before=None, after=None, full_name="octo-org/deploy",
                modified=("deploy/app.yaml",), deleted=False, forced=False, pad_to: int = 0) -> dict:
    before = before or sha("before")
    after = ZERO if deleted else (after or sha("after"))
    url = f"https://github.com/{full_name}"
    commits = [] if deleted else [_commit(after, {"modified": list(modified)}, url)]
    payload = {
        "ref": ref,
        "before": before,
        "after": after,
        "repository": {
            "id": 1296269, "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", "name": full_name.split("/")[1],
            "full_name": full_name, "private": False,
            "owner": {"name": full_name.split("/")[0], "login": full_name.split("/")[0], "id": 1},
            "html_url": url, "clone_url": url + ".git", "default_branch": "main",
        },
        "pusher": {"name": "ada", "email": "ada@example.com"},
        "sender": {"login": "ada", "id": 2},
        "created": before == ZERO,
        "deleted": deleted,
        "forced": forced,
        "base_ref": None,
        "compare": f"{url}/compare/{before[:12]}...{after[:12]}",
        "commits": commits,
        "head_commit": commits[0] if commits else None,
    }
    if pad_to:
        # Grow the payload to about pad_to bytes the way real pushes grow: more commits.
        i = 0
        while len(json.dumps(payload)) < pad_to:
            i += 1
            payload["commits"].append(_commit(sha(f"pad{i}"), {"modified": [f"deploy/file-{i}.yaml"]}, url))
    return payload


def gitlab_push(*, ref="refs/heads/main", before=None, after=None, path="group/deploy",
                modified=("deploy/app.yaml",), deleted=False, tag=False, total=None) -> dict:
    before = before or sha("before")
    after = ZERO if deleted else (after or sha("after"))
    url = f"https://gitlab.example.com/{path}"
    commits = [] if deleted else [_commit(after, {"modified": list(modified)}, url)]
    return {
        "object_kind": "tag_push" if tag else "push",
        "event_name": "tag_push" if tag else "push",
        "before": before,
        "after": after,
        "ref": ref,
        "ref_protected": True,
        "checkout_sha": None if deleted else after,
        "message": None,
        "user_id": 4, "user_name": "Ada", "user_username": "ada", "user_email": "",
        "project_id": 15,
        "project": {
            "id": 15, "name": path.split("/")[-1], "description": "", "web_url": url,
            "git_ssh_url": f"git@gitlab.example.com:{path}.git", "git_http_url": url + ".git",
            "namespace": path.split("/")[0], "visibility_level": 0,
            "path_with_namespace": path, "default_branch": "main",
        },
        "commits": commits,
        "total_commits_count": len(commits) if total is None else total,
        "repository": {"name": path.split("/")[-1], "url": f"git@gitlab.example.com:{path}.git",
                       "homepage": url},
    }


def gitea_push(*, ref="refs/heads/main", before=None, after=None, full_name="gitea/deploy",
               modified=("deploy/app.yaml",)) -> dict:
    before = before or sha("before")
    after = after or sha("after")
    url = f"http://localhost:3000/{full_name}"
    commit = _commit(after, {"modified": list(modified)}, url)
    return {
        "ref": ref, "before": before, "after": after,
        "compare_url": f"{url}/compare/{before}...{after}",
        "commits": [commit], "total_commits": 1, "head_commit": commit,
        "repository": {"id": 140, "name": full_name.split("/")[1], "full_name": full_name,
                       "owner": {"id": 1, "login": full_name.split("/")[0]},
                       "clone_url": url + ".git", "default_branch": "main"},
        "pusher": {"id": 1, "login": "gitea"}, "sender": {"id": 1, "login": "gitea"},
    }


def bitbucket_push(*, ref="refs/heads/main", before=None, after=None, project="PROJ", slug="deploy",
                   change_type="UPDATE", ref_type="BRANCH", extra_changes=()) -> dict:
    before = before or sha("before")
    after = after or sha("after")
    display = ref.rsplit("/", 1)[-1]
    change = {"ref": {"id": ref, "displayId": display, "type": ref_type}, "refId": ref,
              "fromHash": before, "toHash": ZERO if change_type == "DELETE" else after,
              "type": change_type}
    return {
        "eventKey": "repo:refs_changed",
        "date": "2026-11-26T08:00:00+0000",
        "actor": {"name": "ada", "emailAddress": "ada@example.com", "id": 500, "slug": "ada"},
        "repository": {"slug": slug, "id": 656, "name": slug, "scmId": "git", "state": "AVAILABLE",
                       "project": {"key": project, "id": 389, "name": "Project"}},
        "changes": list(extra_changes) + [change],
    }


def generic_push(*, ref="refs/heads/main", after=None, repository="team/deploy", paths=None) -> dict:
    payload = {"ref": ref, "before": sha("before"), "after": after or sha("after"),
               "repository": repository}
    if paths is not None:
        payload["paths"] = paths
    return payload


# --- signing ---------------------------------------------------------------------

def hex_hmac(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def signed_headers(provider: str, secret: bytes, body: bytes, *, event: str | None = None,
                   delivery: str | None = None) -> dict[str, str]:
    """Headers a host would send for ``body``; ``delivery`` defaults to a fresh uuid."""
    delivery = delivery or str(uuid.uuid4())
    if provider == "github":
        return {"X-GitHub-Event": event or "push", "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": "sha256=" + hex_hmac(secret, body),
                "Content-Type": "application/json"}
    if provider == "gitlab":
        headers = {"X-Gitlab-Event": event or "Push Hook", "Idempotency-Key": delivery,
                   "X-Gitlab-Event-UUID": delivery, "Content-Type": "application/json"}
        if secret.startswith(b"whsec_"):
            stamp = int(time.time())
            headers.update({"webhook-id": delivery, "webhook-timestamp": str(stamp),
                            "webhook-signature": gitlab.sign(secret, delivery, stamp, body)})
        else:
            headers["X-Gitlab-Token"] = secret.decode()
        return headers
    if provider == "gitea":
        return {"X-Gitea-Event": event or "push", "X-Gitea-Delivery": delivery,
                "X-Gitea-Signature": hex_hmac(secret, body), "Content-Type": "application/json"}
    if provider == "bitbucket-server":
        return {"X-Event-Key": event or "repo:refs_changed", "X-Request-Id": delivery,
                "X-Hub-Signature": "sha256=" + hex_hmac(secret, body),
                "Content-Type": "application/json"}
    if provider == "generic":
        return {"X-Event": event or "push", "X-Delivery": delivery,
                "X-Signature": "sha256=" + hex_hmac(secret, body), "Content-Type": "application/json"}
    raise ValueError(provider)
