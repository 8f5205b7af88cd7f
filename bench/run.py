"""Benchmark our server against NSD on the same generated cluster, side by side, and print the figures.

    .venv/bin/python bench/run.py [--rounds N] [--duration S] ...

Each round starts both servers afresh (which one first alternates between rounds), each pinned to
the same core while dnsperf runs pinned to the other, and measures:

1. start-up: from spawning the process until it answers A for the last of the services;
2. a first pass through the query file (for our server this is where answers are built, lazily);
3. saturated runs: `--clients` sockets keeping `--outstanding` queries in flight, which keeps a
   single-threaded server busy.  The servers take turns every `--slice` seconds until each has had
   `--duration` seconds, so load from other processes on the shared machine falls on both alike.
   Each turn is one run for QPS and one with dnsperf's `-v` line per query for the latency
   percentiles (writing those lines slows dnsperf, which would cap NSD's QPS);
4. runs at a fixed rate both servers sustain (`--rate`), also in turns: latency without queueing;
5. peak RSS (VmHWM), the CPU each server used in its saturated runs, and the CPU other processes
   took from the two cores meanwhile.

The table quotes medians over rounds; ratios are taken within each round, then the median.
Every process started here is stopped on exit, Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Callable, Sequence

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.query
    import dns.rcode
except ImportError:
    sys.exit("bench: dnspython is missing: run this with the project's virtualenv (.venv/bin/python bench/run.py)")

from cluster import ZONE, Cluster, build_cluster, write_fixtures, write_zone
from queries import DEFAULT_COUNT, build_queries, write_queries

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"dnsperf": "dnsperf", "nsd": "nsd", "taskset": "util-linux", "ss": "iproute2"}
RECEIVE_BUFFER = 8 * 1024 * 1024  # the same as our server asks for (transport/udp.py)
STARTUP_DEADLINE = 60.0
STOP_GRACE = 5.0
TARGET_QPS_RATIO = 0.5
TARGET_P99_RATIO = 2.0
TARGET_RSS_MB = 250.0
TARGET_STARTUP_S = 3.0
MEMORY_DIR = "/dev/shm"
CHECK_SAMPLE = 400  # questions asked of both servers to confirm they give the same answers


# -- processes ---------------------------------------------------------------------------------------
class Processes:
    """Every process this script starts; `stop_all` ends each one (and its children) by pid."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def start(self, args: Sequence[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                       start_new_session=True)  # Ctrl-C reaches us; we stop it
        self._running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM, then SIGKILL after a grace period; children that outlive it are killed too."""
        family = [process.pid, *descendants(process.pid)]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in family[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if process in self._running:
            self._running.remove(process)

    def stop_all(self) -> None:
        for process in list(self._running):
            self.stop(process)


def descendants(pid: int) -> list[int]:
    """The pids of a process's children, grandchildren, ... (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def memory_mb(pids: Sequence[int], field: str) -> float:
    """The sum of a /proc/PID/status memory field (VmHWM: peak resident set; VmRSS: now) over `pids`, in MB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU time used so far by `pids`."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def core_busy_seconds(core: str) -> float:
    """CPU time spent in processes (user, nice, system) on one core so far, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == f"cpu{core}":
            return sum(int(v) for v in fields[1:4]) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


# -- the servers -------------------------------------------------------------------------------------
@dataclass
class Server:
    """One server under test: how to start it, and where it listens."""

    name: str
    command: Callable[[int], list[str]]
    cwd: Path | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Path = Path()

    def pids(self) -> list[int]:
        assert self.process is not None
        return [self.process.pid, *descendants(self.process.pid)]


def our_server(fixtures: Path) -> Server:
    return Server("ours", lambda port: [
        "taskset", "-c", CORES.server, sys.executable, "-m", "dns_server",
        "--fixtures", str(fixtures), "--listen", f"127.0.0.1:{port}"], cwd=REPO)


def nsd_server(directory: Path, zone_file: Path) -> Server:
    def command(port: int) -> list[str]:
        config = directory / f"nsd-{port}.conf"
        config.write_text(nsd_config(directory, zone_file, port))
        return ["taskset", "-c", CORES.server, nsd_binary(), "-d", "-c", str(config)]
    return Server("NSD", command, cwd=directory)


def nsd_config(directory: Path, zone_file: Path, port: int) -> str:
    """NSD serving the zone file on one core, without response rate limiting, as this user."""
    return f"""server:
    ip-address: 127.0.0.1@{port}
    port: {port}
    do-ip6: no
    server-count: 1
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


def nsd_binary() -> str:
    return shutil.which("nsd") or "/usr/sbin/nsd"


@dataclass(frozen=True)
class Cores:
    server: str = "0"
    client: str = "1"


CORES = Cores()


def start(server: Server, processes: Processes, workdir: Path, probe: str) -> float:
    """Start `server`; returns the seconds from spawn until it answered A for `probe`."""
    server.port = free_port()
    server.log = workdir / f"{server.name.lower()}-{server.port}.log"
    query = dns.message.make_query(probe, "A")
    command = server.command(server.port)
    started = time.monotonic()
    server.process = processes.start(command, server.log, server.cwd)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.01)
        wire = query.to_wire()
        while time.monotonic() - started < STARTUP_DEADLINE:
            if server.process.poll() is not None:
                raise BenchError(f"{server.name} exited with {server.process.returncode}:\n"
                                 f"{server.log.read_text(errors='replace')[-2000:]}")
            try:
                sock.sendto(wire, ("127.0.0.1", server.port))
                reply = dns.message.from_wire(sock.recv(65535))
            except (OSError, dns.exception.DNSException):
                continue  # not listening yet (refused) or not answering yet (timeout)
            if reply.id == query.id and reply.rcode() == dns.rcode.NOERROR and reply.answer:
                return time.monotonic() - started
    raise BenchError(f"{server.name} did not answer {probe} within {STARTUP_DEADLINE:g} s")


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# -- dnsperf ---------------------------------------------------------------------------------------
@dataclass
class Run:
    """What dnsperf measured, over one run or several added together."""

    completed: int = 0
    lost: int = 0
    seconds: float = 0.0  # dnsperf's own run time
    latency_sum: float = 0.0  # seconds, over the completed queries (dnsperf's average times their number)
    latency_us: Counter[int] = field(default_factory=Counter)  # from -v: latency (us) -> queries

    @property
    def qps(self) -> float:
        return self.completed / self.seconds if self.seconds else float("nan")

    @property
    def avg_ms(self) -> float:
        return self.latency_sum / self.completed * 1000 if self.completed else float("nan")

    def percentile_ms(self, fraction: float) -> float:
        """The latency below which `fraction` of the answered queries fall."""
        total = sum(self.latency_us.values())
        rank = fraction * total
        seen = 0
        for us in sorted(self.latency_us):
            seen += self.latency_us[us]
            if seen >= rank:
                return us / 1000
        return float("nan")

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(0.50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(0.99)

    @property
    def p999_ms(self) -> float:
        return self.percentile_ms(0.999)

    def add(self, other: Run) -> None:
        self.completed += other.completed
        self.lost += other.lost
        self.seconds += other.seconds
        self.latency_sum += other.latency_sum
        self.latency_us.update(other.latency_us)


def dnsperf(port: int, query_file: Path, extra: Sequence[str], verbose_file: Path | None) -> Run:
    """Run dnsperf pinned to the client core; with `verbose_file`, keep every query's latency."""
    command = ["taskset", "-c", CORES.client, "dnsperf", "-s", "127.0.0.1", "-p", str(port),
               "-d", str(query_file), "-b", str(RECEIVE_BUFFER // 1024), "-t", "5", *extra]
    if verbose_file is None:
        text = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True,
                              text=True).stdout
        return _parse_statistics(text)
    with verbose_file.open("wb") as out:
        subprocess.run([*command, "-v"], stdout=out, stderr=subprocess.STDOUT, check=True)
    run = _parse_statistics(_statistics_text(verbose_file))
    with verbose_file.open("rb") as f:
        for line in f:  # `> NOERROR name type 0.000123`
            if line.startswith(b"> "):
                try:
                    run.latency_us[round(float(line.rsplit(None, 1)[1]) * 1_000_000)] += 1
                except (ValueError, IndexError):
                    continue
    verbose_file.unlink()
    return run


def _statistics_text(path: Path) -> str:
    """The summary at the end of a verbose dnsperf output (the last few KB)."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 8192))
        return f.read().decode(errors="replace")


def _parse_statistics(text: str) -> Run:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            values[key.strip()] = value.strip()
    try:
        completed = int(values["Queries completed"].split()[0])
        return Run(completed=completed, lost=int(values["Queries lost"].split()[0]),
                   seconds=float(values["Run time (s)"]),
                   latency_sum=float(values["Average Latency (s)"].split()[0]) * completed)
    except (KeyError, ValueError, IndexError):
        raise BenchError(f"cannot read dnsperf's output:\n{text[-2000:]}") from None


# -- checks ------------------------------------------------------------------------------------------
def compare_answers(ours: Server, nsd: Server, questions: list[tuple[str, str]]) -> tuple[list[str], dict[str, int]]:
    """Ask both servers a sample of the questions, as a stub resolver would (UDP, then TCP on TC).

    Returns the differences in rcode or answer records, and how many UDP replies each server
    truncated.
    """
    differences = []
    truncated = {ours.name: 0, nsd.name: 0}
    for name, qtype in sample(questions):
        replies = []
        for server in (ours, nsd):
            query = dns.message.make_query(name, qtype)
            reply = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=2)
            if reply.flags & dns.flags.TC:
                truncated[server.name] += 1
                reply = dns.query.tcp(query, "127.0.0.1", port=server.port, timeout=2)
            records = sorted(rr.to_text() for rrset in reply.answer for rr in rrset.to_rdataset())
            replies.append((dns.rcode.to_text(reply.rcode()), records))
        if replies[0] != replies[1]:
            differences.append(f"{name} {qtype}: ours {replies[0]}, NSD {replies[1]}")
    return differences, truncated


def sample(questions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return questions[::max(1, len(questions) // CHECK_SAMPLE)]


def receive_buffer(port: int) -> str:
    """The UDP receive buffer the kernel gave the socket on `port` (ss's skmem rb), as text."""
    try:
        out = subprocess.run(["ss", "-u", "-l", "-n", "-m", f"sport = :{port}"], capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (ss failed)"
    for token in out.replace("(", ",").replace(")", ",").split(","):
        if token.startswith("rb") and token[2:].isdigit():
            return f"{int(token[2:]) // 1024} KiB"
    return "unknown"


def require_tools() -> None:
    """Install what is missing when root (Debian), else say what to install."""
    missing = [tool for tool in PACKAGES if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists())]
    if not missing:
        return
    packages = sorted({PACKAGES[tool] for tool in missing})
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(packages)} with apt-get ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True,
                       env=env, stdout=subprocess.DEVNULL)
        return
    raise BenchError(f"missing {', '.join(missing)}: install the Debian packages {' '.join(packages)} "
                     f"(apt-get install {' '.join(packages)}), or run this as root to install them")


# -- rounds ------------------------------------------------------------------------------------------
@dataclass
class Result:
    """One server in one round."""

    startup_s: float = 0.0
    cold: Run = field(default_factory=Run)
    saturated: Run = field(default_factory=Run)  # throughput runs (no per-query output to slow dnsperf)
    tail: Run = field(default_factory=Run)  # the same load with dnsperf -v: latency percentiles
    fixed: Run = field(default_factory=Run)
    rss_mb: float = 0.0  # peak
    rss_end_mb: float = 0.0  # after the runs
    cpu_seconds: float = 0.0  # used by the server during the saturated runs
    foreign_server_core: float = 0.0  # CPU seconds other processes used on the server's core meanwhile
    foreign_client_core: float = 0.0  # ... and on dnsperf's core
    wall_seconds: float = 0.0  # of the saturated runs
    rcvbuf: str = ""

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else float("nan")

    @property
    def foreign_share(self) -> float:
        """The larger share of a core other processes took from the server's or dnsperf's core."""
        if not self.wall_seconds:
            return float("nan")
        return max(self.foreign_server_core, self.foreign_client_core) / self.wall_seconds


def children_cpu_seconds() -> float:
    """CPU time of this script's finished children (dnsperf), so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def saturated_slice(server: Server, result: Result, query_file: Path, load: list[str], seconds: int) -> None:
    """One saturated dnsperf run against `server`, added to `result` with the CPU it and others used."""
    pids = server.pids()
    before = (cpu_seconds(pids), core_busy_seconds(CORES.server), core_busy_seconds(CORES.client),
              children_cpu_seconds(), time.monotonic())
    result.saturated.add(dnsperf(server.port, query_file, [*load, "-l", str(seconds)], None))
    used = cpu_seconds(pids) - before[0]
    result.cpu_seconds += used
    result.foreign_server_core += max(0.0, core_busy_seconds(CORES.server) - before[1] - used)
    result.foreign_client_core += max(0.0, core_busy_seconds(CORES.client) - before[2]
                                      - (children_cpu_seconds() - before[3]))
    result.wall_seconds += time.monotonic() - before[4]


def run_round(order: tuple[Server, Server], processes: Processes, workdir: Path, scratch: Path, query_file: Path,
              probe: str, args: argparse.Namespace) -> dict[str, Result]:
    """Start both servers, then measure them in turns: runs alternate every `--slice` seconds."""
    results = {server.name: Result() for server in order}
    try:
        for server in order:
            results[server.name].startup_s = start(server, processes, workdir, probe)
            results[server.name].rcvbuf = receive_buffer(server.port)
        load = ["-c", str(args.clients), "-q", str(args.outstanding)]
        for server in order:
            results[server.name].cold = dnsperf(server.port, query_file, [*load, "-n", "1"], None)
        for turn in range(max(1, args.duration // args.slice)):
            for server in order if turn % 2 == 0 else order[::-1]:
                saturated_slice(server, results[server.name], query_file, load, args.slice)
                results[server.name].tail.add(dnsperf(server.port, query_file, [*load, "-l", str(args.slice)],
                                                      scratch / "verbose.out"))
        for turn in range(max(1, args.fixed_duration // args.slice)):
            for server in order if turn % 2 == 0 else order[::-1]:
                results[server.name].fixed.add(dnsperf(
                    server.port, query_file, [*load, "-l", str(args.slice), "-Q", str(args.rate)],
                    scratch / "verbose.out"))
        for server in order:
            results[server.name].rss_mb = memory_mb(server.pids(), "VmHWM")
            results[server.name].rss_end_mb = memory_mb(server.pids(), "VmRSS")
    finally:
        for server in order:
            if server.process is not None:
                processes.stop(server.process)
    return results


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(rounds: list[dict[str, Result]], args: argparse.Namespace, rmem_max: int) -> bool:
    """Print the side-by-side table; True if every target holds."""
    ours = [r["ours"] for r in rounds]
    nsd = [r["NSD"] for r in rounds]

    def med(results: list[Result], get: Callable[[Result], float]) -> float:
        return median([get(r) for r in results])

    qps_ratio = median([r["ours"].saturated.qps / r["NSD"].saturated.qps for r in rounds])
    p99_ratio = median([r["ours"].tail.p99_ms / r["NSD"].tail.p99_ms for r in rounds])
    fixed_p99_ratio = median([r["ours"].fixed.p99_ms / r["NSD"].fixed.p99_ms for r in rounds])
    lost = max(r.saturated.lost + r.tail.lost + r.fixed.lost + r.cold.lost for r in ours)
    rss = med(ours, lambda r: r.rss_mb)
    startup = med(ours, lambda r: r.startup_s)

    rows: list[tuple[str, str, str, str, str]] = []

    def row(label: str, get: Callable[[Result], float], fmt: str, target: str = "", holds: bool | None = None) -> None:
        verdict = "" if holds is None else ("yes" if holds else "NO")
        rows.append((label, format(med(ours, get), fmt), format(med(nsd, get), fmt), target, verdict))

    row("QPS (saturated)", lambda r: r.saturated.qps, ",.0f",
        f"ours/NSD {qps_ratio:.1%} >= 50%", qps_ratio >= TARGET_QPS_RATIO)
    row("avg latency ms (saturated)", lambda r: r.saturated.avg_ms, ".3f")
    row("p50 latency ms (saturated)", lambda r: r.tail.p50_ms, ".3f")
    row("p99 latency ms (saturated)", lambda r: r.tail.p99_ms, ".3f",
        f"ours/NSD {p99_ratio:.2f}x <= 2x", p99_ratio <= TARGET_P99_RATIO)
    row("p99.9 latency ms (saturated)", lambda r: r.tail.p999_ms, ".3f")
    row("lost queries (all runs, max)", lambda r: r.saturated.lost + r.tail.lost + r.fixed.lost + r.cold.lost,
        ".0f",
        "0", lost == 0)
    row("peak RSS MB", lambda r: r.rss_mb, ".1f", f"ours < {TARGET_RSS_MB:.0f} MB", rss < TARGET_RSS_MB)
    row("RSS after the runs MB", lambda r: r.rss_end_mb, ".1f")
    row("start-up to first answer s", lambda r: r.startup_s, ".2f",
        f"ours <= {TARGET_STARTUP_S:g} s", startup <= TARGET_STARTUP_S)
    row("server CPU % during run", lambda r: r.cpu_share * 100, ".0f")
    row("others' CPU % on server core", lambda r: r.foreign_server_core / r.wall_seconds * 100, ".0f")
    row("others' CPU % on dnsperf core", lambda r: r.foreign_client_core / r.wall_seconds * 100, ".0f")
    row("first pass QPS (cold cache)", lambda r: r.cold.qps, ",.0f")
    row(f"avg latency ms at {args.rate:,} qps", lambda r: r.fixed.avg_ms, ".3f")
    row(f"p99 latency ms at {args.rate:,} qps", lambda r: r.fixed.p99_ms, ".3f", f"ours/NSD {fixed_p99_ratio:.2f}x")

    headers = ("", "ours", "NSD", "target", "holds")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(f"{{:{'<' if i in (0, 3) else '>'}{w}}}" for i, w in enumerate(widths))
    print()
    print(f"medians over {len(rounds)} round(s); per round and server {args.duration // args.slice} saturated "
          f"runs of dnsperf -c {args.clients} -q {args.outstanding} -l {args.slice} for QPS and as many with -v "
          f"for percentiles, taking turns; server on core {CORES.server}, dnsperf on core {CORES.client}")
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))
    print()
    print(f"UDP receive buffer: ours {ours[0].rcvbuf}, NSD {nsd[0].rcvbuf} "
          f"(ss skmem rb, the kernel doubles the request; net.core.rmem_max = {rmem_max // 1024} KiB)")
    if max(r.foreign_share for r in ours + nsd) > 0.1:
        print("Other processes used the server's or dnsperf's core during some runs (see the rounds above): "
              "those runs understate QPS and overstate tail latency; the turns keep the ratios fairer.")
    if med(nsd, lambda r: r.cpu_share) < 0.9:
        print("NSD's core was not saturated: dnsperf on one core is the limit, so NSD's QPS is a floor "
              "and the ratio flatters us.")
    print("per round, ours/NSD: QPS " + ", ".join(
        f"{r['ours'].saturated.qps / r['NSD'].saturated.qps:.0%}" for r in rounds) + "; p99 " + ", ".join(
        f"{r['ours'].tail.p99_ms / r['NSD'].tail.p99_ms:.2f}x" for r in rounds))
    verdicts = [qps_ratio >= TARGET_QPS_RATIO, p99_ratio <= TARGET_P99_RATIO, lost == 0,
                rss < TARGET_RSS_MB, startup <= TARGET_STARTUP_S]
    return all(verdicts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, each starting both servers afresh (default %(default)s)")
    parser.add_argument("--duration", type=int, default=15,
                        help="seconds of saturated runs per server and round (default %(default)s)")
    parser.add_argument("--slice", type=int, default=3,
                        help="seconds of each run: the servers take turns (default %(default)s)")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c: client sockets (default %(default)s)")
    parser.add_argument("--outstanding", type=int, default=200,
                        help="dnsperf -q: queries in flight (default %(default)s)")
    parser.add_argument("--rate", type=int, default=50_000,
                        help="queries a second of the fixed-rate runs (default %(default)s)")
    parser.add_argument("--fixed-duration", type=int, default=6,
                        help="seconds of fixed-rate runs per server and round (default %(default)s)")
    parser.add_argument("--queries", type=int, default=DEFAULT_COUNT,
                        help="questions in the query file (default %(default)s)")
    parser.add_argument("--data", type=Path, help="write the generated data here and keep it (default: a temp dir)")
    parser.add_argument("--generate-only", action="store_true", help="write the data to --data and stop")
    args = parser.parse_args(argv)
    if args.generate_only and args.data is None:
        parser.error("--generate-only needs --data DIR")

    processes = Processes()

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        with tempfile.TemporaryDirectory(prefix="dns-bench-") as temp, \
                tempfile.TemporaryDirectory(prefix="dns-bench-", dir=memory_directory()) as scratch:
            return _main(args, Path(temp), Path(scratch), processes)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench: interrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        processes.stop_all()


def memory_directory() -> str | None:
    """/dev/shm when usable: dnsperf -v writes ~50 MB a run, and writing that back to disk stalls it."""
    return MEMORY_DIR if os.path.isdir(MEMORY_DIR) and os.access(MEMORY_DIR, os.W_OK) else None


def _main(args: argparse.Namespace, temp: Path, scratch: Path, processes: Processes) -> int:
    data = args.data or temp / "data"
    cluster = build_cluster()
    fixtures = write_fixtures(cluster, data / "fixtures").parent
    zone_file = write_zone(cluster, data / f"{ZONE}.zone")
    questions = build_queries(cluster, args.queries)
    query_file = write_queries(questions, data / "queries.txt")
    print(f"data: {len(cluster.services):,} ClusterIP + {len(cluster.headless):,} headless services in "
          f"{len(cluster.namespaces)} namespaces ({fixtures}, {zone_file.name}); {len(questions):,} queries")
    if args.generate_only:
        return 0
    require_tools()
    if (os.cpu_count() or 1) < 2:
        raise BenchError("needs two cores: one for the server, one for dnsperf")
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    probe = cluster.services[-1].fqdn  # the last service in the manifests
    ours, nsd = our_server(fixtures), nsd_server(temp, zone_file)

    check(ours, nsd, processes, temp, probe, questions)
    rounds: list[dict[str, Result]] = []
    for number in range(args.rounds):
        order = (ours, nsd) if number % 2 == 0 else (nsd, ours)
        print(f"round {number + 1}/{args.rounds} ...", flush=True)
        results = run_round(order, processes, temp, scratch, query_file, probe, args)
        for name, result in results.items():
            print(f"  {name:4}  start-up {result.startup_s:.2f} s, first pass {result.cold.qps:,.0f} qps, "
                  f"saturated {result.saturated.qps:,.0f} qps (p99 {result.tail.p99_ms:.3f} ms, "
                  f"lost {result.saturated.lost}), CPU {result.cpu_share:.0%}, others on the two cores "
                  f"{result.foreign_server_core / result.wall_seconds:.0%}/"
                  f"{result.foreign_client_core / result.wall_seconds:.0%}, peak RSS {result.rss_mb:.1f} MB",
                  flush=True)
        rounds.append(results)
    return 0 if report(rounds, args, rmem_max) else 1


def check(ours: Server, nsd: Server, processes: Processes, workdir: Path, probe: str,
          questions: list[tuple[str, str]]) -> None:
    """Both servers must give the same rcodes and answers, or the comparison means nothing."""
    for server in (ours, nsd):
        start(server, processes, workdir, probe)
    try:
        differences, truncated = compare_answers(ours, nsd, questions)
    finally:
        for server in (ours, nsd):
            assert server.process is not None
            processes.stop(server.process)
    if differences:
        raise BenchError("the servers answer differently:\n  " + "\n  ".join(differences[:10]))
    print(f"check: both servers give the same rcode and answer records for {len(sample(questions))} sampled "
          f"questions (UDP replies with TC set, answered again over TCP: "
          f"ours {truncated[ours.name]}, NSD {truncated[nsd.name]})")


if __name__ == "__main__":
    sys.exit(main())
