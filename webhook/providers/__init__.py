"""One module per git host: how its webhooks are verified and how its push
payload reads.

Every provider module offers the same pure functions (no Flask, no Redis):

- ``verify(headers, body, secret, *, tolerance=300.0, now=None) -> bool``:
  checks the signature or token on the raw body bytes, constant-time.
- ``delivery_id(headers) -> str | None``: the host's id for this delivery
  (the same on a redelivery), used for deduplication.
- ``decode(body, *, with_paths=True) -> payload``: the verified body's
  JSON, with at least the fields ``parse`` reads given the same
  ``with_paths`` (``webhook.decoding``); ValueError if not JSON;
- ``FORM``: how a delivery sent as a form (``payload=<JSON>``, Content-Type
  ``application/x-www-form-urlencoded``) is signed: ``"body"`` (the form
  as sent: GitHub), ``"payload"`` (the JSON in the field: Gitea/Forgejo,
  so the field is taken out before the signature is checked), or None
  (the host sends JSON only; the Content-Type is not looked at);
- ``parse(headers, payload, *, branch=None, with_paths=True) -> PushEvent``:
  the decoded payload in provider-neutral words; raises
  ``PayloadError`` naming the missing or malformed field.  ``branch`` picks
  the change to report when a payload lists several refs (Bitbucket);
  ``with_paths=False`` skips collecting changed paths (``paths`` is None),
  for repositories without path filters: the hot path need not walk every
  commit.

Why a registry: the receiver looks a provider up by the name in the
configuration (``bitbucket-server`` maps to ``bitbucket_server``).
"""

from __future__ import annotations

from types import ModuleType

from webhook.providers import bitbucket_server, generic, gitea, github, gitlab

PROVIDERS: dict[str, ModuleType] = {
    "github": github,
    "gitlab": gitlab,
    "gitea": gitea,
    "bitbucket-server": bitbucket_server,
    "generic": generic,
}


def provider(name: str) -> ModuleType:
    return PROVIDERS[name]
