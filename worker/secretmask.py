"""A Secret's values kept out of the API server's error text.

Why it exists: secrets never appear in logs, errors or pages, but the API
server quotes what it was sent, and sometimes what it holds, when it rejects
a request: server-side apply's type check quotes a Secret value that is not
a string (``.stringData.port: expected string, got
&value.valueUnstructured{Value:5432}``, HTTP 500), and an admission policy
(a ValidatingAdmissionPolicy's ``messageExpression``, a webhook) may quote
any field of the object sent or of the live one (``oldObject``).  Such text
becomes a sync's error, its commit status and alert, a drift entry's note,
the periodic check's result, and log lines.

``SecretMask`` is built by ``worker.kube`` for every failed request from the
Secrets the request sent and the live object the caller read (``Kube.request``'s
``live``), before the error text is formed or cut: each value under
``data`` and ``stringData`` is replaced, in its base64 and its decoded form,
by ``(hidden: Secret data)``, and so is what follows ``got`` in a type-check
error of a Secret (values too short to replace safely, or printed by Go in
another form, such as ``true`` or ``1e+06``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

HIDDEN = "(hidden: Secret data)"
# Shorter values are not replaced wherever they occur ("data" or "1" would garble the message
# around them); a type-check error of a Secret hides what it quotes whatever its length.
MIN_HIDDEN_CHARS = 4
TYPE_CHECK_QUOTE = re.compile(r"(: expected [\w ]+, got ).*")
VALUE_KEYS = ("data", "stringData")


@dataclass(frozen=True)
class SecretMask:
    """The values of the Secrets one API request is about (longest first), to hide in its error."""

    values: tuple[str, ...]

    def hide(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, HIDDEN)
        return TYPE_CHECK_QUOTE.sub(rf"\g<1>{HIDDEN}", text)

    def hide_in(self, doc):
        """``doc`` (a decoded JSON Status) with every string in it hidden; keys are field names."""
        if isinstance(doc, str):
            return self.hide(doc)
        if isinstance(doc, dict):
            return {key: self.hide_in(value) for key, value in doc.items()}
        if isinstance(doc, list):
            return [self.hide_in(value) for value in doc]
        return doc


def secret_mask(*objects) -> SecretMask | None:
    """The mask for the Secrets among ``objects`` (request bodies, live objects; others are
    ignored), or None when there is none."""
    secrets = [o for o in objects if isinstance(o, dict) and o.get("kind") == "Secret"
               and o.get("apiVersion") == "v1"]
    if not secrets:
        return None
    values = set()
    for secret in secrets:
        for key in VALUE_KEYS:
            for leaf in _leaves(secret.get(key)):
                values.update(_forms(leaf, encoded=key == "data"))
    return SecretMask(tuple(sorted((v for v in values if len(v) >= MIN_HIDDEN_CHARS), key=len, reverse=True)))


def _leaves(value):
    """The scalars in ``value``: a valid Secret's map of strings, or whatever a broken one holds."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif value is not None:
        yield value


def _forms(value, encoded: bool) -> set[str]:
    """How the API server may quote ``value``: as sent, base64-decoded (``data``) or encoded
    (``stringData``), and each of those escaped as in a quoted string."""
    text = value if isinstance(value, str) else json.dumps(value)
    forms = {text}
    if encoded:
        try:
            forms.add(base64.b64decode(text, validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError):
            pass  # not base64 text: the server quotes it only as sent
    else:
        forms.add(base64.b64encode(text.encode()).decode())
    return forms | {json.dumps(form, ensure_ascii=False)[1:-1] for form in forms}
