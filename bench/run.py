"""Benchmark our server against NSD on the same generated cluster, side by side, and print the figures.

    .venv/bin/python bench/run.py             # 3 rounds, about 10 minutes
    .venv/bin/python bench/run.py --quick     # 1 round of short runs: does it work?
    .venv/bin/python bench/run.py --baseline ../before   # and against another checkout's server

The servers, all started afresh every round (their order turns from round to round), each pinned
to core 0 while dnsperf runs pinned to core 1:
- `flags`: ours, `python -m dns_server --fixtures DIR`;
- `Corefile`: ours from kubeadm's default Corefile (Corefile.example: errors, health, ready,
  kubernetes, prometheus, forward, cache, loop, reload, loadbalance) with `fixtures DIR` in its
  kubernetes block, `bind 127.0.0.1`, and its HTTP endpoints on free loopback ports;
- `no prometheus`: the same Corefile without `prometheus`;
- `Corefile+rewrite+template`: the Corefile with a `rewrite name suffix` rule (`answer auto`) and a
  `template IN AAAA` rule for another zone, asked the same questions but one A for a service in ten
  under a rewritten name or in the template's zone (bench/queries.py `with_rewrites`);
  with `--autopath` the Corefile servers run `pods verified` and `autopath @kubernetes`, and the
  fixtures hold a pod at 127.0.0.1, dnsperf's address, in a namespace of its own (bench/cluster.py
  AUTOPATH_CLIENT): every search-path miss then reads its client's namespace and is kept in the
  answer table for that namespace only (served after a lookup of the client's address), while every
  answer stays NSD's;
- `NSD`: serving the same cluster as a zone file;
- `baseline`, with `--baseline DIR`: ours started as `flags` is, but from the checkout DIR (the
  process runs in DIR, so `python -m dns_server` imports DIR's package), measured as `flags` is.

Before the rounds every server is asked a sample of questions and must give NSD's rcodes and
answer records, and the cold-answer cost is measured in this process: decoding, resolving and
encoding questions never asked before, against the generated cluster (the median of N).  Each
round then measures:
1. start-up: from spawning a process until it answers A for the last of the services, and (ours)
   until /ready says OK, which it does once the questions pods ask about services are answered
   ahead (serving/warmup.py);
2. a first pass through the query file, once every server is ready: what ours had not answered
   ahead (search-path misses) is answered here;
3. saturated UDP runs: `--clients` sockets keeping `--outstanding` queries in flight, which keeps a
   single-threaded server busy.  The servers take turns every `--slice` seconds until each has
   had `--duration` seconds, so load from other processes on the shared machine falls on all
   alike.  Each turn is one run for QPS and, for `flags`, `baseline` and NSD, one with dnsperf's
   `-v` line per query for the latency percentiles (writing those lines slows dnsperf, which would
   cap NSD's QPS);
4. saturated TCP runs (`dnsperf -m tcp`, 16 connections), `flags`, `baseline` and NSD in turns;
5. runs at a fixed rate both sustain (`--rate`), in turns: latency without queueing;
6. peak RSS (VmHWM), the CPU each server used in its saturated runs and the CPU other processes
   took from the two cores meanwhile; and that `prometheus` counted the queries (/metrics);
7. for `Corefile+rewrite+template`: its rewritten and templated questions asked once more, each
   once, and how many of them the answer table answered (`dns_server_answer_cache_misses_total`
   before and after), with what `coredns_template_matches_total` counted.

With `--workers N` (N > 1), as many rounds again of two more servers, in turns as above: ours with
N worker processes (`--workers N`) and NSD with N server processes (`server-count: N`), neither
pinned, so both use both cores, while dnsperf stays pinned to core 1 and takes its share of them
(on two cores, dnsperf competes with the servers: the table says how the cores were shared during
the saturated runs: the server's CPU, dnsperf's, everyone else's).  dnsperf then uses at least
`CLIENTS_PER_WORKER` sockets per worker: the kernel gives each socket one worker (or one NSD server) by its
port, and with four sockets it split them 3:1 between two workers in most runs.  Its table: QPS, p50/p99
saturated, TCP, first pass, p99 and CPU per query at `--rate`, lost queries, PSS of all the
server's processes together; then the QPS ratio and the p99 ratio.

The tables quote medians over rounds; ratios are taken within each round, then the median.  The
two comparisons of our own configurations (Corefile / flags, and the cost of `prometheus`) look for
a few percent, less than the shared machine drifts in a minute: they pair each saturated slice with
the other server's slice of the same turn (so does Corefile+rewrite+template / Corefile) (seconds apart) and take the median of those ratios over
every round.  So does `--baseline`: this checkout / baseline pairs each saturated UDP and TCP slice of
`flags` with the baseline's of the same turn; first pass, start-up and peak RSS are ratios per round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import dns.flags
import dns.message
import dns.query
import dns.rcode
from cluster import (
    AUTOPATH_CLIENT,
    ZONE,
    build_cluster,
    pod_object,
    write_fixtures,
    write_zone,
)
from common import (
    CORES,
    RECEIVE_BUFFER,
    REPO,
    BenchError,
    Processes,
    Run,
    Target,
    children_cpu_seconds,
    core_busy_seconds,
    cpu_seconds,
    dnsperf,
    family,
    free_port,
    median,
    memory_directory,
    memory_mb,
    percentile,
    pinned,
    print_table,
    program,
    pss_mb,
    report_targets,
    require,
    run_main,
    wait_for_answer,
    wait_for_ready,
)
from queries import (
    DEFAULT_COUNT,
    REWRITTEN_SUFFIX,
    TEMPLATE_ZONE,
    build_queries,
    with_rewrites,
    write_queries,
)

STARTUP_DEADLINE = 60.0
CLIENTS_PER_WORKER = 8  # dnsperf sockets per worker with --workers: enough for the kernel to spread them evenly
CHECK_SAMPLE = 400  # questions asked of every server to confirm they give the same answers
COLD_SAMPLE = 2000  # never-seen questions timed for the cold-answer cost
TCP_CLIENTS = 16
TARGET_QPS_RATIO = 0.5  # issue 2: ours / NSD
TARGET_P99_RATIO = 2.0
TARGET_RSS_MB = 250.0
TARGET_STARTUP_S = 3.0
TARGET_TCP_RATIO = 1.0  # issue 10: over TCP at NSD's level or above
TARGET_FIRST_PASS_RATIO = 0.5
TARGET_COLD_US = 15.0
TARGET_COREFILE_RATIO = 0.9  # issue 8: the Corefile-started server / the flag-started one
TARGET_PROMETHEUS_COST = 0.05  # issue 9: the QPS `prometheus` may cost
TARGET_REWRITE_RATIO = 0.9  # issue 19: with a rewrite and a template rule / the same Corefile without
FLAGS, COREFILE, NO_PROMETHEUS, NSD, BASELINE = "flags", "Corefile", "no prometheus", "NSD", "baseline"
REWRITE = "Corefile+rewrite+template"

# Corefile.example (kubeadm's), serving the fixtures: `bind` and the addresses keep it on loopback
# ports of its own; `lameduck` is left out (stopping would wait 5 s), which costs no query anything.
COREFILE_TEXT = """\
.:{port} {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
       fixtures {fixtures}
       pods {pods}
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
{autopath}{prometheus}    forward . /etc/resolv.conf {{
       max_concurrent 1000
    }}
    cache 30 {{
       disable success cluster.local
       disable denial cluster.local
    }}
    loop
    reload
    loadbalance
{rules}}}
"""
# issue 19: the rules of the `Corefile+rewrite+template` server (bench/queries.py asks for their names)
REWRITE_RULES = f"""\
    rewrite name suffix {REWRITTEN_SUFFIX}. .svc.{ZONE}. answer auto
    template IN AAAA {TEMPLATE_ZONE} {{
       rcode NOERROR
    }}
"""


# -- the servers -------------------------------------------------------------------------------------
@dataclass
class Server:
    """One server under test: how to start it on a port, and where it listens."""

    name: str
    command: Callable[[Server], list[str]]
    cwd: Path
    full: bool  # measured in every way (flags, NSD), or for its QPS (the Corefile variants)
    prometheus: bool = False
    pinned: bool = True  # to core CORES.server; else free to run on every core (`--workers`)
    rules: str = ""  # Corefile lines added to the block
    questions: list[tuple[str, str]] | None = None  # its own query mix, in the query file's place
    query_file: Path | None = None
    port: int = 0
    metrics_port: int = 0
    ready_port: int = 0  # ours: /ready, which says OK once its answers are made ahead (0: NSD has none)
    process: subprocess.Popen[bytes] | None = None
    log: Path = Path()

    def pids(self) -> list[int]:
        assert self.process is not None
        return family(self.process)

    def start(self, processes: Processes, workdir: Path, probe: str) -> tuple[float, float]:
        """Start the server on a free port; returns the seconds from spawn until it answered A for `probe`,
        and until it was ready (NSD: the same)."""
        self.port, self.metrics_port = free_port(), free_port()
        self.ready_port = 0 if self.name.startswith(NSD) else free_port()
        self.log = workdir / f"{self.name.replace(' ', '-')}-{self.port}.log"
        started = time.monotonic()
        command = self.command(self)
        self.process = processes.start(pinned(CORES.server, command) if self.pinned else command, self.log, self.cwd)
        answered = wait_for_answer(self.port, probe, self.process, self.log, started=started,
                                   deadline=STARTUP_DEADLINE)
        if not self.ready_port:
            return answered, answered
        return answered, wait_for_ready(self.ready_port, self.process, started=started, deadline=STARTUP_DEADLINE)

    def queries_counted(self) -> int | None:
        """What /metrics says this server answered (coredns_dns_requests_total), None if it is not served."""
        return self.counter("coredns_dns_requests_total")

    def counter(self, family: str) -> int | None:
        """The sum of a family's samples on /metrics, None if it is not served."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
                text = response.read().decode(errors="replace")
        except (urllib.error.URLError, OSError):
            return None
        return round(sum(float(line.rsplit(None, 1)[1]) for line in text.splitlines() if line.startswith(family)))


def flags_command(fixtures: Path, workers: int = 1) -> Callable[[Server], list[str]]:
    def flags(server: Server) -> list[str]:
        return [sys.executable, "-m", "dns_server", "--fixtures", str(fixtures), "--listen", f"127.0.0.1:{server.port}",
                "--ready", f"127.0.0.1:{server.ready_port}",
                *(["--workers", str(workers)] if workers > 1 else [])]  # one: pinned to one core, it is one process

    return flags


def nsd_command(zone_file: Path, workdir: Path, threads: int = 1) -> Callable[[Server], list[str]]:
    def nsd(server: Server) -> list[str]:
        config = workdir / f"nsd-{server.port}.conf"
        config.write_text(nsd_config(workdir, zone_file, server.port, threads))
        return [program("nsd"), "-d", "-c", str(config)]

    return nsd


def servers(fixtures: Path, zone_file: Path, workdir: Path, questions: list[tuple[str, str]],
            baseline: Path | None = None, autopath: bool = False) -> list[Server]:
    flags = flags_command(fixtures)

    def corefile(server: Server) -> list[str]:
        path = workdir / f"Corefile-{server.port}"
        path.write_text(COREFILE_TEXT.format(
            port=server.port, health=free_port(), ready=server.ready_port, fixtures=fixtures,
            pods="verified" if autopath else "insecure", autopath="    autopath @kubernetes\n" if autopath else "",
            prometheus=f"    prometheus 127.0.0.1:{server.metrics_port}\n" if server.prometheus else "",
            rules=server.rules))
        return [sys.executable, "-m", "dns_server", "-conf", str(path)]

    # the baseline next to `flags`, so that the two slices of a turn are mostly seconds apart
    other = [Server(BASELINE, flags, baseline, True)] if baseline is not None else []
    rewritten = with_rewrites(questions)
    return [Server(FLAGS, flags, REPO, True), *other, Server(COREFILE, corefile, REPO, False, prometheus=True),
            Server(REWRITE, corefile, REPO, False, prometheus=True, rules=REWRITE_RULES, questions=rewritten,
                   query_file=write_queries(rewritten, workdir / "rewritten-queries.txt")),
            Server(NO_PROMETHEUS, corefile, REPO, False), Server(NSD, nsd_command(zone_file, workdir), workdir, True)]


def worker_servers(fixtures: Path, zone_file: Path, workdir: Path, count: int) -> list[Server]:
    """`--workers N`: ours with N worker processes and NSD with N server processes, neither pinned."""
    return [Server(f"flags, {count} workers", flags_command(fixtures, count), REPO, True, pinned=False),
            Server(f"NSD, {count} servers", nsd_command(zone_file, workdir, count), workdir, True, pinned=False)]


def nsd_config(directory: Path, zone_file: Path, port: int, threads: int = 1) -> str:
    """NSD serving the zone file with `threads` server processes (one: on one core), without response
    rate limiting, as this user."""
    return f"""server:
    ip-address: 127.0.0.1@{port}
    port: {port}
    do-ip6: no
    server-count: {threads}
    username: ""
    chroot: ""
    zonesdir: "{directory}"
    database: ""
    pidfile: "{directory}/nsd-{port}.pid"
    xfrdfile: "{directory}/xfrd-{port}.state"
    zonelistfile: "{directory}/zone-{port}.list"
    xfrdir: "{directory}"
    logfile: "{directory}/nsd-{port}.log"
    verbosity: 0
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    minimal-responses: yes
    receive-buffer-size: {RECEIVE_BUFFER}
remote-control:
    control-enable: no
zone:
    name: {ZONE}
    zonefile: "{zone_file}"
"""


# -- checks before the rounds ------------------------------------------------------------------------
def check(every: list[Server], processes: Processes, workdir: Path, probe: str,
          questions: list[tuple[str, str]]) -> None:
    """Every server must give NSD's rcodes and answer records (UDP, then TCP on TC), or the comparison means nothing."""
    for server in every:
        server.start(processes, workdir, probe)
    differences = []
    truncated = {server.name: 0 for server in every}
    try:
        for index in sample(range(len(questions))):
            replies, asked = {}, {}
            for server in every:
                name, qtype = asked[server.name] = (server.questions or questions)[index]
                query = dns.message.make_query(name, qtype)
                reply = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=2)
                if reply.flags & dns.flags.TC:
                    truncated[server.name] += 1
                    reply = dns.query.tcp(query, "127.0.0.1", port=server.port, timeout=2)
                records = sorted(rr.to_text() for rrset in reply.answer for rr in rrset.to_rdataset())
                replies[server.name] = (dns.rcode.to_text(reply.rcode()), rrset_owners(reply), records)
            differences += [f"{' '.join(asked[server])}: {server} {reply}, NSD {replies[NSD]}"
                            for server, reply in replies.items()
                            if reply != as_asked(questions[index], asked[server], replies[NSD])]
    finally:
        for server in every:
            assert server.process is not None
            processes.stop(server.process)
    if differences:
        raise BenchError("the servers answer differently:\n  " + "\n  ".join(differences[:10]))
    print(f"check: every server gives NSD's rcode and answer records for {len(sample(range(len(questions))))} "
          f"sampled questions, {REWRITE} to its rewritten and templated ones as its rules say (UDP replies with TC "
          f"set, answered again over TCP: "
          f"{', '.join(f'{name} {count}' for name, count in truncated.items())})")


def sample(questions: Sequence[int]) -> Sequence[int]:
    return questions[::max(1, len(questions) // CHECK_SAMPLE)]


Checked = tuple[str, list[str], list[str]]  # a reply's rcode, answer owner names and answer records


def rrset_owners(reply: dns.message.Message) -> list[str]:
    return sorted(rrset.name.to_text().lower() for rrset in reply.answer for _ in rrset)


def as_asked(question: tuple[str, str], asked: tuple[str, str], nsd: Checked) -> Checked:
    """What a server asked `asked` in place of `question` must reply, NSD having replied `nsd` to
    `question`: the same, under the name asked (a rewritten name); NOERROR and nothing (the AAAA
    template's zone)."""
    if asked == question:
        return nsd
    if asked[1] == "AAAA":
        return "NOERROR", [], []
    rcode, owners, records = nsd
    return rcode, [asked[0].lower() + "." for _ in owners], records


def cold_answer_us(fixtures: Path, questions: list[tuple[str, str]], count: int) -> list[float]:
    """Microseconds to decode, resolve and encode each of `count` distinct questions, in this process.

    Against the flag-started server's settings and a registry loaded from the fixtures as the
    server loads them; each question is asked once, so nothing it needs was computed before.
    """
    sys.path.insert(0, str(REPO))
    from dns_server.cli import build_parser, config_from_args
    from dns_server.cluster.registry import Registry
    from dns_server.cluster.sources.fixtures import FixtureSource
    from dns_server.plugins import chain_for
    from dns_server.plugins.bufsize import bufsize_of
    from dns_server.protocol.encode import encode
    from dns_server.protocol.wire import decode_query

    block = config_from_args(build_parser().parse_args([
        "--fixtures", str(fixtures), "--listen", "127.0.0.1:53", "--upstream", "192.0.2.1"])).blocks[0]
    registry = Registry(clock=time.time)
    FixtureSource(fixtures, registry).load()
    snapshot = registry.snapshot
    chain = chain_for(block)
    bufsize = bufsize_of(block)
    wires = [dns.message.make_query(name, qtype).to_wire() for name, qtype in list(dict.fromkeys(questions))[:count]]
    times = []
    for wire in wires:
        started = time.perf_counter_ns()
        query = decode_query(wire)
        encode(query, chain.resolve(query.name, query.qtype, snapshot), bufsize)
        times.append((time.perf_counter_ns() - started) / 1000)
    return times


def receive_buffer(port: int) -> str:
    """The UDP receive buffer the kernel gave the socket on `port` (ss's skmem rb), as text."""
    try:
        out = subprocess.run([program("ss"), "-u", "-l", "-n", "-m", f"sport = :{port}"], capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (ss failed)"
    for token in out.replace("(", ",").replace(")", ",").split(","):
        if token.startswith("rb") and token[2:].isdigit():
            return f"{int(token[2:]) // 1024} KiB"
    return "unknown"


# -- rounds ------------------------------------------------------------------------------------------
@dataclass
class Result:
    """One server in one round."""

    startup_s: float = 0.0
    ready_s: float = 0.0  # until /ready said OK: the first pass starts after it
    cold: Run = field(default_factory=Run)
    saturated: Run = field(default_factory=Run)  # throughput runs (no per-query output to slow dnsperf)
    tail: Run = field(default_factory=Run)  # the same load with dnsperf -v: latency percentiles
    tcp: Run = field(default_factory=Run)
    fixed: Run = field(default_factory=Run)
    rss_mb: float = 0.0  # peak
    rss_end_mb: float = 0.0  # after the runs
    pss_end_mb: float = 0.0  # ... every process of the server together, shared pages split among them
    cpu_seconds: float = 0.0  # used by the server during the saturated runs
    fixed_cpu_seconds: float = 0.0  # ... and during the fixed-rate runs
    foreign_server_core: float = 0.0  # CPU seconds other processes used on the server's core meanwhile
    foreign_client_core: float = 0.0  # ... and on dnsperf's core
    cores_busy: float = 0.0  # CPU seconds both cores were busy (anyone's) during the saturated runs
    dnsperf_cpu: float = 0.0  # ... of which dnsperf's
    wall_seconds: float = 0.0  # of the saturated runs
    rcvbuf: str = ""
    counted: int | None = None  # queries /metrics counted (prometheus)
    from_table: tuple[int, int] = (0, 0)  # rewritten and templated questions: from the answer table, asked
    template_matches: int = 0  # coredns_template_matches_total after the runs
    slice_qps: list[float] = field(default_factory=list)  # each saturated slice's QPS, in turn order
    tcp_slice_qps: list[float] = field(default_factory=list)  # ... and each TCP run's

    @property
    def cpu_us_per_query(self) -> float:
        """Server CPU time per answered query below saturation: the efficiency figure that holds on any machine."""
        return self.fixed_cpu_seconds / self.fixed.completed * 1e6 if self.fixed.completed else float("nan")

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else float("nan")

    def foreign_share(self, seconds: float) -> float:
        return seconds / self.wall_seconds if self.wall_seconds else float("nan")

    @property
    def lost(self) -> int:
        return sum(run.lost for run in (self.cold, self.saturated, self.tail, self.tcp, self.fixed))


def saturated_slice(server: Server, result: Result, query_file: Path, load: list[str], seconds: int) -> None:
    """One saturated dnsperf run against `server`, added to `result` with the CPU it and others used."""
    pids = server.pids()
    before = (cpu_seconds(pids), core_busy_seconds(CORES.server), core_busy_seconds(CORES.client),
              children_cpu_seconds(), time.monotonic())
    run = dnsperf(server.port, query_file, [*load, "-l", str(seconds)])
    result.saturated.add(run)
    result.slice_qps.append(run.qps)
    used = cpu_seconds(pids) - before[0]
    result.cpu_seconds += used
    result.foreign_server_core += max(0.0, core_busy_seconds(CORES.server) - before[1] - used)
    result.foreign_client_core += max(0.0, core_busy_seconds(CORES.client) - before[2]
                                      - (children_cpu_seconds() - before[3]))
    result.cores_busy += core_busy_seconds(CORES.server) - before[1] + core_busy_seconds(CORES.client) - before[2]
    result.dnsperf_cpu += children_cpu_seconds() - before[3]
    result.wall_seconds += time.monotonic() - before[4]


def turns(order: Sequence[Server], seconds: int, slice_seconds: int) -> list[Server]:
    """The servers in turns of `slice_seconds` until each has had `seconds`: forward, then backward, ..."""
    out: list[Server] = []
    for turn in range(max(1, seconds // slice_seconds)):
        out += order if turn % 2 == 0 else order[::-1]
    return out


def run_round(order: list[Server], processes: Processes, workdir: Path, scratch: Path, query_file: Path,
              probe: str, args: argparse.Namespace) -> dict[str, Result]:
    """Start every server, then measure them in turns."""
    results = {server.name: Result() for server in order}
    full = [server for server in order if server.full]
    load = ["-c", str(args.clients), "-q", str(args.outstanding)]
    verbose = scratch / "verbose.out"
    try:
        for server in order:
            results[server.name].startup_s, results[server.name].ready_s = server.start(processes, workdir, probe)
            results[server.name].rcvbuf = receive_buffer(server.port)
        for server in order:
            results[server.name].cold = dnsperf(server.port, server.query_file or query_file, [*load, "-n", "1"])
        for server in turns(order, args.duration, args.slice):
            saturated_slice(server, results[server.name], server.query_file or query_file, load, args.slice)
            if server.full:
                results[server.name].tail.add(dnsperf(server.port, query_file, [*load, "-l", str(args.slice)],
                                                      verbose_file=verbose))
        tcp = ["-m", "tcp", "-c", str(TCP_CLIENTS), "-q", str(args.outstanding), "-l", str(args.slice)]
        for server in turns(full, args.tcp_duration, args.slice):
            run = dnsperf(server.port, query_file, tcp)
            results[server.name].tcp.add(run)
            results[server.name].tcp_slice_qps.append(run.qps)
        for server in turns(full, args.fixed_duration, args.slice):
            used = cpu_seconds(server.pids())
            results[server.name].fixed.add(dnsperf(
                server.port, query_file, [*load, "-l", str(args.slice), "-Q", str(args.rate)], verbose_file=verbose))
            results[server.name].fixed_cpu_seconds += cpu_seconds(server.pids()) - used
        for server in order:
            result = results[server.name]
            result.rss_mb, result.rss_end_mb = memory_mb(server.pids(), "VmHWM"), memory_mb(server.pids(), "VmRSS")
            result.pss_end_mb = pss_mb(server.pids())
            result.counted = server.queries_counted() if server.prometheus else None
            if server.rules:
                result.from_table = answered_from_table(server, scratch)
                result.template_matches = server.counter("coredns_template_matches_total") or 0
    finally:
        for server in order:
            if server.process is not None:
                processes.stop(server.process)
    return results


def answered_from_table(server: Server, scratch: Path) -> tuple[int, int]:
    """The server's rewritten and templated questions (under example.org), asked once each: how many the
    answer table answered, of how many were answered: every one but its misses
    (`dns_server_answer_cache_misses_total`, before and after)."""
    asked = [question for question in dict.fromkeys(server.questions or ())
             if question[0].endswith(f".{TEMPLATE_ZONE}")]
    misses = "dns_server_answer_cache_misses_total"
    before = server.counter(misses) or 0
    run = dnsperf(server.port, write_queries(asked, scratch / "rewritten-only.txt"), ["-n", "1"])
    answered = run.completed
    return answered - ((server.counter(misses) or 0) - before), answered


# -- the report --------------------------------------------------------------------------------------
def paired(rounds: list[dict[str, Result]], a: str, b: str,
           slices: Callable[[Result], list[float]] = lambda r: r.slice_qps) -> list[float]:
    """QPS of server a over server b in each turn's pair of saturated slices (UDP, or `slices`), every round."""
    return [x / y for r in rounds for x, y in zip(slices(r[a]), slices(r[b]), strict=True)]


def against_baseline(rounds: list[dict[str, Result]]) -> list[tuple[str, list[float]]]:
    """The ratios `flags` / baseline: the saturated slices paired within each turn, the rest within each round."""
    def per_round(get: Callable[[Result], float]) -> list[float]:
        return [get(r[FLAGS]) / get(r[BASELINE]) for r in rounds]

    return [("QPS (saturated UDP, paired slices)", paired(rounds, FLAGS, BASELINE)),
            ("first pass QPS", per_round(lambda r: r.cold.qps)),
            ("QPS over TCP (paired slices)", paired(rounds, FLAGS, BASELINE, lambda r: r.tcp_slice_qps)),
            ("start-up to first answer (lower is better)", per_round(lambda r: r.startup_s)),
            ("peak RSS (lower is better)", per_round(lambda r: r.rss_mb))]


def report_baseline(rounds: list[dict[str, Result]], baseline: Path) -> None:
    """The table this checkout / baseline: the median of each ratio, and its spread."""
    print(f"this checkout ({commit(REPO)}) / baseline ({baseline}, {commit(baseline)}): medians of the ratios")
    print_table(("", "this checkout / baseline", "ratios", "lowest", "highest"),
                [(label, f"{median(ratios):.1%}", str(len(ratios)), f"{min(ratios):.1%}", f"{max(ratios):.1%}")
                 for label, ratios in against_baseline(rounds)])
    print()


def commit(checkout: Path) -> str:
    """The checkout's commit, abbreviated, with `+changes` when its tracked files differ from it."""
    try:
        head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"
    return head + ("+changes" if dirty else "")


def report(rounds: list[dict[str, Result]], cold_us: list[float], args: argparse.Namespace) -> bool:
    """Print the tables and the targets; True if every target holds."""
    def ratio(a: str, b: str, get: Callable[[Result], float]) -> float:
        return median(get(r[a]) / get(r[b]) for r in rounds)

    def med(name: str, get: Callable[[Result], float]) -> float:
        return median(get(r[name]) for r in rounds)

    qps_ratio = ratio(FLAGS, NSD, lambda r: r.saturated.qps)
    p99_ratio = ratio(FLAGS, NSD, lambda r: r.tail.percentile_ms(0.99))
    tcp_ratio = ratio(FLAGS, NSD, lambda r: r.tcp.qps)
    first_pass_ratio = ratio(FLAGS, NSD, lambda r: r.cold.qps)
    cpu_ratio = ratio(FLAGS, NSD, lambda r: r.cpu_us_per_query)
    corefile_pairs, prometheus_pairs = paired(rounds, COREFILE, FLAGS), paired(rounds, COREFILE, NO_PROMETHEUS)
    rewrite_pairs = paired(rounds, REWRITE, COREFILE)
    corefile_ratio, rewrite_ratio = median(corefile_pairs), median(rewrite_pairs)
    from_table = [r[REWRITE].from_table for r in rounds]
    all_from_table = all(asked and hits == asked for hits, asked in from_table)
    prometheus_cost = 1 - median(prometheus_pairs)
    counted = [r[COREFILE].counted for r in rounds]
    lost = max(r[FLAGS].lost for r in rounds)
    rss, startup = med(FLAGS, lambda r: r.rss_mb), med(FLAGS, lambda r: r.startup_s)

    every, both = (FLAGS, BASELINE, COREFILE, REWRITE, NO_PROMETHEUS, NSD), (FLAGS, BASELINE, NSD)  # whom a row is for
    rows: list[tuple[str, Callable[[Result], float], str, tuple[str, ...]]] = [
        ("QPS (saturated)", lambda r: r.saturated.qps, ",.0f", every),
        ("avg latency ms (saturated)", lambda r: r.saturated.avg_ms, ".3f", every),
        ("p50 latency ms (saturated)", lambda r: r.tail.percentile_ms(0.5), ".3f", both),
        ("p99 latency ms (saturated)", lambda r: r.tail.percentile_ms(0.99), ".3f", both),
        ("p99.9 latency ms (saturated)", lambda r: r.tail.percentile_ms(0.999), ".3f", both),
        (f"QPS over TCP ({TCP_CLIENTS} connections)", lambda r: r.tcp.qps, ",.0f", both),
        ("first pass QPS (once ready)", lambda r: r.cold.qps, ",.0f", every),
        (f"avg latency ms at {args.rate:,} qps", lambda r: r.fixed.avg_ms, ".3f", both),
        (f"p99 latency ms at {args.rate:,} qps", lambda r: r.fixed.percentile_ms(0.99), ".3f", both),
        (f"server CPU us per query at {args.rate:,} qps", lambda r: r.cpu_us_per_query, ".1f", both),
        ("lost queries (all runs, max)", lambda r: r.lost, ",.0f", every),
        ("peak RSS MB", lambda r: r.rss_mb, ".1f", every),
        ("RSS after the runs MB", lambda r: r.rss_end_mb, ".1f", every),
        ("start-up to first answer s", lambda r: r.startup_s, ".2f", every),
        ("start-up to ready s (answers made ahead)", lambda r: r.ready_s, ".2f", every),
        ("server CPU % during saturated runs", lambda r: r.cpu_share * 100, ".0f", every),
        ("others' CPU % on server core", lambda r: r.foreign_share(r.foreign_server_core) * 100, ".0f", every),
        ("others' CPU % on dnsperf core", lambda r: r.foreign_share(r.foreign_client_core) * 100, ".0f", every),
    ]
    names = list(rounds[0])
    print(f"\nmedians over {len(rounds)} round(s); per round and server {args.duration // args.slice} saturated runs "
          f"of dnsperf -c {args.clients} -q {args.outstanding} -l {args.slice} for QPS (and as many with -v for "
          f"percentiles), taking turns; server on core {CORES.server}, dnsperf on core {CORES.client}")
    print_table(("", *names), [(label, *(format(med(name, get), fmt) if name in whom else ""
                                        for name in names)) for label, get, fmt, whom in rows])
    print(f"\nUDP receive buffer: {', '.join(f'{name} {rounds[0][name].rcvbuf}' for name in names)} "
          f"(ss skmem rb, the kernel doubles the request; net.core.rmem_max = "
          f"{int(Path('/proc/sys/net/core/rmem_max').read_text()) // 1024} KiB)")
    disturbed = max(r.foreign_share(max(r.foreign_server_core, r.foreign_client_core))
                    for results in rounds for r in results.values())
    if disturbed > 0.1:
        print("Other processes used the server's or dnsperf's core during some runs: those runs understate QPS and "
              "overstate tail latency; the turns keep the ratios fairer.")
    if med(NSD, lambda r: r.cpu_share) < 0.9:
        print("NSD's core was not saturated: dnsperf on one core is the limit, so NSD's QPS is a floor and the "
              "ratio flatters us.")
    print("per round: QPS flags/NSD " + ", ".join(f"{r[FLAGS].saturated.qps / r[NSD].saturated.qps:.0%}"
                                                  for r in rounds)
          + "; p99 flags/NSD " + ", ".join(f"{r[FLAGS].tail.percentile_ms(0.99) / r[NSD].tail.percentile_ms(0.99):.2f}x"
                                           for r in rounds))
    for what, pairs in (("Corefile/flags", corefile_pairs), ("Corefile/no prometheus", prometheus_pairs),
                        (f"{REWRITE}/Corefile", rewrite_pairs)):
        print(f"paired slices, QPS {what}: median {median(pairs):.1%} of {len(pairs)}, from {min(pairs):.1%} to "
              f"{max(pairs):.1%}")
    print(f"server CPU per query at {args.rate:,} qps, flags / NSD: {cpu_ratio:.2f}x")
    print(f"{REWRITE}: its rewritten and templated questions asked once more, each once: answered from the answer "
          "table " + ", ".join(f"{hits:,} of {asked:,}" for hits, asked in from_table)
          + "; coredns_template_matches_total " + ", ".join(f"{r[REWRITE].template_matches:,}" for r in rounds))
    print(f"cold answer (decode + resolve + encode, {len(cold_us)} never-seen questions of the query file): median "
          f"{percentile(Counter(cold_us), 0.5):.1f} us, p90 {percentile(Counter(cold_us), 0.9):.1f} us, "
          f"p99 {percentile(Counter(cold_us), 0.99):.1f} us\n")
    if args.baseline is not None:
        report_baseline(rounds, args.baseline)
    cold = percentile(Counter(cold_us), 0.5)
    served = all(c is not None and c > 0 for c in counted)
    return report_targets([
        Target("QPS flags / NSD", f"{qps_ratio:.1%}", f">= {TARGET_QPS_RATIO:.0%}", qps_ratio >= TARGET_QPS_RATIO),
        Target("p99 flags / NSD (saturated)", f"{p99_ratio:.2f}x", f"<= {TARGET_P99_RATIO:g}x",
               p99_ratio <= TARGET_P99_RATIO),
        Target("lost queries", f"{lost}", "0", lost == 0),
        Target("peak RSS", f"{rss:.1f} MB", f"< {TARGET_RSS_MB:g} MB", rss < TARGET_RSS_MB),
        Target("start-up to first answer", f"{startup:.2f} s", f"<= {TARGET_STARTUP_S:g} s",
               startup <= TARGET_STARTUP_S),
        Target("QPS over TCP flags / NSD", f"{tcp_ratio:.1%}", f">= {TARGET_TCP_RATIO:.0%}",
               tcp_ratio >= TARGET_TCP_RATIO),
        Target("first pass QPS flags / NSD", f"{first_pass_ratio:.1%}", f">= {TARGET_FIRST_PASS_RATIO:.0%}",
               first_pass_ratio >= TARGET_FIRST_PASS_RATIO),
        Target("cold answer, median", f"{cold:.1f} us", f"<= {TARGET_COLD_US:g} us", cold <= TARGET_COLD_US),
        Target("QPS Corefile / flags", f"{corefile_ratio:.1%}", f">= {TARGET_COREFILE_RATIO:.0%}",
               corefile_ratio >= TARGET_COREFILE_RATIO),
        Target(f"QPS {REWRITE} / Corefile", f"{rewrite_ratio:.1%}", f">= {TARGET_REWRITE_RATIO:.0%}",
               rewrite_ratio >= TARGET_REWRITE_RATIO),
        Target("rewritten and templated answers from the answer table",
               ", ".join(f"{hits:,} of {asked:,}" for hits, asked in from_table), "all", all_from_table),
        Target("QPS cost of prometheus", f"{prometheus_cost:.1%}" if served else "/metrics not served or 0",
               f"<= {TARGET_PROMETHEUS_COST:.0%}, counting", served and prometheus_cost <= TARGET_PROMETHEUS_COST),
    ])



def report_workers(rounds: list[dict[str, Result]], pair: list[Server], args: argparse.Namespace) -> None:
    """The table of `--workers N`: ours with N workers against NSD with N servers, both on every core."""
    ours, nsd = (server.name for server in pair)

    def med(name: str, get: Callable[[Result], float]) -> float:
        return median(get(r[name]) for r in rounds)

    def share(seconds: Callable[[Result], float]) -> Callable[[Result], float]:
        return lambda r: seconds(r) / r.wall_seconds * 100 if r.wall_seconds else float("nan")

    rows: list[tuple[str, Callable[[Result], float], str]] = [
        ("QPS (saturated)", lambda r: r.saturated.qps, ",.0f"),
        ("p50 latency ms (saturated)", lambda r: r.tail.percentile_ms(0.5), ".3f"),
        ("p99 latency ms (saturated)", lambda r: r.tail.percentile_ms(0.99), ".3f"),
        (f"QPS over TCP ({TCP_CLIENTS} connections)", lambda r: r.tcp.qps, ",.0f"),
        ("first pass QPS (once ready)", lambda r: r.cold.qps, ",.0f"),
        (f"p99 latency ms at {args.rate:,} qps", lambda r: r.fixed.percentile_ms(0.99), ".3f"),
        (f"server CPU us per query at {args.rate:,} qps", lambda r: r.cpu_us_per_query, ".1f"),
        ("lost queries (all runs, max)", lambda r: r.lost, ",.0f"),
        ("PSS after the runs MB, every process", lambda r: r.pss_end_mb, ".1f"),
        ("saturated: server CPU % (of 200)", share(lambda r: r.cpu_seconds), ".0f"),
        ("saturated: dnsperf CPU %", share(lambda r: r.dnsperf_cpu), ".0f"),
        ("saturated: others' CPU % on the two cores",
         share(lambda r: max(0.0, r.cores_busy - r.cpu_seconds - r.dnsperf_cpu)), ".0f"),
    ]
    print(f"\n--workers {args.workers}: medians over {len(rounds)} round(s), the servers taking turns as above; "
          f"neither server pinned (both run on cores {CORES.server} and {CORES.client}), dnsperf on core "
          f"{CORES.client} with {args.clients} sockets: it takes a share of the cores the servers would have")
    print_table(("", ours, nsd), [(label, format(med(ours, get), fmt), format(med(nsd, get), fmt))
                                  for label, get, fmt in rows])
    lost = max(r[ours].lost for r in rounds)
    print(f"QPS {ours} / {nsd}: {median(r[ours].saturated.qps / r[nsd].saturated.qps for r in rounds):.1%}; "
          f"p99 {median(r[ours].tail.percentile_ms(0.99) / r[nsd].tail.percentile_ms(0.99) for r in rounds):.2f}x; "
          f"lost queries {lost}\n")


# -- main --------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, each starting every server afresh (default %(default)s)")
    parser.add_argument("--duration", type=int, default=15,
                        help="seconds of saturated UDP runs per server and round (default %(default)s)")
    parser.add_argument("--tcp-duration", type=int, default=9,
                        help="seconds of saturated TCP runs per server and round (default %(default)s)")
    parser.add_argument("--fixed-duration", type=int, default=6,
                        help="seconds of fixed-rate runs per server and round (default %(default)s)")
    parser.add_argument("--slice", type=int, default=3,
                        help="seconds of each run: the servers take turns (default %(default)s)")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c over UDP (default %(default)s)")
    parser.add_argument("--outstanding", type=int, default=200,
                        help="dnsperf -q: queries in flight (default %(default)s)")
    parser.add_argument("--rate", type=int, default=50_000,
                        help="queries a second of the fixed-rate runs (default %(default)s)")
    parser.add_argument("--queries", type=int, default=DEFAULT_COUNT,
                        help="questions in the query file (default %(default)s)")
    parser.add_argument("--cold", type=int, default=COLD_SAMPLE,
                        help="never-seen questions timed for the cold-answer cost (default %(default)s)")
    parser.add_argument("--data", type=Path, help="write the generated data here and keep it (default: a temp dir)")
    parser.add_argument("--generate-only", action="store_true", help="write the data to --data and stop")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="after the rounds, as many rounds of ours with N workers against NSD with N servers, "
                             "neither pinned (default %(default)s: none)")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s runs: does it work?")
    parser.add_argument("--autopath", action="store_true",
                        help="the Corefile servers with `pods verified` and `autopath @kubernetes`, dnsperf's address "
                             "a pod's (bench/cluster.py AUTOPATH_CLIENT)")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run the server of the checkout DIR (e.g. ../before) as `flags` runs, and compare")
    args = parser.parse_args()
    if args.generate_only and args.data is None:
        parser.error("--generate-only needs --data DIR")
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        if not (args.baseline / "dns_server" / "__main__.py").is_file():
            parser.error(f"--baseline {args.baseline}: not a checkout of this repository (no dns_server/__main__.py)")
    if args.quick:
        args.rounds, args.duration, args.tcp_duration, args.fixed_duration, args.slice = 1, 3, 3, 3, 3
    return run_main(lambda processes: measure(args, processes))


def measure(args: argparse.Namespace, processes: Processes) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-run-") as temp, \
            tempfile.TemporaryDirectory(prefix="bench-run-", dir=memory_directory()) as scratch:
        workdir = Path(temp)
        data = args.data or workdir / "data"
        cluster = build_cluster()
        fixtures = write_fixtures(cluster, data / "fixtures").parent
        zone_file = write_zone(cluster, data / f"{ZONE}.zone")
        questions = build_queries(cluster, args.queries)
        query_file = write_queries(questions, data / "queries.txt")
        print(f"data: {len(cluster.services):,} ClusterIP + {len(cluster.headless):,} headless services in "
              f"{len(cluster.namespaces)} namespaces ({fixtures}, {zone_file.name}); {len(questions):,} queries")
        if args.generate_only:
            return 0
        require(("dnsperf", "nsd", "taskset", "ss"))
        if (os.cpu_count() or 1) < 2:
            raise BenchError("needs two cores: one for the server, one for dnsperf")
        probe = cluster.services[-1].fqdn  # the last service in the manifests
        if args.autopath:
            client = pod_object(AUTOPATH_CLIENT, managed_fields=False)
            (fixtures / "autopath-client.json").write_text(json.dumps(client))
        every = servers(fixtures, zone_file, workdir, questions, args.baseline, args.autopath)
        pair = worker_servers(fixtures, zone_file, workdir, args.workers) if args.workers > 1 else []
        check(every + pair, processes, workdir, probe, questions)
        cold_us = cold_answer_us(fixtures, questions, args.cold)
        rounds: list[dict[str, Result]] = []
        for number in range(args.rounds):
            order = every[number % len(every):] + every[:number % len(every)]
            print(f"round {number + 1}/{args.rounds} ...", flush=True)
            results = run_round(order, processes, workdir, Path(scratch), query_file, probe, args)
            for server in every:
                r = results[server.name]
                detail = f", TCP {r.tcp.qps:,.0f} qps, p99 {r.tail.percentile_ms(0.99):.3f} ms" if server.full else ""
                print(f"  {server.name:13}  start-up {r.startup_s:.2f} s, first pass {r.cold.qps:,.0f} qps, saturated "
                      f"{r.saturated.qps:,.0f} qps{detail}, lost {r.lost}, CPU {r.cpu_share:.0%}, others on the two "
                      f"cores {r.foreign_share(r.foreign_server_core):.0%}/{r.foreign_share(r.foreign_client_core):.0%}"
                      f", peak RSS {r.rss_mb:.1f} MB", flush=True)
            rounds.append({server.name: results[server.name] for server in every})
        held = report(rounds, cold_us, args)
        if pair:
            clients = max(args.clients, CLIENTS_PER_WORKER * args.workers)
            spread = argparse.Namespace(**{**vars(args), "clients": clients})
            report_workers([run_round(pair if number % 2 == 0 else pair[::-1], processes, workdir, Path(scratch),
                                      query_file, probe, spread) for number in range(args.rounds)], pair, spread)
        return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
