"""Sync benchmark: the server kept in sync with a large cluster through the Kubernetes API.

    .venv/bin/python bench/sync.py                 # 3 rounds at full size, about 10 minutes
    .venv/bin/python bench/sync.py --quick         # a small cluster, one round: does it work?
    .venv/bin/python bench/sync.py --huge          # ten times larger, lists in one page: about 10 minutes

The real server (`python -m dns_server --kubeconfig FILE --pods verified`, pinned to core 0) syncs
from the API stand-in (tests/kube_api_standin.py: paged lists, chunked watch streams, in this
process, pinned to core 1) holding the cluster of bench/cluster.py at scale (issue 10): 50
namespaces, 10,000 ClusterIP services each with an EndpointSlice of 5 endpoints (50,000
endpoints) and 150,000 running pods, with the metadata real objects carry (managedFields,
owner references; a pod is about 2 kB of JSON).  Per round, and as medians:

- ready: seconds from starting the process until a missing cluster name is NXDOMAIN rather than
  SERVFAIL (every resource listed and applied), and the source's own "initial sync" time.  The
  floor beside it is what listing everything costs without a DNS server: the stand-in serving
  every page and a client parsing its JSON, in this process;
- peak RSS (VmHWM) once synced, and RSS (VmRSS) then;
- the same server with every list in one page: ready and peak RSS.  The server asks for pages of
  500, but an API server answering from its watch cache ignores `limit` (always for
  `resourceVersion=0`, in many versions for any list), so each list may come as one document;
- event -> answer: from the moment the stand-in writes a watch event changing a service's
  address to the moment the server first answers with the new address, p50/p99 over N events;
- query latency p50/p99 (sequential queries paced at 2,000/s from a separate process) while idle
  and while 1,000 events/s arrive.

Bytes per object of each kind: the server is started (and synced) against the stand-in holding
only the namespaces, then namespaces and services, then also the EndpointSlices; the last step
is the rounds themselves, with the pods.  Each kind's cost is the growth of VmRSS once synced
divided by the number of its objects: what the process holds for them, parsing garbage the
allocator keeps included.

With `--workers N` (N > 1) the server runs N worker processes (not pinned: they share the cores
with the stand-in and the probes); memory adds the PSS of all its processes
(/proc/PID/smaps_rollup: shared pages split among the processes sharing them), and event -> answer
waits until each of 8 sockets per worker (their ports spread them over the workers), all asked at
once round after round, has the new address, so it is the time until every worker answers it.

Targets (issue 10): ready within 10 s, peak RSS under 300 MB, lists in pages or in one page (issue
20); and (issue 4) event -> answer p99 under 200 ms.  `--huge` is the largest clusters run (issue
20): 100,000 services and 1,000,000 pods in 500 namespaces, every list in one page; its aims are
ready within 30 s and a peak RSS under 1.5 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import multiprocessing
import os
import random
import re
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
from cluster import ZONE, Cluster, Service, api_objects, build_cluster, service_object
from common import (
    CORES,
    REPO,
    BenchError,
    EveryWorker,
    Processes,
    Target,
    addresses_of,
    ask,
    family,
    free_port,
    median,
    memory_mb,
    percentile,
    pinned,
    print_table,
    pss_mb,
    report_targets,
    run_main,
    wait_for_answer,
)

sys.path.insert(0, str(REPO))  # the stand-in lives in the repository's tests package
from tests.kube_api_standin import COLLECTIONS, KubeApiStandIn  # noqa: E402

PROBE_RATE = 2000  # queries per second from the latency probe
PROBE_SECONDS = 4.0
EVENT_RATE = 1000  # events per second during the loaded probe
READY_DEADLINE = 300.0
ANSWER_DEADLINE = 5.0  # an event not answered within this is a failure
TARGET_READY_S = 10.0
TARGET_RSS_MB = 300.0
HUGE_READY_S = 30.0  # --huge (issue 20)
HUGE_RSS_MB = 1500.0
TARGET_EVENT_P99_MS = 200.0
PAGE = 500  # the server's page size (sources/kube.py, as client-go)
KINDS = ("Namespace", "Service", "EndpointSlice", "Pod")


@dataclass
class Round:
    ready_s: float = 0.0
    cpu_s: float = float("nan")  # the server's CPU seconds (user + system) until ready: what holds on a loaded machine
    sync_s: float = float("nan")
    peak_mb: float = 0.0
    rss_mb: float = 0.0
    pss_mb: float = 0.0  # of the server and its workers together
    events_ms: Counter[float] = field(default_factory=Counter)
    idle_ms: Counter[float] = field(default_factory=Counter)  # round trips of the probe's queries
    idle_lost: int = 0
    loaded_ms: Counter[float] = field(default_factory=Counter)  # ... while events arrive
    loaded_lost: int = 0
    events_per_s: float = 0.0
    one_page_ready_s: float = float("nan")  # a server whose every list came in one page
    one_page_peak_mb: float = float("nan")


class Server:
    """One server process, synced from the stand-in."""

    def __init__(self, processes: Processes, kubeconfig: Path, workdir: Path, workers: int = 1) -> None:
        self.processes = processes
        self.port = free_port()
        self.log = workdir / f"server-{self.port}.log"
        self.started = time.monotonic()
        command = [sys.executable, "-m", "dns_server", "--kubeconfig", str(kubeconfig), "--pods", "verified",
                   "--listen", f"127.0.0.1:{self.port}", "--resolv-conf", os.devnull, "--workers", str(workers)]
        self.process = processes.start(pinned(CORES.server, command) if workers == 1 else command, self.log, REPO)
        self.ready_s = wait_for_answer(self.port, f"no-such-service.ns0.svc.{ZONE}", self.process, self.log,
                                       started=self.started, deadline=READY_DEADLINE,
                                       accept=lambda reply: reply.rcode() == dns.rcode.NXDOMAIN)  # synced
        self.cpu_s = cpu_seconds(self.process.pid)

    def sync_s(self) -> float:
        found = re.search(r"initial sync complete in ([\d.]+) s", self.log.read_text(errors="replace"))
        return float(found.group(1)) if found else float("nan")

    def memory(self, name: str) -> float:
        return memory_mb([self.process.pid], name)

    def stop(self) -> None:
        self.processes.stop(self.process)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used (/proc/PID/stat), its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the latency probe (a process of its own) --------------------------------------------------------------
def probe(port: int, names: list[str], seconds: float, rate: int, results: Any) -> None:
    """Sequential queries paced at `rate`/s; puts (round trips in ms, rounded to 1 us; lost) in `results`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    wires = [dns.message.make_query(n, "A").to_wire() for n in names]
    rtts: Counter[float] = Counter()
    lost = 0
    start = next_at = time.perf_counter()
    for i in range(int(seconds * rate)):
        wire = wires[i % len(wires)]
        sent = time.perf_counter()
        sock.sendto(wire, ("127.0.0.1", port))
        try:
            while sock.recv(4096)[:2] != wire[:2]:
                pass
            rtts[round((time.perf_counter() - sent) * 1000, 3)] += 1
        except socket.timeout:
            lost += 1
        next_at += 1.0 / rate
        time.sleep(max(0.0, next_at - time.perf_counter()))
        if time.perf_counter() - start > seconds * 2:
            break  # the server is too slow to keep up: stop at twice the time
    results.put((rtts, lost))


def run_probe(port: int, names: list[str]) -> tuple[Counter[float], int]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=probe, args=(port, names, PROBE_SECONDS, PROBE_RATE, results))
    process.start()
    found: tuple[Counter[float], int] = results.get(timeout=PROBE_SECONDS * 2 + 60)
    process.join()
    return found


# -- one round --------------------------------------------------------------------------------------------
class Changes:
    """Service address changes applied to the stand-in: every one changes an answer."""

    def __init__(self, api: KubeApiStandIn, cluster: Cluster) -> None:
        self.api = api
        self.services = list(cluster.services)
        self.rng = random.Random(7)
        self.count = 0

    def next(self) -> tuple[Service, str]:
        """A service and a new address never used before."""
        self.count += 1
        n = self.count
        address = f"10.{100 + n // 62500 % 100}.{n // 250 % 250}.{n % 250 + 1}"
        return self.rng.choice(self.services), address

    def apply(self, service: Service, address: str) -> int:
        """Change the service's address; returns the resourceVersion of the change."""
        return self.api.apply(service_object(dataclasses.replace(service, ip=address)))


def one_round(api: KubeApiStandIn, changes: Changes, cluster: Cluster, kubeconfig: Path, workdir: Path,
              processes: Processes, events: int, workers: int) -> Round:
    server = Server(processes, kubeconfig, workdir, workers)
    result = Round(ready_s=server.ready_s, cpu_s=server.cpu_s, peak_mb=server.memory("VmHWM"),
                   rss_mb=server.memory("VmRSS"), pss_mb=pss_mb(family(server.process)))
    result.sync_s = server.sync_s()
    every_worker = EveryWorker(server.port, workers)
    try:
        check_served(every_worker.sockets[0], server.port, cluster)
        for _ in range(events):
            service, address = changes.next()
            version = changes.apply(service, address)
            every_worker.wait_for(service.fqdn, address, time.monotonic() + ANSWER_DEADLINE)
            seen = time.monotonic()
            result.events_ms[round((seen - api.sent_at[str(version)]) * 1000, 1)] += 1

        names = [s.fqdn for s in cluster.services[::97]]
        names += [f"{s.fqdn}.{s.namespace}.svc.{ZONE}" for s in cluster.services[:200:7]]  # search-path misses
        result.idle_ms, result.idle_lost = run_probe(server.port, names)
        stop = threading.Event()
        applied = [0]

        def churn() -> None:
            tick = 0.01
            next_at = time.monotonic()
            while not stop.is_set():
                batch = [changes.next() for _ in range(int(EVENT_RATE * tick))]
                api.apply(*(service_object(dataclasses.replace(s, ip=a)) for s, a in batch))
                applied[0] += len(batch)
                next_at += tick
                time.sleep(max(0.0, next_at - time.monotonic()))

        churner = threading.Thread(target=churn, daemon=True)
        began = time.monotonic()
        churner.start()
        result.loaded_ms, result.loaded_lost = run_probe(server.port, names)
        stop.set()
        churner.join()
        result.events_per_s = applied[0] / (time.monotonic() - began)
        result.peak_mb = max(result.peak_mb, server.memory("VmHWM"))
    finally:
        every_worker.close()
        server.stop()
    return result


def check_served(sock: socket.socket, port: int, cluster: Cluster) -> None:
    """The last service and the last pod are answered: the figures are of a server that has the data."""
    service = cluster.services[-1]
    if not addresses_of(ask(sock, port, service.fqdn)):
        raise BenchError(f"{service.fqdn} is not answered after the sync")
    if cluster.pods:
        pod = cluster.pods[-1]
        name = f"{pod.address.replace('.', '-')}.{pod.namespace}.pod.{ZONE}"
        if addresses_of(ask(sock, port, name)) != {pod.address}:
            raise BenchError(f"{name} is not answered after the sync (--pods verified)")


def one_page_sync(api: KubeApiStandIn, kubeconfig: Path, workdir: Path, processes: Processes) -> tuple[float, float]:
    """(ready, peak RSS) of a server synced from lists that each came in one page."""
    api.one_page = True
    try:
        server = Server(processes, kubeconfig, workdir)
        figures = server.ready_s, server.memory("VmHWM")
        server.stop()
    finally:
        api.one_page = False
    return figures


# -- bytes per object ---------------------------------------------------------------------------------------
def breakdown(api: KubeApiStandIn, cluster: Cluster, kubeconfig: Path, workdir: Path,
              processes: Processes) -> list[tuple[str, int, float]]:
    """Load the kinds one after another; (kind, objects, VmRSS once synced) after each but the last."""
    steps = []
    for kind in KINDS[:-1]:
        objects = list(api_objects(cluster, kinds=(kind,)))
        api.load(objects)
        server = Server(processes, kubeconfig, workdir)
        steps.append((kind, len(objects), server.memory("VmRSS")))
        server.stop()
        print(f"  {kind}: {len(objects):,} objects, server RSS {steps[-1][2]:.1f} MB once synced", flush=True)
    return steps


def list_everything(api: KubeApiStandIn) -> float:
    """Seconds to list every collection in pages and parse the JSON, as a client of the stand-in would.

    In pages whatever the rounds use: a million pods parsed whole would take this process 10 GB more.
    """
    one_page, api.one_page = api.one_page, False
    started = time.monotonic()
    try:
        for path in COLLECTIONS:
            token = ""
            while True:
                request = urllib.request.Request(f"{api.url}{path}?limit={PAGE}&continue={token}",
                                                 headers={"Authorization": f"Bearer {api.token}"})
                with urllib.request.urlopen(request) as response:
                    token = json.loads(response.read())["metadata"].get("continue") or ""
                if not token:
                    break
    finally:
        api.one_page = one_page
    return time.monotonic() - started


# -- main ---------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each a fresh server (default %(default)s)")
    parser.add_argument("--services", type=int, default=10_000,
                        help="ClusterIP services, each with 5 endpoints (default %(default)s)")
    parser.add_argument("--pods", type=int, default=150_000, help="running pods (default %(default)s)")
    parser.add_argument("--namespaces", type=int, default=50, help="namespaces (default %(default)s)")
    parser.add_argument("--events", type=int, default=1000, help="events timed for event -> answer per round "
                                                                 "(default %(default)s)")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the bytes-per-object runs")
    parser.add_argument("--workers", type=int, default=1, help="the server's worker processes (default %(default)s)")
    parser.add_argument("--one-page", action="store_true",
                        help="every list in one page (default: in pages of 500, then a one-page sync per round)")
    parser.add_argument("--quick", action="store_true",
                        help="1 round, 1,000 services, 10,000 pods, 100 events: does it work?")
    parser.add_argument("--huge", action="store_true",
                        help="1 round, 100,000 services, 1,000,000 pods, 500 namespaces, 100 events, lists in one "
                             "page, no breakdown")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.services, args.pods, args.events = 1, 1000, 10_000, 100
    if args.huge:
        args.rounds, args.services, args.pods, args.namespaces, args.events = 1, 100_000, 1_000_000, 500, 100
        args.one_page = args.no_breakdown = True
    return run_main(lambda processes: measure(args, processes))


def measure(args: argparse.Namespace, processes: Processes) -> int:
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(CORES.client)})  # the stand-in and the probes (our children): not the server's
    cluster = build_cluster(namespaces=args.namespaces, services=args.services, headless=0, backed=True,
                            pods=args.pods)
    counts = Counter(obj["kind"] for obj in api_objects(cluster))
    print(f"sync benchmark: {', '.join(f'{counts[k]:,} {k}s' for k in KINDS)} "
          f"({counts['EndpointSlice'] * 5:,} endpoints); {args.rounds} round(s) of {args.events} timed events",
          flush=True)
    api = KubeApiStandIn(bookmark_interval=60, one_page=args.one_page).start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sync-") as temp:
            workdir = Path(temp)
            kubeconfig = api.write_kubeconfig(workdir / "kubeconfig")
            steps = [] if args.no_breakdown else breakdown(api, cluster, kubeconfig, workdir, processes)
            loaded = {kind for kind, _, _ in steps}
            gc.disable()  # building 170,000 (or 1,100,000) objects of dicts: the collector would walk them again and again
            api.load(api_objects(cluster, kinds=[k for k in KINDS if k not in loaded]))
            gc.enable()
            gc.freeze()
            list_everything(api)  # the stand-in encodes each object once, as the API server's watch cache holds them
            floor = list_everything(api)
            changes = Changes(api, cluster)
            rounds = []
            for number in range(1, args.rounds + 1):
                r = one_round(api, changes, cluster, kubeconfig, workdir, processes, args.events, args.workers)
                if not args.one_page:
                    r.one_page_ready_s, r.one_page_peak_mb = one_page_sync(api, kubeconfig, workdir, processes)
                rounds.append(r)
                print(f"round {number}: ready {r.ready_s:.2f} s (initial sync {r.sync_s:.2f} s, server CPU "
                      f"{r.cpu_s:.2f} s), peak RSS "
                      f"{r.peak_mb:.0f} MB, RSS {r.rss_mb:.0f} MB, PSS of all processes {r.pss_mb:.0f} MB | "
                      f"event->answer p50 "
                      f"{percentile(r.events_ms, 0.5):.1f} ms p99 {percentile(r.events_ms, 0.99):.1f} ms | queries "
                      f"idle p99 {percentile(r.idle_ms, 0.99):.3f} ms, at {r.events_per_s:.0f} events/s p99 "
                      f"{percentile(r.loaded_ms, 0.99):.3f} ms (lost {r.idle_lost}/{r.loaded_lost})"
                      + ("" if args.one_page else f" | lists in one page: ready {r.one_page_ready_s:.2f} s, "
                                                  f"peak RSS {r.one_page_peak_mb:.0f} MB"), flush=True)
    finally:
        api.stop()
    return report(rounds, steps, counts, floor, args)


def report(rounds: list[Round], steps: list[tuple[str, int, float]], counts: Counter[str], floor: float,
           args: argparse.Namespace) -> int:
    ready, peak = median(r.ready_s for r in rounds), median(r.peak_mb for r in rounds)
    event_p99 = median(percentile(r.events_ms, 0.99) for r in rounds)
    lists = "in one page" if args.one_page else f"in pages of {PAGE}"
    where = f"on core {CORES.server}" if args.workers == 1 else f"with {args.workers} workers on every core"
    print(f"\nmedians over {len(rounds)} round(s), lists {lists}; server {where}, stand-in and probes on core "
          f"{CORES.client}")
    rows = [("ready (missing name NXDOMAIN)", f"{ready:.2f} s"),
            ("initial sync (the source's log)", f"{median(r.sync_s for r in rounds):.2f} s"),
            ("server CPU until ready (user + system)", f"{median(r.cpu_s for r in rounds):.2f} s"),
            ("floor: listing + parsing everything", f"{floor:.2f} s"),
            ("peak RSS once synced", f"{peak:.1f} MB"),
            ("RSS once synced", f"{median(r.rss_mb for r in rounds):.1f} MB"),
            ("PSS of all processes once synced", f"{median(r.pss_mb for r in rounds):.1f} MB"),
            ("event -> answer p50", f"{median(percentile(r.events_ms, 0.5) for r in rounds):.1f} ms"),
            ("event -> answer p99", f"{event_p99:.1f} ms")]
    loaded = f"at {median(r.events_per_s for r in rounds):.0f} events/s"
    for label, latencies in (("idle", [r.idle_ms for r in rounds]), (loaded, [r.loaded_ms for r in rounds])):
        for p in (0.5, 0.99):
            rows.append((f"query latency {label} p{p * 100:g}",
                         f"{median(percentile(histogram, p) for histogram in latencies):.3f} ms"))
    one_page_peak = median(r.one_page_peak_mb for r in rounds)
    if not args.one_page:
        rows += [("lists in one page: ready", f"{median(r.one_page_ready_s for r in rounds):.2f} s"),
                 ("lists in one page: peak RSS once synced", f"{one_page_peak:.1f} MB")]
    print_table(("", "figure"), rows)
    if steps:
        print("\nbytes per object (growth of RSS once synced, as each kind is added, per object):")
        full = median(r.rss_mb for r in rounds)
        sizes = [rss for _, _, rss in steps] + [full]
        table = [("(empty server: namespaces only)", f"{counts['Namespace']:,}", f"{sizes[0]:.1f}", "")]
        for (kind, _, _), before, after in zip([*steps[1:], ("Pod", counts["Pod"], full)], sizes, sizes[1:]):
            table.append((kind, f"{counts[kind]:,}", f"{after:.1f}",
                          f"{(after - before) * 1024 * 1024 / counts[kind]:,.0f}" if counts[kind] else ""))
        print_table(("kind", "objects", "RSS MB", "bytes/object"), table)
    print()
    ready_target, rss_target = (HUGE_READY_S, HUGE_RSS_MB) if args.huge else (TARGET_READY_S, TARGET_RSS_MB)
    targets = [
        Target("ready", f"{ready:.2f} s", f"<= {ready_target:g} s", ready <= ready_target),
        Target(f"peak RSS, lists {lists}", f"{peak:.1f} MB", f"< {rss_target:g} MB", peak < rss_target),
        Target("event -> answer p99", f"{event_p99:.1f} ms", f"< {TARGET_EVENT_P99_MS:g} ms",
               event_p99 < TARGET_EVENT_P99_MS),
    ]
    if not args.one_page:
        targets.insert(2, Target("peak RSS, lists in one page", f"{one_page_peak:.1f} MB", f"< {rss_target:g} MB",
                                 one_page_peak < rss_target))
    return 0 if report_targets(targets) else 1


if __name__ == "__main__":
    sys.exit(main())
