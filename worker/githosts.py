"""One commit status request per git host API: GitHub, GitLab, Gitea/Forgejo, Bitbucket Server.

Why it exists: the four APIs agree on the idea (a state per commit and
context) but differ in path, auth header, field names, allowed states and
limits.  Each ``*_request`` function returns the exact request to send; the
checks a host would make are mirrored here so a status never fails for a
reason we could have avoided (e.g. GitHub's 140-character description).

Documented APIs used:

* GitHub: ``POST {api}/repos/{owner}/{repo}/statuses/{sha}``, JSON
  ``state`` (error, failure, pending, success), ``target_url``,
  ``description`` (GitHub rejects more than 140 characters with 422),
  ``context``; ``Authorization: Bearer``, ``Accept: application/vnd.github+json``,
  ``X-GitHub-Api-Version: 2022-11-28``.  GitHub Enterprise: ``https://host/api/v3``.
* GitLab: ``POST {api}/projects/:id/statuses/:sha`` where ``:id`` is the
  numeric id or URL-encoded ``path_with_namespace``; ``state`` (pending,
  running, success, failed, canceled), ``name``, ``description``,
  ``target_url``, ``ref``; ``PRIVATE-TOKEN`` header.  GitLab answers 400
  "Cannot transition status via :run from :running" (or ``:enqueue from
  :pending``) when the status already is in that state: that is success for
  us, not an error.  409 (status being updated concurrently) is retried.
* Gitea/Forgejo: the GitHub-shaped ``POST {api}/repos/{owner}/{repo}/statuses/{sha}``
  under ``/api/v1``, ``Authorization: token <token>``; states pending,
  success, error, failure, warning.
* Bitbucket Server/Data Center (7.4+): ``POST {base}/rest/api/latest/projects/{key}/repos/{slug}
  /commits/{sha}/builds``, JSON ``key`` (our context), ``state`` (INPROGRESS, SUCCESSFUL,
  FAILED), ``url`` (required: the repository's page when no sync is linked), ``name``,
  ``description``, ``ref``; ``Authorization: Bearer`` (an HTTP access token); 204 No Content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from worker.outbound import Response, check

GITHUB_DESCRIPTION_MAX = 140
GITLAB_DESCRIPTION_MAX = 255  # GitLab documents no limit; stay well inside its columns

# Our states (see worker.status.STATES) -> each host's.
GITHUB_STATES = {"pending": "pending", "running": "pending", "success": "success",
                 "failure": "failure", "error": "error"}
GITLAB_STATES = {"pending": "pending", "running": "running", "success": "success",
                 "failure": "failed", "error": "failed"}
GITEA_STATES = GITHUB_STATES
BITBUCKET_STATES = {"pending": "INPROGRESS", "running": "INPROGRESS", "success": "SUCCESSFUL",
                    "failure": "FAILED", "error": "FAILED"}
BITBUCKET_DESCRIPTION_MAX = 255

ALREADY_IN_STATE = re.compile(r"Cannot transition status via :(run|enqueue) from :(running|pending)")


@dataclass(frozen=True)
class StatusTarget:
    """Where one repository's statuses go (resolved from config by worker.status)."""

    provider: str
    api_url: str
    project: str
    context: str
    ref: str
    repo_page: str  # Pullbridge's page of the repository: the link of a status no sync is known for


@dataclass(frozen=True)
class StatusRequest:
    url: str
    headers: dict[str, str]
    payload: dict


def shorten(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _owner_repo_path(project: str) -> str:
    owner, name = project.split("/", 1)
    return f"{quote(owner, safe='')}/{quote(name, safe='')}"


def github_request(target: StatusTarget, token: str, sha: str, state: str, description: str,
                   target_url: str | None) -> StatusRequest:
    payload = {"state": GITHUB_STATES[state], "context": target.context,
               "description": shorten(description, GITHUB_DESCRIPTION_MAX)}
    if target_url:
        payload["target_url"] = target_url
    return StatusRequest(
        url=f"{target.api_url}/repos/{_owner_repo_path(target.project)}/statuses/{quote(sha, safe='')}",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                 "X-GitHub-Api-Version": "2022-11-28"},
        payload=payload,
    )


def gitea_request(target: StatusTarget, token: str, sha: str, state: str, description: str,
                  target_url: str | None) -> StatusRequest:
    payload = {"state": GITEA_STATES[state], "context": target.context,
               "description": shorten(description, GITHUB_DESCRIPTION_MAX)}
    if target_url:
        payload["target_url"] = target_url
    return StatusRequest(
        url=f"{target.api_url}/repos/{_owner_repo_path(target.project)}/statuses/{quote(sha, safe='')}",
        headers={"Authorization": f"token {token}", "Accept": "application/json"},
        payload=payload,
    )


def gitlab_request(target: StatusTarget, token: str, sha: str, state: str, description: str,
                   target_url: str | None) -> StatusRequest:
    payload = {"state": GITLAB_STATES[state], "name": target.context, "ref": target.ref,
               "description": shorten(description, GITLAB_DESCRIPTION_MAX)}
    if target_url:
        payload["target_url"] = target_url
    return StatusRequest(
        url=f"{target.api_url}/projects/{quote(target.project, safe='')}/statuses/{quote(sha, safe='')}",
        headers={"PRIVATE-TOKEN": token, "Accept": "application/json"},
        payload=payload,
    )


def bitbucket_request(target: StatusTarget, token: str, sha: str, state: str, description: str,
                      target_url: str | None) -> StatusRequest:
    owner, name = target.project.split("/", 1)
    return StatusRequest(
        url=f"{target.api_url}/rest/api/latest/projects/{quote(owner, safe='')}/repos/{quote(name, safe='')}"
            f"/commits/{quote(sha, safe='')}/builds",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        payload={"key": target.context, "name": target.context, "state": BITBUCKET_STATES[state],
                 "url": target_url or target.repo_page, "ref": f"refs/heads/{target.ref}",
                 "description": shorten(description, BITBUCKET_DESCRIPTION_MAX)},
    )


BUILDERS = {"github": github_request, "gitlab": gitlab_request, "gitea": gitea_request,
            "bitbucket-server": bitbucket_request}


def build_request(target: StatusTarget, token: str, sha: str, state: str, description: str,
                  target_url: str | None) -> StatusRequest:
    return BUILDERS[target.provider](target, token, sha, state, description, target_url)


def interpret(target: StatusTarget, response: Response, what: str) -> str:
    """'posted' or 'unchanged' for a success; raises Temporary/PermanentError otherwise."""
    if target.provider == "gitlab" and response.status == 400 and ALREADY_IN_STATE.search(response.body):
        return "unchanged"
    check(response, what, fix="set status.api_url to the address the host answers on", location_path=True)
    return "posted"
