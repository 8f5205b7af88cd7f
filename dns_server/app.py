"""The composition root: a Config becomes a running server, and its lifecycle until exit.

Start-up: the configuration is already validated.  `runtime.start` opens every cluster's data
source (fixture files fully loaded; the Kubernetes API connected, its watches started) and, when a
kubernetes block asks for it (`startup_timeout`, as CoreDNS), waits that long for the first sync;
then it binds every listener; then the HTTP endpoints (health, ready, metrics) started, the loop probes
sent, and only then does the server report itself up.  An unsynced cluster is not waited for
beyond that: its names answer SERVFAIL until it is read, every other name as usual.

Signals, as CoreDNS: SIGTERM stops after the `health` plugin's lameduck (DNS and /health keep
answering meanwhile, /ready says "Shutting down"), SIGINT stops at once, SIGHUP and SIGUSR1 reload
the Corefile.  With `reload`, the Corefile and every file it imports are also checked for changes
every INTERVAL (plus up to JITTER).  A reload that fails leaves the running configuration serving.

With more than one worker (`Config.workers`), `dns_server.supervisor.Supervisor`, a Server whose
runtime is a generation of worker processes, runs instead; with one, nothing here changes.

Shutdown runs the other way: listeners close first (cancelling the forwarded queries in flight),
then sources (the API source's watch threads are stopped and joined), forwarders, HTTP endpoints.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import resource
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Collection, Protocol

from dns_server.cluster.sources.settings import SourceSettings
from dns_server.config.model import Config, format_address
from dns_server.errors import ConfigError, StartupError
from dns_server.observability.logs import log_event, setup_logging
from dns_server.observability.metrics import Metrics
from dns_server.plugins.health import lameduck_of
from dns_server.plugins.log import QueryLogWriter
from dns_server.protocol.names import zone_text
from dns_server.serving import udp
from dns_server.serving.http import EndpointError, HttpEndpoints
from dns_server.serving.runtime import Cluster, Runtime, start
from dns_server.tools import explain

log = logging.getLogger("dns_server")

SPARE_FILES = 256  # descriptors beyond forwarded queries and TCP clients: listeners, logs, the API
Loader = Callable[[], Config]


class Serving(Protocol):
    """What answers for a configuration: a Runtime, or a supervisor's generation of worker processes."""

    clusters: dict[SourceSettings, Cluster]

    @property
    def listeners(self) -> Collection[tuple[str, int]]: ...

    def not_ready(self) -> list[str]: ...

    def adopt(self) -> None: ...

    async def stop_unused(self, successor: Any) -> None: ...


class Server:
    """The running server: its runtime, its signals, its reloads."""

    def __init__(self, config: Config, loader: Loader | None) -> None:
        self.config = config
        self.loader = loader
        self.runtime: Serving | None = None
        self.metrics = Metrics(revision=os.environ.get("DNS_SERVER_REVISION", ""))
        self.endpoints = self._endpoints(config)
        self.query_log = QueryLogWriter(log_format=config.log_format)
        self.stopping = asyncio.Event()
        self.exit_status = 0
        self._lameduck = False
        self._reloading = asyncio.Lock()

    def _explain(self, query: str) -> tuple[int, str, bytes]:
        """The /explain page (`--explain-http`), over what the server serves now."""
        return explain.page(self._served(), query)

    def _served(self) -> list[explain.Served]:
        return explain.served_by(self.runtime) if isinstance(self.runtime, Runtime) else []

    def _readiness(self, config: Config) -> list[tuple[str, Callable[[], bool]]]:
        """The `ready` plugin's checks: `kubernetes` until every cluster has had its first sync."""
        if not any(block.setting("kubernetes") for block in config.blocks):
            return []
        return [("kubernetes", lambda: self.runtime is not None and not self.runtime.not_ready())]

    async def serve(self) -> None:
        """Run until stopped (a signal, or a fatal condition)."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._terminate)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        for signum in (signal.SIGHUP, signal.SIGUSR1):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(self.reload("signal")))
        raise_open_file_limit(self.config)
        self.metrics.set_plugins(self.config.blocks)
        try:
            self.endpoints.start()  # /ready says "kubernetes" while the first sync is awaited
        except EndpointError as error:
            raise StartupError(str(error)) from None
        try:
            self.runtime = await self._start(self.config, None)
        except BaseException:
            self.endpoints.stop()
            self.query_log.close()
            raise
        self.runtime.adopt()
        announce(self.config, self.runtime)
        watcher = asyncio.create_task(self._watch_files()) if self._reload_settings() else None
        try:
            await self.stopping.wait()
        finally:
            if watcher is not None:
                watcher.cancel()
            await self.runtime.stop_unused(None)
            self.endpoints.stop()
            self.query_log.close()
            log_event(log, "shutdown", "stopped", exit_status=self.exit_status)

    async def _start(self, config: Config, previous: Any) -> Serving:
        """What answers for `config`, taking over what `previous` keeps; raises StartupError."""
        if previous is not None and config.workers > 1:
            raise StartupError(f"this server was started with one worker: it cannot start {config.workers} on "
                               "reload (restart it)")
        return await start(config, previous, metrics=self.metrics, query_log=self.query_log, on_loop=self._loop_found)

    def _endpoints(self, config: Config) -> HttpEndpoints:
        return HttpEndpoints.for_config(config, self.metrics, self._readiness(config), explain=self._explain)

    def _loop_found(self, message: str) -> None:
        """The loop plugin saw its probe come back: CoreDNS's fatal line, exit status 1."""
        logging.getLogger("dns_server.plugins.loop").critical(message)
        self.exit_status = 1
        self.stopping.set()

    def _terminate(self) -> None:
        lameduck = lameduck_of(self.config.blocks)
        log_event(log, "shutdown", "SIGTERM: Shutting down servers then terminating", lameduck=lameduck)
        if lameduck <= 0 or self._lameduck:
            self.endpoints.begin_shutdown()
            self.stopping.set()
            return
        self._lameduck = True
        self.endpoints.begin_shutdown()  # logs the lameduck line; /ready now says "Shutting down"
        asyncio.get_running_loop().call_later(lameduck, self.stopping.set)

    # -- reload ------------------------------------------------------------------------------------
    def _endpoints_for(self, config: Config) -> HttpEndpoints:
        """The HTTP endpoints for a new configuration: the running ones unless their addresses change."""
        if _endpoint_addresses(config) == _endpoint_addresses(self.config):
            return self.endpoints
        self.endpoints.stop()  # the new ones may want the same ports
        try:
            return self._restart(config)
        except EndpointError:
            self.endpoints = self._restart(self.config)
            raise

    def _restart(self, config: Config) -> HttpEndpoints:
        endpoints = self._endpoints(config)
        endpoints.start()
        return endpoints

    def _reload_settings(self) -> tuple[float, float] | None:
        settings = [b.setting("reload") for b in self.config.blocks if b.setting("reload") is not None]
        if not settings or self.loader is None or not self.config.files:
            return None
        return min(s.interval for s in settings), min(s.jitter for s in settings)

    async def _watch_files(self) -> None:
        """The reload plugin: check the Corefile and its imports every INTERVAL + up to JITTER."""
        rng = random.Random()
        seen = _fingerprint(self.config.files)
        while True:
            timing = self._reload_settings()
            if timing is None:
                return
            interval, jitter = timing
            await asyncio.sleep(interval + rng.uniform(0, jitter))
            now = _fingerprint(self.config.files)
            if now != seen:
                seen = now
                await self.reload("the Corefile changed")

    async def reload(self, why: str) -> bool:
        """Load the configuration again and swap it in; on any error keep serving the old one."""
        if self.loader is None or self.runtime is None:
            log.warning("%s: nothing to reload (the server runs from flags)", why)
            return False
        async with self._reloading:
            log_event(log, "reload", f"Reloading ({why})", reason=why)
            try:
                config = await asyncio.to_thread(self.loader)
                endpoints = self._endpoints_for(config)
                try:
                    runtime = await self._start(config, self.runtime)
                except BaseException:
                    if endpoints is not self.endpoints:
                        endpoints.stop()
                        self.endpoints = self._restart(self.config)
                    raise
            except (ConfigError, StartupError, EndpointError) as error:
                self.metrics.reload_failed.inc()
                log_event(log, "reload", f"plugin/reload: Corefile changed but reload failed: {error}",
                          level=logging.ERROR, failed=True, error=str(error))
                return False
            old = self.runtime
            self.config, self.runtime, self.endpoints = config, runtime, endpoints
            runtime.adopt()
            self.metrics.set_plugins(config.blocks)
            self.metrics.set_reload_version(config.corefile_hash)
            await old.stop_unused(runtime)
            log.info("plugin/reload: Running configuration SHA512 = %s", config.corefile_hash)
            log_event(log, "reload", "Reloading complete", sha512=config.corefile_hash,
                      blocks=len(config.blocks), listeners=[format_address(*a) for a in runtime.listeners])
            return True


def _endpoint_addresses(config: Config) -> tuple[object, ...]:
    """What the HTTP endpoints of a configuration listen on (a reload restarts them when it differs)."""
    return tuple((b.setting("health"), b.setting("ready"), b.setting("prometheus")) for b in config.blocks)


def _fingerprint(files: tuple[Path, ...]) -> tuple[tuple[str, bytes], ...]:
    """The contents of the watched files (a file that cannot be read counts as empty)."""
    out = []
    for path in files:
        try:
            out.append((str(path), path.read_bytes()))
        except OSError:
            out.append((str(path), b""))
    return tuple(out)


def announce(config: Config, runtime: Serving) -> None:
    """CoreDNS's start-up lines (one per zone and port), then what each block serves from where."""
    for block in config.blocks:
        for key in block.keys:
            where = f" on {', '.join(block.bind)}" if block.bind else ""
            log_event(log, "startup", f"{zone_text(key.zone)}:{key.port}{where}", zone=zone_text(key.zone),
                      port=key.port, bind=list(block.bind))
    for block in config.blocks:
        kubernetes = block.setting("kubernetes")
        if kubernetes is not None:
            cluster = runtime.clusters[kubernetes.source]
            state = "" if cluster.synced else "; its names answer SERVFAIL until the first sync"
            log_event(log, "startup", f"plugin/kubernetes: serving zone {', '.join(kubernetes.zones)} from "
                      f"{cluster.source.summary()}{state}", plugin="kubernetes", zones=list(kubernetes.zones),
                      source=cluster.source.summary(), synced=cluster.synced, objects=cluster.registry.counts())
        external = block.setting("k8s_external")
        if external is not None and "" in external.zones:
            log.warning("plugin/k8s_external: it serves the root zone: it reads every name that reaches it as "
                        "<service>.<namespace> and answers NXDOMAIN for the others (nothing after it, forward "
                        "included, sees them); name its zones")
        for forward in block.setting("forward") or ():
            upstreams = [str(u) for u in forward.to]
            log_event(log, "startup", f"plugin/forward: forwarding names in {zone_text(forward.from_zone)} to "
                      f"{', '.join(upstreams)} (policy {forward.policy.value}"
                      + (f", max_concurrent {forward.max_concurrent})" if forward.max_concurrent else ")"),
                      plugin="forward", zone=zone_text(forward.from_zone), upstreams=upstreams,
                      policy=forward.policy.value)
        if block.setting("cache") is not None and block.setting("forward"):
            cache = block.setting("cache")
            log.info("plugin/cache: caching forwarded answers (success %d, denial %d%s%s)", cache.success_capacity,
                     cache.denial_capacity, ", prefetch" if cache.prefetch_amount else "",
                     f", serve_stale {cache.serve_stale:g} s" if cache.serve_stale else "")
    for (host, port) in runtime.listeners:
        log_event(log, "startup", f"listening on {format_address(host, port)} (UDP and TCP)",
                  address=format_address(host, port))
    if udp.MMSG is None:
        log.info("UDP: one system call per datagram (%s)", "DNS_SERVER_PURE_PYTHON=1" if udp.PURE_PYTHON
                 else "the compiled _mmsg module was not built: README, 'The compiled part'")
    if config.corefile_hash:
        log.info("plugin/reload: Running configuration SHA512 = %s", config.corefile_hash)


def raise_open_file_limit(config: Config) -> None:
    """Allow a descriptor for every forwarded query and TCP client (the soft limit is often 1024)."""
    concurrent = sum(f.max_concurrent or 1000 for b in config.blocks for f in b.setting("forward") or ())
    listeners = sum(len(b.bind or (1, 2)) * len(b.ports) for b in config.blocks)
    wanted = concurrent + config.max_tcp_connections * listeners + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < wanted:
        log.warning("open files are limited to %d; the forwarders and TCP listeners may want %d", new, wanted)


def run(config: Config, loader: Loader | None = None, kind: type[Server] = Server) -> int:
    """Run the server (a `kind` of it) in the foreground; returns the process exit status."""
    setup_logging(config.log_level, config.log_format)
    try:
        import uvloop  # a faster event loop; the server works without it
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run

    async def main() -> int:
        server = kind(config, loader)
        await server.serve()
        return server.exit_status

    try:
        return runner(main())
    except StartupError as error:
        print(f"dns-server: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
