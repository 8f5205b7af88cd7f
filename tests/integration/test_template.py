"""template in the real server process, asked by dnspython over UDP and TCP: the IPv4-only AAAA idiom in front
of kubernetes (the bundled zones/ example cluster through `fixtures`), a match/answer template built from the
regex's submatches, a CNAME followed by its target's records, a bad rule stopping the start with one line, and the template counters on /metrics."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.cluster_data import ZONES
from tests.integration.server import ServerProcess, free_port

DEADLINE = 30.0
COREFILE = """\
. {
    kubernetes cluster.local {
        fixtures {$ZONES}
    }
    template ANY AAAA {
        rcode NOERROR
    }
    template IN A example.org {
        match "^ip-([0-9]+)-([0-9]+)[.]example[.]org[.]$"
        answer "{{ .Name }} 60 IN A 10.0.{{ index .Match 1 }}.{{ index .Match 2 }}"
        authority "example.org. 60 IN NS ns.example.org."
    }
    template IN A alias.example.net {
        answer "{{ .Name }} 60 IN CNAME kubernetes.default.svc.cluster.local."
    }
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("template")
    with ServerProcess.from_corefile(directory, COREFILE, ready_name="kubernetes.default.svc.cluster.local",
                                     ready_type="A", env={"ZONES": str(ZONES)}) as running:
        yield running


def exchange(server: ServerProcess, name: str, qtype: str, via_tcp: bool) -> dns.message.Message:
    query = dns.message.make_query(name, qtype)
    send = dns.query.tcp if via_tcp else dns.query.udp
    reply: dns.message.Message = send(query, server.host, port=server.port, timeout=5)
    return reply


@pytest.mark.parametrize("via_tcp", [False, True])
@pytest.mark.parametrize("name", ["kubernetes.default.svc.cluster.local.", "nothing.default.svc.cluster.local.",
                                  "ip-1-2.example.org.", "www.example.com."])
def test_every_aaaa_is_noerror_with_aa_and_empty_sections(server: ServerProcess, name: str, via_tcp: bool) -> None:
    reply = exchange(server, name, "AAAA", via_tcp)
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert not reply.answer and not reply.authority and not reply.additional


@pytest.mark.parametrize("via_tcp", [False, True])
def test_cluster_names_still_have_their_a_records(server: ServerProcess, via_tcp: bool) -> None:
    reply = exchange(server, "kubernetes.default.svc.cluster.local.", "A", via_tcp)
    assert [rrset.to_text() for rrset in reply.answer] == ["kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"]


@pytest.mark.parametrize("via_tcp", [False, True])
def test_a_cname_is_followed_by_its_targets_records(server: ServerProcess, via_tcp: bool) -> None:
    reply = exchange(server, "www.alias.example.net.", "A", via_tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rrset.to_text() for rrset in reply.answer] == [
        "www.alias.example.net. 60 IN CNAME kubernetes.default.svc.cluster.local.",
        "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"]


@pytest.mark.parametrize("via_tcp", [False, True])
def test_the_answer_is_built_from_the_regex_submatches(server: ServerProcess, via_tcp: bool) -> None:
    reply = exchange(server, "ip-17-42.example.org.", "A", via_tcp)
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert [rrset.to_text() for rrset in reply.answer] == ["ip-17-42.example.org. 60 IN A 10.0.17.42"]
    assert [rrset.to_text() for rrset in reply.authority] == ["example.org. 60 IN NS ns.example.org."]


@pytest.mark.parametrize("via_tcp", [False, True])
def test_a_name_no_regex_matches_is_servfail_without_fallthrough(server: ServerProcess, via_tcp: bool) -> None:
    reply = exchange(server, "www.example.org.", "A", via_tcp)
    assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer


def test_a_bad_rule_stops_the_start_with_one_line(tmp_path: Path) -> None:
    corefile = '. {\n    template IN A {\n        match "^ip-(["\n    }\n}\n'
    server = ServerProcess.from_corefile(tmp_path, corefile, ready_name="a.example.org", ready_type="A")
    status = server.refused_start(DEADLINE)
    assert status == 1
    (line,) = server.log().splitlines()
    assert line.startswith(f"dns-server: error: plugin/template: {tmp_path}/Corefile:3 - Error during parsing: "
                           "could not parse regex: ^ip-([, ")


def test_metrics_count_every_query_a_template_matched(tmp_path: Path) -> None:
    """CoreDNS's template counters on /metrics: a match per query, those answered from the answer table too,
    and a template that fails to execute under its section and its text as Go prints it."""
    corefile = ('. {\n    prometheus 127.0.0.1:{$METRICS}\n    template IN AAAA example.org {\n        rcode NOERROR\n'
                '    }\n    template IN TXT fail.test {\n        match "^(a)?b"\n'
                '        answer "{{ .Name }} 60 IN TXT {{ index .Match 2 }}"\n    }\n}\n')
    metrics = free_port()
    with ServerProcess.from_corefile(tmp_path, corefile, ready_name="ready.example.org", ready_type="AAAA",
                                     env={"METRICS": str(metrics)}) as server:
        for via_tcp in (False, True, False, True):
            assert exchange(server, "www.example.org.", "AAAA", via_tcp).rcode() == dns.rcode.NOERROR
        assert exchange(server, "b.fail.test.", "TXT", False).rcode() == dns.rcode.SERVFAIL
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as response:
            text = response.read().decode()
    lines = sorted(line for line in text.splitlines() if line.startswith("coredns_template_"))
    ready = 'coredns_template_matches_total{class="IN",server="dns://:%d",type="AAAA",view="",zone="example.org."}'
    assert lines[0].startswith(ready % server.port) and float(lines[0].split()[-1]) >= 5  # and the ready probes
    assert lines[1] == ('coredns_template_matches_total{class="IN",server="dns://:%d",type="TXT",view="",'
                        'zone="fail.test."} 1.0' % server.port)
    assert lines[2] == ('coredns_template_template_failures_total{class="IN",section="answer",server="dns://:%d",'
                        'template="{{.Name}} 60 IN TXT {{index .Match 2}}",type="TXT",view="",zone="fail.test."} 1.0'
                        % server.port)
