"""The server with worker processes (`--workers N`, `multisocket N`, N > 1): this process feeds them.

The supervisor runs what one process would run but the listeners: the sources and their
registries (one set of API watches, whatever N), the HTTP endpoints, signals and reloads.  After
the first sync (or the `startup_timeout`) it forks N workers (dns_server.serving.workers), each of
which binds every listen address with SO_REUSEPORT and answers from its copy of the registries,
kept current by the batches of updates the supervisor streams to it.

- /metrics adds up what the workers report, asked at each scrape, to the supervisor's own
  families (`merge_families`), plus `dns_server_worker_requests_total{worker}`; what a worker that
  is gone counted stays in the sums, as of its last scrape.
- /ready is 200 once every cluster and every worker has had its first sync; /health is ours.
- A reload starts a new generation of workers with the new configuration (they bind beside the
  old ones), then stops the old generation: no query is refused meanwhile.
- SIGTERM reaches every worker, which keeps answering through the lameduck; the supervisor exits
  when they all have.  SIGINT stops them at once.
- A worker that exits unasked is started again, with a log line and
  `dns_server_worker_restarts_total{reason="exited"}`; one whose loop check found a loop stops the
  server (status 1).
- Every batch and a ping each `HEARTBEAT` are numbered; a worker's event loop acknowledges each.
  While one has left a message unacknowledged for `LATE`, /ready answers 503 (it may not serve the
  current data: asked at every request, unlike the first sync's check); for `HUNG` (stopped, or
  stuck in a loop), it is killed and started again, with a log line and
  `dns_server_worker_restarts_total{reason="hung"}`.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import signal
import socket
import sys
import time
import traceback
import weakref
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, Metric

from dns_server.app import Loader, Server
from dns_server.cluster.registry import Journal, Registry
from dns_server.cluster.sources.settings import SourceSettings
from dns_server.cluster.updates import Update
from dns_server.config.model import Config
from dns_server.observability.logs import log_event
from dns_server.observability.metrics import counting_only, merge_families, requests_of
from dns_server.plugins.health import lameduck_of
from dns_server.serving.http import HttpEndpoints
from dns_server.serving.runtime import Cluster, open_clusters
from dns_server.serving.workers import (
    FAILED,
    LOOP_FOUND,
    STOP_SIGNALS,
    WorkerHandle,
    describe_exit,
    frame,
    run_worker,
)
from dns_server.tools import explain

log = logging.getLogger("dns_server")

SCRAPE_TIMEOUT = 2.0  # how long a scrape waits for each worker's counts
STOP_GRACE = 5.0  # after the lameduck: how long stopping workers get before SIGKILL
RESTART_DELAY = 1.0  # before starting again a worker that exited before it answered
HEARTBEAT = 1.0  # seconds between two pings of each worker
LATE = 1.0  # a worker that has not acknowledged a batch or ping this long may not serve the current data
HUNG = 5.0  # ... this long (a DNS client's timeout: its clients have all timed out) is hung: killed, started again


@dataclass(eq=False)
class Generation:
    """The workers started for one configuration, and the clusters feeding them."""

    config: Config
    clusters: dict[SourceSettings, Cluster]
    ids: dict[SourceSettings, int]  # each cluster's number in the batches streamed to the workers
    workers: list[WorkerHandle] = field(default_factory=list)
    listeners: list[tuple[str, int]] = field(default_factory=list)
    watchdog: asyncio.Task[None] | None = None
    warm: bool = False  # every worker has once had its answers made ahead (a reload's: at once)

    def not_ready(self) -> list[str]:
        """`kubernetes` until every cluster, and every worker's copy of it, has had its first sync,
        and, after a start, every worker its first warm-up (serving/warmup.py; a worker started again
        later answers at once)."""
        if any(not cluster.synced for cluster in self.clusters.values()):
            return ["kubernetes"]
        if any(not worker.synced for worker in self.workers):
            return ["kubernetes"]
        self.warm = self.warm or all(worker.warm for worker in self.workers)
        return [] if self.warm else ["kubernetes"]

    def late(self) -> bool:
        """Whether a worker has left a batch or a ping unacknowledged for `LATE`: it may not serve the current data."""
        now = time.monotonic()
        return any(worker.silent_for(now) > LATE for worker in self.workers)

    def adopt(self) -> None:
        """Nothing to do: the clusters here publish to no pipeline, the workers' do."""

    async def stop_unused(self, successor: Generation | None) -> None:
        """Stop the workers (at once: a successor answers already, or the server stops), then the
        sources `successor` does not keep."""
        if self.watchdog is not None:
            self.watchdog.cancel()
        for worker in self.workers:
            worker.retiring = True
            worker.signal(signal.SIGINT)
        await _exits(self.workers, STOP_GRACE)
        kept = successor.clusters.values() if successor is not None else ()
        for cluster in self.clusters.values():
            if cluster not in kept and cluster.task is not None:
                cluster.task.cancel()
                await asyncio.gather(cluster.task, return_exceptions=True)


async def _exits(workers: list[WorkerHandle], timeout: float) -> None:
    """Wait up to `timeout` for the workers to exit; those still running are killed."""
    pending = [worker.exited for worker in workers if not worker.exited.done()]
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=timeout)
    if late:
        for worker in workers:
            if not worker.exited.done():
                log.warning("worker %d (pid %d) did not stop within %g s: killing it", worker.index, worker.pid,
                            timeout)
                worker.signal(signal.SIGKILL)
        await asyncio.wait(late)


class Supervisor(Server):
    """The server of N worker processes: feeds them, watches them, answers for them over HTTP."""

    def __init__(self, config: Config, loader: Loader | None) -> None:
        self.scraped = CollectorRegistry(auto_describe=False)
        self.scraped.register(self)
        self.workers: list[WorkerHandle] = []  # every live worker, of every generation
        self._retired: list[Metric] = []  # what workers that are gone counted
        self._cluster_ids: weakref.WeakKeyDictionary[Registry, int] = weakref.WeakKeyDictionary()
        self._numbers = itertools.count(1)
        self._messages = itertools.count(1)  # the numbers of batches and pings, which workers acknowledge
        self._generation_of: dict[WorkerHandle, Generation] = {}
        self._shutting_down = False
        super().__init__(config, loader)
        self.restarts, self.running = self.metrics.worker_families()

    def _endpoints(self, config: Config) -> HttpEndpoints:
        readiness = self._readiness(config)
        current = [("kubernetes", self._workers_current)] if readiness else []
        return HttpEndpoints.for_config(config, self.metrics, readiness, current, self.scraped, explain=self._explain)

    def _workers_current(self) -> bool:
        """/ready's check at every request (the first sync's holds once for all): no worker is late."""
        return not isinstance(self.runtime, Generation) or not self.runtime.late()

    def _served(self) -> list[explain.Served]:
        """/explain here: the blocks' chains built afresh over the clusters this process feeds the workers."""
        if self.runtime is None:
            return []
        return explain.served_from(self.config, self.runtime.clusters)

    # -- starting workers ----------------------------------------------------------------------
    async def _start(self, config: Config, previous: Generation | None) -> Generation:
        """Open the clusters `config` reads (keeping `previous`'s), then fork its workers and wait
        until each answers; raises StartupError (and leaves nothing of the new generation running)."""
        clusters = await open_clusters(config, previous.clusters if previous is not None else {}, self.metrics)
        for cluster in clusters.values():
            if cluster.registry not in self._cluster_ids:
                number = self._cluster_ids[cluster.registry] = next(self._numbers)
                cluster.registry.journal = self._journal(number)
        generation = Generation(config, clusters, {s: self._cluster_ids[c.registry] for s, c in clusters.items()},
                                warm=previous is not None)
        try:
            for index in range(config.workers):
                generation.workers.append(self._fork(generation, index))
            listeners = await asyncio.gather(*(worker.up for worker in generation.workers))
        except BaseException:
            await generation.stop_unused(previous)
            raise
        generation.listeners = listeners[0]
        generation.watchdog = asyncio.create_task(self._watch(generation), name="worker watchdog")
        log_event(log, "startup", f"{config.workers} worker processes answer on every listen address (pids "
                  f"{', '.join(str(worker.pid) for worker in generation.workers)})", workers=config.workers,
                  pids=[worker.pid for worker in generation.workers])
        return generation

    def _journal(self, number: int) -> Journal:
        """The registry's journal: every batch it applies, sent to every worker (under its lock, in order)."""

        def journal(updates: list[Update], now: float | None) -> None:
            message = next(self._messages)
            data = frame(("batch", message, number, updates, now))
            for worker in list(self.workers):
                worker.post(data, message)

        return journal

    def _fork(self, generation: Generation, index: int) -> WorkerHandle:
        """A new worker for `generation`, forked while no registry changes: it has every batch up to
        now in its copy, and is sent every later one."""
        ours, theirs = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        with ExitStack() as held:
            for cluster in generation.clusters.values():
                held.enter_context(cluster.registry.held())
            gc.collect(1)
            gc.freeze()  # the workers share the data's pages until they write them (see freeze_heap)
            pid = os.fork()
            if pid:
                worker = WorkerHandle(index, pid, ours, asyncio.get_running_loop(), self._worker_exited)
                self.workers.append(worker)
        if pid == 0:
            _become_worker(generation, theirs, index)
        theirs.close()
        self._generation_of[worker] = generation
        self.running.set(len(self.workers))
        worker.start()
        return worker

    # -- watching them -------------------------------------------------------------------------
    async def _watch(self, generation: Generation) -> None:
        """Ping `generation`'s workers every HEARTBEAT; kill one that has acknowledged nothing for HUNG
        (`_worker_exited` starts it again)."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            now = time.monotonic()
            message = next(self._messages)
            ping = frame(("ping", message))
            for worker in generation.workers:
                if not worker.up.done() or worker.retiring or worker.hung:
                    continue
                silent = worker.silent_for(now)
                if silent <= HUNG:
                    worker.post(ping, message)
                    continue
                log.error("worker %d (pid %d) has acknowledged nothing for %.1f s: killing it and starting it again",
                          worker.index, worker.pid, silent)
                worker.hung = True
                self.restarts.labels("hung").inc()
                worker.signal(signal.SIGKILL)

    def _worker_exited(self, worker: WorkerHandle, status: int) -> None:
        self.workers.remove(worker)
        self._retired = merge_families([self._retired, counting_only(worker.last_families)])
        self.running.set(len(self.workers))
        generation = self._generation_of.pop(worker)
        if worker.retiring:
            if self._shutting_down and not self.workers:
                self.stopping.set()
            return
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == LOOP_FOUND:
            self.exit_status = 1
            self._shutting_down = True
            self.stopping.set()
            return
        if self.stopping.is_set() or self.runtime is None or generation is not self.runtime:
            return  # a worker of a generation still starting: its start fails
        if not worker.hung:  # a hung one was logged and counted when it was killed
            log.error("worker %d (pid %d) %s: starting it again", worker.index, worker.pid, describe_exit(status))
            self.restarts.labels("exited").inc()
        delay = 0.0 if worker.up.done() and not worker.up.exception() else RESTART_DELAY
        asyncio.get_running_loop().call_later(delay, self._replace, generation, worker)

    def _replace(self, generation: Generation, gone: WorkerHandle) -> None:
        if self.stopping.is_set() or generation is not self.runtime:
            return
        worker = self._fork(generation, gone.index)
        worker.up.add_done_callback(lambda up: up.exception())  # a failure is logged when it exits
        generation.workers[generation.workers.index(gone)] = worker

    # -- stopping ------------------------------------------------------------------------------
    def _terminate(self) -> None:
        lameduck = lameduck_of(self.config.blocks)
        if not self._shutting_down:
            log_event(log, "shutdown", "SIGTERM: Shutting down servers then terminating", lameduck=lameduck)
        self._shutting_down = True
        self.endpoints.begin_shutdown()
        for worker in self.workers:
            worker.retiring = True
            worker.signal(signal.SIGTERM)  # each keeps answering through the lameduck
        if not self.workers:
            self.stopping.set()
        asyncio.get_running_loop().call_later(lameduck + STOP_GRACE, self._overdue)

    def _overdue(self) -> None:
        """The lameduck and a grace period have passed: stop the workers still running at once."""
        if self.workers:
            log.warning("%d workers still run %g s after the lameduck: stopping them", len(self.workers),
                        STOP_GRACE)
        self.stopping.set()

    # -- /metrics ------------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        """The families of this process and of every worker, added up (`scraped` serves them)."""
        workers = list(self.workers)
        reports = [worker.scrape(SCRAPE_TIMEOUT) for worker in workers]
        yield from merge_families([self.metrics.registry.collect(), self._retired, *reports])
        per_worker = CounterMetricFamily("dns_server_worker_requests",
                                         "DNS requests each worker process counted (from 0 again when restarted).",
                                         labels=["worker"])
        for worker, report in sorted(zip(workers, reports), key=lambda pair: pair[0].index):
            per_worker.add_metric([str(worker.index)], requests_of(report))
        yield per_worker


def _become_worker(generation: Generation, channel: socket.socket, index: int) -> None:
    """In the forked child: let go of what is the supervisor's, serve as a worker, never return.

    Only the forking thread exists here; the descriptors of the supervisor's sockets (HTTP
    endpoints, API connections, its event loop) are closed, so that they close when the supervisor
    closes them.  The objects holding them are never used again: the heap was frozen (gc.freeze),
    and this process ends with os._exit.
    """
    status = FAILED
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # held until the worker handles them
        signal.set_wakeup_fd(-1)  # the supervisor loop's, closed below: the worker's loop would restore it on exit
        keep = {0, 1, 2, channel.fileno()}
        for name in os.listdir("/proc/self/fd"):
            if int(name) not in keep:
                try:
                    os.close(int(name))
                except OSError:
                    pass
        status = run_worker(generation.config, generation.clusters, generation.ids, channel, index)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
