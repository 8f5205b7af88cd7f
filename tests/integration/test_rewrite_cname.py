"""rewrite cname in the real server process: upstream CNAMEs retargeted, the new targets looked up again.

Real parts: the server runs as its own process (`python -m dns_server -conf FILE -dns.port PORT`),
reads the bundled zones/ example cluster through `fixtures`, and forwards what the cluster does
not own to the real unbound daemon (tests/integration/upstream.py), which serves example.org's
CNAMEs from a zone file; the client is dnspython, over UDP and TCP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import dns.message
import dns.rcode
import pytest

from tests.cluster_data import ZONES as CLUSTER_ZONES
from tests.integration.server import ServerProcess
from tests.integration.upstream import ZONES, Unbound

EXAMPLE_ORG = """\
$ORIGIN example.org.
@   3600 IN SOA   ns.example.org. hostmaster.example.org. 1 7200 1800 86400 60
@   3600 IN NS    ns.example.com.
www  300 IN CNAME www.cdn.example.net.
k8s  300 IN CNAME k8s.cdn.example.net.
"""
COREFILE = """\
. {
    rewrite continue cname exact www.cdn.example.net. www.example.com.
    rewrite cname regex (k8s)\\.cdn\\.example\\.net\\. kubernetes.default.svc.cluster.local.
    forward . {$UNBOUND}
    cache
}
cluster.local {
    kubernetes {
        fixtures {$ZONES}
    }
}
"""
TRANSPORTS = ["udp", "tcp"]


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    with Unbound(tmp_path_factory.mktemp("unbound"), zones={**ZONES, "example.org": EXAMPLE_ORG}) as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, unbound: Unbound) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("rewrite-cname")
    with ServerProcess.from_corefile(directory, COREFILE, env={"ZONES": str(CLUSTER_ZONES), "UNBOUND": unbound.address},
                                     ready_name="kubernetes.default.svc.cluster.local", ready_type="A") as running:
        yield running


def answer(reply: dns.message.Message) -> list[str]:
    """The answer section as text, without TTLs (the cache counts them down)."""
    return [" ".join(line.split()[i] for i in (0, 2, 3, 4)) for rrset in reply.answer
            for line in rrset.to_text().splitlines()]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_upstream_cname_is_retargeted_to_another_upstream_name(server: ServerProcess, unbound: Unbound,
                                                                 transport: str) -> None:
    for _ in range(2):  # the second time from the forward cache
        reply = server.ask("www.example.org", "A", transport)
        assert reply.rcode() == dns.rcode.NOERROR
        assert answer(reply) == ["www.example.org. IN CNAME www.example.com.", "www.example.com. IN A 192.0.2.10"]
    assert unbound.has_seen("www.example.com", "A")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_upstream_cname_is_retargeted_to_a_cluster_name_of_another_block(server: ServerProcess,
                                                                            transport: str) -> None:
    reply = server.ask("k8s.example.org", "A", transport)
    assert reply.rcode() == dns.rcode.NOERROR
    assert answer(reply) == ["k8s.example.org. IN CNAME kubernetes.default.svc.cluster.local.",
                             "kubernetes.default.svc.cluster.local. IN A 10.96.0.1"]


def test_a_bad_cname_rule_stops_the_start_naming_its_line(tmp_path: Path) -> None:
    corefile = ". {\n    forward . 192.0.2.53\n    rewrite cname regex (bad a.example.\n}\n"
    server = ServerProcess.from_corefile(tmp_path, corefile)
    assert server.refused_start(10.0) == 1
    assert server.log() == (f"dns-server: error: plugin/rewrite: {tmp_path}/Corefile:3 - Error during parsing: "
                            "invalid cname rewrite regex pattern: (bad\n")
