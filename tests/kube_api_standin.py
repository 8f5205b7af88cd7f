"""A stand-in for the Kubernetes API server's list/watch protocol, for tests and benchmarks.

A real kube-apiserver (with etcd) cannot be installed on the test machines.  This module serves
the part of the API that a list + watch client sees, over real HTTP/1.1 sockets, so the official
`kubernetes` client can be pointed at it through an ordinary kubeconfig.  Section names below
are those of the API concepts page, https://kubernetes.io/docs/reference/using-api/api-concepts/
("concepts"), unless another source is named.

Reproduced behaviours, and where each is specified:

- Collections `GET /api/v1/namespaces`, `/api/v1/services`, `/api/v1/pods`,
  `/apis/discovery.k8s.io/v1/endpointslices` and the Multi-Cluster Services API's custom resource
  `/apis/multicluster.x-k8s.io/v1alpha1/serviceimports`, cluster-wide, and each namespaced one of
  them under `.../namespaces/<ns>/<resource>` (concepts, "Standard API terminology").
- One resourceVersion counter shared by every resource, as etcd's revision; each change stamps
  the object's `metadata.resourceVersion` (concepts, "Resource versions").
- Lists: `{"kind": "ServiceList", "apiVersion": "v1", "metadata": {"resourceVersion": ...},
  "items": [...]}`, the items without `kind`/`apiVersion`; the list's resourceVersion is the one a
  watch starts from (concepts, "Efficient detection of changes").
- Paged lists: `limit` and `continue`; every page of one list comes from the snapshot taken for
  the first page and carries its resourceVersion; `remainingItemCount`; an empty `continue` on
  the last page; a continue token whose snapshot was compacted away answers `410 Gone` with a
  Status of reason `Expired` (concepts, "Retrieving large results sets in chunks").  With
  `one_page=True` every list ignores `limit` and comes in one page, as kube-apiserver serves a
  list from its watch cache (always for `resourceVersion=0`, in many versions for any list).
- Watches (`watch=true` or `watch=1`) from a `resourceVersion`: `200`, `Transfer-Encoding:
  chunked`, one JSON event `{"type": ..., "object": ...}` per line and per chunk, every change
  after that resourceVersion in order, then live changes (concepts, "Efficient detection of
  changes").  A watch from `resourceVersion` "" or "0" first sends a synthetic ADDED per
  existing object (concepts, "Resource versions", semantics for watch: "Start at any").
- Bookmarks when `allowWatchBookmarks=true`: a BOOKMARK event whose object carries only `kind`,
  `apiVersion` and `metadata.resourceVersion`, every `bookmark_interval` seconds (concepts,
  "Watch bookmarks"; the interval is the server's choice there, about a minute in kube-apiserver).
- `timeoutSeconds`: the server ends the watch (terminating chunk) when it expires, "regardless
  of any activity or inactivity" (API reference, ListOptions.timeoutSeconds).
- `410 Gone` for a watch from a resourceVersion older than the last compaction: either the HTTP
  status of the watch request with a Status body, or (`gone_as_event=True`) a `200` stream with
  one ERROR event whose object is a Status with `code: 410`, then the end of the stream (concepts,
  "410 Gone responses" and "Efficient detection of changes"; kube-apiserver's watch cache answers
  the second way).
- Label selectors (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`) and field selectors (`=`, `==`,
  `!=` on metadata.name, metadata.namespace, and status.phase / spec.nodeName for pods; any other
  field is `400 BadRequest`) on lists and watches (Kubernetes docs, "Labels and Selectors" and
  "Field Selectors").  In a filtered watch an object that stops matching arrives as DELETED
  carrying its previous content with the new resourceVersion, one that starts matching as ADDED
  (k8s.io/apiserver, storage/cacher cacheWatcher.convertToWatchEvent).
- Bearer-token authentication: a request without the token gets `401` and a Status.
- TLS, optionally (`tls=(certificate, key)`): HTTPS as kube-apiserver serves it, so a client can use
  in-cluster credentials (`https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, verified
  against the service account's `ca.crt`); `self_signed_certificate()` makes a certificate for
  127.0.0.1 with the `openssl` command-line tool.

Test hooks: `apply`/`delete` objects, `compact()` (forget history: older resourceVersions and
continue tokens become 410), `go_silent()`/`speak()` (open watches stop sending anything, even
bookmarks and the end of the stream, but stay connected), `drop_connections()` (cut every open
connection without ending the chunked stream), `down()`/`up()` (stop and resume listening on the
same port: connections are refused meanwhile), `fail_requests(status)` (answer every request
with that error), `on_request` (a callback before each request is served), `requests` (a log of
every request with its query parameters), and `sent_at` (when each change's event was sent,
for measuring the delay from an event to the answer that reflects it).

Not reproduced: client certificates, HTTP/2, protobuf/CBOR, single-object GETs and
writes over HTTP, `resourceVersionMatch`, `sendInitialEvents` streaming lists, admission.
"""

from __future__ import annotations

import base64
import bisect
import copy
import json
import re
import socket
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, urlsplit

TOKEN = "stand-in-token"
FIRST_RESOURCE_VERSION = 1000

# path -> (kind, apiVersion, namespaced)
COLLECTIONS: dict[str, tuple[str, str, bool]] = {
    "/api/v1/namespaces": ("Namespace", "v1", False),
    "/api/v1/services": ("Service", "v1", True),
    "/api/v1/pods": ("Pod", "v1", True),
    "/apis/discovery.k8s.io/v1/endpointslices": ("EndpointSlice", "discovery.k8s.io/v1", True),
    "/apis/multicluster.x-k8s.io/v1alpha1/serviceimports": ("ServiceImport", "multicluster.x-k8s.io/v1alpha1", True),
}
_NAMESPACED_PATH = re.compile(r"^(?P<group>/apis?(?:/[^/]+)+?)/namespaces/(?P<namespace>[^/]+)/(?P<resource>[^/]+)$")
API_VERSIONS = {kind: api_version for kind, api_version, _ in COLLECTIONS.values()}
FIELDS = {"metadata.name", "metadata.namespace"}
POD_FIELDS = FIELDS | {"status.phase", "spec.nodeName"}


class SelectorError(ValueError):
    """A selector the API would reject (400 BadRequest)."""


# -- selectors ------------------------------------------------------------------------------------------
_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<nkey>[\w./-]+)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[\w.-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*$")


def _split_requirements(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def label_matcher(selector: str | None) -> Callable[[dict[str, str]], bool]:
    """A predicate on a label map for a label selector string; raises SelectorError."""
    if not selector or not selector.strip():
        return lambda labels: True
    tests: list[Callable[[dict[str, str]], bool]] = []
    for requirement in _split_requirements(selector):
        match = _REQUIREMENT.match(requirement)
        if not match:
            raise SelectorError(f"unable to parse requirement: {requirement!r}")
        if match["nkey"]:
            key = match["nkey"]
            tests.append(lambda labels, k=key: k not in labels)
        elif match["op"]:
            key, value, op = match["key"], match["value"], match["op"]
            if op == "!=":
                tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif match["setop"]:
            key = match["key"]
            values = {v.strip() for v in match["values"].split(",") if v.strip()}
            if match["setop"] == "in":
                tests.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                tests.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        else:
            key = match["key"]
            tests.append(lambda labels, k=key: k in labels)
    return lambda labels: all(test(labels) for test in tests)


def field_matcher(selector: str | None, kind: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate on an object for a field selector string; raises SelectorError."""
    if not selector or not selector.strip():
        return lambda obj: True
    allowed = POD_FIELDS if kind == "Pod" else FIELDS
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for requirement in selector.split(","):
        match = re.match(r"^\s*([\w.]+)\s*(==|=|!=)\s*([^,]*?)\s*$", requirement)
        if not match:
            raise SelectorError(f"invalid field selector: {requirement!r}")
        name, op, value = match.groups()
        if name not in allowed:
            raise SelectorError(f'field label not supported: {name}')
        path = name.split(".")

        def read(obj: dict[str, Any], path: list[str] = path) -> str:
            value: Any = obj
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            return "" if value is None else str(value)

        if op == "!=":
            tests.append(lambda obj, r=read, v=value: r(obj) != v)
        else:
            tests.append(lambda obj, r=read, v=value: r(obj) == v)
    return lambda obj: all(test(obj) for test in tests)


def status(code: int, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    """A metav1.Status object, as every API error body and ERROR watch event carries."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": extra.pop("metadata", {}), "status": "Failure",
            "message": message, "reason": reason, "code": code, **extra}


# -- the store -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    version: int
    kind: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    previous: dict[str, Any] | None


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict[str, str]
    at: float

    @property
    def watch(self) -> bool:
        return self.params.get("watch") in ("1", "true")

    @property
    def kind(self) -> str:
        collection, _ = collection_of(self.path)
        return COLLECTIONS.get(collection, ("?", "", False))[0]


def collection_of(path: str) -> tuple[str, str | None]:
    """The cluster-wide collection a path lists, and the namespace it is limited to (None: every one)."""
    match = _NAMESPACED_PATH.match(path)
    if match is None:
        return path, None
    collection = f"{match['group']}/{match['resource']}"
    if not COLLECTIONS.get(collection, ("", "", False))[2]:
        return path, None  # not a namespaced resource: /api/v1/namespaces/<name>/... is no collection
    return collection, match["namespace"]


@dataclass
class _Snapshot:
    version: int
    items: list[tuple[tuple[str, str], dict[str, Any]]]  # (namespace, name), object


class KubeApiStandIn:
    """The stand-in server; start() it, point a kubeconfig at `url`, mutate objects, stop()."""

    def __init__(self, *, bookmark_interval: float = 1.0, gone_as_event: bool = False, one_page: bool = False,
                 token: str = TOKEN, tls: tuple[Path, Path] | None = None) -> None:
        self.bookmark_interval = bookmark_interval
        self.one_page = one_page  # lists ignore `limit`: every list is one page
        self._tls: ssl.SSLContext | None = None
        if tls is not None:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(*tls)
        self.gone_as_event = gone_as_event
        self.token = token
        self.requests: list[Request] = []
        self.on_request: Callable[[Request], None] | None = None  # runs before each request is served
        self.sent_at: dict[str, float] = {}  # resourceVersion -> when its watch event was written (monotonic)
        self._cond = threading.Condition()
        self._version = FIRST_RESOURCE_VERSION
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {k: {} for k, _, _ in COLLECTIONS.values()}
        self._history: list[Change] = []
        self._history_versions: list[int] = []  # the versions of _history, for bisecting
        self._compacted = FIRST_RESOURCE_VERSION  # watches from an older version get 410
        self._snapshots: dict[int, dict[str, _Snapshot]] = {}  # list snapshots for continue tokens
        # (kind, key) -> (the stored object, its JSON as a list item): a large list is mostly copying
        self._encoded: dict[tuple[str, tuple[str, str]], tuple[dict[str, Any], bytes]] = {}
        self._silent = False
        self._failure: int | None = None
        self._generation = 0  # bumped by drop/down: open watches of older generations end
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self._tls is not None else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> KubeApiStandIn:
        self.up()
        return self

    def up(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = _Server(("127.0.0.1", self.port), handler)
        self._server.tls = self._tls
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="api-standin", daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening and cut every open connection: clients get refused until up()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.drop_connections()

    def stop(self) -> None:
        self.down()

    def write_kubeconfig(self, path: Path, context: str = "stand-in") -> Path:
        """A kubeconfig whose current context points at this server with its bearer token."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "dns", "user": {"token": self.token}}],
            "contexts": [{"name": context, "context": {"cluster": "stand-in", "user": "dns"}}],
        }))
        return path

    # -- test hooks ----------------------------------------------------------------------------------------
    def go_silent(self) -> None:
        """Open and new watches stop sending anything (events, bookmarks, the end) but stay open."""
        with self._cond:
            self._silent = True

    def speak(self) -> None:
        with self._cond:
            self._silent = False
            self._cond.notify_all()

    def drop_connections(self) -> None:
        """Cut every open connection abruptly (a chunked stream ends without its last chunk)."""
        with self._cond:
            self._generation += 1
            connections = list(self._connections)
            self._cond.notify_all()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def fail_requests(self, code: int | None) -> None:
        """Answer every request with this HTTP error (None: serve normally again)."""
        with self._cond:
            self._failure = code

    def compact(self) -> None:
        """Forget the history up to now: watches from older versions and old continue tokens get 410."""
        with self._cond:
            self._compacted = self._version
            self._history, self._history_versions = [], []
            self._snapshots = {}

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._version

    def lists(self, kind: str) -> list[Request]:
        return [r for r in list(self.requests) if r.kind == kind and not r.watch]

    def watches(self, kind: str) -> list[Request]:
        return [r for r in list(self.requests) if r.kind == kind and r.watch]

    # -- objects -------------------------------------------------------------------------------------------
    def apply(self, *objects: dict[str, Any]) -> int:
        """Create or replace objects (ADDED or MODIFIED), each at a new resourceVersion; returns the last."""
        with self._cond:
            for given in objects:
                kind, key, obj = self._stamped(given)
                previous = self._objects[kind].get(key)
                if previous and "uid" not in given.get("metadata", {}):
                    obj["metadata"]["uid"] = previous["metadata"]["uid"]  # an update keeps the object's uid
                self._objects[kind][key] = obj
                self._record(Change(self._version, kind, "MODIFIED" if previous else "ADDED", obj, previous))
            self._cond.notify_all()
            return self._version

    def delete(self, kind: str, namespace: str, name: str) -> int:
        """Delete one object (a DELETED event carrying its last state at a new resourceVersion)."""
        with self._cond:
            key = (namespace if kind != "Namespace" else "", name)
            previous = self._objects[kind].pop(key)
            self._encoded.pop((kind, key), None)
            self._version += 1
            gone = copy.deepcopy(previous)
            gone["metadata"]["resourceVersion"] = str(self._version)
            self._record(Change(self._version, kind, "DELETED", gone, previous))
            self._cond.notify_all()
            return self._version

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        with self._cond:
            return copy.deepcopy(self._objects[kind][(namespace if kind != "Namespace" else "", name)])

    def load(self, objects: Iterable[dict[str, Any]]) -> None:
        """Create many objects at once, without history (as if they existed before any watch)."""
        with self._cond:
            for obj in objects:
                kind, key, obj = self._stamped(obj)
                self._objects[kind][key] = obj
            self._compacted = self._version
            self._history, self._history_versions = [], []

    def _stamped(self, obj: dict[str, Any]) -> tuple[str, tuple[str, str], dict[str, Any]]:
        """A copy of `obj` as the API stores it (namespace, a new resourceVersion, uid, apiVersion), its key."""
        obj = copy.deepcopy(obj)
        kind = obj["kind"]
        meta = obj.setdefault("metadata", {})
        if kind != "Namespace":
            meta.setdefault("namespace", "default")
        self._version += 1
        meta["resourceVersion"] = str(self._version)
        meta.setdefault("uid", str(uuid.uuid4()))
        obj.setdefault("apiVersion", API_VERSIONS[kind])
        return kind, (meta.get("namespace", ""), meta["name"]), obj

    def _record(self, change: Change) -> None:
        self._history.append(change)
        self._history_versions.append(change.version)

    # -- serving (called by the handler threads) -----------------------------------------------------------
    def _list(self, kind: str, params: dict[str, str]) -> tuple[int, dict[str, Any] | bytes]:
        labels = label_matcher(params.get("labelSelector"))
        fields = field_matcher(params.get("fieldSelector"), kind)
        limit = 0 if self.one_page else int(params.get("limit") or 0)
        token = params.get("continue")
        with self._cond:
            if token:
                try:
                    decoded = json.loads(base64.urlsafe_b64decode(token))
                    version, start = int(decoded["rv"]), int(decoded["start"])
                except (ValueError, KeyError, TypeError):
                    return 400, status(400, "BadRequest", "continue key is not valid")
                snapshot = self._snapshots.get(version, {}).get(kind)
                if snapshot is None:
                    return 410, status(410, "Expired", "The provided continue parameter is too old to display a "
                                       "consistent list result. You can start a new list without the continue "
                                       "parameter.", metadata={"continue": token})
            else:
                items = [(key, self._objects[kind][key]) for key in sorted(self._objects[kind])]
                snapshot, start = _Snapshot(self._version, items), 0
                if limit:
                    self._snapshots.setdefault(self._version, {})[kind] = snapshot
        selected: list[bytes] = []
        position = start
        while position < len(snapshot.items) and (not limit or len(selected) < limit):
            key, obj = snapshot.items[position]
            position += 1
            if labels(obj["metadata"].get("labels") or {}) and fields(obj):
                selected.append(self._item_json(kind, key, obj))
        meta: dict[str, Any] = {"resourceVersion": str(snapshot.version)}
        if position < len(snapshot.items):
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": snapshot.version, "start": position}).encode()).decode()
            meta["remainingItemCount"] = len(snapshot.items) - position
        head = json.dumps({"kind": f"{kind}List", "apiVersion": API_VERSIONS[kind], "metadata": meta})
        return 200, b'%s, "items": [%s]}' % (head[:-1].encode(), b", ".join(selected))

    def _item_json(self, kind: str, key: tuple[str, str], obj: dict[str, Any]) -> bytes:
        """A stored object as a list item, encoded once per version: without kind and apiVersion, and
        metadata first, as kube-apiserver writes the fields in the order of the Go struct."""
        cached = self._encoded.get((kind, key))
        if cached is None or cached[0] is not obj:
            item = {"metadata": obj["metadata"]} | {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
            cached = self._encoded[(kind, key)] = (obj, json.dumps(item).encode())
        return cached[1]

    def _watch(self, handler: _Handler, kind: str, params: dict[str, str]) -> None:
        labels = label_matcher(params.get("labelSelector"))
        fields = field_matcher(params.get("fieldSelector"), kind)
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else 1800.0
        deadline = time.monotonic() + timeout
        requested = params.get("resourceVersion") or "0"

        def passes(obj: dict[str, Any] | None) -> bool:
            return obj is not None and labels(obj["metadata"].get("labels") or {}) and fields(obj)

        with self._cond:
            generation = self._generation
            while self._silent:  # a silent server does not even send the response headers
                if self._generation != generation:
                    raise ConnectionAbortedError("dropped")
                self._cond.wait(0.05)
            if requested == "0":
                cursor = self._version
                initial = [("ADDED", obj) for _, obj in sorted(self._objects[kind].items()) if passes(obj)]
            else:
                cursor = int(requested)
                initial = []
                if cursor < self._compacted:
                    gone = status(410, "Expired", f"too old resource version: {cursor} ({self._compacted})")
                    if not self.gone_as_event:
                        handler.send_json(410, gone)
                        return
                    initial = [("ERROR", gone)]
        handler.start_stream()
        for event_type, obj in initial:
            handler.send_event(event_type, obj)
            if event_type == "ERROR":
                handler.end_stream()
                return
        next_bookmark = time.monotonic() + self.bookmark_interval
        while True:
            with self._cond:
                while True:
                    if self._generation != generation:
                        raise ConnectionAbortedError("dropped")
                    now = time.monotonic()
                    if not self._silent:
                        first = bisect.bisect_right(self._history_versions, cursor)
                        pending = [c for c in self._history[first:] if c.kind == kind]
                        if not pending:
                            cursor = self._version  # nothing for this watch up to here
                        if pending or now >= deadline or (bookmarks and now >= next_bookmark):
                            break
                    wake = min(deadline, next_bookmark if bookmarks else deadline)
                    self._cond.wait(max(0.01, wake - now) if not self._silent else 0.05)
            for change in pending:
                cursor = change.version
                now_passes = change.type != "DELETED" and passes(change.obj)
                before_passes = passes(change.previous)
                if now_passes and before_passes:
                    handler.send_event("MODIFIED", change.obj)
                elif now_passes:
                    handler.send_event("ADDED", change.obj)
                elif before_passes:
                    gone = copy.deepcopy(change.previous)
                    assert gone is not None
                    gone["metadata"]["resourceVersion"] = str(change.version)
                    handler.send_event("DELETED", gone)
            if time.monotonic() >= deadline:
                handler.end_stream()
                return
            if bookmarks and time.monotonic() >= next_bookmark:
                handler.send_event("BOOKMARK", {"kind": kind, "apiVersion": API_VERSIONS[kind],
                                                "metadata": {"resourceVersion": str(cursor)}})
                next_bookmark = time.monotonic() + self.bookmark_interval

    def _track(self, connection: socket.socket, add: bool) -> None:
        with self._cond:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        if self.tls is not None:
            # the handshake runs at the handler thread's first read: a slow client holds up no other
            connection = self.tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return connection, address


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: KubeApiStandIn

    def setup(self) -> None:
        super().setup()
        # Go's net package, and so kube-apiserver, disables Nagle on every TCP connection; without
        # this an event written while the previous one awaits a delayed ACK waits up to 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.api._track(self.connection, True)

    def finish(self) -> None:
        self.api._track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        api = self.api
        request = Request("GET", url.path, params, time.monotonic())
        with api._cond:
            api.requests.append(request)
        if api.on_request is not None:
            api.on_request(request)
        with api._cond:
            failure = api._failure
        if self.headers.get("Authorization", "").lower() != f"bearer {api.token}".lower():
            self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
            return
        if failure is not None:
            self.send_json(failure, status(failure, "InternalError", "the stand-in was told to fail"))
            return
        path, namespace = collection_of(url.path)
        collection = COLLECTIONS.get(path)
        if collection is None:
            self.send_json(404, status(404, "NotFound", f"the server could not find the requested resource"))
            return
        kind = collection[0]
        if namespace is not None:  # a namespaced collection: the cluster-wide one, of that namespace only
            params["fieldSelector"] = ",".join(filter(None, (params.get("fieldSelector"),
                                                             f"metadata.namespace={namespace}")))
        try:
            if params.get("watch") in ("1", "true"):
                self.close_connection = True
                api._watch(self, kind, params)
            else:
                self.send_json(*api._list(kind, params))
        except SelectorError as error:
            self.send_json(400, status(400, "BadRequest", str(error)))
        except (ConnectionError, OSError):
            self.close_connection = True

    def send_json(self, code: int, body: dict[str, Any] | bytes) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def send_event(self, event_type: str, obj: dict[str, Any]) -> None:
        data = json.dumps({"type": event_type, "object": obj}).encode() + b"\n"
        if event_type in ("ADDED", "MODIFIED", "DELETED"):
            self.api.sent_at.setdefault(obj["metadata"]["resourceVersion"], time.monotonic())
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for `127.0.0.1` (and kube-apiserver's in-cluster name) and its key, made by `openssl`.

    Self-signed: the certificate is its own CA, the `ca.crt` a client verifies the stand-in with.
    """
    certificate, key = directory / "apiserver.crt", directory / "apiserver.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=kube-apiserver", "-keyout", str(key),
                    "-out", str(certificate),
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc"],
                   check=True, capture_output=True, timeout=60)
    return certificate, key


# -- object builders for tests and benchmarks ------------------------------------------------------------
def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"kind": "Namespace", "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name,
                                                                        **(labels or {})}}}


def service(namespace: str, name: str, cluster_ip: str | None = None, *, ports: list[dict[str, Any]] | None = None,
            labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A ClusterIP service, or a headless one when cluster_ip is None."""
    return {"kind": "Service", "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip or "None",
                     "clusterIPs": [cluster_ip or "None"],
                     "ports": ports or [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}


def endpoint_slice(namespace: str, service_name: str, addresses: list[str], *, suffix: str = "abcde",
                   ready: list[bool] | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """An EndpointSlice of one service, one endpoint per address (ready unless told otherwise)."""
    readiness = ready or [True] * len(addresses)
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{service_name}-{suffix}", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service_name,
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                                    **(labels or {})}},
            "endpoints": [{"addresses": [a], "conditions": {"ready": r, "serving": r, "terminating": False},
                           "targetRef": {"kind": "Pod", "namespace": namespace, "name": f"{service_name}-{i}"}}
                          for i, (a, r) in enumerate(zip(addresses, readiness))],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def service_import(namespace: str, name: str, ips: list[str] | None = None, *,
                   ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A ServiceImport of the Multi-Cluster Services API: ClusterSetIP with `ips`, or headless when None."""
    return {"kind": "ServiceImport", "apiVersion": "multicluster.x-k8s.io/v1alpha1",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "ClusterSetIP" if ips else "Headless", **({"ips": ips} if ips else {}),
                     "ports": ports or [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def multicluster_slice(namespace: str, service_name: str, cluster: str, addresses: list[str], *,
                       ready: list[bool] | None = None) -> dict[str, Any]:
    """An EndpointSlice of a ServiceImport's endpoints in `cluster`, labelled as an MCS implementation labels it."""
    local = endpoint_slice(namespace, service_name, addresses, suffix=cluster, ready=ready)
    local["metadata"]["labels"] = {"multicluster.kubernetes.io/service-name": service_name,
                                   "multicluster.kubernetes.io/source-cluster": cluster}
    return local


def pod(namespace: str, name: str, ip: str, phase: str = "Running") -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": "node-1"}, "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]}}


def objects_of(documents: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects of manifests (a `kind: List` flattened), for loading an example cluster."""
    flat: list[dict[str, Any]] = []
    for document in documents:
        if document and document.get("kind") == "List":
            flat.extend(document.get("items") or [])
        elif document:
            flat.append(document)
    return [o for o in flat if o.get("kind") in API_VERSIONS]

