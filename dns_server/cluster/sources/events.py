"""Watch events -> registry updates, shared by the API watch and the recorded-stream replay.

A watch stream is newline-delimited JSON, one event per line: `{"type": T, "object": O}` with T
one of ADDED, MODIFIED, DELETED, BOOKMARK (O then carries only `metadata.resourceVersion`) or
ERROR (O is a `Status`, e.g. code 410 when the requested resourceVersion is too old).  See
https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from dns_server.cluster.records import API_KINDS, MalformedObject, convert, key_of
from dns_server.cluster.updates import Put, Remove
from dns_server.errors import MalformedInput

ADDED, MODIFIED, DELETED, BOOKMARK, ERROR = "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"
EVENT_TYPES = frozenset({ADDED, MODIFIED, DELETED, BOOKMARK, ERROR})


class BadEvent(MalformedInput):
    """A watch-stream line that is not an event: the message says why."""


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    object: dict[str, Any]


def parse_event(line: bytes | str) -> Event:
    """One line of a watch stream; raises BadEvent."""
    try:
        data = json.loads(line)
    except ValueError as error:
        raise BadEvent(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadEvent("not a JSON object")
    event_type, obj = data.get("type"), data.get("object")
    if event_type not in EVENT_TYPES:
        raise BadEvent(f"unknown event type {event_type!r}")
    if not isinstance(obj, dict):
        raise BadEvent("the event has no object")
    return Event(str(event_type), obj)


def resource_version(obj: Mapping[str, Any]) -> str:
    """`metadata.resourceVersion` of an object, "" if it has none."""
    meta = obj.get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return version if isinstance(version, str) else ""


def update_for(event_type: str, obj: dict[str, Any]) -> Put | Remove | None:
    """The registry update an ADDED/MODIFIED/DELETED event makes; None for kinds DNS does not read.

    Raises MalformedObject for an object that cannot be converted (the registry keeps what it had).
    """
    if obj.get("kind") not in API_KINDS:
        return None
    if event_type == DELETED:
        key = key_of(obj)
        if key is None:
            raise MalformedObject("metadata.name is missing")
        return Remove(key)
    record = convert(obj)
    return Put(record) if record is not None else None

