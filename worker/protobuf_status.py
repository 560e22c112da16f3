"""Read an error Status that the API server answered in protobuf.

Why it exists: a write whose answer is not read asks for protobuf (cheaper
for the server to encode), and the server then sends its refusal in protobuf
too.  What the refusal means depends on its details: a 404 that names an
object (its Namespace is gone) is about that object, one that names none says
the kind is not served.  So the Status is decoded into the dict its JSON form
would be, with just the protobuf wire format and the field numbers of
k8s.io/apimachinery's meta/v1 ``Status`` (no generated code, no protobuf
package).  A body that is no such Status keeps only its readable text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

MAGIC = b"k8s\x00"  # what every protobuf body of the API server starts with

# Field number -> (JSON name, type): str, int, a nested message's fields, or [its fields] when repeated.
_CAUSE = {1: ("reason", str), 2: ("message", str), 3: ("field", str)}
_DETAILS = {1: ("name", str), 2: ("group", str), 3: ("kind", str), 4: ("causes", [_CAUSE]),
            5: ("retryAfterSeconds", int), 6: ("uid", str)}
_STATUS = {2: ("status", str), 3: ("message", str), 4: ("reason", str), 5: ("details", _DETAILS),
           6: ("code", int)}
# The envelope (runtime.Unknown): 1 its TypeMeta (1 apiVersion, 2 kind), 2 the encoded object.
_TYPE_META = {1: ("apiVersion", str), 2: ("kind", str)}
_UNKNOWN = {1: ("typeMeta", _TYPE_META), 2: ("raw", bytes)}


def status_body(data: bytes) -> dict:
    """The JSON form of a protobuf Status; ``{"message": <its readable text>}`` when ``data`` is none."""
    try:
        envelope = _message(data.removeprefix(MAGIC), _UNKNOWN) if data.startswith(MAGIC) else {}
    except ValueError:
        envelope = {}
    type_meta = envelope.get("typeMeta") or {}
    if type_meta.get("kind") == "Status":
        try:
            return {**type_meta, **_message(envelope.get("raw", b""), _STATUS)}
        except ValueError:
            pass
    runs = re.findall(rb"[\x20-\x7e]{8,}", data)
    return {"message": max(runs, key=len).decode() if runs else "(binary error body)"}


def _message(data: bytes, fields: dict) -> dict:
    """The fields of one protobuf message that ``fields`` names; ValueError when it is malformed."""
    out: dict = {}
    for number, value in _wire(data):
        if number not in fields:
            continue
        name, kind = fields[number]
        if (kind is int) != isinstance(value, int):
            raise ValueError(f"field {name} has the wrong wire type")
        if isinstance(kind, list):
            out.setdefault(name, []).append(_message(value, kind[0]))
        elif isinstance(kind, dict):
            out[name] = _message(value, kind)
        elif value:  # as in JSON, an empty string or zero is left out
            out[name] = value.decode("utf-8", "replace") if kind is str else value
    return out


def _wire(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field: a varint as int, anything else as its bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire_type = key & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
        elif wire_type == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire_type in (1, 5):  # fixed 64 / 32 bits
            size = 8 if wire_type == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"unknown wire type {wire_type}")
        if pos > len(data):
            raise ValueError("truncated message")
        yield key >> 3, value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise ValueError("truncated varint")
