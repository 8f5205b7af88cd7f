"""List pages of the Kubernetes API, decoded into only the fields DNS reads, as their bytes arrive.

A pod's JSON is about 2 kB of which DNS reads a few dozen bytes; at 150,000 pods building every
other field as Python objects was most of the time to sync.  So a page decodes (msgspec structs
below) into only what the converters of `records.py` read: pods, nearly every object of a large
cluster, and EndpointSlices, one per service, straight from their structs into records
(`DecodedPod.record`, `DecodedSlice.record`), the other kinds through plain dicts.
An item whose shape is not the expected one makes its part of the page be read whole instead, so
one malformed object still costs only itself: its converter rejects it.

An API server may send a whole collection in one page — a list served from its watch cache
ignores `limit` (always for `resourceVersion=0`, in many versions for any list) — hundreds of
megabytes of JSON whose bytes and objects, held at once, would be the process's peak.
`ListDecoder` therefore decodes the `items` array a batch at a time while the rest is still
arriving, and holds only the bytes not yet decoded.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from dns_server.cluster.records import (
    ENDPOINT_SLICE,
    NAMESPACE,
    POD,
    SERVICE,
    SERVICE_IMPORT,
    EndpointSlice,
    MulticlusterSlice,
    Pod,
    Record,
    convert,
    endpoint_record,
    names_of,
    pod_record,
    port_record,
    slice_record,
)
from dns_server.errors import MalformedInput

BATCH_BYTES = 512 * 1024  # decode the items received once this much more has arrived
HEAD_BYTES = 64 * 1024  # the items array starts within this, or the page is decoded whole at its end
_ITEMS = re.compile(rb'"items"\s*:\s*\[')
# How the API server starts every list item: ObjectMeta first (list items carry no kind or apiVersion).
# In valid JSON these bytes are never inside a string, whose quotes are escaped.
_ITEM_START = b'{"metadata":'
_SPACE = b" \t\r\n"


# What the converters read of each kind.  Leaves are Any: the converters check them.
class _Meta(msgspec.Struct, omit_defaults=True):
    name: Any = UNSET
    namespace: Any = UNSET
    labels: Any = UNSET


# A pod's structs are left out of the garbage collector (gc=False: decoded JSON holds no reference cycles), so
# a million pods passing through count for no collections (a third fewer in a listing, measured in-process).
class _PodMeta(msgspec.Struct, omit_defaults=True, gc=False):
    name: Any = None
    namespace: Any = None
    creationTimestamp: Any = None
    deletionTimestamp: Any = None


class _PodSpec(msgspec.Struct, omit_defaults=True, gc=False):
    hostNetwork: Any = None


class _ServiceSpec(msgspec.Struct, omit_defaults=True):
    type: Any = UNSET
    externalName: Any = UNSET
    clusterIP: Any = UNSET
    clusterIPs: Any = UNSET
    ports: Any = UNSET
    externalIPs: Any = UNSET


class _ServiceStatus(msgspec.Struct, omit_defaults=True):
    loadBalancer: Any = UNSET


class _Namespace(msgspec.Struct, omit_defaults=True):
    metadata: _Meta | UnsetType = UNSET


class _Service(msgspec.Struct, omit_defaults=True):
    metadata: _Meta | UnsetType = UNSET
    spec: _ServiceSpec | UnsetType = UNSET
    status: _ServiceStatus | UnsetType = UNSET


class _ServiceImportSpec(msgspec.Struct, omit_defaults=True):
    type: Any = UNSET
    ips: Any = UNSET
    ports: Any = UNSET


class _ServiceImport(msgspec.Struct, omit_defaults=True):
    metadata: _Meta | UnsetType = UNSET
    spec: _ServiceImportSpec | UnsetType = UNSET


class _PodAddress(msgspec.Struct, gc=False):
    ip: Any = None


class _PodStatus(msgspec.Struct, omit_defaults=True, gc=False):
    phase: Any = None
    podIP: Any = None
    podIPs: list[_PodAddress] | None = None


class DecodedPod(msgspec.Struct, omit_defaults=True, gc=False):
    """A pod of a list page, made into its record without a dict between (a million pods at a cluster's largest).

    Every level must be an object, every entry of podIPs too: another shape fails the batch's decoding, which
    then reads it whole as dicts (`ListDecoder._decode`) for `records.pod_from_api` to say what is wrong.
    """

    metadata: _PodMeta
    spec: _PodSpec = msgspec.field(default_factory=_PodSpec)
    status: _PodStatus = msgspec.field(default_factory=_PodStatus)

    def record(self) -> Pod:
        """Its record, as `records.pod_from_api` makes it of the same fields; raises MalformedObject."""
        meta, status = self.metadata, self.status
        addresses = [entry.ip for entry in status.podIPs or ()] or ([status.podIP] if status.podIP else [])
        return pod_record(meta.name, meta.namespace, addresses, status.phase, self.spec.hostNetwork,
                          meta.deletionTimestamp, meta.creationTimestamp)


class _SliceMeta(msgspec.Struct, omit_defaults=True, gc=False):
    name: Any = None
    namespace: Any = None
    labels: Any = None


class _Conditions(msgspec.Struct, omit_defaults=True, gc=False):
    ready: Any = None
    serving: Any = None  # serving and terminating are not served: `dns-server explain` shows them
    terminating: Any = None


class _TargetRef(msgspec.Struct, omit_defaults=True, gc=False):
    kind: Any = None
    name: Any = ""


class _SliceEndpoint(msgspec.Struct, omit_defaults=True, gc=False):
    addresses: list[Any] | None = None
    conditions: _Conditions | None = None
    hostname: Any = None
    targetRef: _TargetRef | None = None


class _SlicePort(msgspec.Struct, omit_defaults=True, gc=False):
    name: Any = None
    protocol: Any = None
    port: Any = None


class DecodedSlice(msgspec.Struct, omit_defaults=True, gc=False):
    """An EndpointSlice of a list page, made into its record without a dict between (as `DecodedPod`).

    Every level must be an object (conditions and targetRef absent or null too), every list a list: another
    shape reads the batch as dicts for `records.endpoint_slice_from_api` to say what is wrong.
    """

    metadata: _SliceMeta
    addressType: Any = "IPv4"
    endpoints: list[_SliceEndpoint] | None = None
    ports: list[_SlicePort] | None = None

    def record(self) -> EndpointSlice | MulticlusterSlice:
        """Its record, as `records.endpoint_slice_from_api` makes it of the same fields; raises MalformedObject."""
        meta = self.metadata
        namespace, name = names_of(meta.name, meta.namespace)
        endpoints = () if self.addressType == "FQDN" else tuple(  # FQDN endpoints are never served
            endpoint_record(endpoint.addresses or (), endpoint.conditions and endpoint.conditions.ready,
                            endpoint.hostname, _pod_name(endpoint.targetRef), f"endpoints[{i}]")
            for i, endpoint in enumerate(self.endpoints or ()))
        ports = tuple(port_record(port.port, port.name, port.protocol, f"ports[{i}]")
                      for i, port in enumerate(self.ports or ()) if port.port is not None)  # None: "all ports"
        return slice_record(namespace, name, meta.labels, endpoints, ports)


def _pod_name(target: _TargetRef | None) -> Any:
    return target.name if target is not None and target.kind == "Pod" else ""


class _ListMeta(msgspec.Struct):
    resourceVersion: Any = ""
    continue_: Any = msgspec.field(default="", name="continue")


_ITEM_TYPES: dict[str, type] = {NAMESPACE: _Namespace, SERVICE: _Service, ENDPOINT_SLICE: DecodedSlice,
                                 POD: DecodedPod, SERVICE_IMPORT: _ServiceImport}


def _page_of(item: type) -> Any:
    return msgspec.defstruct(f"{item.__name__}List", [("items", list[item] | None, None),  # type: ignore[valid-type]
                                                       ("metadata", _ListMeta, msgspec.field(default_factory=_ListMeta))])


_PAGES = {kind: msgspec.json.Decoder(_page_of(item)) for kind, item in _ITEM_TYPES.items()}
_ITEM_LISTS = {kind: msgspec.json.Decoder(list[item]) for kind, item in _ITEM_TYPES.items()}  # type: ignore[valid-type]


Decoded = DecodedPod | DecodedSlice  # the kinds made into records straight from their structs
_DECODED = (DecodedPod, DecodedSlice)
Item = dict[str, Any] | Decoded  # a list item as decoded: a pod or slice as its struct, any other object as a dict


def _items(decoded: list[Any]) -> list[Item]:
    """Decoded items as they are handed on: pods and slices as their structs, every other kind as plain dicts."""
    return decoded if decoded and isinstance(decoded[0], _DECODED) else msgspec.to_builtins(decoded)


def as_object(kind: str, item: Item) -> dict[str, Any]:
    """A list item as an API object, a dict with its `kind` (list items carry none of their own); an item
    that is not an object becomes one without metadata, which its converter rejects."""
    obj: dict[str, Any] = msgspec.to_builtins(item) if isinstance(item, _DECODED) else (
        item if isinstance(item, dict) else {})
    obj["kind"] = kind
    return obj


def record_of(kind: str, item: Item) -> Record | None:
    """The record of a list item, None for a kind DNS does not read; raises MalformedObject."""
    return item.record() if isinstance(item, _DECODED) else convert(as_object(kind, item))


def decode_list(kind: str, data: bytes) -> tuple[list[Item], str, str]:
    """A whole list page of `kind`: its items (only the fields DNS reads), resourceVersion, continue token.

    Raises MalformedInput for a page that is not a JSON object.
    """
    try:
        page = _PAGES[kind].decode(data)
    except msgspec.ValidationError:  # an object of an unexpected shape: read the page whole
        try:
            body = json.loads(data)
        except ValueError as error:  # the shape failed before the syntax did
            raise MalformedInput(f"the list page is not JSON: {error}") from None
        meta, listed = (body.get("metadata") or {}, body.get("items") or []) if isinstance(body, dict) else (0, 0)
        if not isinstance(meta, dict) or not isinstance(listed, list):
            raise MalformedInput("the list page is not an object with metadata and a list of items") from None
        return listed, str(meta.get("resourceVersion") or ""), str(meta.get("continue") or "")
    except msgspec.DecodeError as error:
        raise MalformedInput(f"the list page is not JSON: {error}") from None
    return _items(page.items or []), str(page.metadata.resourceVersion or ""), str(page.metadata.continue_ or "")


class ListDecoder:
    """One list page of `kind`, decoded as its bytes arrive: `feed` each piece, then `close`.

    Once the page's head (up to `"items": [`) has arrived, the bytes of the items are cut after
    the last item that is complete, just before the next one's start (`,{"metadata":`), and that
    part is decoded as a JSON array of its own.  A cut that is not between two items would not
    decode: the page is then left whole, as is a page of another shape, and `close` decodes
    whatever is left with `decode_list`, the head and the rest of the page around it.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.decoded = 0  # items decoded so far, for the error about a page that breaks off
        self.last = ""  # namespace/name of the last item decoded
        self._head: bytes | None = None  # the page up to its items array; None until found
        self._pending = bytearray()  # from the items array's `[` (once found) on: not decoded yet
        self._searched = 0  # the bytes before this hold no cut not yet tried
        self._whole = False  # given up cutting: everything is decoded at `close`

    def feed(self, data: bytes) -> list[Item]:
        """The items complete in what has arrived so far (none until a batch's worth has)."""
        self._pending += data
        if self._whole:
            return []
        if self._head is None:
            return self._find_items()
        if len(self._pending) - self._searched < BATCH_BYTES:
            return []
        return self._decode_batch()

    def close(self) -> tuple[list[Item], str, str]:
        """The remaining items, the list's resourceVersion and continue token; raises MalformedInput."""
        rest = bytes(self._pending) if self._head is None else self._head + self._pending
        self._pending = bytearray()
        try:
            return decode_list(self.kind, rest)
        except MalformedInput as error:
            if not self.decoded:
                raise
            raise MalformedInput(f"{error} (after {self.decoded} items, the last {self.last})") from None

    def _find_items(self) -> list[Item]:
        found = _ITEMS.search(self._pending, 0, HEAD_BYTES)
        if found is None:
            self._whole = len(self._pending) >= HEAD_BYTES
            return []
        start = found.end() - 1  # the array's `[`
        head = bytes(self._pending[:start])
        try:
            msgspec.json.decode(head + b"[]}")  # "items" is a key of the page itself, not of a nested object
        except msgspec.DecodeError:
            self._whole = True
            return []
        self._head = head
        del self._pending[:start]
        return self._decode_batch() if len(self._pending) >= BATCH_BYTES else []

    def _decode_batch(self) -> list[Item]:
        pending = self._pending
        cut = self._cut()
        if cut is None:
            self._searched = len(pending)
            return []
        pending[cut] = ord("]")  # pending[0] is `[`: the complete items are a JSON array of their own
        try:
            with memoryview(pending)[:cut + 1] as batch:
                items = self._decode(batch)
        except (msgspec.DecodeError, ValueError):  # not JSON, or the cut was inside an item: left whole
            pending[cut] = ord(",")
            self._whole = True
            return []
        del pending[:cut]
        pending[0] = ord("[")
        self._searched = len(pending)  # the last item's start was the cut: none after it
        self.decoded += len(items)
        last = items[-1] if items else None
        meta = msgspec.to_builtins(last.metadata) if isinstance(last, _DECODED) else last and last.get("metadata")
        if isinstance(meta, dict):
            self.last = f"{meta.get('namespace') or ''}/{meta.get('name')}".lstrip("/")
        return items

    def _decode(self, batch: memoryview) -> list[Item]:
        try:
            return _items(_ITEM_LISTS[self.kind].decode(batch))
        except msgspec.ValidationError:  # an object of an unexpected shape: this batch whole
            items = json.loads(bytes(batch))
            assert isinstance(items, list)
            return items

    def _cut(self) -> int | None:
        """Where the last complete item not yet decoded ends: the `,` before the next one's start."""
        pending = self._pending
        end = len(pending)
        floor = max(1, self._searched - len(_ITEM_START))
        while True:
            start = pending.rfind(_ITEM_START, floor, end)
            if start < 0:
                return None
            comma = start - 1
            while comma > 0 and pending[comma] in _SPACE:
                comma -= 1
            if pending[comma] == ord(","):
                return comma
            end = start
