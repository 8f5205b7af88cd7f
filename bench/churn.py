"""Churn benchmark: QPS and p99 of the server while EndpointSlices change at 0, 10, 100 and 1,000 events a second.

    .venv/bin/python bench/churn.py            # 3 rounds at full size, about 8 minutes
    .venv/bin/python bench/churn.py --quick    # a small cluster, short runs: does it work?

What runs (issue 10):
- the API stand-in (tests/kube_api_standin.py) in a process of its own, pinned to core 1, holding
  the cluster of bench/cluster.py (10,000 ClusterIP services, 1,000 headless services with one
  EndpointSlice of 5 endpoints each, 50 namespaces), and changing the headless services'
  EndpointSlices at the rate asked: each event adds an endpoint, removes one or flips one's
  readiness, so every event changes the answers for its service (A, SRV, the endpoint's name);
- our server (`python -m dns_server --kubeconfig FILE`), synced through the stand-in, pinned to
  core 0: every event reaches it as a watch event and drops the answers it touches;
- dnsperf, pinned to core 1, asking the query file of bench/queries.py's `CHURN_MIX` (A of
  ClusterIP and headless services, SRV, and half search-path misses) in saturated runs
  (`-c 4 -q 200`): one run for QPS and one with `-v` for the p99, while the events arrive.

After the two runs of each rate, the churn going on, PROBE (a ClusterIP service no sampled name
reads) changes its address `--events` times, one after another: event -> answer is the time from
the stand-in writing the watch event until every worker answers the new address (bench/common.py
EveryWorker: 8 sockets per worker, asked at once round after round, from the benchmark's process,
not the stand-in's, whose churn holds its interpreter lock).

`--workers N` (N > 1) runs the server with N worker processes, not pinned: they share both cores
with dnsperf and the stand-in.  `--unpinned` runs one process that way too: the control that tells
what sharing the cores costs from what the workers cost.  Under the table, the cores each process
used during the saturated runs (from /proc: the server, or the supervisor and its workers; the
stand-in; dnsperf).

Each round measures every rate once (the order turns from round to round, so slow drift in the
machine's load falls on all of them); the table holds medians over rounds, and the ratio to the
rate 0 is taken within each round.  The answers are warmed by one pass through the query file
before the first run.  After every run with changes the server is asked a sample of names
(headless A and SRV, endpoint names, ClusterIP A, misses) and its answers compared with what the
stand-in's state says they must be; a name that differs is asked again until the server has had
`--settle` seconds to catch up, then counted wrong.

`--autopath`: the server runs from a Corefile with `pods verified` and `autopath @kubernetes`, and
the stand-in also serves one pod, at 127.0.0.1 where dnsperf asks from, in a namespace of its own
(bench/cluster.py AUTOPATH_CLIENT): every search-path miss then reads its client's namespace and is
kept in the answer table for that namespace only, while the answers stay those the checks expect.

Targets: at 100 events/s at least 80% of the QPS without changes, at 1,000 events/s at least 50%,
event -> answer p99 under 100 ms at both (issue 20), every sampled answer correct.  Exit status 0 when they hold, 1 when one does not, 2 when the
benchmark could not measure.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import itertools
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
from cluster import (
    AUTOPATH_CLIENT,
    ZONE,
    Cluster,
    Endpoint,
    Service,
    api_objects,
    build_cluster,
    endpoint_slice_object,
    pod_object,
    service_object,
)
from common import (
    CORES,
    REPO,
    BenchError,
    EveryWorker,
    Processes,
    Run,
    Target,
    children_cpu_seconds,
    cpu_seconds,
    descendants,
    dnsperf,
    free_port,
    median,
    memory_directory,
    percentile,
    pinned,
    print_table,
    report_targets,
    require,
    run_main,
    wait_for_answer,
)
from queries import CHURN_MIX, build_queries, write_queries

RATES = (0, 10, 100, 1000)
TARGET_RATIOS = {100: 0.8, 1000: 0.5}  # rate -> QPS at least this share of the QPS at rate 0
MAX_ENDPOINTS = 8  # a slice grows to at most this many endpoints
TICK = 0.01  # seconds: the events of a rate are applied in batches this often
NEW_ADDRESSES = ipaddress.IPv4Address("10.250.0.0")  # and up: endpoints the churn adds
READY_DEADLINE = 120.0
SAMPLE = 200  # names asked after each run with changes
EVENTS = 100  # timed changes of the probe service per rate and round
ANSWER_DEADLINE = 5.0  # a timed change not answered within this is a failure
PROBE = Service("ns0", "event-probe", "10.99.0.1", (("http", 80, 80),))  # never among the sampled names
TARGET_EVENT_P99_MS = 100.0  # issue 20: across workers
# `--autopath`: the flags' server as a Corefile, with pods verified (the stand-in serves AUTOPATH_CLIENT) and autopath
AUTOPATH_COREFILE = """\
.:{port} {{
    bind 127.0.0.1
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods verified
    }}
    autopath @kubernetes
}}
"""
RATE_SHORTFALL = 0.9  # an achieved rate below this share of the one asked is pointed out
CLIENTS_PER_WORKER = 8  # dnsperf sockets per worker, so that the kernel spreads them about evenly
CPU_USERS = ("server", "workers", "stand-in", "dnsperf")  # with workers, "server" is their supervisor


# -- the cluster side: the stand-in and its changes, in a process of its own -----------------------------
class Churn:
    """The headless services' endpoints as the stand-in has them, and the changes made to them."""

    def __init__(self, cluster: Cluster, seed: int = 3) -> None:
        self.services = {s.fqdn: s for s in cluster.headless}
        self.names = list(self.services)
        self.endpoints = {s.fqdn: list(s.endpoints) for s in cluster.headless}
        self.rng = random.Random(seed)
        self.added = 0

    def change(self) -> dict[str, Any]:
        """Add a ready endpoint to a random headless service, remove a ready one or flip one's readiness.

        Every change alters the set of ready addresses, so the answers for the service change;
        at least one endpoint stays ready, so the service keeps an answer.  Returns the new slice.
        """
        fqdn = self.rng.choice(self.names)
        service, endpoints = self.services[fqdn], self.endpoints[fqdn]
        ready = [i for i, e in enumerate(endpoints) if e.ready]
        removable = ready if len(ready) > 1 else []
        flippable = removable + [i for i, e in enumerate(endpoints) if not e.ready]
        actions = (["add"] if len(endpoints) < MAX_ENDPOINTS else []) + (["remove"] if removable else []) \
            + (["flip"] if flippable else [])
        action = self.rng.choice(actions)
        if action == "add":
            self.added += 1
            pod = f"{service.name}-n{self.added}"
            stateful = bool(service.endpoints[0].hostname)
            endpoints.append(Endpoint(str(NEW_ADDRESSES + self.added), pod, pod if stateful else "", "node-0"))
        elif action == "remove":
            del endpoints[self.rng.choice(removable)]
        else:
            i = self.rng.choice(flippable)
            endpoints[i] = dataclasses.replace(endpoints[i], ready=not endpoints[i].ready)
        return endpoint_slice_object(service, endpoints)

    def state(self) -> dict[str, list[Endpoint]]:
        return {fqdn: list(endpoints) for fqdn, endpoints in self.endpoints.items()}


def cluster_side(connection: Connection, sizes: dict[str, int], kubeconfig: Path) -> None:
    """The stand-in process: serve the cluster, churn on request.

    Requests: ("churn", rate) starts changes at `rate` a second (answer: None); ("stop",) ends them
    (answer: events applied, seconds); ("move probe", address) gives PROBE that address (answer:
    the change's resourceVersion); ("sent at", version) answers when that change's watch event was
    written (monotonic); ("state",) answers the headless endpoints; ("quit",) ends.
    """
    sys.path.insert(0, str(REPO))
    from tests.kube_api_standin import KubeApiStandIn

    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(CORES.client)})
    cluster = build_cluster(services=sizes["services"], headless=sizes["headless"], namespaces=sizes["namespaces"])
    api = KubeApiStandIn(bookmark_interval=60).start()
    api.load([*api_objects(cluster, kinds=("Namespace", "Service", "EndpointSlice")), service_object(PROBE),
              *([pod_object(AUTOPATH_CLIENT)] if sizes["autopath"] else [])])
    api.write_kubeconfig(kubeconfig)
    churn = Churn(cluster)
    stop = threading.Event()
    counted: list[float] = []
    worker: threading.Thread | None = None

    def run(rate: int) -> None:
        started = time.monotonic()
        applied = 0
        while not stop.wait(TICK):
            due = int(rate * (time.monotonic() - started)) - applied
            if due > 0:
                api.apply(*(churn.change() for _ in range(due)))
                applied += due
        counted[:] = [applied, time.monotonic() - started]

    connection.send(("ready",))
    while True:
        request = connection.recv()
        if request[0] == "churn":
            stop.clear()
            worker = threading.Thread(target=run, args=(request[1],), daemon=True)
            worker.start()
            connection.send(None)
        elif request[0] == "stop":
            stop.set()
            if worker is not None:
                worker.join()
            connection.send(tuple(counted))
        elif request[0] == "move probe":
            connection.send(api.apply(service_object(dataclasses.replace(PROBE, ip=request[1]))))
        elif request[0] == "sent at":
            connection.send(api.sent_at[str(request[1])])
        elif request[0] == "state":
            connection.send(churn.state())
        else:
            api.stop()
            return


def cpu_used(server: int, stand_in: int) -> tuple[float, ...]:
    """CPU seconds used so far by each of CPU_USERS (dnsperf: this process's finished children)."""
    return (cpu_seconds([server]), cpu_seconds(descendants(server)), cpu_seconds([stand_in]),
            children_cpu_seconds())


class ClusterSide:
    """The main process's handle on the stand-in process."""

    def __init__(self, sizes: dict[str, int], kubeconfig: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=cluster_side, args=(theirs, sizes, kubeconfig), daemon=True)
        self.process.start()
        if not self.connection.poll(READY_DEADLINE):
            raise BenchError("the API stand-in did not start")
        self.connection.recv()

    def ask(self, *request: Any) -> Any:
        self.connection.send(request)
        return self.connection.recv()

    def time_events(self, addresses: Iterator[str], port: int, workers: int, count: int) -> list[float]:
        """`count` changes of PROBE's address, one after another: for each, the ms from the stand-in
        writing its watch event until every worker answers the new address.  Asked from this
        process, not the stand-in's, whose churn would hold its interpreter's lock."""
        every_worker = EveryWorker(port, workers)
        delays = []
        try:
            for address in itertools.islice(addresses, count):
                version = self.ask("move probe", address)
                every_worker.wait_for(PROBE.fqdn, address, time.monotonic() + ANSWER_DEADLINE)
                delays.append((time.monotonic() - self.ask("sent at", version)) * 1000)
        finally:
            every_worker.close()
        return delays

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.ask("quit")
            except (OSError, EOFError):
                pass
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()


# -- correctness ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expected:
    name: str
    qtype: str
    rcode: dns.rcode.Rcode
    records: frozenset[str]  # rdata as text, SRV without priority and weight (they follow the count)


def expectations(cluster: Cluster, state: dict[str, list[Endpoint]], rng: random.Random,
                 count: int) -> list[Expected]:
    """`count` names with the answers the stand-in's state means.

    In turn: a headless service's A, its SRV, a ready endpoint's name, a search-path miss under
    it, and a ClusterIP service's A.
    """
    out = []
    for n in range(count):
        kind = n % 5
        if kind == 4:
            service = rng.choice(cluster.services)
            out.append(Expected(service.fqdn, "A", dns.rcode.NOERROR, frozenset({service.ip})))
            continue
        headless: Service = rng.choice(cluster.headless)
        ready = [e for e in state[headless.fqdn] if e.ready]
        if kind == 0:
            out.append(Expected(headless.fqdn, "A", dns.rcode.NOERROR, frozenset(e.address for e in ready)))
        elif kind == 1:
            port_name, _, port = headless.ports[0]
            out.append(Expected(f"_{port_name}._tcp.{headless.fqdn}", "SRV", dns.rcode.NOERROR,
                                frozenset(f"{port} {e.label}.{headless.fqdn}." for e in ready)))
        elif kind == 2:
            endpoint = rng.choice(ready)
            out.append(Expected(f"{endpoint.label}.{headless.fqdn}", "A", dns.rcode.NOERROR,
                                frozenset({endpoint.address})))
        else:
            out.append(Expected(f"{headless.fqdn}.{headless.namespace}.svc.{ZONE}", "A", dns.rcode.NXDOMAIN,
                                frozenset()))
    return out


def answer_of(port: int, name: str, qtype: str) -> tuple[dns.rcode.Rcode, frozenset[str]]:
    """The rcode and answer records the server gives, as a stub resolver asks (UDP, then TCP on TC)."""
    query = dns.message.make_query(name, qtype)
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    if reply.flags & dns.flags.TC:
        reply = dns.query.tcp(query, "127.0.0.1", port=port, timeout=2)
    records = set()
    for rrset in reply.answer:
        for rr in rrset:
            text = rr.to_text()
            records.add(" ".join(text.split()[2:]) if qtype == "SRV" else text)
    return reply.rcode(), frozenset(records)


def check(port: int, expected: list[Expected], settle: float) -> tuple[int, int, list[str]]:
    """Ask every name; (right at once, right after catching up, what stayed wrong)."""
    late = []
    for item in expected:
        if answer_of(port, item.name, item.qtype) != (item.rcode, item.records):
            late.append(item)
    caught_up = 0
    wrong = []
    deadline = time.monotonic() + settle
    for item in late:
        while True:
            got = answer_of(port, item.name, item.qtype)
            if got == (item.rcode, item.records):
                caught_up += 1
                break
            if time.monotonic() > deadline:
                wrong.append(f"{item.name} {item.qtype}: {dns.rcode.to_text(got[0])} {sorted(got[1])}, "
                             f"want {dns.rcode.to_text(item.rcode)} {sorted(item.records)}")
                break
            time.sleep(0.01)
    return len(expected) - len(late), caught_up, wrong


# -- the runs -----------------------------------------------------------------------------------------------
@dataclass
class Measured:
    """One rate in one round."""

    saturated: Run = field(default_factory=Run)
    tail: Run = field(default_factory=Run)
    events_per_s: float = 0.0
    event_ms: list[float] = field(default_factory=list)  # event -> answer of PROBE's changes, every worker
    cpu: dict[str, float] = field(default_factory=dict)  # cores used during the saturated run, by process

    def event_p99(self) -> float:
        return percentile(Counter(round(ms, 1) for ms in self.event_ms), 0.99)


@dataclass
class Correctness:
    asked: int = 0
    at_once: int = 0
    caught_up: int = 0
    wrong: list[str] = field(default_factory=list)


def measure(args: argparse.Namespace, processes: Processes) -> int:
    require(("dnsperf", "taskset"))
    if (os.cpu_count() or 1) < 2:
        raise BenchError("needs two cores: one for the server, one for dnsperf and the stand-in")
    os.sched_setaffinity(0, {int(CORES.client)})
    sizes = {"services": args.services, "headless": args.headless, "namespaces": args.namespaces,
             "autopath": args.autopath}
    cluster = build_cluster(services=args.services, headless=args.headless, namespaces=args.namespaces)
    with tempfile.TemporaryDirectory(prefix="bench-churn-") as temp, \
            tempfile.TemporaryDirectory(prefix="bench-churn-", dir=memory_directory()) as scratch:
        workdir = Path(temp)
        query_file = write_queries(build_queries(cluster, args.queries, mix=CHURN_MIX), workdir / "queries.txt")
        print(f"churn benchmark: {len(cluster.services):,} ClusterIP + {len(cluster.headless):,} headless services; "
              f"rates {', '.join(map(str, args.rates))} events/s; {args.rounds} round(s) of {args.duration} s runs; "
              f"{args.queries:,} queries ({', '.join(f'{k} {s:.0%}' for k, s in CHURN_MIX)})", flush=True)
        side = ClusterSide(sizes, workdir / "kubeconfig")
        try:
            port = free_port()
            log = workdir / "server.log"
            started = time.monotonic()
            if args.autopath:
                corefile = workdir / "Corefile"
                corefile.write_text(AUTOPATH_COREFILE.format(port=port, kubeconfig=workdir / "kubeconfig"))
                command = [sys.executable, "-m", "dns_server", "-conf", str(corefile)]
            else:
                command = [sys.executable, "-m", "dns_server", "--kubeconfig", str(workdir / "kubeconfig"),
                           "--listen", f"127.0.0.1:{port}", "--resolv-conf", os.devnull]
            command += ["--workers", str(args.workers)]
            alone = args.workers == 1 and not args.unpinned
            server = processes.start(pinned(CORES.server, command) if alone else command, log, REPO)
            ready = wait_for_answer(port, f"no-such-service.ns0.svc.{ZONE}", server, log, started=started,
                                    deadline=READY_DEADLINE, accept=lambda r: r.rcode() == dns.rcode.NXDOMAIN)
            print(f"server synced in {ready:.1f} s; warming its answers with one pass of the query file", flush=True)
            load = ["-c", str(args.clients), "-q", str(args.outstanding)]
            stand_in = side.process.pid
            assert stand_in is not None
            dnsperf(port, query_file, [*load, "-n", "1"])
            rounds: list[dict[int, Measured]] = []
            correctness = Correctness()
            rng = random.Random(4)
            addresses = (f"10.99.{n // 250 % 250 + 1}.{n % 250 + 1}" for n in itertools.count(1))  # PROBE's
            for number in range(args.rounds):
                turn = number % len(args.rates)
                results: dict[int, Measured] = {}
                for rate in args.rates[turn:] + args.rates[:turn]:
                    results[rate] = measured = Measured()
                    side.ask("churn", rate)
                    before, run_started = cpu_used(server.pid, stand_in), time.monotonic()
                    measured.saturated = dnsperf(port, query_file, [*load, "-l", str(args.duration)])
                    elapsed = time.monotonic() - run_started
                    measured.cpu = {who: (after - earlier) / elapsed for who, after, earlier
                                    in zip(CPU_USERS, cpu_used(server.pid, stand_in), before)}
                    measured.tail = dnsperf(port, query_file, [*load, "-l", str(args.duration)],
                                            verbose_file=Path(scratch) / "verbose.out")
                    measured.event_ms = side.time_events(addresses, port, args.workers, args.events)
                    applied, seconds = side.ask("stop")
                    measured.events_per_s = applied / seconds if seconds else 0.0
                    if rate:
                        asked = expectations(cluster, side.ask("state"), rng, args.sample)
                        at_once, caught_up, wrong = check(port, asked, args.settle)
                        correctness.asked += len(asked)
                        correctness.at_once += at_once
                        correctness.caught_up += caught_up
                        correctness.wrong += wrong
                rounds.append(results)
                print(f"round {number + 1}: " + "; ".join(
                    f"{rate}/s ({m.events_per_s:.0f} applied) {m.saturated.qps:,.0f} qps p99 "
                    f"{m.tail.percentile_ms(0.99):.2f} ms, event->answer p99 {m.event_p99():.1f} ms"
                    for rate, m in sorted(results.items())), flush=True)
        finally:
            side.close()
    return 0 if report(rounds, correctness, args) else 1


def report(rounds: list[dict[int, Measured]], correctness: Correctness, args: argparse.Namespace) -> bool:
    """Print the table and the targets; True if every target holds."""
    base = args.rates[0] if 0 not in args.rates else 0
    ratios = {rate: median(r[rate].saturated.qps / r[base].saturated.qps for r in rounds) for rate in args.rates}
    event_p99 = {rate: median(r[rate].event_p99() for r in rounds) for rate in args.rates}
    rows = []
    for rate in args.rates:
        achieved = median(r[rate].events_per_s for r in rounds)
        rows.append((f"{rate:,}", f"{achieved:,.0f}", f"{median(r[rate].saturated.qps for r in rounds):,.0f}",
                     f"{median(r[rate].tail.percentile_ms(0.99) for r in rounds):.3f}", f"{ratios[rate]:.1%}",
                     f"{max(r[rate].saturated.lost + r[rate].tail.lost for r in rounds):,}",
                     f"{event_p99[rate]:.1f}"))
    where = f"with {args.workers} workers on every core" if args.workers > 1 else \
        "on every core (--unpinned)" if args.unpinned else f"on core {CORES.server}"
    print(f"\nmedians over {len(rounds)} round(s); server {where}, dnsperf -c {args.clients} -q "
          f"{args.outstanding} and the stand-in on core {CORES.client}")
    print_table(("events/s asked", "applied", "QPS", "p99 ms", f"QPS / at {base}", "lost (max)",
                 "event->answer p99 ms"), rows)
    short = [rate for rate in args.rates if rate and median(r[rate].events_per_s for r in rounds)
             < RATE_SHORTFALL * rate]
    if short:
        print(f"The stand-in fell short of {', '.join(map(str, short))} events/s (the 'applied' column): "
              "its core was too busy; those rows measure a lower rate.")
    users = CPU_USERS if args.workers > 1 else tuple(who for who in CPU_USERS if who != "workers")
    print("cores used during the saturated runs (medians): " + "; ".join(
        f"{rate:,}/s " + ", ".join(f"{who} {median(r[rate].cpu[who] for r in rounds):.2f}" for who in users)
        for rate in args.rates))
    print(f"correctness: {correctness.asked} sampled answers after the runs with changes: "
          f"{correctness.at_once} right at once, {correctness.caught_up} right within {args.settle:g} s, "
          f"{len(correctness.wrong)} wrong")
    for line in correctness.wrong[:10]:
        print(f"  {line}")
    print()
    targets = [Target(f"QPS at {rate:,} events/s", f"{ratios[rate]:.1%} of rate {base}", f">= {share:.0%}",
                      ratios[rate] >= share) for rate, share in TARGET_RATIOS.items() if rate in args.rates]
    targets += [Target(f"event -> answer p99 at {rate:,} events/s", f"{event_p99[rate]:.1f} ms",
                       f"< {TARGET_EVENT_P99_MS:g} ms", event_p99[rate] < TARGET_EVENT_P99_MS)
                for rate in TARGET_RATIOS if rate in args.rates]
    targets.append(Target("sampled answers correct", f"{correctness.asked - len(correctness.wrong)}/"
                                                     f"{correctness.asked}", "all", not correctness.wrong))
    return report_targets(targets)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each measuring every rate (default %(default)s)")
    parser.add_argument("--duration", type=int, default=10,
                        help="seconds of each dnsperf run; two per rate and round (default %(default)s)")
    parser.add_argument("--rates", type=lambda text: [int(r) for r in text.split(",")], default=list(RATES),
                        help="events a second, comma-separated; the first (or 0) is the base (default 0,10,100,1000)")
    parser.add_argument("--services", type=int, default=10_000, help="ClusterIP services (default %(default)s)")
    parser.add_argument("--headless", type=int, default=1_000, help="headless services (default %(default)s)")
    parser.add_argument("--namespaces", type=int, default=50, help="namespaces (default %(default)s)")
    parser.add_argument("--queries", type=int, default=100_000,
                        help="questions in the query file (default %(default)s)")
    parser.add_argument("--clients", type=int,
                        help="dnsperf -c (default 4, and 8 per worker with --workers N: the kernel gives each "
                             "socket a worker by its port, so 4 sockets split 3:1 between 2 workers in half the "
                             "runs, and the busier worker paces dnsperf's window)")
    parser.add_argument("--outstanding", type=int, default=200, help="dnsperf -q (default %(default)s)")
    parser.add_argument("--sample", type=int, default=SAMPLE,
                        help="names checked after each run with changes (default %(default)s)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds the server gets to catch up before a sampled answer counts wrong "
                             "(default %(default)s)")
    parser.add_argument("--workers", type=int, default=1,
                        help="the server's worker processes, not pinned when more than 1 (default %(default)s)")
    parser.add_argument("--unpinned", action="store_true",
                        help="one process not pinned either: it shares both cores with dnsperf and the stand-in, "
                             "as --workers N do (their control)")
    parser.add_argument("--events", type=int, default=EVENTS,
                        help="changes timed for event -> answer per rate and round (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="1 round of 2 s runs, 1,000 + 100 services, 10,000 queries, 20 timed events: "
                             "does it work?")
    parser.add_argument("--autopath", action="store_true",
                        help="the server from a Corefile with `pods verified` and `autopath @kubernetes`, the load "
                             "from a pod's address (bench/cluster.py AUTOPATH_CLIENT)")
    args = parser.parse_args()
    if args.clients is None:
        args.clients = 4 if args.workers == 1 else CLIENTS_PER_WORKER * args.workers
    if args.quick:
        args.rounds, args.duration, args.services, args.headless, args.queries = 1, 2, 1000, 100, 10_000
        args.events = 20
    if any(rate < 0 for rate in args.rates) or not args.rates:
        parser.error("--rates: events a second, e.g. 0,10,100,1000")
    return run_main(lambda processes: measure(args, processes))


if __name__ == "__main__":
    sys.exit(main())
