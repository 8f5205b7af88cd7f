"""Cluster data from the Kubernetes API: one list + watch loop per resource, feeding the registry.

Theory of operation.  Each resource (Namespaces, Services, EndpointSlices unless `noendpoints`,
Pods with `pods verified`, and with `multicluster` the ServiceImports and the EndpointSlices
labelled for them, a second watch of EndpointSlices that the first one leaves out) has its own
thread running the loop every Kubernetes client runs (client-go's Reflector), following the API
concepts page (https://kubernetes.io/docs/reference/using-api/api-concepts/):

1. List in pages of `PAGE_SIZE` ("Retrieving large results sets in chunks"), keeping the list's
   `resourceVersion`; an expired `continue` token (410) restarts the list.  The whole listing is
   one `Replace` of that kind: objects deleted while we were not watching disappear.
2. Watch from that resourceVersion with `allowWatchBookmarks=true` and a server-side
   `timeoutSeconds` drawn from [WATCH_TIMEOUT, 2 * WATCH_TIMEOUT) so that watches of many
   servers do not all restart at once; the client's read timeout is longer than that, so a
   connection that goes silent is noticed.  ADDED/MODIFIED/DELETED become Put/Remove updates;
   every event (BOOKMARK included, "Watch bookmarks") moves the resourceVersion on.
3. A stream that ends — the server's timeout, a dropped connection, a read timeout — is resumed
   from the last resourceVersion, without a new list ("Efficient detection of changes").
   `410 Gone`, as the HTTP status of the watch request or as an ERROR event carrying a Status
   with code 410, means that resourceVersion is no longer available: list again (step 1).
4. Any other failure waits an exponential, capped, jittered backoff (client-go's: 0.8 s doubling
   to 30 s) and tries again.  Nothing is removed meanwhile: the registry keeps the last synced
   data and the server keeps answering from it.

Where each loop is — `Phase.LISTING`, `WATCHING`, `BACKING_OFF`, `STOPPED` — is kept in its
`ResourceStatus` and logged (debug) as it changes.

Objects are read as raw JSON (`_preload_content=False`), not as the client's model objects: a list
page is decoded as it streams in (`pages.ListDecoder`: a page may hold the whole collection), a
watch event with `json.loads`; each object is converted at once into a slim record of `records.py`.

The watch threads never touch the registry themselves: they hand updates to one applier thread
(`sources/applier.py`), which gathers everything that arrives within a short window (until
`BATCH_QUIET` passes without a new update, at most `BATCH_MAX_DELAY` after the first) and applies
it as one batch, so a burst of events publishes one snapshot, not one per event.  Parsing and applying happen off the event
loop: answering DNS never waits for a list to be converted or a snapshot to be built.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from functools import partial
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import urllib3
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from dns_server.cluster.records import (
    ENDPOINT_SLICE,
    IMPORT_NAME_LABEL,
    MULTICLUSTER_SLICE,
    NAMESPACE,
    POD,
    SERVICE,
    SERVICE_IMPORT,
    SERVICE_NAME_LABEL,
    MalformedObject,
    Record,
    describe,
)
from dns_server.cluster.registry import Registry
from dns_server.cluster.sources.applier import Applier
from dns_server.cluster.sources.events import (
    BOOKMARK,
    DELETED,
    ERROR,
    BadEvent,
    parse_event,
    resource_version,
    update_for,
)
from dns_server.cluster.sources.pages import Item, ListDecoder, as_object, record_of
from dns_server.cluster.sources.settings import SourceSettings
from dns_server.cluster.updates import Put, Remove, Replace, Update
from dns_server.errors import ConfigError, DnsServerError, MalformedInput
from dns_server.observability.logs import log_event

log = logging.getLogger(__name__)

PAGE_SIZE = 500  # client-go's Reflector lists in pages of 500
WATCH_TIMEOUT = 300.0  # client-go's minWatchTimeout (5 min); each watch asks for 1-2x this
READ_TIMEOUT_MARGIN = 30.0  # the client's read timeout exceeds the server-side timeout by this
CONNECT_TIMEOUT = 10.0
LIST_READ_TIMEOUT = 60.0  # the apiserver's own default request timeout
BACKOFF_INITIAL = 0.8  # client-go's Reflector backoff: 800 ms ...
BACKOFF_CAP = 30.0  # ... doubling up to 30 s
BATCH_QUIET = 0.01  # apply once no update has arrived for 10 ms ...
BATCH_MAX_DELAY = 0.05  # ... or 50 ms after the first one: a change is served within ~100 ms
READ_SIZE = 64 * 1024
# Pods in these phases have no DNS record; the API filters them out (as CoreDNS's pod watch does).
RUNNING_PODS_FIELD_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown"
GONE = 410
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"  # set by the EndpointSlice controller
CLUSTER_IP, HEADLESS_WITH_SELECTOR = "cluster_ip", "headless_with_selector"  # CoreDNS's service_kind values
MCS_GROUP, MCS_VERSION = "multicluster.x-k8s.io", "v1alpha1"  # the Multi-Cluster Services API's ServiceImports


class Gone(DnsServerError):
    """The requested resourceVersion (or continue token) is too old: list again."""


class WatchFailed(DnsServerError):
    """The API reported an error on a watch stream, or sent something unreadable."""


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource to list and watch, with its server-side selectors."""

    kind: str
    label_selector: str | None = None
    field_selector: str | None = None

    @property
    def plural(self) -> str:
        """Its name in log lines, thread names and metrics."""
        return {NAMESPACE: "namespaces", SERVICE: "services", ENDPOINT_SLICE: "endpointslices",
                POD: "pods", SERVICE_IMPORT: "serviceimports",
                MULTICLUSTER_SLICE: "multicluster endpointslices"}[self.kind]

    @property
    def api_kind(self) -> str:
        """The `kind` of its API objects (list items carry none of their own)."""
        return ENDPOINT_SLICE if self.kind == MULTICLUSTER_SLICE else self.kind


def resources_for(settings: SourceSettings) -> tuple[Resource, ...]:
    """The resources the settings need watched, with their selectors.

    With `multicluster`, the slices labelled for a ServiceImport are watched apart from the local
    ones (CoreDNS watches them with the same `labels` selector); ServiceImports are all watched.
    """
    resources = [
        Resource(NAMESPACE, label_selector=settings.namespace_labels),
        Resource(SERVICE, label_selector=settings.labels),
    ]
    if not settings.noendpoints:
        local = _selector(settings.labels, f"!{IMPORT_NAME_LABEL}") if settings.multicluster else settings.labels
        resources.append(Resource(ENDPOINT_SLICE, label_selector=local))
    if settings.watch_pods:
        resources.append(Resource(POD, label_selector=settings.labels, field_selector=RUNNING_PODS_FIELD_SELECTOR))
    if settings.multicluster:
        resources.append(Resource(SERVICE_IMPORT))
        resources.append(Resource(MULTICLUSTER_SLICE, label_selector=_selector(settings.labels, IMPORT_NAME_LABEL)))
    return tuple(resources)


def list_everything(settings: SourceSettings) -> list[dict[str, Any]]:
    """One list of each resource the settings need, no watch, nothing applied: what a tool reads (explain,
    check).  The `labels` and `namespace_labels` selectors are not sent: a tool applies them itself."""
    unselected = dataclasses.replace(settings, labels=None, namespace_labels=None)
    api = api_client(settings)
    try:
        calls = list_functions(api)
        return [as_object(resource.api_kind, item) for resource in resources_for(unselected)
                for items, _ in list_batches(calls[resource.kind], resource) for item in items]
    finally:
        api.close()


def _selector(*requirements: str | None) -> str:
    return ",".join(r for r in requirements if r)


def api_client(settings: SourceSettings) -> Any:
    """A `kubernetes` ApiClient: from a kubeconfig, an endpoint URL (with TLS files), or the pod's service account.

    Raises ConfigError with a message for the user.  Reads files (and may run a kubeconfig's
    credential plugin), so call it off the event loop.
    """
    configuration = client.Configuration()
    kubeconfig = settings.kubeconfig
    try:
        if kubeconfig is not None:
            if not kubeconfig.is_file():
                raise ConfigError(f"kubeconfig {kubeconfig}: no such file")
            kube_config.load_kube_config(config_file=str(kubeconfig), context=settings.context,  # type: ignore[no-untyped-call]
                                         client_configuration=configuration, persist_config=False)
        elif settings.endpoint is not None:
            configuration.host = settings.endpoint
            if settings.tls is not None:
                configuration.cert_file, configuration.key_file, configuration.ssl_ca_cert = settings.tls
        else:
            kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except ConfigError:
        raise
    except Exception as error:  # the loader raises ConfigException, OSError, YAML and key errors
        where = f"kubeconfig {kubeconfig}" if kubeconfig is not None else "in-cluster service account"
        raise ConfigError(f"{where}: {' '.join(str(error).split()) or type(error).__name__}") from None
    configuration.keep_alive = True  # TCP keepalive with client-go's timings: idle watches survive NATs
    configuration.retries = False  # the loops retry, with backoff; urllib3 must not retry behind them
    return client.ApiClient(configuration)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff, capped, with jitter: never a busy loop, never in lockstep."""

    initial: float = BACKOFF_INITIAL
    cap: float = BACKOFF_CAP

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after `failures` consecutive failures: half to all of initial * 2^(n-1)."""
        base = min(self.cap, self.initial * 2.0 ** min(max(failures - 1, 0), 32))
        return base * (0.5 + rng.random() / 2)


class Phase(Enum):
    """What one resource's loop (its reflector) is doing; each change is logged at debug level."""

    LISTING = "listing"
    WATCHING = "watching"
    BACKING_OFF = "backing off"
    STOPPED = "stopped"


@dataclass
class ResourceStatus:
    """What one list + watch loop is doing and has done: read by the loop itself and in its log lines."""

    kind: str
    phase: Phase = Phase.STOPPED
    synced: bool = False  # its first listing has been applied to the registry
    objects: int = 0  # objects in its latest listing
    lists: int = 0  # listings applied (the first, then one per relist)
    resource_version: str = ""
    error: str = ""  # the latest failure, "" once it works again


@dataclass
class SyncStatus:
    """The API source's state: `ready` once every resource has had its first listing applied."""

    resources: dict[str, ResourceStatus] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    @property
    def ready(self) -> bool:
        return bool(self.resources) and all(r.synced for r in self.resources.values())


class SourceMetrics(Protocol):
    """What the API source reports to the metrics."""

    def programmed(self, service_kind: str, seconds: float) -> None:
        """An EndpointSlice change is served: `seconds` since its trigger time (DNS programming latency)."""

    def watch_restarted(self, resource: str) -> None: ...

    def relisted(self, resource: str) -> None: ...


class KubeSource:
    """Keeps the registry in sync with the cluster; `run()` until cancelled."""

    def __init__(self, api: Any, registry: Registry, resources: Sequence[Resource], *,
                 page_size: int = PAGE_SIZE, watch_timeout: float = WATCH_TIMEOUT,
                 read_timeout_margin: float = READ_TIMEOUT_MARGIN, backoff: Backoff = Backoff(),
                 batch_quiet: float = BATCH_QUIET, batch_max_delay: float = BATCH_MAX_DELAY,
                 rng: random.Random | None = None, metrics: SourceMetrics | None = None) -> None:
        self._api = api
        self._registry = registry
        self._metrics = metrics
        self._resources = tuple(resources)
        self._page_size = page_size
        self._watch_timeout = watch_timeout
        self._read_timeout_margin = read_timeout_margin
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._applier = Applier(registry, quiet=batch_quiet, max_delay=batch_max_delay)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._streams: dict[str, Any] = {}  # kind -> the open watch response, to cut it on stop
        self.status = SyncStatus({r.kind: ResourceStatus(r.kind) for r in self._resources})
        self._list_functions = list_functions(api)

    def summary(self) -> str:
        kinds = ", ".join(r.plural for r in self._resources)
        return f"the Kubernetes API at {self._api.configuration.host} ({kinds})"

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the applier and one list + watch thread per resource."""
        log.info("listing and watching %s", self.summary())
        self.status.started_at = time.time()
        self._threads = [threading.Thread(target=self._applier.run, name="kube-apply", daemon=True)]
        self._threads += [threading.Thread(target=self._loop, args=(resource,), name=f"kube-{resource.plural}",
                                           daemon=True) for resource in self._resources]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every loop: cut open watches, let the applier finish, join the threads."""
        self._stop.set()
        for response in list(self._streams.values()):
            try:
                response.shutdown()  # wakes the thread blocked reading the stream
            except Exception:  # already closed or released: nothing is blocked on it
                pass
        self._applier.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._api.close()

    async def run(self) -> None:
        """Run until cancelled; then stop the threads."""
        self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.to_thread(self.stop)

    # -- one resource -------------------------------------------------------------------------------
    def _loop(self, resource: Resource) -> None:
        status = self.status.resources[resource.kind]
        try:
            self._reflect(resource, status)
        finally:
            _enter(resource, status, Phase.STOPPED)

    def _reflect(self, resource: Resource, status: ResourceStatus) -> None:
        failures = 0
        listed = False
        watches = 0
        while not self._stop.is_set():
            try:
                if not listed:
                    if status.lists and self._metrics is not None:
                        self._metrics.relisted(resource.plural)
                    _enter(resource, status, Phase.LISTING)
                    self._list(resource, status)
                    listed = True
                    failures = 0
                    status.error = ""
                watches += 1
                if watches > 1 and self._metrics is not None:
                    self._metrics.watch_restarted(resource.plural)
                _enter(resource, status, Phase.WATCHING)
                if self._watch(resource, status):
                    failures = 0
                    continue
                failures += 1
                status.error = "watch closed at once"
            except Gone as error:
                listed = False
                failures += 1
                status.error = str(error)
                log.info("%s: %s; listing again", resource.plural, error)
                if failures == 1:
                    continue  # relist at once; a relist that is itself Gone waits below
            except Exception as error:
                if self._stop.is_set():
                    return
                failures += 1
                status.error = describe_error(error)
                if not isinstance(error, _EXPECTED_ERRORS):
                    log.exception("%s: unexpected error", resource.plural)
            if self._stop.is_set():
                return
            delay = self._backoff.delay(failures, self._rng)
            log.warning("%s: %s; retrying in %.1f s, %s", resource.plural, status.error, delay,
                        "serving the data synced before" if status.synced
                        else "cluster names answer SERVFAIL until it is listed")
            _enter(resource, status, Phase.BACKING_OFF)
            self._stop.wait(delay)

    def _list(self, resource: Resource, status: ResourceStatus) -> None:
        """List every page and queue one Replace of the kind; raises Gone for a stale continue token."""
        started = time.monotonic()
        records, version, pages = self._fetch(resource)
        count, relist = len(records), status.lists > 0

        def applied() -> None:
            status.synced = True
            status.objects = count
            status.lists += 1
            seconds = time.monotonic() - started
            log_event(log, "sync", f"{'relisted' if relist else 'synced'} {resource.plural}: {count} objects in "
                      f"{seconds:.2f} s ({pages} page{'' if pages == 1 else 's'})", kind=resource.plural,
                      objects=count, seconds=round(seconds, 3), pages=pages, relist=relist)
            if not relist and self.status.ready:
                objects = {Resource(k).plural: r.objects for k, r in self.status.resources.items()}
                total = time.time() - self.status.started_at
                log_event(log, "sync", f"initial sync complete in {total:.2f} s: "
                          + ", ".join(f"{n} {plural}" for plural, n in objects.items()), seconds=round(total, 3),
                          objects=objects)

        status.resource_version = version
        self._applier.put([Replace(frozenset({resource.kind}), tuple(records))], applied)

    def _fetch(self, resource: Resource) -> tuple[list[Record], str, int]:
        """Every page of a listing: the records, the list's resourceVersion, the number of pages."""
        records: list[Record] = []
        version, pages = "", 0
        for items, page_version in list_batches(self._list_functions[resource.kind], resource, self._page_size):
            _convert(resource.api_kind, items, records)
            gc.freeze()  # the records stay: no later collection need walk them (runtime.freeze_heap)
            if page_version is not None:
                version, pages = page_version, pages + 1
        return records, version, pages

    def _watch(self, resource: Resource, status: ResourceStatus) -> bool:
        """Follow one watch stream until it ends; True if it made progress (delivered events or ran long)."""
        timeout = int(self._watch_timeout * (1 + self._rng.random())) or 1
        started = time.monotonic()
        try:
            response = self._list_functions[resource.kind](
                watch=True, resource_version=status.resource_version, allow_watch_bookmarks=True,
                timeout_seconds=timeout, label_selector=resource.label_selector,
                field_selector=resource.field_selector, _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT, timeout + self._read_timeout_margin))
        except Exception as error:
            if getattr(error, "status", None) == GONE:
                raise Gone(f"resourceVersion {status.resource_version} is too old "
                           f"({describe_error(error)})") from None
            raise
        self._streams[resource.kind] = response
        status.error = ""
        progress = False
        try:
            for lines in _line_batches(response, self._stop):
                updates: list[Update] = []
                triggers: list[tuple[str, str, float]] = []
                try:
                    for line in lines:
                        self._event(resource, status, line, updates, triggers)
                        progress = True
                finally:
                    # what was read before a failing line is applied: the resourceVersion moved past it
                    if updates:
                        self._applier.put(updates, self._programmed(triggers) if triggers else None)
        finally:
            self._streams.pop(resource.kind, None)
            response.close()
            response.release_conn()
        return progress or time.monotonic() - started >= min(1.0, timeout)

    def _programmed(self, triggers: list[tuple[str, str, float]]) -> Callable[[], None]:
        """Once applied, observe each change's DNS programming latency, as CoreDNS's kubernetes plugin does.

        Only for a slice of exactly one service (the `kubernetes.io/service-name` label); the service
        kind is read from the snapshot the change went into.
        """
        metrics = self._metrics
        assert metrics is not None

        def applied() -> None:
            now = time.time()
            services = self._registry.snapshot.services
            for namespace, service, trigger in triggers:
                entry = services.get((namespace, service))
                if entry is not None:
                    metrics.programmed(HEADLESS_WITH_SELECTOR if entry.service.headless else CLUSTER_IP, now - trigger)

        return applied

    def _event(self, resource: Resource, status: ResourceStatus, line: bytes, updates: list[Update],
               triggers: list[tuple[str, str, float]]) -> None:
        """Handle one watch event line: collect its update, move the resourceVersion on."""
        try:
            event = parse_event(line)
        except BadEvent as bad:
            raise WatchFailed(f"unreadable watch event: {bad}") from None
        obj = event.object
        if event.type == ERROR:
            if obj.get("code") == GONE:
                raise Gone(f"resourceVersion {status.resource_version} is too old ({obj.get('message', 'Gone')})")
            raise WatchFailed(f"the API ended the watch: {obj.get('code')} {obj.get('message', '')}")
        if event.type != BOOKMARK:
            obj["kind"] = resource.api_kind
            try:
                update = update_for(event.type, obj)
            except MalformedObject as bad:
                log.error("%s: %s; keeping its previous version", describe(obj), bad)
                update = None
            if update is not None and _kind_of(update) == resource.kind:
                updates.append(update)
                if resource.kind == ENDPOINT_SLICE and event.type != DELETED and self._metrics is not None:
                    trigger = trigger_time(obj)
                    if trigger is not None:
                        triggers.append(trigger)
        version = resource_version(obj)
        if version:
            status.resource_version = version


def _kind_of(update: Put | Remove) -> str:
    """The registry kind an update is of: a watch of local slices may see one labelled for an import."""
    return update.record.key[0] if isinstance(update, Put) else update.key[0]


def list_functions(api: Any) -> dict[str, Callable[..., Any]]:
    """The client's list (and watch) call of each kind."""
    core, discovery, custom = client.CoreV1Api(api), client.DiscoveryV1Api(api), client.CustomObjectsApi(api)
    return {NAMESPACE: core.list_namespace, SERVICE: core.list_service_for_all_namespaces,
            ENDPOINT_SLICE: discovery.list_endpoint_slice_for_all_namespaces, POD: core.list_pod_for_all_namespaces,
            SERVICE_IMPORT: partial(custom.list_cluster_custom_object, MCS_GROUP, MCS_VERSION, "serviceimports"),
            MULTICLUSTER_SLICE: discovery.list_endpoint_slice_for_all_namespaces}


def list_batches(list_function: Callable[..., Any], resource: Resource,
                 page_size: int = PAGE_SIZE) -> Iterator[tuple[list[Item], str | None]]:
    """A listing as it streams in: batches of list items (only the fields DNS reads, `pages.Item`);
    the last batch of each page comes with the list's resourceVersion, the others with None.  A page
    may hold the whole collection (the API's watch cache ignores `limit`): it is decoded a batch at a
    time, never held whole.  Raises Gone for a stale continue token, WatchFailed for an unreadable page."""
    token: str | None = None
    while True:
        try:
            response = list_function(
                limit=page_size, _continue=token, label_selector=resource.label_selector,
                field_selector=resource.field_selector, _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT, LIST_READ_TIMEOUT))
        except Exception as error:
            if getattr(error, "status", None) == GONE:
                raise Gone(f"the list's continue token expired ({describe_error(error)})") from None
            raise
        decoder = ListDecoder(resource.api_kind)
        try:
            for data in response.stream(READ_SIZE):
                items = decoder.feed(data)
                if items:
                    yield items, None
            items, version, token = decoder.close()
        except MalformedInput as error:
            raise WatchFailed(str(error)) from None
        finally:
            response.release_conn()
        yield items, version
        if not token:
            return


def _convert(kind: str, items: list[Item], records: list[Record]) -> None:
    """Add the records of list items of `kind` to `records`; a malformed item is logged and left out."""
    for item in items:
        try:
            record = record_of(kind, item)
        except MalformedObject as bad:
            log.error("%s: %s", describe(as_object(kind, item)), bad)
            continue
        if record is not None:
            records.append(record)


def _enter(resource: Resource, status: ResourceStatus, phase: Phase) -> None:
    if status.phase is not phase:
        log.debug("%s: %s -> %s", resource.plural, status.phase.value, phase.value)
        status.phase = phase


def trigger_time(obj: Mapping[str, Any]) -> tuple[str, str, float] | None:
    """(namespace, service, time) of an EndpointSlice's `endpoints.kubernetes.io/last-change-trigger-time`."""
    meta = obj.get("metadata") or {}
    text = (meta.get("annotations") or {}).get(TRIGGER_TIME_ANNOTATION)
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not text or not service:
        return None
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        log.warning('DnsProgrammingLatency cannot be calculated for Endpoints \'%s/%s\'; invalid "%s" annotation '
                    'RFC3339 value of "%s"', meta.get("namespace", ""), meta.get("name", ""), TRIGGER_TIME_ANNOTATION,
                    text)
        return None
    return str(meta.get("namespace") or "default").lower(), str(service).lower(), when


def _line_batches(response: Any, stop: threading.Event) -> Iterator[list[bytes]]:
    """The complete lines of a streamed response, in the groups they arrived in."""
    pending = b""
    while not stop.is_set():
        data = response.read1(READ_SIZE)
        if not data:
            if pending.strip():
                yield [pending]
            return
        pending += data
        if b"\n" not in data:
            continue
        *lines, pending = pending.split(b"\n")
        complete = [line for line in lines if line.strip()]
        if complete:
            yield complete


def describe_error(error: BaseException) -> str:
    """One line for a failed request: the API's Status message, or the exception's text."""
    status = getattr(error, "status", None)
    body = getattr(error, "body", None)
    if status:
        message = ""
        if body:
            try:
                message = json.loads(body).get("message", "")
            except (ValueError, AttributeError):
                message = str(body)[:200]
        return f"HTTP {status} {getattr(error, 'reason', '') or ''}{': ' + message if message else ''}".strip()
    text = str(error) or type(error).__name__
    return " ".join(text.split())[:300]


# Failures of the network or the API, logged in one line; anything else is a bug and gets a traceback.
_EXPECTED_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError, WatchFailed)
