"""k8s_external in the real server process: Services' external addresses under example.org, asked over
UDP and TCP with dnspython.

Real parts: the server runs from a Corefile (`kubernetes cluster.local { fixtures DIR }` and
`k8s_external example.org ...`) over the manifests of tests/data/k8s_external (load balancers with
ingress ips and a hostname, externalIPs, a headless service); a load balancer's hostname is
www.example.com, whose records the real unbound daemon serves behind `forward`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import dns.flags
import pytest

from tests.integration.replies import owners, rcode, ttls, values
from tests.integration.server import ServerProcess, wait_for
from tests.integration.upstream import Unbound

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "k8s_external"
RELOAD_WAIT = 15.0  # generous: fixture files are polled, on a machine shared with the test

COREFILE = """\
. {
    kubernetes cluster.local {
        fixtures {$FIXTURES}
    }
    k8s_external example.org 100.51.198.in-addr.arpa {
        headless
    }
    forward . {$UNBOUND}
}
"""


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    with Unbound(tmp_path_factory.mktemp("unbound")) as running:
        yield running


def start(directory: Path, fixtures: Path, unbound: Unbound) -> ServerProcess:
    env = {"FIXTURES": str(fixtures), "UNBOUND": unbound.address}
    return ServerProcess.from_corefile(directory, COREFILE, env=env)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, unbound: Unbound) -> Iterator[ServerProcess]:
    with start(tmp_path_factory.mktemp("k8s_external"), FIXTURES, unbound) as running:
        yield running


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_load_balancers_addresses_and_ports(server: ServerProcess, transport: str) -> None:
    reply = server.ask("shop.web.example.org", "A", transport)
    assert values(reply) == ["198.51.100.11", "198.51.100.10"] and ttls(reply) == {5}
    assert reply.flags & dns.flags.AA
    assert values(server.ask("shop.web.example.org", "AAAA", transport), "AAAA") == ["2001:db8::10"]
    srv = server.ask("_https._tcp.shop.web.example.org", "SRV", transport)
    assert values(srv, "SRV") == ["0 33 443 shop.web.example.org."]
    assert values(srv, "A", "additional") == ["198.51.100.11", "198.51.100.10"]
    assert values(srv, "AAAA", "additional") == ["2001:db8::10"]
    assert values(server.ask("resolver.web.example.org", "A", transport)) == ["198.51.100.20", "198.51.100.21"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_load_balancers_hostname_is_one_cname_with_the_upstreams_records(server: ServerProcess,
                                                                            transport: str) -> None:
    for qtype, address in (("A", "192.0.2.10"), ("AAAA", "2001:db8::10")):
        reply = server.ask("cdn.web.example.org", qtype, transport)
        assert rcode(reply) == "NOERROR"
        assert values(reply, "CNAME") == ["www.example.com."]  # once, though the service has two ports
        assert values(reply, qtype) == [address] and owners(reply) == ["cdn.web.example.org.", "www.example.com."]
    mixed = server.ask("mixed.web.example.org", "A", transport)  # an ip and a hostname: the ip alone
    assert values(mixed) == ["198.51.100.30"] and not values(mixed, "CNAME")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_the_apex_its_name_server_and_its_glue(server: ServerProcess, transport: str) -> None:
    soa = server.ask("example.org", "SOA", transport)
    (record,) = values(soa, "SOA")
    mname, rname, _serial, *timers = record.split()
    assert (mname, rname, timers) == ("ns1.dns.example.org.", "hostmaster.dns.example.org.",
                                      ["7200", "1800", "86400", "5"])
    ns = server.ask("example.org", "NS", transport)
    assert values(ns, "NS") == ["ns1.dns.example.org."]
    assert values(ns, "A", "additional") == ["192.0.2.53"] and values(ns, "AAAA", "additional") == ["2001:db8::53"]
    assert values(server.ask("ns1.dns.example.org", "A", transport)) == ["192.0.2.53"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_what_does_not_exist_and_what_has_no_such_records(server: ServerProcess, transport: str) -> None:
    for name in ("internal.web.example.org", "nothing.web.example.org", "x.shop.web.example.org",
                 "ns2.dns.example.org", "db-2.db.web.example.org"):
        reply = server.ask(name, "A", transport)
        assert rcode(reply) == "NXDOMAIN" and owners(reply, "authority") == ["example.org."], name
    for name, qtype in (("web.example.org", "A"), ("shop.web.example.org", "TXT"), ("dns.example.org", "A")):
        reply = server.ask(name, qtype, transport)
        assert rcode(reply) == "NOERROR" and not reply.answer and owners(reply, "authority") == ["example.org."]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_headless_endpoints_and_reverse_names(server: ServerProcess, transport: str) -> None:
    assert values(server.ask("db.web.example.org", "A", transport)) == ["10.244.1.10", "10.244.1.11"]
    assert values(server.ask("db-1.db.web.example.org", "A", transport)) == ["10.244.1.11"]
    srv = server.ask("_postgres._tcp.db.web.example.org", "SRV", transport)
    assert values(srv, "SRV") == ["0 50 5432 db-0.db.web.example.org.", "0 50 5432 db-1.db.web.example.org."]
    ptr = server.ask("10.100.51.198.in-addr.arpa", "PTR", transport)
    assert values(ptr, "PTR") == ["shop.web.example.org."]
    assert values(server.ask("shop.web.svc.cluster.local", "A", transport)) == ["10.96.20.1"]  # the cluster zone


def test_a_changed_load_balancer_is_served_from_the_changed_manifest(tmp_path: Path, unbound: Unbound) -> None:
    fixtures = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, fixtures)
    with start(tmp_path, fixtures, unbound) as server:
        assert values(server.ask("shop.web.example.org", "A")) == ["198.51.100.11", "198.51.100.10"]
        assert rcode(server.ask("77.100.51.198.in-addr.arpa", "PTR", "tcp")) == "NXDOMAIN"
        manifest = fixtures / "cluster.yaml"
        manifest.write_text(manifest.read_text().replace("ip: 198.51.100.10,", "ip: 198.51.100.77,"))
        wait_for(lambda: values(server.ask("shop.web.example.org", "A")) == ["198.51.100.11", "198.51.100.77"],
                 RELOAD_WAIT, "the new ingress address to be served")
        assert values(server.ask("77.100.51.198.in-addr.arpa", "PTR", "tcp"), "PTR") == ["shop.web.example.org."]
        assert rcode(server.ask("10.100.51.198.in-addr.arpa", "PTR")) == "NXDOMAIN"


def test_k8s_external_without_zones_in_the_root_block_is_warned_about(tmp_path: Path, unbound: Unbound) -> None:
    """CoreDNS gives the plugin the block's zones: in `.` it takes every name, silently."""
    corefile = COREFILE.replace("k8s_external example.org 100.51.198.in-addr.arpa {\n        headless\n    }",
                                "k8s_external")
    env = {"FIXTURES": str(FIXTURES), "UNBOUND": unbound.address}
    with ServerProcess.from_corefile(tmp_path, corefile, env=env) as server:
        assert rcode(server.ask("www.example.com", "A")) == "NXDOMAIN"  # not forwarded: k8s_external took it
        assert "plugin/k8s_external: it serves the root zone" in server.log()
