"""rewrite in the real server process, from a Corefile with the rules Gardener and AKS write, asked over UDP and TCP.

Real parts: the server runs as its own process (`python -m dns_server -conf FILE -dns.port PORT`),
reads the bundled zones/ example cluster through `fixtures`, and forwards what the cluster does
not own to the real unbound daemon (tests/integration/upstream.py); the client is dnspython.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import dns.flags
import dns.message
import dns.rcode
import pytest

from tests.cluster_data import ZONES as CLUSTER_ZONES
from tests.integration.server import ServerProcess
from tests.integration.upstream import Unbound

COREFILE = """\
. {
    rewrite name exact my.example.org kubernetes.default.svc.cluster.local
    rewrite stop {
        name regex (.*)\\.example\\.net {1}.default.svc.cluster.local
        answer name (.*)\\.default\\.svc\\.cluster\\.local {1}.example.net
    }
    rewrite name exact Web.Example.ORG www.example.com
    rewrite ttl suffix .svc.cluster.local 60
    kubernetes cluster.local {
        fixtures {$ZONES}
    }
    forward . {$UNBOUND}
    cache
}
"""
TRANSPORTS = ["udp", "tcp"]


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    with Unbound(tmp_path_factory.mktemp("unbound")) as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, unbound: Unbound) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("rewrite")
    with ServerProcess.from_corefile(directory, COREFILE, env={"ZONES": str(CLUSTER_ZONES), "UNBOUND": unbound.address},
                                     ready_name="kubernetes.default.svc.cluster.local", ready_type="A") as running:
        yield running


def answer(reply: dns.message.Message) -> list[str]:
    """The answer section as text, owner names lower-cased (a reply may echo the question's case)."""
    texts = []
    for rrset in reply.answer:
        for line in rrset.to_text().splitlines():
            owner, rest = line.split(" ", 1)
            texts.append(f"{owner.lower()} {rest}")
    return texts


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_exact_rule_answers_the_name_asked_from_the_cluster(server: ServerProcess, transport: str) -> None:
    reply = server.ask("My.Example.Org", "A", transport)
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert reply.question[0].to_text() == "My.Example.Org. IN A"
    assert answer(reply) == ["my.example.org. 5 IN A 10.96.0.1"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_regex_rule_with_answer_name_writes_the_owner_back(server: ServerProcess, transport: str) -> None:
    reply = server.ask("kubernetes.example.net", "A", transport)
    assert reply.question[0].to_text() == "kubernetes.example.net. IN A"
    assert answer(reply) == ["kubernetes.example.net. 5 IN A 10.96.0.1"]
    assert server.ask("nothing.example.net", "A", transport).rcode() == dns.rcode.NXDOMAIN  # not asked of unbound


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_forwarded_name_is_asked_upstream_rewritten(server: ServerProcess, transport: str) -> None:
    for qtype, data in (("A", "192.0.2.10"), ("AAAA", "2001:db8::10")):
        reply = server.ask("web.example.org", qtype, transport)
        assert reply.rcode() == dns.rcode.NOERROR and not reply.flags & dns.flags.AA
        assert reply.question[0].to_text() == f"web.example.org. IN {qtype}"
        (line,) = answer(reply)
        assert line.startswith("web.example.org. ") and line.endswith(f" IN {qtype} {data}")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_ttl_rule_sets_the_ttl_of_cluster_answers(server: ServerProcess, transport: str) -> None:
    reply = server.ask("kube-dns.kube-system.svc.cluster.local", "A", transport)
    assert {rrset.ttl for rrset in reply.answer} == {60}
    assert server.ask("my.example.org", "A", transport).answer[0].ttl == 5  # a stop rule before it applied
