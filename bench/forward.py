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
side by side.  Every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

try:
    import dns.exception
    import dns.message
    import dns.query
except ImportError:
    sys.exit("bench: dnspython is missing: run this with the project's virtualenv (.venv/bin/python bench/forward.py)")

REPO = Path(__file__).resolve().parents[1]
ZONE = "ext.example.com"
CLUSTER = "cluster.local"
SEARCH = [f"shop.svc.{CLUSTER}", f"svc.{CLUSTER}", CLUSTER]  # a pod in namespace `shop`
STARTUP_DEADLINE = 30.0
QUERIES_PER_ROUND = 400_000  # more than a round can send: dnsperf stops at --seconds
APPARMOR = Path("/sys/module/apparmor/parameters/enabled")
CPU_USERS = ("server", "others", "unbound", "dnsperf")

ZONE_FILE = f"""\
$ORIGIN example.com.
@      3600 IN SOA  ns.example.com. hostmaster.example.com. 1 7200 1800 86400 60
@      3600 IN NS   ns.example.com.
ns     3600 IN A    192.0.2.1
*.ext  3600 IN A    192.0.2.80
*.ext  3600 IN AAAA 2001:db8::80
"""


def program(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        sys.exit(f"bench: {name} is missing: apt-get install {package}")
    return path


def pinned(cpu: int, args: list[str]) -> list[str]:
    """`args` run on one CPU (when the machine has it)."""
    if (os.cpu_count() or 1) <= cpu:
        return args
    return [program("taskset", "util-linux"), "-c", str(cpu), *args]


def wait_until_answering(port: int, name: str, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"bench: {what} exited with {process.returncode}")
        try:
            if dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=0.3).answer:
                return
        except (dns.exception.Timeout, OSError):
            pass
    sys.exit(f"bench: {what} did not answer within {STARTUP_DEADLINE:g} s")


def free_port() -> int:
    """A loopback port free for both UDP and TCP."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class Upstream:
    """unbound serving ZONE_FILE, with counters over a local control socket."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.config = directory / "unbound.conf"
        self.process: subprocess.Popen[bytes] | None = None
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
        path = program("unbound", "unbound")
        if APPARMOR.exists() and APPARMOR.read_text().strip() == "Y":
            copy = self.directory / "unbound"
            shutil.copy2(path, copy)
            return str(copy)
        return path

    def queries(self) -> int:
        out = subprocess.run([program("unbound-control", "unbound"), "-c", str(self.config), "stats_noreset"],
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
    latency: dict[str, list[float]]  # fixed-rate run: class -> seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu0_busy_seconds() -> float:
    """Time CPU 0 has spent on anything but idling (/proc/stat), whoever used it."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu0 "):
            ticks = [int(value) for value in line.split()[1:]]
            return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
    return 0.0


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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


def dnsperf(port: int, data: Path, seconds: float, rate: int = 0) -> tuple[float, int, list[tuple[str, float]]]:
    """(QPS, lost, [(name, latency)]) of one pass through `data`, at most `rate` queries a second."""
    args = pinned(1, [program("dnsperf", "dnsperf"), "-s", "127.0.0.1", "-p", str(port), "-d", str(data),
                      "-n", "1", "-l", str(seconds), "-c", "4", "-q", "100", "-v", *(["-Q", str(rate)] if rate else [])])
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    qps = 0.0
    lost = 0
    latencies = []
    for line in out.splitlines():
        if line.startswith("> "):
            fields = line.split()  # > NOERROR name type seconds
            latencies.append((fields[2].lower().rstrip("."), float(fields[4])))
        elif "Queries per second:" in line:
            qps = float(line.split()[-1])
        elif "Queries lost:" in line:
            lost = int(line.split()[2])
    return qps, lost, latencies


def classify(name: str, repeated: set[str]) -> str:
    if name.endswith(CLUSTER):
        return "search"
    return "hit" if name in repeated else "miss"


def run_round(server: subprocess.Popen[bytes], server_port: int, upstream: Upstream, work: Path, run: str,
              repeated: list[str], pods: bool, seconds: float, rate: int) -> Round:
    saturated, steady = work / f"{run}-saturated.txt", work / f"{run}-steady.txt"
    query_file(saturated, f"{run}s", repeated, pods, random.Random(f"{run}s"))
    query_file(steady, f"{run}r", repeated, pods, random.Random(f"{run}r"))
    warm = work / "warm.txt"
    warm.write_text("".join(f"{line}\n" for line in lookups(repeated, False)))
    dnsperf(server_port, warm, seconds)  # the repeated names are in the cache before the measured runs
    names = set(repeated)
    assert upstream.process is not None
    before = upstream.queries()
    cpu_before = (cpu_seconds(server.pid), cpu0_busy_seconds(), cpu_seconds(upstream.process.pid),
                  children_cpu_seconds())
    started = time.monotonic()
    qps, lost, latencies = dnsperf(server_port, saturated, seconds)
    elapsed = time.monotonic() - started
    cpu_after = (cpu_seconds(server.pid), cpu0_busy_seconds(), cpu_seconds(upstream.process.pid),
                 children_cpu_seconds())  # children: dnsperf, the one child that ended meanwhile
    cpu = {who: (after - earlier) / elapsed for who, after, earlier in zip(CPU_USERS, cpu_after, cpu_before)}
    cpu["others"] = max(cpu["others"] - cpu["server"], 0.0)  # CPU 0 busy, less our server
    external = sum(1 for name, _ in latencies if classify(name, names) != "search")
    hit_ratio = 1 - (upstream.queries() - before) / external if external else 0.0
    _, steady_lost, latencies = dnsperf(server_port, steady, seconds, rate)
    by_class: dict[str, list[float]] = {"hit": [], "miss": [], "search": []}
    for name, latency in latencies:
        by_class[classify(name, names)].append(latency)
    return Round(qps, lost + steady_lost, hit_ratio, cpu, by_class)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)]


def row(label: str, qps: float, hit_ratio: float, cpu: dict[str, float], figures: dict[str, tuple[float, float]],
        classes: list[str]) -> str:
    cells = [f"{label:<7}", f"{qps:>9,.0f}", f"{hit_ratio:>8.1%}",
             " ".join(f"{cpu[who]:>6.0%}" for who in CPU_USERS)]
    for name in classes:
        p50, p99 = figures[name]
        cells.append(f"{p50 * 1000:>8.2f} {p99 * 1000:>8.2f}")
    return "  ".join(cells)


def report(title: str, rounds: list[Round], pods: bool) -> None:
    classes = ["hit", "miss", "search"] if pods else ["hit", "miss"]
    print(f"\n{title}")
    header = (["round  ", "      QPS", "hit ratio", "  ours others unbound dnsperf"]
              + [f"{name + ' p50':>8} {name + ' p99':>8}" for name in classes])
    print("  ".join(header))
    per_round = []
    for number, result in enumerate(rounds, 1):
        figures = {name: (percentile(result.latency[name], 0.5), percentile(result.latency[name], 0.99))
                   for name in classes}
        per_round.append(figures)
        lost = f"   ({result.lost} queries lost)" if result.lost else ""
        print(row(str(number), result.qps, result.hit_ratio, result.cpu, figures, classes) + lost)
    medians = {name: (statistics.median(f[name][0] for f in per_round),
                      statistics.median(f[name][1] for f in per_round)) for name in classes}
    cpu = {who: statistics.median(r.cpu[who] for r in rounds) for who in CPU_USERS}
    print(row("median", statistics.median(r.qps for r in rounds),
              statistics.median(r.hit_ratio for r in rounds), cpu, medians, classes))
    counts = {name: sum(len(r.latency[name]) for r in rounds) for name in classes}
    print("QPS, hit ratio and CPU (share of one core; 'others': the rest of CPU 0's use) from the saturated runs;\n"
          "latencies (ms) from the runs at the fixed rate; queries in those: "
          + ", ".join(f"{name} {count:,}" for name, count in counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured run")
    parser.add_argument("--rate", type=int, default=2000, help="queries a second of the latency run")
    parser.add_argument("--repeated", type=int, default=100, help="how many distinct names are asked repeatedly")
    parser.add_argument("--mix", choices=("external", "pods", "both"), default="both")
    args = parser.parse_args()

    running: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-forward-") as temp:
        work = Path(temp)
        try:
            upstream = Upstream(work)
            unbound = upstream.process = subprocess.Popen(
                pinned(1, [upstream.binary(), "-d", "-c", str(upstream.config)]),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            running.append(unbound)
            wait_until_answering(upstream.port, f"ready.{ZONE}", "unbound", unbound)
            port = free_port()
            server = subprocess.Popen(
                pinned(0, [sys.executable, "-m", "dns_server", "--fixtures", str(REPO / "zones"),
                           "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream.port}"]),
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=(work / "server.log").open("wb"))
            running.append(server)
            wait_until_answering(port, f"ready.{ZONE}", "dns_server", server)
            repeated = [f"r{i}.{ZONE}" for i in range(args.repeated)]
            print(f"forwarding benchmark: {args.rounds} rounds, each a saturated run and a run at {args.rate} qps "
                  f"(latencies) of at most {args.seconds:g} s; our server on CPU 0, unbound and dnsperf "
                  f"(-c 4 -q 100) on CPU 1; {args.repeated} repeated names make half of the external queries")
            mixes = [("external", False), ("pods", True)] if args.mix == "both" else [(args.mix, args.mix == "pods")]
            for name, pods in mixes:
                rounds = [run_round(server, port, upstream, work, f"{name}{number}", repeated, pods, args.seconds,
                                    args.rate) for number in range(1, args.rounds + 1)]
                title = ("mix 'pods': each lookup as a pod makes it (3 search-path misses x A/AAAA, then the name)"
                         if pods else "mix 'external': external names only, A and AAAA")
                report(title, rounds, pods)
        finally:
            for process in reversed(running):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()


if __name__ == "__main__":
    main()
