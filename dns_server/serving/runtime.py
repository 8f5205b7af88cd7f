"""The running server assembled from a Config: clusters, blocks, listeners.  Used by app.py only.

- A *cluster* is one registry with its source (fixture files or the Kubernetes API) and its view:
  every kubernetes block with the same source settings shares one (one set of watches).
- A *block* is a server block as the pipeline runs it: its settings, its cluster's view, its hosts
  table and its outbound side (cache and forwarders).
- A *listener* is one address and port (UDP and TCP) with its pipeline: the blocks that serve zones
  there, longest zone first.  A block without `bind` listens on every IPv4 and IPv6 address.

`Runtime.start(config, previous)` builds everything from a Config.  Given the runtime it replaces
(a reload), it keeps what stays the same: a cluster whose source settings are unchanged keeps its
registry and watches, and a listener whose address is unchanged keeps its sockets (only its
pipeline is swapped).  Everything else of the old runtime is stopped by `stop_unused`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

from dns_server.cluster.registry import Registry
from dns_server.cluster.snapshot import Change, ServiceKey, Snapshot
from dns_server.cluster.sources.fixtures import FixtureSource
from dns_server.cluster.sources.replay import read_watch_file
from dns_server.cluster.sources.settings import SourceSettings
from dns_server.config.model import Config, ServerBlock, format_address
from dns_server.errors import ConfigError, StartupError
from dns_server.observability.metrics import Metrics, server_label
from dns_server.plugins import chain_for, forward, kubernetes
from dns_server.plugins.bufsize import bufsize_of
from dns_server.plugins.cache import ForwardCache, Kind
from dns_server.plugins.errors import ErrorLog
from dns_server.plugins.forward.forwarder import Forwarder
from dns_server.plugins.forward.outbound import Outbound
from dns_server.plugins.hosts import (
    Hosts,
    HostsEntry,
    HostsSettings,
    HostsTable,
    parse_hosts,
)
from dns_server.plugins.log import QueryLog, QueryLogWriter
from dns_server.plugins.loop import LoopProbe
from dns_server.protocol.names import zone_text
from dns_server.serving.answer_table import AnswerTable, View
from dns_server.serving.router import Block, ErrorReporter, Pipeline
from dns_server.serving.tcp import TcpServer
from dns_server.serving.udp import UdpServer
from dns_server.serving.warmup import Warmup

log = logging.getLogger("dns_server")

TCP_BACKLOG = 1024
WILDCARD_HOSTS = ("0.0.0.0", "::")
MAX_PENDING_UDP = 2000  # forwarded queries in flight per UDP socket (bounds memory; forward refuses long before)
NO_CLUSTER = View(Snapshot.empty(synced=True))  # blocks without kubernetes: nothing to read
FREEZE_POLL = 1.0  # seconds between two looks at the answer tables' growth
FREEZE_GROWTH = 2000  # new answers that are frozen out of the collector's full collections
STARTUP_POLL = 0.5  # CoreDNS logs "waiting for Kubernetes API" every 0.5 s


class Source(Protocol):
    """What the runtime needs of a data source."""

    async def run(self) -> None: ...

    def summary(self) -> str: ...


@dataclass(eq=False)
class Cluster:
    """A registry, the source that feeds it, and the event loop's view of it."""

    settings: SourceSettings
    registry: Registry
    source: Source
    view: View
    runtime: Runtime | None = None  # whose pipelines hear its publications (replaced on reload)
    task: asyncio.Task[None] | None = None
    published: Callable[[Snapshot, Change], None] | None = None  # its subscription to the registry

    def connect(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver the registry's publications on `loop` (they happen on the applying thread)."""

        def published(snapshot: Snapshot, change: Change) -> None:
            loop.call_soon_threadsafe(self.deliver, snapshot, change)

        self.registry.subscribe(published)
        self.published = published

    @property
    def synced(self) -> bool:
        return self.registry.snapshot.synced

    def deliver(self, snapshot: Snapshot, change: Change) -> None:
        """A publication of the registry, on the event loop: the view moves on, the pipelines invalidate,
        and the questions about what became readable are answered ahead."""
        before = self.view.snapshot
        serial_changed = snapshot.serial != before.serial
        self.view.snapshot = snapshot
        if self.runtime is not None:
            for pipeline in self.runtime.pipelines:
                pipeline.publish(self.view, change, serial_changed)
            if change.synced:
                self.runtime.answer_ahead(self.view)
            elif change.services and snapshot.synced:
                added = [key for key in change.services if key in snapshot.services and key not in before.services]
                if added:
                    self.runtime.answer_ahead(self.view, added)
        if change.replaced and snapshot.synced:
            freeze_heap()


def freeze_heap(generation: int = 1) -> None:
    """Keep the cluster data out of later full garbage collections.

    A full collection walks every tracked object, and the records and snapshot of 10,000 services
    and 50,000 endpoints are a quarter of a million of them: it comes every several seconds while
    answers are being built or watch events applied, and stops every thread, DNS answers included,
    for tens of milliseconds.  Records hold no reference cycles, so reference counting frees them;
    after `gc.freeze()` the collector walks only what was allocated since.  The young generations
    are collected first (cheap) so that fresh cyclic garbage is not frozen with the data.  Done
    whenever whole kinds were loaded: the first sync, a relist, a reload of the fixture files.
    `generation` 2 collects everything not frozen yet first: affordable when that is little.
    """
    gc.collect(generation)
    gc.freeze()


@dataclass
class Listener:
    """One address and port: its sockets and the pipeline answering on them."""

    host: str
    port: int
    pipeline: Pipeline
    udp: UdpServer
    tcp: TcpServer
    server: asyncio.AbstractServer

    def close(self) -> None:
        self.server.close()
        self.tcp.close_all()
        self.udp.close()


@dataclass
class Runtime:
    config: Config
    clusters: dict[SourceSettings, Cluster] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    listeners: dict[tuple[str, int], Listener] = field(default_factory=dict)
    outbounds: list[Outbound] = field(default_factory=list)
    error_logs: list[ErrorLog] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # hosts reloads, error summaries, warm-up
    warmup: Warmup = field(default_factory=lambda: Warmup(starting=False, synced=lambda: True))

    @property
    def pipelines(self) -> list[Pipeline]:
        return [listener.pipeline for listener in self.listeners.values()]

    def synced(self) -> bool:
        return all(cluster.synced for cluster in self.clusters.values())

    def not_ready(self) -> list[str]:
        """The plugins not ready yet (the `ready` plugin's list): `kubernetes` until every cluster synced
        and, after a start, its stub questions were answered ahead (serving/warmup.py)."""
        return ["kubernetes"] if not self.synced() or self.warmup.starting else []

    def answer_ahead(self, view: View, services: list[ServiceKey] | None = None) -> None:
        """Answer ahead, on every listener, what pods will ask about `services` (None: all) of `view`."""
        snapshot = view.snapshot
        for pipeline in self.pipelines:
            blocks = dict.fromkeys(block for _, block in pipeline.routes if block.view is view)
            self.warmup.add(pipeline, (question for block in blocks
                                       for question in block.chain.stub_questions(snapshot, services)))

    def adopt(self) -> None:
        """Make this the runtime its clusters publish to (after a reload has succeeded)."""
        for cluster in self.clusters.values():
            cluster.runtime = self

    async def stop_unused(self, successor: Runtime | None) -> None:
        """Stop what `successor` (None: nothing) does not take over: listeners, sources, forwarders."""
        kept_listeners = successor.listeners if successor is not None else {}
        for address, listener in self.listeners.items():
            if kept_listeners.get(address) is not listener:
                listener.close()
        kept_clusters = successor.clusters.values() if successor is not None else ()
        for cluster in self.clusters.values():
            if cluster not in kept_clusters and cluster.task is not None:
                cluster.task.cancel()
                await asyncio.gather(cluster.task, return_exceptions=True)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for outbound in self.outbounds:
            await outbound.close()
        for error_log in self.error_logs:
            error_log.close()

    def hosts_changed(self, block: Block, table: HostsTable) -> None:
        """A block's hosts file was read again: answers from the old table are dropped."""
        _hosts_of(block).table = table
        for pipeline in self.pipelines:
            pipeline.publish(block.view, Change(hosts=True), False)


async def start(config: Config, previous: Runtime | None = None, metrics: Metrics | None = None,
                query_log: QueryLogWriter | None = None, on_loop: Callable[[str], None] | None = None,
                worker: bool = False) -> Runtime:
    """Build and start a runtime for `config`, taking over what `previous` has that stays the same.

    A `worker` process (dns_server.serving.workers) shares its listen addresses with the other
    workers (SO_REUSEPORT) and does not wait for the clusters' `startup_timeout`: its supervisor
    did.  Raises StartupError.  On failure nothing of `previous` has been touched but
    what it shares.
    """
    runtime = Runtime(config)
    runtime.clusters = await open_clusters(config, previous.clusters if previous is not None else {}, metrics,
                                           await_sync=not worker)
    for block_settings in config.blocks:
        running = await _block(block_settings, runtime, metrics if block_settings.setting("prometheus") else None)
        if block_settings.setting("loop") and on_loop is not None:
            running.loop = LoopProbe(block_settings.zones[0], on_loop)
        runtime.blocks.append(running)
    if runtime.error_logs:
        runtime.tasks.append(asyncio.create_task(_summarise_errors(runtime.error_logs)))
    routes = _routes(runtime.blocks)
    swaps: list[tuple[Listener, Pipeline]] = []  # kept sockets get their new pipeline once all is bound
    tables: dict[str, list[AnswerTable]] = {}
    try:
        for (host, port), blocks in routes.items():
            metered = metrics if any(block.settings.setting("prometheus") for _, block in blocks) else None
            server = _server_label(host, port, blocks)
            table = AnswerTable()
            if metered is not None:
                tables.setdefault(server, []).append(table)  # both families of a wildcard listener share a label
                table.counters = metered.answer_cache(server, _entries_of(tables[server]))
            pipeline = Pipeline(blocks, server, "2" if ":" in host else "1",
                                metered.queries if metered is not None else None, table, query_log=query_log,
                                local=host, port=port, panicked=metrics.panics.inc if metrics is not None else None)
            reused_listener = previous.listeners.get((host, port)) if previous is not None else None
            if reused_listener is not None:
                swaps.append((reused_listener, pipeline))
                runtime.listeners[(host, port)] = reused_listener
            else:
                listener = await _bind(host, port, pipeline, config, shared=worker)
                if listener is not None:
                    runtime.listeners[(host, port)] = listener
    except BaseException:
        for address, listener in runtime.listeners.items():
            if previous is None or previous.listeners.get(address) is not listener:
                listener.close()
        for settings, cluster in runtime.clusters.items():
            if (previous is None or previous.clusters.get(settings) is not cluster) and cluster.task is not None:
                cluster.task.cancel()
        raise
    for listener, pipeline in swaps:
        listener.pipeline = listener.udp.pipeline = listener.tcp.pipeline = pipeline
    runtime.tasks.append(asyncio.create_task(_freeze_new_answers(runtime)))
    runtime.warmup = Warmup(starting=previous is None or not previous.listeners, synced=runtime.synced)
    for view in dict.fromkeys(block.view for block in runtime.blocks if block.view.snapshot.synced):
        runtime.answer_ahead(view)
    runtime.tasks.append(asyncio.create_task(runtime.warmup.run()))
    for running in runtime.blocks:
        if running.loop is not None:
            host = running.settings.bind[0] if running.settings.bind else "127.0.0.1"
            runtime.tasks.append(asyncio.create_task(running.loop.probe(host, running.settings.keys[0].port,
                                                                        bool(running.settings.bind))))
    return runtime


async def open_clusters(config: Config, running: Mapping[SourceSettings, Cluster], metrics: Metrics | None,
                        await_sync: bool = True) -> dict[SourceSettings, Cluster]:
    """The clusters `config` reads (those `running` has, kept), their sources running; then, with
    `await_sync`, the longest `startup_timeout` waited for their first sync."""
    clusters: dict[SourceSettings, Cluster] = {}
    loop = asyncio.get_running_loop()
    for block in config.blocks:
        cluster_settings = kubernetes.settings_of(block)
        if cluster_settings is not None and cluster_settings.source not in clusters:
            settings = cluster_settings.source
            clusters[settings] = running.get(settings) or await _open_cluster(settings, loop, metrics)
            if metrics is not None:
                _report_cluster(metrics, clusters[settings])
    for cluster in clusters.values():
        if cluster.task is None:
            cluster.task = asyncio.create_task(cluster.source.run(), name=f"source {cluster.source.summary()}")
    if await_sync:
        await _wait_for_sync(config, clusters)
    return clusters


async def _wait_for_sync(config: Config, clusters: dict[SourceSettings, Cluster]) -> None:
    """Wait up to the longest `startup_timeout` for every cluster's first sync (kubernetes plugin)."""
    timeout = max((settings.startup_timeout for settings in map(kubernetes.settings_of, config.blocks)
                   if settings is not None), default=0.0)
    waited = 0.0
    while waited < timeout and not all(cluster.synced for cluster in clusters.values()):
        log.info("plugin/kubernetes: waiting for Kubernetes API before starting server")
        await asyncio.sleep(STARTUP_POLL)
        waited += STARTUP_POLL
    if timeout and not all(cluster.synced for cluster in clusters.values()):
        log.warning("plugin/kubernetes: starting server with unsynced Kubernetes API")


async def _open_cluster(settings: SourceSettings, loop: asyncio.AbstractEventLoop,
                        metrics: Metrics | None = None) -> Cluster:
    """A registry and its source: fixture files fully loaded, or the Kubernetes API connected but not listed."""
    registry = Registry(required_kinds=settings.required_kinds, endpoint_pod_names=settings.endpoint_pod_names,
                        clock=time.time, scope=settings.scope())
    source: Source
    try:
        if settings.fixtures is not None:
            overlay = await asyncio.to_thread(read_watch_file, settings.watch_file) if settings.watch_file else []
            fixtures = FixtureSource(settings.fixtures, registry, overlay=overlay, kinds=settings.required_kinds)
            await asyncio.to_thread(fixtures.load)
            source = fixtures
        else:
            from dns_server.cluster.sources.kube import (  # the client is heavy
                KubeSource,
                api_client,
                resources_for,
            )

            api = await asyncio.to_thread(api_client, settings)
            source = KubeSource(api, registry, resources_for(settings),
                                metrics=metrics.source() if metrics is not None else None)
    except ConfigError as error:
        raise StartupError(str(error)) from None
    cluster = Cluster(settings, registry, source, View(registry.snapshot))
    cluster.connect(loop)
    if registry.snapshot.synced:
        freeze_heap()  # the fixture files were read before anyone listened
    return cluster


async def _block(settings: ServerBlock, runtime: Runtime, metrics: Metrics | None) -> Block:
    cluster_settings = kubernetes.settings_of(settings)
    view = runtime.clusters[cluster_settings.source].view if cluster_settings is not None else NO_CLUSTER
    chain = chain_for(settings)
    outbound = None
    forwards = forward.settings_of(settings)
    if forwards:
        proxy = metrics.forwarder() if metrics is not None else None
        forwarders = [Forwarder(directive, random.Random(), proxy) for directive in forwards]
        cache = None
        cache_settings = settings.setting("cache")
        if cache_settings is not None:
            cache = ForwardCache(cache_settings, settings.zones)
            if metrics is not None:
                cache.stats = metrics.cache(_block_server(settings), ",".join(zone_text(z) for z in cache.zones),
                                            _cache_entries(cache))
        outbound = Outbound(forwarders, [directive.handles for directive in forwards], cache,
                            bufsize_of(settings))
        runtime.outbounds.append(outbound)
    errors: ErrorReporter | None = None
    errors_settings = settings.setting("errors")
    if errors_settings is not None:
        error_log = ErrorLog(errors_settings)
        runtime.error_logs.append(error_log)

        def report(rcode: int, name: str, qtype: int, reason: str) -> None:
            error_log.report(rcode, name, qtype, reason, time.monotonic())

        errors = report

    log_rules = settings.setting("log")
    block = Block(settings, view, chain, outbound, errors=errors, query_log=QueryLog(log_rules) if log_rules else None)
    hosts_settings: HostsSettings | None = settings.setting("hosts")
    if hosts_settings is not None:
        zones = hosts_settings.zones or settings.zones
        table, signature = await asyncio.to_thread(read_hosts, hosts_settings, zones, None)
        _hosts_of(block).table = table
        _report_hosts(metrics, hosts_settings, table)
        if hosts_settings.reload > 0 and hosts_settings.path is not None:
            runtime.tasks.append(asyncio.create_task(_reload_hosts(runtime, block, zones, signature, metrics)))
    return block


def _hosts_of(block: Block) -> Hosts:
    handler = block.chain.handler("hosts")
    assert isinstance(handler, Hosts)
    return handler


Signature = tuple[int, int, int] | None  # size, mtime and inode of a hosts file (None: absent)


def read_hosts(settings: HostsSettings, zones: tuple[str, ...], known: Signature) -> tuple[HostsTable, Signature]:
    """The hosts table of a block: its file (if it can be read) and its inline entries."""
    entries: tuple[HostsEntry, ...] = ()
    signature: Signature = None
    if settings.path is not None:
        try:
            stat = settings.path.stat()
            signature = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
            parsed = parse_hosts(settings.path.read_text(errors="replace"))
        except OSError as error:
            if known is not None or signature is None:
                log.warning("plugin/hosts: File does not exist or cannot be read: %s (%s)", settings.path,
                            error.strerror or error)
        else:
            entries = parsed.entries
            for bad in parsed.bad_lines:
                log.warning("plugin/hosts: %s:%d: %s; line skipped", settings.path, bad.line, bad.reason)
    inline = tuple(HostsEntry(address, names) for address, names in settings.inline)
    return HostsTable.build(entries, inline, zones, reverse=not settings.no_reverse), signature


def _report_hosts(metrics: Metrics | None, settings: HostsSettings, table: HostsTable) -> None:
    """coredns_hosts_entries and coredns_hosts_reload_timestamp_seconds, for a block with `prometheus`."""
    if metrics is not None:
        metrics.hosts_entries.labels(str(settings.path or "")).set(table.size)
        metrics.hosts_reload_timestamp.set(time.time())


async def _reload_hosts(runtime: Runtime, block: Block, zones: tuple[str, ...], signature: Signature,
                        metrics: Metrics | None) -> None:
    """The hosts plugin's `reload`: read the file again whenever it changed."""
    settings = _hosts_of(block).settings
    assert settings.path is not None
    while True:
        await asyncio.sleep(settings.reload)
        try:
            stat = settings.path.stat()
            now: Signature = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        except OSError:
            now = None
        if now != signature:
            table, signature = await asyncio.to_thread(read_hosts, settings, zones, signature)
            runtime.hosts_changed(block, table)
            _report_hosts(metrics, settings, table)
            log.info("plugin/hosts: reloaded %s", settings.path)


async def _freeze_new_answers(runtime: Runtime) -> None:
    """Keep the answer tables out of full garbage collections too, as they grow (see `freeze_heap`).

    A table fills with the first questions after a start or a change, a few objects per answer;
    the collector's full collection walks all of them each time, stopping every answer meanwhile
    (measured on the benchmark's 11,000 services: 30 and 71 ms of CPU in the first 30 s of saturated
    load; with these freezes, eight of at most 9 ms).  Each freeze first
    collects what is not frozen yet (a few thousand answers' objects: milliseconds), so no cyclic
    garbage is frozen; frozen answers are still freed by reference counting when dropped.  The
    price: an object in flight at a freeze (an upstream exchange) that later becomes cyclic garbage
    is never collected.
    """
    frozen = 0
    while True:
        await asyncio.sleep(FREEZE_POLL)
        entries = sum(len(pipeline.table) for pipeline in runtime.pipelines)
        if entries >= frozen + FREEZE_GROWTH:
            freeze_heap(generation=2)
            frozen = entries
        frozen = min(frozen, entries)  # answers dropped: count the growth from here


async def _summarise_errors(error_logs: list[ErrorLog]) -> None:
    """The errors plugin's `consolidate` summaries, once a second."""
    while True:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        for error_log in error_logs:
            error_log.flush(now)


def _routes(blocks: list[Block]) -> dict[tuple[str, int], list[tuple[str, Block]]]:
    """Every listen address, with the (zone, block) pairs served there."""
    routes: dict[tuple[str, int], list[tuple[str, Block]]] = {}
    for block in blocks:
        hosts = block.settings.bind or WILDCARD_HOSTS
        for key in block.settings.keys:
            for host in hosts:
                routes.setdefault((host, key.port), []).append((key.zone, block))
    return routes


def _entries_of(tables: list[AnswerTable]) -> Callable[[], int]:
    return lambda: sum(len(table) for table in tables)


def _cache_entries(cache: ForwardCache) -> Callable[[], tuple[int, int]]:
    return lambda: (cache.entries(Kind.SUCCESS), cache.entries(Kind.DENIAL))


def _block_server(settings: ServerBlock) -> str:
    """The metrics `server` label of a block's first listener."""
    return server_label(settings.bind[0] if settings.bind else "", settings.keys[0].port)


def _report_cluster(metrics: Metrics, cluster: Cluster) -> None:
    """The cluster's snapshot age and objects per kind, read when Prometheus scrapes."""
    metrics.snapshot(cluster.source.summary().split(" ", 1)[0], lambda: time.time() - cluster.view.snapshot.serial,
                     cluster.registry.counts)


def _server_label(host: str, port: int, blocks: list[tuple[str, Block]]) -> str:
    """The metrics `server` label: `dns://:53`, or `dns://<bind>:<port>` for a block with `bind`."""
    bound = all(block.settings.bind for _, block in blocks)
    return f"dns://{format_address(host, port) if bound else f':{port}'}"


async def _bind(host: str, port: int, pipeline: Pipeline, config: Config, shared: bool) -> Listener | None:
    """UDP and TCP on one address; raises StartupError naming it.  None for an IPv6 wildcard without IPv6.

    `shared`: every worker binds the address, and the kernel spreads queries over them (SO_REUSEPORT).
    """
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    udp = UdpServer(pipeline, max_pending=MAX_PENDING_UDP)
    try:
        udp.open(host, port, family, reuse_port=shared)
    except OSError as error:
        if host == "::" and not _ipv6_available():
            log.info("no IPv6 on this machine: listening on IPv4 only for port %d", port)
            return None
        raise StartupError(f"cannot listen on {format_address(host, port)}: {error.strerror or error}") from None
    tcp = TcpServer(pipeline, config.tcp_idle_timeout, config.max_tcp_connections)
    try:
        server = await loop.create_server(tcp.protocol, host, port, family=family, reuse_address=True,
                                          reuse_port=shared or None, backlog=TCP_BACKLOG)
    except OSError as error:
        udp.close()
        raise StartupError(f"cannot listen on {format_address(host, port)} (TCP): {error.strerror or error}") from None
    return Listener(host, port, pipeline, udp, tcp, server)


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True
