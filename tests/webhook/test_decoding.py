"""``webhook.decoding``: the partial decode gives every provider's ``parse``
the same answer (event, or error naming the field) as a full JSON parse, and
refuses what a full parse refuses."""

from __future__ import annotations

import json

import orjson
import pytest

from tests.webhook import payloads as P
from webhook import decoding
from webhook.events import PayloadError
from webhook.providers import gitea, github, gitlab

GITHUB = {"X-GitHub-Event": "push"}
GITLAB = {"X-Gitlab-Event": "Push Hook"}
GITEA = {"X-Gitea-Event": "push"}

SAME_AS_FULL = [
    (github, GITHUB, P.github_push()),
    (github, GITHUB, P.github_push(forced=True, modified=("a/b.yaml", "deploy/x.yaml"))),
    (github, GITHUB, P.github_push(deleted=True, after="0" * 40)),
    (github, GITHUB, P.github_push(ref="refs/tags/v1.2.3")),
    (github, GITHUB, P.github_push(before="0" * 40)),
    (github, {"X-GitHub-Event": "ping"}, {"zen": "Keep it logically awesome.", "hook_id": 1,
                                          "repository": {"full_name": "octo-org/deploy", "id": 7}}),
    (gitlab, GITLAB, P.gitlab_push()),
    (gitlab, GITLAB, P.gitlab_push(total=40)),
    (gitlab, {"X-Gitlab-Event": "Tag Push Hook"}, P.gitlab_push(tag=True, ref="refs/tags/v1")),
    (gitlab, {"X-Gitlab-Event": "System Hook"}, P.gitlab_push()),
    (gitea, GITEA, P.gitea_push()),
    # valid JSON that is not the documented shape: the full parse decides
    (github, GITHUB, {**P.github_push(), "repository": "octo-org/deploy"}),
    (github, GITHUB, {**P.github_push(), "commits": [1, 2]}),
    (github, GITHUB, {**P.github_push(), "commits": "none"}),
    (github, GITHUB, {**P.github_push(), "after": 12}),
    (github, GITHUB, {**P.github_push(), "commits": [{"added": "not-a-list"}]}),
    (github, GITHUB, [1, 2, 3]),
    (gitlab, GITLAB, {**P.gitlab_push(), "project": None}),
    (gitlab, GITLAB, {**P.gitlab_push(), "project": {"path_with_namespace": 5}}),
]


def outcome(provider, headers, payload, with_paths):
    try:
        return provider.parse(headers, payload, branch="main", with_paths=with_paths)
    except PayloadError as exc:
        return ("PayloadError", exc.field, exc.problem)


@pytest.mark.parametrize("with_paths", [True, False])
@pytest.mark.parametrize("provider,headers,payload", SAME_AS_FULL)
def test_parse_answers_as_after_a_full_parse(provider, headers, payload, with_paths):
    body = json.dumps(payload).encode()
    assert provider.decode is decoding.commits_push
    assert outcome(provider, headers, provider.decode(body, with_paths=with_paths), with_paths) == \
        outcome(provider, headers, orjson.loads(body), with_paths)


def test_only_what_parse_reads_is_built():
    payload = P.github_push(pad_to=8192)
    decoded = decoding.commits_push(json.dumps(payload).encode())
    assert set(decoded) <= {"ref", "before", "after", "deleted", "forced", "repository", "commits"}
    assert decoded["repository"] == {"full_name": "octo-org/deploy"}
    assert "message" not in decoded["commits"][0] and "modified" in decoded["commits"][0]


@pytest.mark.parametrize("body", [
    b"", b"not json", b'{"after": "x",}', b'{"ref": "a"', b"\xff",
    b'{"ref": "refs/heads/main", "message": "caf\xe9"}',  # latin-1, not UTF-8, in a field never read
    b'{"head_commit": {"message": "\xed\xa0\x80"}}',  # a UTF-8 encoded surrogate
    b'{"commits": [{"id": "a",}]}', b'{"commits": [{"message": "\\x"}]}',  # inside a skipped commit
])
def test_refuses_what_a_full_parse_refuses(body):
    with pytest.raises(ValueError):
        orjson.loads(body)
    for with_paths in (True, False):
        with pytest.raises(ValueError):
            decoding.commits_push(body, with_paths=with_paths)


def test_absurd_nesting_is_an_error_not_a_crash():
    body = b'{"commits": [{"added": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    with pytest.raises((ValueError, RecursionError)):
        decoding.commits_push(body)


def test_without_paths_the_commits_are_only_counted():
    payload = P.gitlab_push(total=3)
    decoded = decoding.commits_push(json.dumps(payload).encode(), with_paths=False)
    assert decoded["commits"] == [None] * len(payload["commits"])
