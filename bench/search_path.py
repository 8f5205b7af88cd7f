"""How many queries a pod's real glibc resolver sends for one lookup, with and without autopath.

    .venv/bin/python bench/search_path.py [--json]

Needs root, `ip` (iproute2), `getent` (glibc) and unbound.  What runs:

- two private network namespaces joined by a veth pair: the server's (10.254.0.1, and loopback)
  and the pod's (10.254.0.5, the address of pod `client` in namespace `default` in the fixtures),
  each with an IPv6 address too, so that getaddrinfo asks AAAA as it does in a pod;
- in the server's namespace, our server on 10.254.0.1:53 (`kubernetes` with `pods verified` on a
  small fixture cluster, `forward . ` to unbound, `prometheus` on its loopback), with and without
  `autopath @kubernetes`; and unbound on its loopback port 5301, answering `api.example.com A`
  from a `local-zone` (the outside world);
- in the pod's namespace, `getent ahosts NAME`: glibc's getaddrinfo (A and AAAA), with the
  resolv.conf the kubelet writes for a pod in `default` (`search default.svc.cluster.local
  svc.cluster.local cluster.local`, `options ndots:5`, the server as nameserver; `ip netns exec`
  mounts /etc/netns/<namespace>/resolv.conf over /etc/resolv.conf), a hosts file with localhost
  only and `hosts: files dns`.

The queries the server received for each lookup are `coredns_dns_requests_total` read from
/metrics before and after it (counted as each reply is sent, so the count is complete once getent
returns); each lookup must give the name's address, or the run stops.  Prints the table (`--json`: the counts as JSON).  Exit status 0; 2 when it could not
measure; 3 when network namespaces cannot be made here (not root, no `ip`), which the integration
test reads as a reason to skip.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, BenchError, Processes, print_table, program, run_main

SERVER_ADDRESS, POD_ADDRESS = "10.254.0.1", "10.254.0.5"
SERVER_ADDRESS6, POD_ADDRESS6 = "fd00:254::1", "fd00:254::5"
UPSTREAM_PORT = 5301
METRICS = "127.0.0.1:9153"
STARTUP_DEADLINE = 30.0
CANNOT_MAKE_NAMESPACES = 3
LOOKUPS = (  # name, what it is, the address it must resolve to
    ("api.example.com", "a name outside the cluster", "192.0.2.10"),
    ("kubernetes", "a service of the pod's own namespace", "10.96.0.1"),
    ("frontend.shop", "a service of another namespace", "10.96.0.10"),
    ("kubernetes.default.svc.cluster.local.", "a fully qualified name", "10.96.0.1"),
)
POD_RESOLV_CONF = f"""search default.svc.cluster.local svc.cluster.local cluster.local
nameserver {SERVER_ADDRESS}
options ndots:5
"""
CLUSTER = """apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: kubernetes, namespace: default}
spec: {clusterIP: 10.96.0.1, ports: [{name: https, port: 443, protocol: TCP}]}
---
apiVersion: v1
kind: Service
metadata: {name: frontend, namespace: shop}
spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80, protocol: TCP}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, creationTimestamp: "2024-05-01T10:00:00Z"}
spec: {containers: [{name: client, image: client}]}
status: {phase: Running, podIP: %s, podIPs: [{ip: %s}]}
""" % (POD_ADDRESS, POD_ADDRESS)
COREFILE = f""".:53 {{
    bind {SERVER_ADDRESS}
    prometheus {METRICS}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        fixtures cluster
        pods verified
    }}
    AUTOPATH
    forward . 127.0.0.1:{UPSTREAM_PORT}
}}
"""
UNBOUND = f"""server:
  interface: 127.0.0.1@{UPSTREAM_PORT}
  do-daemonize: no
  username: ""
  chroot: ""
  pidfile: ""
  use-syslog: no
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  local-zone: "example.com." static
  local-data: "api.example.com. 300 IN A 192.0.2.10"
"""


class Namespaces:
    """The server's and the pod's network namespaces, joined by a veth pair, and their /etc/netns files."""

    def __init__(self) -> None:
        tag = os.getpid()
        self.server, self.pod = f"sp{tag}-server", f"sp{tag}-pod"
        self._made: list[str] = []
        self._links = (f"sp{tag}s", f"sp{tag}p")

    def make(self) -> None:
        for name in (self.server, self.pod):
            _ip("netns", "add", name)
            self._made.append(name)
        server_link, pod_link = self._links
        _ip("link", "add", server_link, "netns", self.server, "type", "veth", "peer", "name", pod_link,
            "netns", self.pod)
        for namespace, link, address, address6 in ((self.server, server_link, SERVER_ADDRESS, SERVER_ADDRESS6),
                                                   (self.pod, pod_link, POD_ADDRESS, POD_ADDRESS6)):
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", link)
            # An IPv6 address from the start (nodad: usable at once), as a pod's eth0 has one: glibc's
            # getaddrinfo (AI_ADDRCONFIG) asks AAAA only where the host has an IPv6 address, and the
            # link-local one the kernel adds by itself may or may not be there yet when getent runs.
            _ip("-n", namespace, "addr", "add", f"{address6}/64", "dev", link, "nodad")
            _ip("-n", namespace, "link", "set", link, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
        self._etc(self.server, {"resolv.conf": "nameserver 127.0.0.1\n"})  # autopath: no search domains of its own
        self._etc(self.pod, {"resolv.conf": POD_RESOLV_CONF, "hosts": "127.0.0.1 localhost\n",
                             "nsswitch.conf": "hosts: files dns\n"})

    def run(self, namespace: str, args: list[str]) -> list[str]:
        return [program("ip"), "netns", "exec", namespace, *args]

    def remove(self) -> None:
        for name in self._made:
            subprocess.run([program("ip"), "netns", "del", name], check=False, stderr=subprocess.DEVNULL)
            shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)

    @staticmethod
    def _etc(namespace: str, files: dict[str, str]) -> None:
        directory = Path("/etc/netns") / namespace
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (directory / name).write_text(text)


def _ip(*args: str) -> None:
    result = subprocess.run([program("ip"), *args], capture_output=True, text=True)
    if result.returncode:
        raise BenchError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def requests_total(namespaces: Namespaces) -> int:
    """The server's coredns_dns_requests_total, summed over its labels, read inside its namespace."""
    fetch = ("import urllib.request, sys; "
             f"sys.stdout.write(urllib.request.urlopen('http://{METRICS}/metrics').read().decode())")
    result = subprocess.run(namespaces.run(namespaces.server, [sys.executable, "-c", fetch]), capture_output=True,
                            text=True)
    if result.returncode:
        raise BenchError(f"cannot read the server's metrics: {result.stderr.strip()[-500:]}")
    return round(sum(float(line.rsplit(" ", 1)[1]) for line in result.stdout.splitlines()
                     if line.startswith("coredns_dns_requests_total{")))


def lookup(namespaces: Namespaces, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(namespaces.run(namespaces.pod, [program("getent"), "ahosts", name]), capture_output=True,
                          text=True)


def wait_until_resolving(namespaces: Namespaces, server: subprocess.Popen[bytes], log: Path) -> None:
    """Until glibc in the pod's namespace resolves a cluster name through the server (polled, with a deadline)."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"the server exited with {server.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        if lookup(namespaces, "kubernetes.default.svc.cluster.local.").returncode == 0:
            return
        time.sleep(0.1)
    raise BenchError(f"the server did not answer within {STARTUP_DEADLINE:g} s:\n"
                     f"{log.read_text(errors='replace')[-2000:]}")


def count_queries(processes: Processes, namespaces: Namespaces, directory: Path, autopath: bool) -> dict[str, int]:
    """Start the server (with or without autopath), look each name up once: the queries it received for each."""
    (directory / "Corefile").write_text(COREFILE.replace("AUTOPATH", "autopath @kubernetes" if autopath else ""))
    log = directory / f"server-{'autopath' if autopath else 'plain'}.log"
    server = processes.start(namespaces.run(namespaces.server, [
        sys.executable, "-m", "dns_server", "-conf", str(directory / "Corefile")]), log, cwd=REPO)
    try:
        wait_until_resolving(namespaces, server, log)
        counts = {}
        for name, _, address in LOOKUPS:
            before = requests_total(namespaces)
            result = lookup(namespaces, name)
            if result.returncode or address not in result.stdout.split():
                how = "with" if autopath else "without"
                raise BenchError(f"getent ahosts {name} {how} autopath did not give {address} ({result.returncode}): "
                                 f"{result.stdout.strip()} {result.stderr.strip()}")
            counts[name] = requests_total(namespaces) - before
        return counts
    finally:
        processes.stop(server)


def measure(processes: Processes) -> dict[str, tuple[int, int]]:
    """For each name, the queries the server received without and with autopath."""
    namespaces = Namespaces()
    with tempfile.TemporaryDirectory(prefix="search-path-") as work:
        directory = Path(work)
        (directory / "cluster").mkdir()
        (directory / "cluster" / "cluster.yaml").write_text(CLUSTER)
        (directory / "unbound.conf").write_text(UNBOUND)
        try:
            namespaces.make()
            upstream = processes.start(namespaces.run(namespaces.server, [program("unbound"), "-d", "-c",
                                                                          str(directory / "unbound.conf")]),
                                       directory / "unbound.log")
            try:
                plain = count_queries(processes, namespaces, directory, autopath=False)
                walked = count_queries(processes, namespaces, directory, autopath=True)
            finally:
                processes.stop(upstream)
        finally:
            namespaces.remove()
    return {name: (plain[name], walked[name]) for name, _, _ in LOOKUPS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0 or not (shutil.which("ip") or Path("/usr/sbin/ip").exists()):
        print("bench: network namespaces need root and ip (iproute2)", file=sys.stderr)
        return CANNOT_MAKE_NAMESPACES

    def body(processes: Processes) -> int:
        counts = measure(processes)
        if args.json:
            print(json.dumps(counts))
            return 0
        print_table(["getent ahosts NAME", "what", "queries without autopath", "with autopath"],
                    [[name, what, str(counts[name][0]), str(counts[name][1])] for name, what, _ in LOOKUPS],
                    left=(0, 1))
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
