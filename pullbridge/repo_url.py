"""What a repository's clone URL says: the git host, the path on it, and the name the host
gives the repository in its webhook payloads.

Why it exists: ``url`` is the one place the configuration names a repository's git host.
Commit statuses need the host (the API's base URL) and the project path; the receiver's
repository check needs the name the host puts in a push payload (GitHub's and Gitea's
``repository.full_name``, GitLab's ``project.path_with_namespace``, Bitbucket Server's
``repository.project.key`` + ``/`` + ``repository.slug``), so that a webhook signed with the
right secret but about another repository is refused even when ``repository:`` is not set.
Both read the URL here, the same way.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

SCP_URL_RE = re.compile(r"^(?:[\w.-]+@)?([\w.-]+):(.+)$")
# Providers whose push payload names the repository, and where; the receiver always checks it.
PAYLOAD_NAMES = {
    "github": "repository.full_name",
    "gitea": "repository.full_name",
    "gitlab": "project.path_with_namespace",
    "bitbucket-server": "repository.project.key/repository.slug",
}
URL_FORMS = {
    "github": "https://host/owner/name or git@host:owner/name",
    "gitea": "https://host/owner/name or git@host:owner/name",
    "gitlab": "https://host/group/[subgroup/...]name or git@host:group/name",
    "bitbucket-server": "https://host/scm/PROJECT/name or ssh://git@host:7999/PROJECT/name",
}


def host_and_path(url: str) -> tuple[str, str, str]:
    """(scheme for the API, host[:port], path) of a clone URL, http(s), ssh or scp-like."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", url):
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            return parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path
        return "https", parts.hostname or "", parts.path  # ssh:// port is not the API's
    m = SCP_URL_RE.match(url)
    if m:
        return "https", m.group(1), "/" + m.group(2)
    return "https", "", ""


def hosted_name(provider: str, url: str) -> str | None:
    """The name ``provider``'s payloads give the repository cloned from ``url``, or None
    when the URL does not say (no host, a path of another shape, or a provider whose
    payload names no repository).

    GitHub and Gitea: ``owner/name``; GitLab: the whole path, subgroups included
    (``group/sub/name``); Bitbucket Server: ``PROJECT/name`` from ``.../scm/PROJECT/name.git``
    over http(s), or from the two-part path of an ssh URL.  A trailing ``.git`` is dropped.
    """
    scheme = url.partition("://")[0] if "://" in url else "ssh"  # user@host:path is ssh too
    if provider not in PAYLOAD_NAMES or scheme not in ("http", "https", "ssh"):
        return None
    _, host, path = host_and_path(url)
    segments = path.strip("/").removesuffix(".git").split("/")
    if not host or not all(segments):
        return None
    if provider == "bitbucket-server" and scheme != "ssh":
        if len(segments) < 3 or segments[-3] != "scm":
            return None
        segments = segments[-2:]
    if provider == "gitlab":
        return "/".join(segments) if len(segments) >= 2 else None
    return "/".join(segments) if len(segments) == 2 else None
