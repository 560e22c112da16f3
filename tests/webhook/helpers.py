"""Shared by the receiver's tests: one configured repository per provider, and
a helper posting a payload signed the way that provider signs."""

from __future__ import annotations

import json

from rq import Queue

from pullbridge import keys
from tests.webhook import payloads as P
from tests.webhook.conftest import secret

PROVIDER_CASES = {
    # repo name: (provider, secret env, payload factory)
    "gh": ("github", "PB_TEST_GITHUB_SECRET", P.github_push),
    "gl": ("gitlab", "PB_TEST_GITLAB_TOKEN", P.gitlab_push),
    "gl-signed": ("gitlab", "PB_TEST_GITLAB_SIGNING", P.gitlab_push),
    "gitea": ("gitea", "PB_TEST_GITEA_SECRET", P.gitea_push),
    "bbs": ("bitbucket-server", "PB_TEST_BBS_SECRET", P.bitbucket_push),
    "generic": ("generic", "PB_TEST_GENERIC_SECRET", P.generic_push),
}


def post(client, name, payload, *, provider=None, secret_env=None, body=None, headers=None, **kw):
    provider = provider or PROVIDER_CASES[name][0]
    secret_env = secret_env or PROVIDER_CASES[name][1]
    body = body if body is not None else json.dumps(payload).encode()
    signed = P.signed_headers(provider, secret(secret_env), body, **kw)
    signed.update(headers or {})
    return client.post(f"/hooks/{name}", data=body, headers=signed)


def sync_jobs(conn):
    return Queue(keys.SYNC_QUEUE, connection=conn).get_job_ids()
