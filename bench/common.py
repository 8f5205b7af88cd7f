"""What every benchmark here needs: ports, processes pinned to cores, dnsperf, /proc figures, targets.

Rules the benchmarks keep through this module:
- The server under test runs on core `CORES.server`, the load (dnsperf, the API stand-in) on
  `CORES.client`, so a benchmark measures one core's worth of server (`taskset`; on a machine
  with one core nothing is pinned and the figures say little).
- Every process a benchmark starts goes through `Processes` and is stopped, with whatever it
  started itself, on exit, failure, Ctrl-C or SIGTERM (`run_main`).
- A benchmark exits 0 when every target holds, 1 when one does not, 2 when it could not measure.
- Figures come from dnsperf's own statistics and from /proc; latency percentiles from dnsperf's
  per-query lines (`-v`), kept as a histogram in microseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterable, Mapping, Sequence

try:
    import dns.exception
    import dns.message
    import dns.rcode
except ImportError:
    sys.exit("bench: dnspython is missing: run this with the project's virtualenv (.venv/bin/python bench/...)")

REPO = Path(__file__).resolve().parents[1]
RECEIVE_BUFFER = 8 * 1024 * 1024  # what our server asks for (serving/udp.py); NSD and dnsperf get the same
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
POLL = 0.01  # seconds between probes while waiting for a server
MEMORY_DIR = "/dev/shm"  # dnsperf -v writes ~50 MB a run: written back to disk, that stalls it
PACKAGES = {"dnsperf": "dnsperf", "nsd": "nsd", "unbound": "unbound", "unbound-control": "unbound",
            "taskset": "util-linux", "ss": "iproute2"}


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@dataclass(frozen=True)
class Cores:
    server: str = "0"
    client: str = "1"


CORES = Cores()


# -- processes ---------------------------------------------------------------------------------------
def pinned(core: str, args: Sequence[str]) -> list[str]:
    """`args` run on one core (when the machine has it)."""
    if (os.cpu_count() or 1) <= int(core):
        return list(args)
    return [program("taskset"), "-c", core, *args]


def program(name: str) -> str:
    """The path of a tool (also found in /usr/sbin); BenchError saying what to install when it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        raise BenchError(f"{name} is missing: apt-get install {PACKAGES.get(name, name)}")
    return path


def require(tools: Iterable[str]) -> None:
    """Install the Debian packages of missing tools when root, else say what to install."""
    missing = [tool for tool in tools if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists())]
    if not missing:
        return
    packages = sorted({PACKAGES.get(tool, tool) for tool in missing})
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError(f"missing {', '.join(missing)}: install the Debian packages {' '.join(packages)} "
                         f"(apt-get install {' '.join(packages)}), or run this as root to install them")
    print(f"installing {' '.join(packages)} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def free_port() -> int:
    """A port on 127.0.0.1 free for both UDP and TCP."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class Processes:
    """Every process a benchmark starts; `stop_all` ends each one (and its children) by pid."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def start(self, args: Sequence[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start `args` with stdout and stderr into `log`, in a session of its own (Ctrl-C reaches us; we stop it)."""
        with log.open("wb") as out:
            process = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                       start_new_session=True)
        self._running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM, then SIGKILL after a grace period; children that outlive it are killed too."""
        family = descendants(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if process in self._running:
            self._running.remove(process)

    def stop_all(self) -> None:
        for process in reversed(self._running):
            self.stop(process)


def descendants(pid: int) -> list[int]:
    """The pids of a process's children, grandchildren, ... (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def family(process: subprocess.Popen[bytes]) -> list[int]:
    """A process and its descendants (NSD forks its server and xfrd processes)."""
    return [process.pid, *descendants(process.pid)]


def run_main(body: Callable[[Processes], int]) -> int:
    """Run a benchmark's body, stopping every process it started however it ends; returns the exit status."""
    processes = Processes()

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        return body(processes)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench: interrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        processes.stop_all()


def memory_directory() -> str | None:
    """/dev/shm when usable (for dnsperf -v output), else the default temporary directory."""
    return MEMORY_DIR if os.path.isdir(MEMORY_DIR) and os.access(MEMORY_DIR, os.W_OK) else None


# -- /proc -------------------------------------------------------------------------------------------
def memory_mb(pids: Sequence[int], name: str) -> float:
    """The sum of a /proc/PID/status memory field (VmHWM: peak resident set; VmRSS: now) over `pids`, in MB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(name + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def pss_mb(pids: Sequence[int]) -> float:
    """The proportional set size of `pids` together, in MB (/proc/PID/smaps_rollup): pages shared by
    several processes are split among them, so forked workers sharing their data count it once."""
    total = 0
    for pid in pids:
        try:
            total += sum(int(line.split()[1]) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                         if line.startswith("Pss:"))
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
    """CPU time one core has spent in processes (user, nice, system) so far, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == f"cpu{core}":
            return sum(int(v) for v in fields[1:4]) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (dnsperf), so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- DNS ---------------------------------------------------------------------------------------------
def answered(reply: dns.message.Message) -> bool:
    """A positive answer: what a server that has loaded its data gives for an existing name."""
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)


def wait_for_answer(port: int, name: str, process: subprocess.Popen[bytes], log: Path | None, *,
                    started: float, deadline: float,
                    accept: Callable[[dns.message.Message], bool] = answered) -> float:
    """Ask `name` (A) every POLL seconds until a reply is accepted; returns the seconds since `started`.

    BenchError when the process exits (with the end of its log) or `deadline` seconds pass.
    """
    query = dns.message.make_query(name, "A")
    wire = query.to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(POLL)
        while time.monotonic() - started < deadline:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log is not None else ""
                raise BenchError(f"process {process.pid} exited with {process.returncode}:\n{tail}")
            try:
                sock.sendto(wire, ("127.0.0.1", port))
                reply = dns.message.from_wire(sock.recv(65535))
            except (OSError, dns.exception.DNSException):
                continue  # not listening yet (refused) or not answering yet (timeout)
            if reply.id == query.id and accept(reply):
                return time.monotonic() - started
            time.sleep(POLL)
    raise BenchError(f"no acceptable answer for {name} from port {port} within {deadline:g} s")


def wait_for_ready(port: int, process: subprocess.Popen[bytes], *, started: float, deadline: float) -> float:
    """Poll http://127.0.0.1:`port`/ready every POLL seconds until it says 200; returns the seconds since `started`."""
    while time.monotonic() - started < deadline:
        if process.poll() is not None:
            raise BenchError(f"process {process.pid} exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or 503: not ready yet
        time.sleep(POLL)
    raise BenchError(f"/ready on port {port} did not say OK within {deadline:g} s")


class EveryWorker:
    """UDP sockets spread over a server's worker processes: the kernel gives each a worker by its
    port, so once all of them get a new answer, every worker (with more than a few per worker,
    nearly surely) serves it.  One socket when the server is one process."""

    PER_WORKER = 8
    PAUSE = 0.001  # seconds between two rounds of questions

    def __init__(self, port: int, workers: int) -> None:
        self.port = port
        self.sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        for _ in range(1 if workers == 1 else self.PER_WORKER * workers)]
        for sock in self.sockets:
            sock.settimeout(1.0)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()

    def wait_for(self, name: str, address: str, deadline: float) -> None:
        """Ask `name` (A) from every socket at once, round after round, until each has been answered
        with `address` (the asking costs one round trip, not one per socket); BenchError at `deadline`."""
        waiting = list(self.sockets)
        while waiting:
            if time.monotonic() > deadline:
                raise BenchError(f"{name} never showed {address} from {len(waiting)} of {len(self.sockets)} sockets")
            query = dns.message.make_query(name, "A")
            wire = query.to_wire()
            for sock in waiting:
                sock.sendto(wire, ("127.0.0.1", self.port))
            waiting = [sock for sock in waiting if address not in addresses_of(reply_to(sock, query.id))]
            if waiting:
                time.sleep(self.PAUSE)


def ask(sock: socket.socket, port: int, name: str) -> dns.message.Message | None:
    """One question (A) from `sock`; the reply, or None after the socket's timeout."""
    query = dns.message.make_query(name, "A")
    sock.sendto(query.to_wire(), ("127.0.0.1", port))
    return reply_to(sock, query.id)


def reply_to(sock: socket.socket, query_id: int) -> dns.message.Message | None:
    """The reply to `query_id` on `sock`, or None after the socket's timeout."""
    try:
        while True:
            reply = dns.message.from_wire(sock.recv(4096))
            if reply.id == query_id:
                return reply
    except (OSError, dns.exception.DNSException):
        return None


def addresses_of(reply: dns.message.Message | None) -> set[str]:
    return {rr.to_text() for rrset in (reply.answer if reply is not None else ()) for rr in rrset}


# -- dnsperf -----------------------------------------------------------------------------------------
@dataclass
class Run:
    """What dnsperf measured, over one run or several added together."""

    completed: int = 0
    lost: int = 0
    seconds: float = 0.0  # dnsperf's own run time
    latency_sum: float = 0.0  # seconds, over the completed queries (dnsperf's average times their number)
    latency_us: Counter[int] = field(default_factory=Counter)  # from -v: latency (us) -> queries
    classes: dict[str, Counter[int]] = field(default_factory=dict)  # the same, per class of query name

    @property
    def qps(self) -> float:
        return self.completed / self.seconds if self.seconds else float("nan")

    @property
    def avg_ms(self) -> float:
        return self.latency_sum / self.completed * 1000 if self.completed else float("nan")

    def percentile_ms(self, fraction: float, name_class: str | None = None) -> float:
        """The latency below which `fraction` of the answered queries (of one class) fall."""
        histogram = self.latency_us if name_class is None else self.classes.get(name_class, Counter())
        return percentile(histogram, fraction) / 1000

    def add(self, other: Run) -> None:
        self.completed += other.completed
        self.lost += other.lost
        self.seconds += other.seconds
        self.latency_sum += other.latency_sum
        self.latency_us.update(other.latency_us)
        for name, histogram in other.classes.items():
            self.classes.setdefault(name, Counter()).update(histogram)


def percentile(histogram: Mapping[Any, int], fraction: float) -> float:
    """The value below which `fraction` of the counted values fall (nan when there are none).

    `histogram` maps a value to how many times it occurred; `Counter(values)` makes one of a list.
    """
    rank = fraction * sum(histogram.values())
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank and seen:
            return float(value)
    return float("nan")


def dnsperf(port: int, query_file: Path, args: Sequence[str], *, verbose_file: Path | None = None,
            classify: Callable[[str], str] | None = None, core: str = CORES.client) -> Run:
    """Run dnsperf against 127.0.0.1:`port` on `core`.

    With `verbose_file` (best in memory_directory()), every query's latency is kept (`-v`), and with
    `classify` also per class of its name.
    """
    command = pinned(core, [program("dnsperf"), "-s", "127.0.0.1", "-p", str(port), "-d", str(query_file),
                            "-b", str(RECEIVE_BUFFER // 1024), "-t", "5", *args])
    if verbose_file is None:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return parse_statistics(done.stdout, done.returncode)
    try:
        with verbose_file.open("wb") as out:
            returncode = subprocess.run([*command, "-v"], stdout=out, stderr=subprocess.STDOUT).returncode
        run = parse_statistics(_tail(verbose_file), returncode)
        with verbose_file.open("rb") as lines:
            for line in lines:  # `> NOERROR name type 0.000123`
                if line.startswith(b"> "):
                    fields = line.split()
                    try:
                        us = round(float(fields[-1]) * 1_000_000)
                    except (ValueError, IndexError):
                        continue
                    run.latency_us[us] += 1
                    if classify is not None:
                        run.classes.setdefault(classify(fields[2].decode().lower().rstrip(".")), Counter())[us] += 1
    finally:
        verbose_file.unlink(missing_ok=True)
    return run


def _tail(path: Path) -> str:
    """The statistics at the end of a verbose dnsperf output (its last few KB)."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 8192))
        return f.read().decode(errors="replace")


def parse_statistics(text: str, returncode: int = 0) -> Run:
    """dnsperf's closing statistics; BenchError with its output when they are missing."""
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
        raise BenchError(f"dnsperf exited with {returncode}; cannot read its statistics:\n{text[-2000:]}") from None


# -- reporting ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One target: what is measured, the figure, the target, whether it holds."""

    what: str
    figure: str
    target: str
    holds: bool


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)) -> None:
    """Rows of text in aligned columns (columns in `left` aligned left, the others right)."""
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]
    line = "  ".join(f"{{:{'<' if i in left else '>'}{w}}}" for i, w in enumerate(widths))
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


def report_targets(targets: Sequence[Target]) -> bool:
    """Print each target with its figure and verdict; True if all hold."""
    print_table(("target", "figure", "wanted", "holds"),
                [(t.what, t.figure, t.target, "yes" if t.holds else "NO") for t in targets], left=(0, 2))
    return all(t.holds for t in targets)


def median(values: Iterable[float]) -> float:
    """The median (nan of nothing)."""
    values = list(values)
    return statistics.median(values) if values else float("nan")


# -- two checkouts, in processes of their own, in turns (cold.py, warm.py) ------------------------------------
def checkouts_parser(description: str, repeat: int, repeat_help: str) -> argparse.ArgumentParser:
    """The command line of a benchmark that measures this checkout, and with `--against` another, in turns."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--against", type=Path, help="another checkout, measured in turns with this one")
    parser.add_argument("--repeat", type=int, default=repeat, help=repeat_help)
    parser.add_argument("--rounds", type=int, default=3, help="processes per checkout, taken in turns")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    return parser


def checkouts_in_turns(script: str, args: argparse.Namespace) -> tuple[list[str], list[Path], list[dict[str, float]]]:
    """`script --measure` run `args.rounds` times per checkout, in turns: the checkouts' names, paths and the
    median of each figure over their rounds."""
    if args.against is not None and not (args.against / "dns_server" / "serving" / "router.py").is_file():
        sys.exit(f"bench: {args.against} is not a checkout of this project with dns_server/serving/router.py")
    checkouts = [REPO] if args.against is None else [args.against.resolve(), REPO]
    names = ["this"] if args.against is None else ["other", "this"]
    rounds = [[_measured_in(script, checkout, args.repeat) for checkout in checkouts] for _ in range(args.rounds)]
    columns = [{figure: statistics.median(sides[index][figure] for sides in rounds) for figure in rounds[0][index]}
               for index in range(len(checkouts))]
    return names, checkouts, columns


def _measured_in(script: str, checkout: Path, repeat: int) -> dict[str, float]:
    """`script --measure` in a process of its own, with `checkout`'s dns_server imported."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    output = subprocess.run([sys.executable, script, "--measure", "--repeat", str(repeat)], cwd=checkout, env=env,
                            check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(output)
    return result
