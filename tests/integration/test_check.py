"""`dns-server check` as a user runs it: a process against a real server, ours and NSD.

- Our server (the real process) passes every check for every fixture cluster we ship, from flags,
  from a Corefile (pods, ttl and cache as kubeadm's) and with the cluster listed from the API
  stand-in (`--kubeconfig`); an unreachable server or bad input is exit status 2.
- NSD (Debian's, the standard authoritative server; started here on a free port) serving zones the
  test writes from the same fixtures (`write_zones`, its own reading of the objects) passes as well:
  a static zone can hold every record and every negative answer the checks ask about.  The one
  part it cannot serve is `pods insecure` (an answer for any address), which these runs leave out
  as the default `--pods disabled` does.  Then each zone is altered in one way a zone can go wrong,
  and the check must name that difference and exit 1.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Iterator

import dns.exception
import dns.message
import dns.query
import pytest
import yaml

from dns_server.cluster.records import Endpoint, EndpointSlice, Record, Service
from dns_server.tools.check import read_fixtures
from tests.integration.server import ServerProcess, free_port, wait_for
from tests.kube_api_standin import KubeApiStandIn, objects_of

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = {"zones": REPO / "zones", "k8s_external": REPO / "tests/data/k8s_external"}
ZONE = "cluster.local"
TTL = 5
COREFILE = """.:{port} {{
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        fixtures {fixtures}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
    loadbalance
}}
"""


def run_check(server: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dns_server", "check", "--server", server, *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.mark.parametrize("cluster", sorted(CLUSTERS))
def test_our_server_passes_every_check_for_each_shipped_cluster(cluster: str, tmp_path: Path) -> None:
    fixtures = str(CLUSTERS[cluster])
    with ServerProcess("--fixtures", fixtures, "--resolv-conf", "/dev/null") as server:
        result = run_check(f"{server.host}:{server.port}", "--fixtures", fixtures, "--junit", str(tmp_path / "j.xml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith(": no differences\n") and result.stdout.count("\n") == 1
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert int(suite.get("tests", "0")) > 40 and suite.get("failures") == "0"


def test_our_server_from_a_corefile_passes_with_its_pods_and_ttl(tmp_path: Path) -> None:
    """-conf reads the zone, `pods insecure` and `ttl 30` from the Corefile; the cache answers the second time."""
    port = free_port()
    text = COREFILE.format(port=port, fixtures=CLUSTERS["zones"])
    with ServerProcess.from_corefile(tmp_path, text, port=port):
        first = run_check(f"127.0.0.1:{port}", "-conf", str(tmp_path / "Corefile"), "--junit", str(tmp_path / "j.xml"))
        second = run_check(f"127.0.0.1:{port}", "-conf", str(tmp_path / "Corefile"))
    assert first.returncode == 0 and second.returncode == 0, first.stdout + second.stdout
    names = [case.get("name") for case in ET.parse(tmp_path / "j.xml").getroot()]
    assert "10-244-1-5.shop.pod.cluster.local. A" in names and "192-0-2-1.data.pod.cluster.local. A" in names


def test_the_cluster_read_from_the_api_with_a_kubeconfig(tmp_path: Path) -> None:
    """--kubeconfig lists the cluster once from tests/kube_api_standin.py (kube-apiserver's list protocol),
    the same stand-in our server watches; it holds the zones/ cluster, and pods are listed for --pods verified."""
    api = KubeApiStandIn(bookmark_interval=3600).start()
    try:
        api.load(objects_of(d for f in sorted(CLUSTERS["zones"].glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())))
        kubeconfig = str(api.write_kubeconfig(tmp_path / "kubeconfig"))
        with ServerProcess("--kubeconfig", kubeconfig, "--pods", "verified") as server:
            result = run_check(f"{server.host}:{server.port}", "--kubeconfig", kubeconfig, "--pods", "verified",
                               "--junit", str(tmp_path / "j.xml"))
    finally:
        api.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    names = [case.get("name") for case in ET.parse(tmp_path / "j.xml").getroot()]
    assert "10-244-1-5.shop.pod.cluster.local. A" in names and "_postgres._tcp.postgres.data.svc.cluster.local. SRV" in names


def test_an_unreachable_server_or_bad_input_is_exit_status_2(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = run_check(f"127.0.0.1:{port}", "--fixtures", str(CLUSTERS["zones"]), "--timeout", "0.5")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"dns-server check: no reply from 127.0.0.1:{port} over UDP or TCP within 0.5 s\n"
    result = run_check("127.0.0.1", "--fixtures", str(CLUSTERS["zones"]))
    assert (result.returncode, result.stderr) == (2, "dns-server check: --server 127.0.0.1: give HOST:PORT\n")
    result = run_check(f"127.0.0.1:{port}", "-conf", str(tmp_path / "Corefile"))
    assert (result.returncode, result.stdout) == (2, "") and result.stderr.startswith("dns-server check: ")
    assert result.stderr.count("\n") == 1
    (tmp_path / "bad.yaml").write_text("kind: [unclosed\n")
    result = run_check(f"127.0.0.1:{port}", "--fixtures", str(tmp_path))
    assert result.returncode == 2 and result.stderr.startswith(f"dns-server check: {tmp_path / 'bad.yaml'}: cannot parse")


# -- NSD ------------------------------------------------------------------------------------------------
def write_zones(records: Iterable[Record], directory: Path) -> dict[str, Path]:
    """Zone files for cluster.local, in-addr.arpa and ip6.arpa holding what the specification says the objects have.

    Endpoints without a hostname are named by their dashed address, as CoreDNS names them.
    """
    lines: dict[str, list[str]] = {ZONE: [f'dns-version.{ZONE}. 28800 IN TXT "1.1.0"'],
                                   "in-addr.arpa": [], "ip6.arpa": []}
    slices: dict[tuple[str, str], list[EndpointSlice]] = defaultdict(list)
    services = []
    for record in records:
        if isinstance(record, EndpointSlice):
            slices[(record.namespace, record.service)].append(record)
        elif isinstance(record, Service):
            services.append(record)

    def address(owner: str, ip: str) -> None:
        rtype = "A" if ipaddress.ip_address(ip).version == 4 else "AAAA"
        lines[ZONE].append(f"{owner} IN {rtype} {ip}")

    def pointer(ip: str, target: str) -> None:
        reverse = ipaddress.ip_address(ip).reverse_pointer
        lines["in-addr.arpa" if reverse.endswith("in-addr.arpa") else "ip6.arpa"].append(f"{reverse}. IN PTR {target}")

    for service in services:
        owner = f"{service.name}.{service.namespace}.svc.{ZONE}."
        if service.external_name:
            lines[ZONE].append(f"{owner} IN CNAME {service.external_name}.")
        for ip in service.cluster_ips:
            address(owner, ip)
            pointer(ip, owner)
        lines[ZONE] += [f"_{port.name}._{port.protocol.lower()}.{owner} IN SRV 0 100 {port.port} {owner}"
                        for port in service.ports if port.name and service.cluster_ips]
        if not service.headless:
            continue
        for piece in slices[(service.namespace, service.name)]:
            for endpoint in piece.endpoints:
                if endpoint.ready:
                    target = f"{_label(endpoint)}.{owner}"
                    for ip in endpoint.addresses:
                        address(owner, ip)
                        address(target, ip)
                        pointer(ip, target)
                    lines[ZONE] += [f"_{port.name}._{port.protocol.lower()}.{owner} IN SRV 0 100 {port.port} {target}"
                                    for port in piece.ports if port.name]
    paths = {}
    for zone, body in lines.items():
        paths[zone] = directory / f"{zone}.zone"
        header = [f"$TTL {TTL}", f"{zone}. IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 {TTL}",
                  f"{zone}. IN NS ns.dns.{ZONE}."]
        paths[zone].write_text("\n".join(header + list(dict.fromkeys(body))) + "\n")
    return paths


def _label(endpoint: Endpoint) -> str:
    return endpoint.hostname or endpoint.addresses[0].replace(".", "-").replace(":", "-")


class Nsd:
    """NSD serving zone files on a free loopback port, in the foreground, stopped by its pid."""

    def __init__(self, zones: dict[str, Path], directory: Path) -> None:
        self.port = free_port()
        config = directory / "nsd.conf"
        config.write_text(f"""server:
    ip-address: 127.0.0.1@{self.port}
    do-ip6: no
    server-count: 1
    username: ""
    chroot: ""
    database: ""
    zonesdir: "{directory}"
    pidfile: "{directory}/nsd.pid"
    xfrdfile: "{directory}/xfrd.state"
    zonelistfile: "{directory}/zone.list"
    xfrdir: "{directory}"
    logfile: "{directory}/nsd.log"
    rrl-ratelimit: 0
remote-control:
    control-enable: no
""" + "".join(f'zone:\n    name: {zone}\n    zonefile: "{path}"\n' for zone, path in zones.items()))
        program = shutil.which("nsd") or "/usr/sbin/nsd"
        self.process = subprocess.Popen([program, "-d", "-c", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        self.log = directory / "nsd.log"
        wait_for(self._answers, 20, f"NSD to answer on port {self.port}")

    def _answers(self) -> bool:
        assert self.process.poll() is None, self.log.read_text() if self.log.exists() else "nsd exited"
        try:
            reply = dns.query.udp(dns.message.make_query(f"dns-version.{ZONE}", "TXT"), "127.0.0.1", 0.5, self.port)
        except dns.exception.Timeout:
            return False
        return bool(reply.answer)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def nsd_zones(tmp_path: Path) -> dict[str, Path]:
    if not (shutil.which("nsd") or Path("/usr/sbin/nsd").exists()):
        pytest.fail("nsd is missing: apt-get install nsd (scripts/test installs it)")
    return write_zones(read_fixtures(CLUSTERS["zones"]), tmp_path)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[dict[str, Path]], str]]:
    """Starts NSD on zone files; returns the HOST:PORT it answers on.  Stopped after the test."""
    started: list[Nsd] = []

    def start(zones: dict[str, Path]) -> str:
        started.append(Nsd(zones, tmp_path))
        return f"127.0.0.1:{started[-1].port}"

    yield start
    for nsd in started:
        nsd.stop()


@pytest.mark.parametrize("cluster", sorted(CLUSTERS))
def test_nsd_serving_a_zone_written_from_the_fixtures_passes(cluster: str, tmp_path: Path, serve: Callable[[dict[str, Path]], str]) -> None:
    zones = write_zones(read_fixtures(CLUSTERS[cluster]), tmp_path)
    result = run_check(serve(zones), "--fixtures", str(CLUSTERS[cluster]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith(": no differences\n")


ALTERATIONS = [
    # (what is done to the zone, (old line, new line), the line the check must print)
    ("a missing A", ("kubernetes.default.svc.cluster.local. IN A 10.96.0.1", ""),
     "2.3.1  kubernetes.default.svc.cluster.local. A  UDP+TCP  missing record: A 10.96.0.1"),
    ("a wrong IP", ("frontend.shop.svc.cluster.local. IN A 10.96.10.20", "frontend.shop.svc.cluster.local. IN A 10.96.10.99"),
     "2.3.1  frontend.shop.svc.cluster.local. A  UDP+TCP  extra record: A 10.96.10.99"),
    ("a missing SRV", ("_grpc._tcp.cart.shop.svc.cluster.local. IN SRV 0 100 9090 cart.shop.svc.cluster.local.", ""),
     "2.3.2  _grpc._tcp.cart.shop.svc.cluster.local. SRV  UDP+TCP  wrong rcode: NXDOMAIN, expected NOERROR"),
    ("an extra record", ("", "cart.shop.svc.cluster.local. IN A 10.96.10.99"),
     "2.3.1  cart.shop.svc.cluster.local. A  UDP+TCP  extra record: A 10.96.10.99"),
    ("NXDOMAIN turned into NODATA by an empty non-terminal", ("", "x.absent-service.shop.svc.cluster.local. IN A 192.0.2.1"),
     "RFC 2308 2.1  absent-service.shop.svc.cluster.local. A  UDP+TCP  wrong rcode: NOERROR, expected NXDOMAIN"),
    ("a TTL beyond the range", ("cart.shop.svc.cluster.local. IN A 10.96.10.21", "cart.shop.svc.cluster.local. 86400 IN A 10.96.10.21"),
     "RFC 2181 8  cart.shop.svc.cluster.local. A  UDP+TCP  TTL out of range: cart.shop.svc.cluster.local. A 86400, not in 0-3600"),
    ("a missing endpoint PTR", ("10.1.244.10.in-addr.arpa. IN PTR postgres-0.postgres.data.svc.cluster.local.", ""),
     "2.4.3  10.1.244.10.in-addr.arpa. PTR  UDP+TCP  wrong rcode: NXDOMAIN, expected NOERROR"),
]


@pytest.mark.parametrize("old, new, line", [case[1] + (case[2],) for case in ALTERATIONS],
                         ids=[case[0] for case in ALTERATIONS])
def test_each_alteration_of_the_zone_is_named(old: str, new: str, line: str, nsd_zones: dict[str, Path],
                                              serve: Callable[[dict[str, Path]], str]) -> None:
    zone = nsd_zones[ZONE] if ".in-addr.arpa." not in old else nsd_zones["in-addr.arpa"]
    text = zone.read_text()
    assert not old or f"\n{old}\n" in text
    zone.write_text(text.replace(f"\n{old}\n", f"\n{new}\n") if old else text + new + "\n")
    result = run_check(serve(nsd_zones), "--fixtures", str(CLUSTERS["zones"]))
    assert result.returncode == 1, result.stdout + result.stderr
    assert " ".join(line.split()) in [" ".join(printed.split()) for printed in result.stdout.splitlines()]
