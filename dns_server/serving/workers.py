"""Worker processes: each answers DNS on every listen address from cluster data its supervisor streams.

The supervisor (dns_server.supervisor) runs the sources and their registries; a worker is forked
from it, so it starts with a copy of every registry (shared copy-on-write), and from then on
applies the same batches of updates in the same order, at the same time stamps, to its copy: the
registry's `journal` frames each batch once for every worker, and each worker's event loop
(`WorkerLink`) applies it as soon as it arrives.  The copies never differ for long, and the sources
talk to the API once.

The channel is a socket pair carrying length-prefixed pickles, one message per frame (records and
updates pickled as constructor calls, `BY_CONSTRUCTOR`):
- supervisor -> worker: `("batch", number, cluster, updates, now)`, `("ping", number)` (a
  heartbeat), `("scrape",)`;
- worker -> supervisor: `("ack", number)` once a batch is published or a ping read, by the event
  loop that answers DNS (a worker that stops acknowledging is hung: the supervisor restarts it),
  `("up", listeners, synced)` once its listeners are bound, `("synced",)` when every cluster it
  serves has had its first sync, `("warm",)` when its first answers made ahead are kept
  (serving/warmup.py), `("failed", message)` when it cannot start, `("metrics", families)` in
  reply to a scrape.
A worker whose channel closes (its supervisor is gone) stops.
"""

from __future__ import annotations

import asyncio
import copyreg
import io
import logging
import os
import pickle
import queue
import signal
import socket
import struct
import threading
import time
from operator import attrgetter
from typing import Any, Callable, cast, get_args

from prometheus_client.metrics_core import Metric

from dns_server.cluster.records import Endpoint, Port, Record
from dns_server.cluster.registry import Registry
from dns_server.cluster.sources.settings import SourceSettings
from dns_server.cluster.updates import Update
from dns_server.config.model import Config
from dns_server.errors import StartupError
from dns_server.observability.metrics import Metrics
from dns_server.plugins.health import lameduck_of
from dns_server.plugins.log import QueryLogWriter
from dns_server.serving.answer_table import View
from dns_server.serving.runtime import Cluster, Runtime, start

log = logging.getLogger("dns_server")

LENGTH = struct.Struct(">I")
LOOP_FOUND = 1  # a worker's exit status when its loop check found a loop: the whole server stops with 1
FAILED = 2  # a worker that could not start, or that an exception stopped
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

Message = tuple[Any, ...]


def frame(message: Message) -> bytes:
    buffer = io.BytesIO()
    buffer.write(bytes(LENGTH.size))
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = BY_CONSTRUCTOR
    pickler.dump(message)
    data = buffer.getbuffer()
    LENGTH.pack_into(data, 0, len(data) - LENGTH.size)
    return bytes(data)


def unframe(received: bytearray) -> list[Message]:
    """The whole messages at the start of `received`, taken out of it (a partial one stays)."""
    messages = []
    start = 0
    while len(received) - start >= LENGTH.size:
        end = start + LENGTH.size + LENGTH.unpack_from(received, start)[0]
        if len(received) < end:
            break
        messages.append(pickle.loads(received[start + LENGTH.size:end]))
        start = end
    del received[:start]
    return messages


def read_message(channel: socket.socket) -> Message | None:
    """The next message, or None once the other side has closed the channel."""
    header = _read_exactly(channel, LENGTH.size)
    if header is None:
        return None
    body = _read_exactly(channel, LENGTH.unpack(header)[0])
    return None if body is None else pickle.loads(body)


def _read_exactly(channel: socket.socket, count: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < count:
        try:
            chunk = channel.recv(min(count - len(chunks), 1 << 20))
        except OSError:
            return None
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _by_constructor(cls: type[Any]) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    """Pickle a frozen dataclass with slots as a call of its constructor with its fields.

    The default (dataclasses' `__setstate__`, a Python loop over the fields of every object) made
    unpickling a batch of EndpointSlices cost 65 µs an event, paid by every worker; a constructor
    call costs 24, and pickling falls from 84 to 15 (attrgetter reads the fields in C).
    """
    fields = attrgetter(*cls.__slots__)
    if len(cls.__slots__) == 1:
        return lambda record: (cls, (fields(record),))
    return lambda record: (cls, fields(record))


BY_CONSTRUCTOR = copyreg.dispatch_table | {cls: _by_constructor(cls) for cls in (*get_args(Record), Port, Endpoint,
                                                                                  *get_args(Update))}


class Relayed:
    """A worker's source: the supervisor's, whose updates arrive over the channel."""

    def __init__(self, summary: str) -> None:
        self._summary = summary

    async def run(self) -> None:
        await asyncio.Event().wait()  # the WorkerLink applies the updates; this only holds the place

    def summary(self) -> str:
        return self._summary


def relayed(cluster: Cluster, loop: asyncio.AbstractEventLoop) -> Cluster:
    """In a fresh worker: its own cluster over the registry the fork copied, publishing on `loop`."""
    registry = cluster.registry
    registry.journal = None
    if cluster.published is not None:
        registry.unsubscribe(cluster.published)  # the supervisor's subscriber, bound to its event loop
    own = Cluster(cluster.settings, registry, Relayed(cluster.source.summary()), View(registry.snapshot))
    own.connect(loop)
    return own


class WorkerLink(asyncio.Protocol):
    """The worker's end of the channel, read by the event loop that answers DNS as soon as it is
    readable: a batch is applied there, with no second thread to hand the interpreter lock to and
    back (each hand-over waits for the other thread to be scheduled, longer the busier the cores),
    and every numbered message is acknowledged once the loop has run what it scheduled (a batch's
    publication): a worker whose loop is stopped or stuck acknowledges nothing, and the supervisor
    finds it hung."""

    def __init__(self, registries: dict[int, Registry], metrics: Metrics, closed: Callable[[], None]) -> None:
        self._registries = registries
        self._metrics = metrics
        self._closed = closed
        self._transport: asyncio.Transport | None = None
        self._received = bytearray()
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._synced = self.synced()

    @classmethod
    async def open(cls, channel: socket.socket, registries: dict[int, Registry], metrics: Metrics,
                   closed: Callable[[], None]) -> WorkerLink:
        """The link over `channel`; `closed()` is called once the supervisor has closed its end."""
        _, link = await asyncio.get_running_loop().create_unix_connection(lambda: cls(registries, metrics, closed),
                                                                          sock=channel)
        return link

    def synced(self) -> bool:
        return all(registry.snapshot.synced for registry in self._registries.values())

    def send(self, message: Message) -> None:
        if self._transport is not None and not self._transport.is_closing():  # else the supervisor is gone
            self._transport.write(frame(message))

    async def close(self) -> None:
        """Send what is still queued, then close the channel."""
        if self._transport is not None:
            self._transport.close()
        await self._gone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are no subclass of it

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone.set_result(None)
        self._closed()

    def data_received(self, data: bytes) -> None:
        self._received += data
        for message in unframe(self._received):
            if message[0] == "batch":
                self._apply(*message[2:])
            elif message[0] == "scrape":
                self.send(("metrics", list(self._metrics.registry.collect())))
            if message[0] in ("batch", "ping"):  # in order, once the loop has run what the message scheduled
                asyncio.get_running_loop().call_soon(self.send, ("ack", message[1]))

    def _apply(self, cluster: int, updates: list[Any], now: float | None) -> None:
        registry = self._registries.get(cluster)
        if registry is None:
            return  # a cluster of another generation's configuration
        try:
            registry.apply(updates, now)
        except Exception:  # a bug: keep the last good snapshot and carry on, as the applier does
            log.exception("applying %d updates failed", len(updates))
        if not self._synced and self.synced():
            self._synced = True
            self.send(("synced",))


def run_worker(config: Config, clusters: dict[SourceSettings, Cluster], ids: dict[SourceSettings, int],
               channel: socket.socket, index: int) -> int:
    """Serve `config` in this freshly forked process until told to stop; its exit status."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(config, clusters, ids, channel, index))
    return uvloop.run(_serve(config, clusters, ids, channel, index))


async def _serve(config: Config, clusters: dict[SourceSettings, Cluster], ids: dict[SourceSettings, int],
                 channel: socket.socket, index: int) -> int:
    """The worker's life.  The loop check (`loop`) runs in worker 0 only: N probes would each arrive
    once at some worker, and one worker seeing another's would forward it as any name."""
    loop = asyncio.get_running_loop()
    own = {settings: relayed(cluster, loop) for settings, cluster in clusters.items()}
    metrics = Metrics(revision=os.environ.get("DNS_SERVER_REVISION", ""))
    metrics.set_plugins(config.blocks)
    query_log = QueryLogWriter(log_format=config.log_format)
    stopping = asyncio.Event()
    status = 0

    def loop_found(message: str) -> None:
        nonlocal status
        logging.getLogger("dns_server.plugins.loop").critical(message)
        status = LOOP_FOUND
        stopping.set()

    link = await WorkerLink.open(channel, {ids[settings]: cluster.registry for settings, cluster in own.items()},
                                 metrics, stopping.set)
    try:
        runtime = await start(config, Runtime(config, clusters=own), metrics=metrics, query_log=query_log,
                              on_loop=loop_found if index == 0 else None, worker=True)
    except StartupError as error:
        link.send(("failed", str(error)))
        await link.close()
        query_log.close()
        return FAILED
    runtime.adopt()
    _handle_signals(loop, config, stopping)
    link.send(("up", list(runtime.listeners), link.synced()))
    runtime.warmup.on_warm = lambda: link.send(("warm",))
    await stopping.wait()
    await runtime.stop_unused(None)
    await link.close()
    query_log.close()
    return status


def _handle_signals(loop: asyncio.AbstractEventLoop, config: Config, stopping: asyncio.Event) -> None:
    """SIGTERM: stop after the lameduck (at once the second time); SIGINT: at once.  The supervisor
    sends them, and logs for all; reloads are its own (a worker ignores SIGHUP and SIGUSR1)."""
    lameduck = lameduck_of(config.blocks)
    terminating = False

    def terminate() -> None:
        nonlocal terminating
        if lameduck <= 0 or terminating:
            stopping.set()
        else:
            loop.call_later(lameduck, stopping.set)
        terminating = True

    loop.add_signal_handler(signal.SIGTERM, terminate)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    for ignored in (signal.SIGHUP, signal.SIGUSR1):
        signal.signal(ignored, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked since the fork: one sent meanwhile arrives now


class WorkerHandle:
    """The supervisor's end of one worker: its channel, a receiving thread, and a sending one for
    what the channel cannot take at once.

    `on_up(handle)` and `on_exit(handle, status)` are called on the supervisor's event loop.
    """

    def __init__(self, index: int, pid: int, channel: socket.socket, loop: asyncio.AbstractEventLoop,
                 on_exit: Callable[[WorkerHandle, int], None]) -> None:
        self.index = index
        self.pid = pid
        self.channel = channel
        self.up: asyncio.Future[list[tuple[str, int]]] = loop.create_future()  # its listen addresses
        self.exited: asyncio.Future[int] = loop.create_future()  # its wait status
        self.synced = False
        self.warm = False  # its first answers made ahead are kept
        self.retiring = False  # asked to stop: its exit is no crash
        self.hung = False  # killed for acknowledging nothing (supervisor.HUNG)
        self.last_families: list[Metric] = []  # its latest scrape: what it counted, once it is gone
        self._loop = loop
        self._on_exit = on_exit
        self._failure = ""
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._replies: queue.SimpleQueue[list[Metric]] = queue.SimpleQueue()
        self._scraping = threading.Lock()
        self._posting = threading.Lock()
        self._unacknowledged: dict[int, float] = {}  # number -> when posted (monotonic), oldest first
        self._queued = 0  # frames (or their ends) left to the sending thread, not sent yet

    def start(self) -> None:
        threading.Thread(target=self._send, name=f"worker {self.index} out", daemon=True).start()
        threading.Thread(target=self._receive, name=f"worker {self.index} in", daemon=True).start()

    def post(self, data: bytes, number: int | None = None) -> None:
        """Send a frame to the worker (from any thread; never blocks): what the socket takes at once
        when nothing waits before it, the rest through the sending thread (whose waking up would
        delay every batch on busy cores); a `number`ed one (a batch, a ping) is to be acknowledged."""
        with self._posting:
            if number is not None:
                self._unacknowledged[number] = time.monotonic()
            if not self._queued:
                try:
                    data = data[self.channel.send(data, socket.MSG_DONTWAIT):]
                except BlockingIOError:
                    pass
                except OSError:
                    return  # the worker is gone: `_receive` reports it
                if not data:
                    return
            self._queued += 1
            self._outbox.put(data)

    def silent_for(self, now: float) -> float:
        """Seconds the oldest message the worker has not acknowledged has waited (0 when none has)."""
        with self._posting:
            oldest = next(iter(self._unacknowledged.values()), now)
        return now - oldest

    def signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def scrape(self, timeout: float) -> list[Metric]:
        """The worker's metric families now, or (no reply within `timeout`) the latest it sent."""
        with self._scraping:
            while not self._replies.empty():
                self._replies.get_nowait()  # a late reply to an earlier scrape
            self.post(SCRAPE)
            try:
                self.last_families = self._replies.get(timeout=timeout)
            except queue.Empty:
                log.warning("worker %d (pid %d) did not report its metrics within %g s", self.index, self.pid, timeout)
        return self.last_families

    def _send(self) -> None:
        while (data := self._outbox.get()) is not None:
            try:
                self.channel.sendall(data)
            except OSError:
                return  # the worker is gone: `_receive` reports it
            with self._posting:
                self._queued -= 1

    def _receive(self) -> None:
        while (message := read_message(self.channel)) is not None:
            if message[0] == "up":
                self._loop.call_soon_threadsafe(self._came_up, message[1], message[2])
            elif message[0] == "ack":
                with self._posting:
                    self._unacknowledged.pop(message[1], None)
            elif message[0] == "synced":
                self.synced = True
            elif message[0] == "warm":
                self.warm = True
            elif message[0] == "failed":
                self._failure = message[1]
            elif message[0] == "metrics":
                self._replies.put(message[1])
        _, status = os.waitpid(self.pid, 0)
        self._outbox.put(None)
        self.channel.close()
        self._loop.call_soon_threadsafe(self._exited, status)

    def _came_up(self, listeners: list[tuple[str, int]], synced: bool) -> None:
        self.synced = self.synced or synced
        if not self.up.done():
            self.up.set_result(listeners)

    def _exited(self, status: int) -> None:
        if not self.up.done():
            self.up.set_exception(StartupError(self._failure or f"worker {self.index} (pid {self.pid}) "
                                                                f"{describe_exit(status)} before answering"))
        self.exited.set_result(status)
        self._on_exit(self, status)


SCRAPE = frame(("scrape",))


def describe_exit(status: int) -> str:
    """A wait status as a log line says it: `exited with status 2`, `was killed by signal 9 (SIGKILL)`."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        return f"was killed by signal {number} ({signal.Signals(number).name})"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"
