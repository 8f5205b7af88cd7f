"""Everything the Kubernetes DNS specification defines, asked of the real server over UDP and TCP.

Real parts: the server runs as its own process (`python -m dns_server`) on the bundled zones/
example cluster (plus one generated 200-endpoint headless service); the client is dnspython, an
independent DNS implementation.  Expected answers follow ../shared/DNS-BEHAVIOUR.md.
"""

from __future__ import annotations

import random
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from tests.cluster_data import ZONES, headless_manifest
from tests.integration.server import REPO, ServerProcess, free_port, texts, wait_for

Z = "cluster.local"
TRANSPORTS = ["udp", "tcp"]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cluster")
    for path in ZONES.glob("*.yaml"):
        shutil.copy(path, directory / path.name)
    (directory / "big.yaml").write_text(yaml.safe_dump_all(headless_manifest("many", "big", 200)))
    return directory


@pytest.fixture(scope="module")
def server(fixtures: Path) -> Iterator[ServerProcess]:
    # no upstreams (an empty resolv.conf): names outside the zone are refused, never sent to this machine's resolver
    with ServerProcess("--fixtures", str(fixtures), "--resolv-conf", "/dev/null") as running:
        yield running


def ask(server: ServerProcess, transport: str, name: str, qtype: str = "A", **kw: object) -> dns.message.Message:
    message = dns.message.make_query(name, qtype, **kw)  # type: ignore[arg-type]
    return server.udp(message) if transport == "udp" else server.tcp(message)


ANSWERS = [
    ("clusterip", f"frontend.shop.svc.{Z}", "A", {f"frontend.shop.svc.{Z}. A 10.96.10.20"}),
    ("dual-stack A", f"checkout.shop.svc.{Z}", "A", {f"checkout.shop.svc.{Z}. A 10.96.10.30"}),
    ("dual-stack AAAA", f"checkout.shop.svc.{Z}", "AAAA", {f"checkout.shop.svc.{Z}. AAAA fd00:10:96::a30"}),
    ("headless", f"postgres.data.svc.{Z}", "A",
     {f"postgres.data.svc.{Z}. A 10.244.1.10", f"postgres.data.svc.{Z}. A 10.244.2.11"}),
    ("endpoint hostname", f"postgres-1.postgres.data.svc.{Z}", "A", {f"postgres-1.postgres.data.svc.{Z}. A 10.244.2.11"}),
    ("endpoint dashed ip", f"10-244-1-20.redis.data.svc.{Z}", "A", {f"10-244-1-20.redis.data.svc.{Z}. A 10.244.1.20"}),
    ("srv clusterip", f"_https._tcp.frontend.shop.svc.{Z}", "SRV",
     {f"_https._tcp.frontend.shop.svc.{Z}. SRV 0 100 443 frontend.shop.svc.{Z}."}),
    ("srv headless", f"_postgres._tcp.postgres.data.svc.{Z}", "SRV",
     {f"_postgres._tcp.postgres.data.svc.{Z}. SRV 0 50 5432 postgres-0.postgres.data.svc.{Z}.",
      f"_postgres._tcp.postgres.data.svc.{Z}. SRV 0 50 5432 postgres-1.postgres.data.svc.{Z}."}),
    ("srv bare service", f"cart.shop.svc.{Z}", "SRV", {f"cart.shop.svc.{Z}. SRV 0 100 9090 cart.shop.svc.{Z}."}),
    ("externalname cname", f"payments-api.shop.svc.{Z}", "CNAME",
     {f"payments-api.shop.svc.{Z}. CNAME api.payments.example.com."}),
    ("externalname in-zone chased", f"storefront.shop.svc.{Z}", "A",
     {f"storefront.shop.svc.{Z}. CNAME frontend.shop.svc.{Z}.", f"frontend.shop.svc.{Z}. A 10.96.10.20"}),
    ("ptr clusterip", "20.10.96.10.in-addr.arpa", "PTR", {f"20.10.96.10.in-addr.arpa. PTR frontend.shop.svc.{Z}."}),
    ("ptr endpoint", "11.2.244.10.in-addr.arpa", "PTR",
     {f"11.2.244.10.in-addr.arpa. PTR postgres-1.postgres.data.svc.{Z}."}),
    ("ptr ipv6", "0.3.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa", "PTR",
     {f"0.3.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa. PTR checkout.shop.svc.{Z}."}),
    ("pod insecure", f"10-244-7-7.shop.pod.{Z}", "A", {f"10-244-7-7.shop.pod.{Z}. A 10.244.7.7"}),
    ("dns-version", f"dns-version.{Z}", "TXT", {f'dns-version.{Z}. TXT "1.1.0"'}),
    ("apex ns", Z, "NS", {f"{Z}. NS ns.dns.{Z}."}),
    ("ns.dns address", f"ns.dns.{Z}", "A", {f"ns.dns.{Z}. A 10.96.0.10"}),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("what, name, qtype, expected", ANSWERS, ids=[a[0] for a in ANSWERS])
def test_answers(server: ServerProcess, transport: str, what: str, name: str, qtype: str, expected: set[str]) -> None:
    reply = ask(server, transport, name, qtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert texts(reply.answer) == expected


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_srv_additional_section_carries_target_addresses(server: ServerProcess, transport: str) -> None:
    reply = ask(server, transport, f"_postgres._tcp.postgres.data.svc.{Z}", "SRV")
    assert texts(reply.additional) == {f"postgres-0.postgres.data.svc.{Z}. A 10.244.1.10",
                                       f"postgres-1.postgres.data.svc.{Z}. A 10.244.2.11"}
    ns = ask(server, transport, Z, "NS")
    assert texts(ns.additional) == {f"ns.dns.{Z}. A 10.96.0.10"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_soa_at_the_apex(server: ServerProcess, transport: str) -> None:
    reply = ask(server, transport, Z, "SOA")
    (soa,) = reply.answer[0]
    assert (soa.mname.to_text(), soa.rname.to_text()) == (f"ns.dns.{Z}.", f"hostmaster.{Z}.")
    assert (soa.refresh, soa.retry, soa.expire, soa.minimum) == (7200, 1800, 86400, 5)
    assert soa.serial > 1_600_000_000  # the time of the last change


NEGATIVE = [
    ("missing service", f"nope.shop.svc.{Z}", "A", dns.rcode.NXDOMAIN),
    ("missing namespace", f"frontend.nope.svc.{Z}", "A", dns.rcode.NXDOMAIN),
    ("not ready endpoint", f"postgres-2.postgres.data.svc.{Z}", "A", dns.rcode.NXDOMAIN),
    ("search path miss", f"frontend.shop.svc.{Z}.shop.svc.{Z}", "A", dns.rcode.NXDOMAIN),
    ("unknown port", f"_nope._tcp.frontend.shop.svc.{Z}", "SRV", dns.rcode.NXDOMAIN),
    ("clusterip AAAA", f"frontend.shop.svc.{Z}", "AAAA", dns.rcode.NOERROR),
    ("existing namespace", f"shop.svc.{Z}", "A", dns.rcode.NOERROR),
    ("apex A", Z, "A", dns.rcode.NOERROR),
    ("svc.Z", f"svc.{Z}", "A", dns.rcode.NOERROR),
    ("pod.Z", f"pod.{Z}", "A", dns.rcode.NOERROR),
    ("dns.Z, an empty non-terminal above ns.dns.Z", f"dns.{Z}", "A", dns.rcode.NOERROR),
    ("externalname SRV", f"payments-api.shop.svc.{Z}", "SRV", dns.rcode.NOERROR),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("what, name, qtype, rcode", NEGATIVE, ids=[n[0] for n in NEGATIVE])
def test_nxdomain_and_nodata_carry_the_soa(server: ServerProcess, transport: str, what: str, name: str,
                                           qtype: str, rcode: int) -> None:
    reply = ask(server, transport, name, qtype)
    assert reply.rcode() == rcode
    assert not reply.answer
    assert reply.flags & dns.flags.AA
    assert [rrset.rdtype for rrset in reply.authority] == [dns.rdatatype.SOA]
    assert reply.authority[0].name.to_text() == f"{Z}."


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_query_case_is_echoed(server: ServerProcess, transport: str) -> None:
    for _ in range(2):  # a cache miss, then a hit
        reply = ask(server, transport, f"FrontEnd.SHOP.svc.Cluster.Local", "A")
        assert reply.question[0].name.to_text() == "FrontEnd.SHOP.svc.Cluster.Local."
        assert reply.answer[0][0].to_text() == "10.96.10.20"


@pytest.mark.parametrize("qtype", ["AXFR", "IXFR"])
def test_zone_transfers_are_refused(server: ServerProcess, qtype: str) -> None:
    message = dns.message.make_query(Z, qtype)
    assert server.tcp(message).rcode() == dns.rcode.REFUSED


def test_outside_names_fail_without_upstream_forwarding(server: ServerProcess) -> None:
    """No forward takes the name: CoreDNS's "no next plugin found", SERVFAIL, never a made-up NXDOMAIN."""
    reply = ask(server, "udp", "example.com", "A")
    assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer


def test_non_in_class_is_refused(server: ServerProcess) -> None:
    message = dns.message.make_query("version.bind", "TXT", rdclass="CH")
    assert server.udp(message).rcode() == dns.rcode.REFUSED


def test_edns_echo_and_badvers(server: ServerProcess) -> None:
    reply = ask(server, "udp", f"frontend.shop.svc.{Z}", "A", use_edns=0, payload=4096, want_dnssec=True)
    assert reply.edns == 0 and reply.payload == 1232 and reply.ednsflags & dns.flags.DO
    assert ask(server, "udp", f"frontend.shop.svc.{Z}", "A", use_edns=1).rcode() == dns.rcode.BADVERS


def test_udp_replies_never_exceed_our_1232_bytes_even_when_the_client_offers_4096(server: ServerProcess) -> None:
    """200 A records are about 3.3 kB: they would fit the client's 4096 bytes, not our 1232 (RFC 6891 6.2.5)."""
    # a miss, a hit on the question (another case, other bytes), a hit on the exact bytes of the first
    names = [f"many.big.svc.{Z}", f"MANY.big.svc.{Z}", f"many.big.svc.{Z}"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        for name in names:
            query = dns.message.make_query(name, "A", use_edns=0, payload=4096)
            client.sendto(query.to_wire(), (server.host, server.port))
            wire = client.recv(65535)
            assert len(wire) <= 1232, name
            reply = dns.message.from_wire(wire)
            assert reply.id == query.id and reply.flags & dns.flags.TC


def test_200_endpoints_truncated_over_udp_and_whole_over_tcp(server: ServerProcess) -> None:
    udp = ask(server, "udp", f"many.big.svc.{Z}", "A")
    assert udp.flags & dns.flags.TC
    edns = ask(server, "udp", f"many.big.svc.{Z}", "A", use_edns=0, payload=1232)
    assert edns.flags & dns.flags.TC
    tcp = ask(server, "tcp", f"many.big.svc.{Z}", "A")
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 200
    srv = ask(server, "tcp", f"_http._tcp.many.big.svc.{Z}", "SRV")
    assert len(srv.answer[0]) == 200 and sum(len(rrset) for rrset in srv.additional) == 200


def test_fuzzed_packets_never_stop_the_server(server: ServerProcess) -> None:
    rng = random.Random(7)
    seeds = [dns.message.make_query(f"frontend.shop.svc.{Z}", "A").to_wire(),
             dns.message.make_query(f"_http._tcp.frontend.shop.svc.{Z}", "SRV", use_edns=0).to_wire(),
             dns.message.make_query(f"1.0.96.10.in-addr.arpa", "PTR").to_wire()]

    def packet() -> bytes:
        if rng.random() < 0.3:
            return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
        mutated = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.getrandbits(8)
        return bytes(mutated[: rng.randrange(1, len(mutated) + 1)])

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for _ in range(3000):
            udp.sendto(packet(), (server.host, server.port))
    for _ in range(20):
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            for _ in range(25):
                body = packet()
                sock.sendall(struct.pack("!H", len(body)) + body)
    for transport in TRANSPORTS:
        assert ask(server, transport, f"frontend.shop.svc.{Z}").answer[0][0].to_text() == "10.96.10.20"
    assert server.process is not None and server.process.poll() is None


def test_the_pure_python_udp_path_sends_the_same_bytes(server: ServerProcess, fixtures: Path) -> None:
    """The same data served twice: by default (recvmmsg and sendmmsg, the compiled `_mmsg` module) and
    with DNS_SERVER_PURE_PYTHON=1 (a recvfrom and a sendto per datagram), each question of this file
    asked of both with the same ID: the replies are the same bytes, truncated ones included (but for
    the SOA serial, which is each process's start time)."""
    questions = [(name, qtype) for _, name, qtype, _ in ANSWERS] + [(name, qtype) for _, name, qtype, _ in NEGATIVE]
    questions.append((f"many.big.svc.{Z}", "A"))
    with ServerProcess("--fixtures", str(fixtures), "--resolv-conf", "/dev/null",
                       env={"DNS_SERVER_PURE_PYTHON": "1"}) as pure:
        wait_for(lambda: "UDP: one system call per datagram (DNS_SERVER_PURE_PYTHON=1)" in pure.log(), 10,
                 "the start-up line of the pure-Python path")
        assert "UDP: one system call per datagram" not in server.log()
        for number, (name, qtype) in enumerate(questions):
            query = dns.message.make_query(name, qtype, use_edns=number % 2 - 1)
            wires = []
            for running in (server, pure):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                    client.settimeout(5)
                    client.sendto(query.to_wire(), (running.host, running.port))
                    wires.append(client.recv(65535))
            serials = [[rr.serial for rrset in dns.message.from_wire(wire).authority for rr in rrset
                        if rr.rdtype == dns.rdatatype.SOA] for wire in wires]
            if serials[0] != serials[1]:
                wires[1] = wires[1].replace(struct.pack("!I", serials[1][0]), struct.pack("!I", serials[0][0]))
            assert wires[0] == wires[1], (name, qtype)
            assert dns.message.from_wire(wires[0]).id == query.id


def test_flags_change_what_is_served(tmp_path: Path) -> None:
    args = ["--fixtures", str(ZONES), "--cluster-domain", "k8s.test", "--ttl", "30", "--endpoint-pod-names",
            "--pods", "verified", "--resolv-conf", "/dev/null"]
    with ServerProcess(*args, ready_name="dns-version.k8s.test") as server:
        reply = server.udp(dns.message.make_query("frontend.shop.svc.k8s.test", "A"))
        assert reply.answer[0].ttl == 30 and reply.answer[0][0].to_text() == "10.96.10.20"
        reply = server.udp(dns.message.make_query("redis-7f9c6-2mxkq.redis.data.svc.k8s.test", "A"))
        assert reply.answer[0][0].to_text() == "10.244.1.20"
        assert server.udp(dns.message.make_query("10-244-1-5.shop.pod.k8s.test", "A")).answer  # running pod
        unknown = server.udp(dns.message.make_query("10-244-7-7.shop.pod.k8s.test", "A"))
        assert unknown.rcode() == dns.rcode.NXDOMAIN
        assert server.udp(dns.message.make_query(f"frontend.shop.svc.{Z}", "A")).rcode() == dns.rcode.SERVFAIL  # no forward takes it


def test_pods_disabled() -> None:
    """No pod names at all: a pod's address and its namespace's name under pod.Z are both NXDOMAIN."""
    with ServerProcess("--fixtures", str(ZONES), "--pods", "disabled") as server:
        for name in (f"10-244-1-5.shop.pod.{Z}", f"shop.pod.{Z}"):
            reply = server.udp(dns.message.make_query(name, "A"))
            assert reply.rcode() == dns.rcode.NXDOMAIN, name
            assert reply.authority[0].rdtype == dns.rdatatype.SOA


@pytest.mark.parametrize("ttl, soa_ttl", [(3600, 300), (30, 30)])
def test_the_soa_records_own_ttl_is_the_ttl_capped_at_300(ttl: int, soa_ttl: int) -> None:
    """CoreDNS: the SOA's TTL is min(ttl, 300) while its MINIMUM field (the negative TTL) is the ttl."""
    with ServerProcess("--fixtures", str(ZONES), "--ttl", str(ttl)) as server:
        apex = server.udp(dns.message.make_query(Z, "SOA")).answer[0]
        negative = server.udp(dns.message.make_query(f"nope.shop.svc.{Z}", "A")).authority[0]
        for soa in (apex, negative):
            assert soa.rdtype == dns.rdatatype.SOA
            assert (soa.ttl, soa[0].minimum) == (soa_ttl, ttl)
        assert server.udp(dns.message.make_query(f"frontend.shop.svc.{Z}", "A")).answer[0].ttl == ttl


def test_ipv6_listener() -> None:
    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6 loopback")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "dns_server", "--fixtures", str(ZONES),
                                "--listen", f"[::1]:{port}"], cwd=REPO, stderr=subprocess.PIPE)
    try:
        def answers() -> bool:
            try:
                reply = dns.query.udp(dns.message.make_query(f"frontend.shop.svc.{Z}", "A"), "::1", port=port,
                                      timeout=0.2)
            except Exception:
                return False
            return reply.answer[0][0].to_text() == "10.96.10.20"
        wait_for(answers, 20, "an answer over IPv6")
    finally:
        process.terminate()
        process.wait(timeout=10)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dns_server", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("args, message", [
    (["--fixtures", "zones", "--ttl", "99999"], "--ttl - Error during parsing: ttl must be in range [0, 3600]: 99999"),
    (["--fixtures", "zones", "--pods", "sometimes"], "invalid choice"),
    (["--fixtures", "zones", "--listen", "nonsense:53"], "is not an IP address"),
    (["--fixtures", "/nonexistent/dir", "--listen", "127.0.0.1:0"], "/nonexistent/dir"),
    ([], "no cluster data"),
])
def test_bad_start_is_one_line_and_non_zero(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_busy_port_is_one_line_and_non_zero(server: ServerProcess) -> None:
    result = run_cli("--fixtures", "zones", "--listen", f"127.0.0.1:{server.port}")
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{server.port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_startup_logs_listeners_and_a_summary(server: ServerProcess) -> None:
    log = server.log()
    assert f"listening on 127.0.0.1:{server.port} (UDP and TCP)" in log
    assert "plugin/kubernetes: serving zone cluster.local, in-addr.arpa, ip6.arpa from" in log and "services" in log
