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

Shutdown runs the other way: listeners close first (cancelling the forwarded queries in flight),
then sources (the API source's watch threads are stopped and joined), forwarders, HTTP endpoints.
"""

from __future__ import annotations

import asyncio
import logging
import random
import resource
import signal
import sys
from pathlib import Path
from typing import Callable

from dns_server.config import Config, ConfigError, format_address, zone_text
from dns_server.logs import setup_logging
from dns_server.querylog import QueryLogWriter
from dns_server.runtime import Runtime, StartupError, start

log = logging.getLogger("dns_server")

SPARE_FILES = 256  # descriptors beyond forwarded queries and TCP clients: listeners, logs, the API
Loader = Callable[[], Config]


class Server:
    """The running server: its runtime, its signals, its reloads."""

    def __init__(self, config: Config, loader: Loader | None) -> None:
        self.config = config
        self.loader = loader
        self.runtime: Runtime | None = None
        self.stopping = asyncio.Event()
        self.exit_status = 0
        self._lameduck = False
        self._reloading = asyncio.Lock()

    async def serve(self) -> None:
        """Run until stopped (a signal, or a fatal condition)."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._terminate)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        for signum in (signal.SIGHUP, signal.SIGUSR1):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(self.reload("signal")))
        raise_open_file_limit(self.config)
        self.query_log = QueryLogWriter(log_format=self.config.log_format)
        self.runtime = await start(self.config, query_log=self.query_log, on_loop=self._loop_found)
        self.runtime.adopt()
        announce(self.config, self.runtime)
        watcher = asyncio.create_task(self._watch_files()) if self._reload_settings() else None
        try:
            await self.stopping.wait()
        finally:
            if watcher is not None:
                watcher.cancel()
            await self.runtime.stop_unused(None)
            self.query_log.close()
            log.info("stopped")

    def _loop_found(self, message: str) -> None:
        """The loop plugin saw its probe come back: CoreDNS's fatal line, exit status 1."""
        logging.getLogger("dns_server.loop").critical(message)
        self.exit_status = 1
        self.stopping.set()

    def _terminate(self) -> None:
        lameduck = max((b.health.lameduck for b in self.config.blocks if b.health is not None), default=0.0)
        log.info("SIGTERM: Shutting down servers then terminating")
        if lameduck <= 0 or self._lameduck:
            self.stopping.set()
            return
        self._lameduck = True
        log.info("plugin/health: Going into lameduck mode for %gs", lameduck)
        asyncio.get_running_loop().call_later(lameduck, self.stopping.set)

    # -- reload ------------------------------------------------------------------------------------
    def _reload_settings(self) -> tuple[float, float] | None:
        settings = [b.reload for b in self.config.blocks if b.reload is not None]
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
            log.info("Reloading (%s)", why)
            try:
                config = await asyncio.to_thread(self.loader)
                runtime = await start(config, self.runtime, query_log=self.query_log, on_loop=self._loop_found)
            except (ConfigError, StartupError) as error:
                log.error("plugin/reload: Corefile changed but reload failed: %s", error)
                return False
            old = self.runtime
            self.config, self.runtime = config, runtime
            runtime.adopt()
            await old.stop_unused(runtime)
            log.info("plugin/reload: Running configuration SHA512 = %s", config.corefile_hash)
            log.info("Reloading complete")
            return True


def _fingerprint(files: tuple[Path, ...]) -> tuple[tuple[str, bytes], ...]:
    """The contents of the watched files (a file that cannot be read counts as empty)."""
    out = []
    for path in files:
        try:
            out.append((str(path), path.read_bytes()))
        except OSError:
            out.append((str(path), b""))
    return tuple(out)


def announce(config: Config, runtime: Runtime) -> None:
    """CoreDNS's start-up lines (one per zone and port), then what each block serves from where."""
    for block in config.blocks:
        for key in block.keys:
            where = f" on {', '.join(block.bind)}" if block.bind else ""
            log.info("%s:%d%s", zone_text(key.zone), key.port, where)
    for block in config.blocks:
        kubernetes = block.kubernetes
        if kubernetes is not None:
            cluster = runtime.clusters[kubernetes.source]
            state = "" if cluster.synced else "; its names answer SERVFAIL until the first sync"
            log.info("plugin/kubernetes: serving zone %s from %s%s", ", ".join(kubernetes.zones),
                     cluster.source.summary(), state)
        for forward in block.forward:
            log.info("plugin/forward: forwarding names in %s to %s (policy %s%s)", zone_text(forward.from_zone),
                     ", ".join(str(u) for u in forward.to), forward.policy.value,
                     f", max_concurrent {forward.max_concurrent}" if forward.max_concurrent else "")
        if block.cache is not None and block.forward:
            cache = block.cache
            log.info("plugin/cache: caching forwarded answers (success %d, denial %d%s%s)", cache.success_capacity,
                     cache.denial_capacity, ", prefetch" if cache.prefetch_amount else "",
                     f", serve_stale {cache.serve_stale:g} s" if cache.serve_stale else "")
    for (host, port) in runtime.listeners:
        log.info("listening on %s (UDP and TCP)", format_address(host, port))
    if config.corefile_hash:
        log.info("plugin/reload: Running configuration SHA512 = %s", config.corefile_hash)


def raise_open_file_limit(config: Config) -> None:
    """Allow a descriptor for every forwarded query and TCP client (the soft limit is often 1024)."""
    concurrent = sum(f.max_concurrent or 1000 for b in config.blocks for f in b.forward)
    listeners = sum(len(b.bind or (1, 2)) * len(b.ports) for b in config.blocks)
    wanted = concurrent + config.max_tcp_connections * listeners + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < wanted:
        log.warning("open files are limited to %d; the forwarders and TCP listeners may want %d", new, wanted)


def run(config: Config, loader: Loader | None = None) -> int:
    """Run the server in the foreground; returns the process exit status."""
    setup_logging(config.log_level, config.log_format)
    try:
        import uvloop  # a faster event loop; the server works without it
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run

    async def main() -> int:
        server = Server(config, loader)
        await server.serve()
        return server.exit_status

    try:
        return runner(main())
    except StartupError as error:
        print(f"dns-server: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
