"""The composition root: config -> registry -> sources -> forwarder -> pipeline -> transports.

Start-up order matters: the configuration is already validated; the data source is opened
before any socket is bound (a broken fixture directory or kubeconfig is an error, not an empty
zone); the upstreams are chosen and logged; then every listener is bound, and only then does the
server report itself up.  Fixture files are fully loaded before binding.  The Kubernetes API is
not waited for: its first listing arrives while the server already answers, cluster names with
SERVFAIL until every required resource is synced and every other name as usual (forwarded), so a
slow or unreachable API at start never takes DNS for names outside the cluster down with it.
Shutdown runs the other way: listeners close first (cancelling the forwarded queries in flight),
then sources (the API source's watch threads are stopped and joined), then the forwarder's
probes and prefetches.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Protocol

from dns_server.config import Config, ConfigError, format_address
from dns_server.forward import forwarder_for
from dns_server.pipeline import Pipeline
from dns_server.records import ENDPOINT_SLICE, NAMESPACE, POD, SERVICE
from dns_server.registry import Registry, Scope
from dns_server.scope import FixedNamespaces, SelectedNamespaces
from dns_server.sources.fixtures import FixtureSource
from dns_server.sources.replay import read_watch_file
from dns_server.transport.tcp import TcpServer
from dns_server.transport.udp import UdpServer

log = logging.getLogger("dns_server")

TCP_BACKLOG = 1024
SPARE_FILES = 256  # descriptors beyond forwarded queries and TCP clients: listeners, logs, the API


class StartupError(Exception):
    """The server cannot start (a busy port, unreadable data): one line for the user."""


class Source(Protocol):
    """What the composition root needs of a data source."""

    async def run(self) -> None: ...

    def summary(self) -> str: ...


def required_kinds(config: Config) -> frozenset[str]:
    """The kinds whose first listing must arrive before a cluster name may be called missing."""
    return frozenset({NAMESPACE, SERVICE, ENDPOINT_SLICE} | ({POD} if config.pods == "verified" else set()))


def scope_for(config: Config) -> Scope | None:
    """The namespace filter every update passes through, if the namespaces are limited."""
    if config.namespaces:
        return FixedNamespaces(config.namespaces)
    if config.namespace_labels:
        return SelectedNamespaces()
    return None


async def open_source(config: Config, registry: Registry) -> Source:
    """Fixture files, fully loaded, or the Kubernetes API, connected but not yet listed."""
    if config.fixtures is not None:
        overlay = await asyncio.to_thread(read_watch_file, config.watch_file) if config.watch_file else []
        fixtures = FixtureSource(config.fixtures, registry, overlay=overlay)
        await asyncio.to_thread(fixtures.load)
        return fixtures
    from dns_server.sources.kube import KubeSource, api_client, resources_for  # the client is heavy

    api = await asyncio.to_thread(api_client, config.kubeconfig, config.kube_context)
    return KubeSource(api, registry, resources_for(config))


@dataclass
class Listeners:
    udp: list[UdpServer] = field(default_factory=list)
    tcp: list[TcpServer] = field(default_factory=list)
    servers: list[asyncio.AbstractServer] = field(default_factory=list)

    def close(self) -> None:
        for server in self.servers:
            server.close()
        for tcp in self.tcp:
            tcp.close_all()
        for udp in self.udp:
            udp.close()


async def bind(config: Config, pipeline: Pipeline) -> Listeners:
    """UDP and TCP on every listen address; raises StartupError naming the address that failed."""
    loop = asyncio.get_running_loop()
    listeners = Listeners()
    try:
        for host, port in config.listen:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            udp = UdpServer(pipeline, max_pending=config.max_concurrent * 2)
            try:
                udp.open(host, port, family)
                tcp = TcpServer(pipeline, config.tcp_idle_timeout, config.max_tcp_connections)
                server = await loop.create_server(tcp.protocol, host, port, family=family,
                                                  reuse_address=True, backlog=TCP_BACKLOG)
            except OSError as error:
                raise StartupError(f"cannot listen on {format_address(host, port)}: {error.strerror or error}")
            listeners.udp.append(udp)
            listeners.tcp.append(tcp)
            listeners.servers.append(server)
            log.info("listening on %s (UDP and TCP)", format_address(host, port))
    except BaseException:
        listeners.close()
        raise
    return listeners


def raise_open_file_limit(config: Config) -> None:
    """Allow a descriptor for every forwarded query and TCP client (the soft limit is often 1024)."""
    wanted = config.max_concurrent + config.max_tcp_connections * len(config.listen) + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < wanted:
        log.warning("open files are limited to %d; --max-concurrent and --max-tcp-connections want %d",
                    new, wanted)


async def serve(config: Config, stop: asyncio.Event | None = None) -> None:
    """Run the server until `stop` is set (or SIGINT/SIGTERM)."""
    started = time.monotonic()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    registry = Registry(required_kinds=required_kinds(config), endpoint_pod_names=config.endpoint_pod_names,
                        clock=time.time, scope=scope_for(config))
    try:
        source = await open_source(config, registry)
    except ConfigError as error:
        raise StartupError(str(error)) from None
    raise_open_file_limit(config)
    forwarder = forwarder_for(config)
    pipeline = Pipeline(config, registry.snapshot, forwarder)
    registry.subscribe(pipeline.publish)
    pipeline.publish(registry.snapshot)
    try:
        listeners = await bind(config, pipeline)
    except BaseException:
        if forwarder is not None:
            await forwarder.close()
        raise
    tasks = [asyncio.create_task(source.run(), name="source")]
    if registry.snapshot.synced:
        log.info("serving zone %s and reverse zones from %s (ready in %.2f s)",
                 config.cluster_domain, source.summary(), time.monotonic() - started)
    else:
        log.info("serving zone %s and reverse zones from %s; cluster names answer SERVFAIL until the first "
                 "sync (listening after %.2f s)", config.cluster_domain, source.summary(), time.monotonic() - started)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        listeners.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if forwarder is not None:
            await forwarder.close()


def run(config: Config, log_level: str = "info") -> int:
    """Run the server in the foreground; returns the process exit status."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # the API source logs its own retries, once each
    try:
        import uvloop  # a faster event loop; the server works without it
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(config))
    except StartupError as error:
        print(f"dns-server: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
