"""Forwarding benchmark: our server in front of a local unbound, driven by dnsperf; prints the figures.

    .venv/bin/python bench/forward.py [--rounds 3] [--seconds 10] [--rate 2000] [--repeated 100] [--mix both]

Needs the Debian packages `dnsperf`, `unbound` and `util-linux` (taskset).  What runs:

- unbound, the upstream, serves `*.ext.example.com` (A and AAAA, TTL 3600) from a zone file
  (auth-zone), without query logging, pinned to CPU 1 (`taskset -c 1`);
- our server (`python -m dns_server`) on the bundled zones/ cluster, forwarding to it, pinned to
  CPU 0 (`taskset -c 0`);
- dnsperf, pinned to CPU 1 with unbound, `-c 4 -q 100`, one pass through a query file for at
  most `--seconds`, with `-v` so every query's latency is known.  Each round has two runs: one as
  fast as the server answers (its QPS is the throughput), then one at `--rate` queries a second,
  below saturation, whose latencies are the server's own rather than time spent queueing.

Two query mixes (`--mix external|pods|both`):
- external: external names only, A and AAAA; half of them are `--repeated` names asked over and
  over (cache hits; asked once before the measured run), half are asked once each (misses);
- pods: the same lookups as a pod makes them with `search <ns>.svc.cluster.local svc.cluster.local
  cluster.local` and `ndots:5`: for each name, A and AAAA of the three search-path misses (answered
  by us, NXDOMAIN, never forwarded), then A and AAAA of the name itself.

For each round it prints the queries per second of the saturated run (dnsperf's figure for the
whole mix), the cache hit ratio among its external queries (1 - queries unbound received /
external queries sent, from unbound's counters), the CPU used during it by our server, by
anything else on CPU 0 (other people's work on this shared machine), by unbound and by dnsperf
(each a share of one core: whichever side is near 100% is the bottleneck), and the median
and p99 latency of cache hits, cache misses and search-path misses in the fixed-rate run; then
the median over the rounds.
The machine has 2 cores and is shared: the figures are noisy, so compare medians, and runs made
side by side.  Every process started here is stopped on exit; the exit status is 2 when the
benchmark could not measure (it has no targets).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from common import (
    CORES,
    REPO,
    Processes,
    Run,
    children_cpu_seconds,
    core_busy_seconds,
    cpu_seconds,
    dnsperf,
    free_port,
    memory_directory,
    pinned,
    program,
    require,
    run_main,
    wait_for_answer,
)

ZONE = "ext.example.com"
CLUSTER = "cluster.local"
SEARCH = [f"shop.svc.{CLUSTER}", f"svc.{CLUSTER}", CLUSTER]  # a pod in namespace `shop`
STARTUP_DEADLINE = 30.0
QUERIES_PER_ROUND = 400_000  # more than a round can send: dnsperf stops at --seconds
APPARMOR = Path("/sys/module/apparmor/parameters/enabled")
CPU_USERS = ("server", "others", "unbound", "dnsperf")
CLASSES = ("hit", "miss", "search")

ZONE_FILE = f"""\
$ORIGIN example.com.
@      3600 IN SOA  ns.example.com. hostmaster.example.com. 1 7200 1800 86400 60
@      3600 IN NS   ns.example.com.
ns     3600 IN A    192.0.2.1
*.ext  3600 IN A    192.0.2.80
*.ext  3600 IN AAAA 2001:db8::80
"""


class Upstream:
    """unbound serving ZONE_FILE, with counters over a local control socket."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.config = directory / "unbound.conf"
        (directory / "example.com.zone").write_text(ZONE_FILE)
        self.config.write_text(f"""\
server:
  interface: 127.0.0.1
  port: {self.port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{directory}"
  pidfile: "{directory}/unbound.pid"
  logfile: "{directory}/unbound.log"
  use-syslog: no
  num-threads: 1
  do-ip6: no
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  so-rcvbuf: 8m
  local-zone: "." transparent
  local-data: ". 86400 IN NS ns.example.com."
auth-zone:
  name: "example.com."
  zonefile: "{directory}/example.com.zone"
  for-downstream: yes
  for-upstream: no
  fallback-enabled: no
remote-control:
  control-enable: yes
  control-interface: "{directory}/control.sock"
  control-use-cert: no
""")

    def binary(self) -> str:
        """unbound, or a copy where AppArmor would keep /usr/sbin/unbound out of our directory."""
        path = program("unbound")
        if APPARMOR.exists() and APPARMOR.read_text().strip() == "Y":
            copy = self.directory / "unbound"
            shutil.copy2(path, copy)
            return str(copy)
        return path

    def queries(self) -> int:
        out = subprocess.run([program("unbound-control"), "-c", str(self.config), "stats_noreset"],
                             capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("total.num.queries="):
                return int(float(line.partition("=")[2]))
        raise RuntimeError("unbound-control printed no total.num.queries")


@dataclass
class Round:
    qps: float  # saturated run
    lost: int
    hit_ratio: float  # saturated run
    cpu: dict[str, float]  # saturated run: share of one core used by our server, others on its core, unbound, dnsperf
    latency: Run  # fixed-rate run, per class of name


def lookups(names: list[str], pods: bool) -> Iterator[str]:
    """dnsperf lines for looking up `names` (A and AAAA), with a pod's search path when `pods`."""
    for name in names:
        if pods:
            for suffix in SEARCH:
                yield f"{name}.{suffix} A"
                yield f"{name}.{suffix} AAAA"
        yield f"{name} A"
        yield f"{name} AAAA"


def query_file(path: Path, run: str, repeated: list[str], pods: bool, rng: random.Random) -> None:
    """Half repeated names, half names asked once (unique across runs), in random order."""
    lines: list[str] = []
    serial = 0
    per_lookup = 8 if pods else 2
    while len(lines) < QUERIES_PER_ROUND:
        if rng.random() < 0.5:
            name = rng.choice(repeated)
        else:
            name = f"u{run}-{serial}.{ZONE}"
            serial += 1
        lines.extend(lookups([name], pods))
    del lines[QUERIES_PER_ROUND - QUERIES_PER_ROUND % per_lookup:]
    path.write_text("\n".join(lines) + "\n")


def run_round(server: int, server_port: int, upstream: Upstream, unbound: int, work: Path, scratch: Path, run: str,
              repeated: list[str], pods: bool, seconds: float, rate: int) -> Round:
    saturated, steady = work / f"{run}-saturated.txt", work / f"{run}-steady.txt"
    query_file(saturated, f"{run}s", repeated, pods, random.Random(f"{run}s"))
    query_file(steady, f"{run}r", repeated, pods, random.Random(f"{run}r"))
    warm = work / "warm.txt"
    warm.write_text("".join(f"{line}\n" for line in lookups(repeated, False)))
    names = set(repeated)

    def classify(name: str) -> str:
        if name.endswith(CLUSTER):
            return "search"
        return "hit" if name in names else "miss"

    verbose = scratch / "verbose.out"
    pass_once = ["-n", "1", "-l", f"{seconds:g}", "-c", "4", "-q", "100"]
    dnsperf(server_port, warm, pass_once)  # the repeated names are in the cache before the measured runs
    before = upstream.queries()
    cpu_before = (cpu_seconds([server]), core_busy_seconds(CORES.server), cpu_seconds([unbound]),
                  children_cpu_seconds())
    started = time.monotonic()
    measured = dnsperf(server_port, saturated, pass_once, verbose_file=verbose, classify=classify)
    elapsed = time.monotonic() - started
    cpu_after = (cpu_seconds([server]), core_busy_seconds(CORES.server), cpu_seconds([unbound]),
                 children_cpu_seconds())  # children: dnsperf, the one child that ended meanwhile
    cpu = {who: (after - earlier) / elapsed for who, after, earlier in zip(CPU_USERS, cpu_after, cpu_before)}
    cpu["others"] = max(cpu["others"] - cpu["server"], 0.0)  # CPU 0 busy, less our server
    external = sum(sum(measured.classes.get(name, {}).values()) for name in ("hit", "miss"))
    hit_ratio = 1 - (upstream.queries() - before) / external if external else 0.0
    steady_run = dnsperf(server_port, steady, [*pass_once, "-Q", str(rate)], verbose_file=verbose, classify=classify)
    return Round(measured.qps, measured.lost + steady_run.lost, hit_ratio, cpu, steady_run)


def row(label: str, qps: float, hit_ratio: float, cpu: dict[str, float], figures: dict[str, tuple[float, float]],
        classes: list[str]) -> str:
    cells = [f"{label:<7}", f"{qps:>9,.0f}", f"{hit_ratio:>8.1%}",
             " ".join(f"{cpu[who]:>6.0%}" for who in CPU_USERS)]
    for name in classes:
        p50, p99 = figures[name]
        cells.append(f"{p50:>8.2f} {p99:>8.2f}")
    return "  ".join(cells)


def report(title: str, rounds: list[Round], pods: bool) -> None:
    classes = list(CLASSES) if pods else ["hit", "miss"]
    print(f"\n{title}")
    header = (["round  ", "      QPS", "hit ratio", "  ours others unbound dnsperf"]
              + [f"{name + ' p50':>8} {name + ' p99':>8}" for name in classes])
    print("  ".join(header))
    per_round = []
    for number, result in enumerate(rounds, 1):
        figures = {name: (result.latency.percentile_ms(0.5, name), result.latency.percentile_ms(0.99, name))
                   for name in classes}
        per_round.append(figures)
        lost = f"   ({result.lost} queries lost)" if result.lost else ""
        print(row(str(number), result.qps, result.hit_ratio, result.cpu, figures, classes) + lost)
    medians = {name: (statistics.median(f[name][0] for f in per_round),
                      statistics.median(f[name][1] for f in per_round)) for name in classes}
    cpu = {who: statistics.median(r.cpu[who] for r in rounds) for who in CPU_USERS}
    print(row("median", statistics.median(r.qps for r in rounds),
              statistics.median(r.hit_ratio for r in rounds), cpu, medians, classes))
    counts = {name: sum(sum(r.latency.classes.get(name, {}).values()) for r in rounds) for name in classes}
    print("QPS, hit ratio and CPU (share of one core; 'others': the rest of CPU 0's use) from the saturated runs;\n"
          "latencies (ms) from the runs at the fixed rate; queries in those: "
          + ", ".join(f"{name} {count:,}" for name, count in counts.items()))


def measure(args: argparse.Namespace, processes: Processes) -> int:
    require(("dnsperf", "unbound", "unbound-control", "taskset"))
    with tempfile.TemporaryDirectory(prefix="bench-forward-") as temp, \
            tempfile.TemporaryDirectory(prefix="bench-forward-", dir=memory_directory()) as scratch:
        work = Path(temp)
        upstream = Upstream(work)
        unbound = processes.start(pinned(CORES.client, [upstream.binary(), "-d", "-c", str(upstream.config)]),
                                  work / "unbound.out")
        wait_for_answer(upstream.port, f"ready.{ZONE}", unbound, work / "unbound.out", started=time.monotonic(),
                        deadline=STARTUP_DEADLINE)
        port = free_port()
        server = processes.start(pinned(CORES.server, [
            sys.executable, "-m", "dns_server", "--fixtures", str(REPO / "zones"), "--listen", f"127.0.0.1:{port}",
            "--upstream", f"127.0.0.1:{upstream.port}"]), work / "server.log", REPO)
        wait_for_answer(port, f"ready.{ZONE}", server, work / "server.log", started=time.monotonic(),
                        deadline=STARTUP_DEADLINE)
        repeated = [f"r{i}.{ZONE}" for i in range(args.repeated)]
        print(f"forwarding benchmark: {args.rounds} rounds, each a saturated run and a run at {args.rate} qps "
              f"(latencies) of at most {args.seconds:g} s; our server on CPU {CORES.server}, unbound and dnsperf "
              f"(-c 4 -q 100) on CPU {CORES.client}; {args.repeated} repeated names make half of the external queries")
        mixes = [("external", False), ("pods", True)] if args.mix == "both" else [(args.mix, args.mix == "pods")]
        for name, pods in mixes:
            rounds = [run_round(server.pid, port, upstream, unbound.pid, work, Path(scratch), f"{name}{number}",
                                repeated, pods, args.seconds, args.rate) for number in range(1, args.rounds + 1)]
            title = ("mix 'pods': each lookup as a pod makes it (3 search-path misses x A/AAAA, then the name)"
                     if pods else "mix 'external': external names only, A and AAAA")
            report(title, rounds, pods)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured run")
    parser.add_argument("--rate", type=int, default=2000, help="queries a second of the latency run")
    parser.add_argument("--repeated", type=int, default=100, help="how many distinct names are asked repeatedly")
    parser.add_argument("--mix", choices=("external", "pods", "both"), default="both")
    args = parser.parse_args()
    return run_main(lambda processes: measure(args, processes))


if __name__ == "__main__":
    sys.exit(main())
