"""k8s_external: its directive, then every name shape and outcome through the real router, over the
Services of tests/data/k8s_external (load balancers with ingress addresses and a hostname, externalIPs,
a headless service), and the answers a change of the cluster drops."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dns_server.cluster.records import KINDS, Record, Service
from dns_server.cluster.registry import Registry
from dns_server.cluster.updates import Put
from dns_server.config.corefile import parse_text
from dns_server.config.model import FALLTHROUGH_ALL, Fallthrough, ServerBlock
from dns_server.config.syntax import CorefileError
from dns_server.plugins import build_config
from dns_server.plugins.k8s_external import ExternalSettings
from dns_server.serving.router import Pipeline
from tests.cluster_data import manifest_objects, records_from, registry_with
from tests.doubles import ask, fakes, pipeline_for

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "k8s_external"
SERIAL = 1_700_000_000  # registry_with's clock
Expected = tuple[str, list[str], list[str], list[str]]  # rcode, then the answer, authority and additional records
SOA = f"example.org. 5 IN SOA ns1.dns.example.org. hostmaster.dns.example.org. {SERIAL} 7200 1800 86400 5"

MAIN = """. {
    kubernetes cluster.local in-addr.arpa
    k8s_external example.org 100.51.198.in-addr.arpa
    forward . 192.0.2.53
}
"""
HEADLESS = """. {
    kubernetes cluster.local
    k8s_external example.org {
        headless
    }
}
"""


def cluster() -> list[Record]:
    return records_from(obj for path in sorted(FIXTURES.glob("*.yaml")) for obj in manifest_objects(path))


def block_of(text: str) -> ServerBlock:
    return build_config(parse_text(text)).blocks[0]


def settings_of(text: str) -> ExternalSettings:
    settings: ExternalSettings = block_of(text).setting("k8s_external")
    return settings


def rrs(reply: dns.message.Message, section: str = "answer") -> list[str]:
    """Each record of a section as `owner TTL class type data`, in the order they came."""
    return [f"{rrset.name} {rrset.ttl} IN {dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()}"
            for rrset in getattr(reply, section) for rdata in rrset]


def outcome(reply: dns.message.Message) -> Expected:
    return dns.rcode.to_text(reply.rcode()), rrs(reply), rrs(reply, "authority"), rrs(reply, "additional")


@pytest.fixture(scope="module")
def main() -> Pipeline:
    return pipeline_for(cluster(), settings=block_of(MAIN))


@pytest.fixture(scope="module")
def headless() -> Pipeline:
    return pipeline_for(cluster(), settings=block_of(HEADLESS))


# -- the directive ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (". {\n    kubernetes cluster.local\n    k8s_external example.org\n}\n",
     ExternalSettings(("example.org",))),
    ("example.org {\n    kubernetes cluster.local\n    k8s_external\n}\n", ExternalSettings(("example.org",))),
    (". {\n    kubernetes\n    k8s_external Example.ORG. 10.0.0.0/24 {\n        apex EXT\n        ttl 0\n"
     "        headless\n        fallthrough\n    }\n}\n",
     ExternalSettings(("example.org", "0.0.10.in-addr.arpa"), "ext", 0, True, FALLTHROUGH_ALL)),
    (". {\n    kubernetes\n    k8s_external example.org {\n        ttl 3600\n        fallthrough ip6.arpa foo.com\n"
     "    }\n}\n", ExternalSettings(("example.org",), ttl=3600, fallthrough=Fallthrough(("ip6.arpa", "foo.com")))),
])
def test_k8s_external_reads_zones_apex_ttl_headless_and_fallthrough(text: str, expected: ExternalSettings) -> None:
    assert settings_of(text) == expected


@pytest.mark.parametrize("text, message", [
    (". {\n    k8s_external example.org\n}\n", "Corefile:2 - Error during parsing: kubernetes plugin not loaded"),
    (". {\n    kubernetes\n    k8s_external {\n        ttl 3601\n    }\n}\n",
     r"Corefile:4 - Error during parsing: ttl must be in range \[0, 3600\]: 3601"),
    (". {\n    kubernetes\n    k8s_external {\n        ttl -1\n    }\n}\n",
     r"Corefile:4 - Error during parsing: ttl must be in range \[0, 3600\]: -1"),
    (". {\n    kubernetes\n    k8s_external {\n        ttl 5s\n    }\n}\n",
     'Corefile:4 - Error during parsing: strconv.Atoi: parsing "5s": invalid syntax'),
    (". {\n    kubernetes\n    k8s_external {\n        ttl\n    }\n}\n",
     "Corefile:4 - Error during parsing: Wrong argument count or unexpected line ending after 'ttl'"),
    (". {\n    kubernetes\n    k8s_external {\n        ttl 5 10\n    }\n}\n",
     "Corefile:4 - Error during parsing: Wrong argument count or unexpected line ending after '10'"),
    (". {\n    kubernetes\n    k8s_external {\n        apex\n    }\n}\n",
     "Corefile:4 - Error during parsing: Wrong argument count or unexpected line ending after 'apex'"),
    (". {\n    kubernetes\n    k8s_external {\n        apex ns.dns\n    }\n}\n",
     "Corefile:4 - Error during parsing: apex must be one DNS label: ns.dns"),
    (". {\n    kubernetes\n    k8s_external {\n        headless yes\n    }\n}\n",
     "Corefile:4 - Error during parsing: Wrong argument count or unexpected line ending after 'yes'"),
    (". {\n    kubernetes\n    k8s_external {\n        upstream\n    }\n}\n",
     "Corefile:4 - Error during parsing: unknown property 'upstream'"),
    (". {\n    kubernetes\n    k8s_external a.org\n    k8s_external b.org\n}\n",
     "Corefile:4 - Error during parsing: this plugin can only be used once per Server Block"),
])
def test_a_bad_k8s_external_directive_is_one_line_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(CorefileError, match="^plugin/k8s_external: " + message):
        block_of(text)


def test_kubernetes_must_be_in_the_same_block() -> None:
    text = "cluster.local {\n    kubernetes\n}\nexample.org {\n    k8s_external\n}\n"
    with pytest.raises(CorefileError, match="Corefile:5 - Error during parsing: kubernetes plugin not loaded"):
        block_of(text)


# -- the names and what they answer ------------------------------------------------------------------------

NXDOMAIN: Expected = ("NXDOMAIN", [], [SOA], [])
NODATA: Expected = ("NOERROR", [], [SOA], [])

ANSWERS = [
    # external addresses: spec.externalIPs first, then the ingress ips, each family on its own
    ("shop.web.example.org.", "A", ("NOERROR", ["shop.web.example.org. 5 IN A 198.51.100.11",
                                                "shop.web.example.org. 5 IN A 198.51.100.10"], [], [])),
    ("Shop.Web.Example.Org.", "AAAA", ("NOERROR", ["Shop.Web.Example.Org. 5 IN AAAA 2001:db8::10"], [], [])),
    # SRV: one per port, weight 100 over the 3 addresses x 2 ports (CoreDNS), the addresses in additional
    ("shop.web.example.org.", "SRV", ("NOERROR", ["shop.web.example.org. 5 IN SRV 0 16 80 shop.web.example.org.",
                                                  "shop.web.example.org. 5 IN SRV 0 16 443 shop.web.example.org."],
                                      [], ["shop.web.example.org. 5 IN A 198.51.100.11",
                                           "shop.web.example.org. 5 IN A 198.51.100.10",
                                           "shop.web.example.org. 5 IN AAAA 2001:db8::10"])),
    ("_https._tcp.shop.web.example.org.", "SRV",
     ("NOERROR", ["_https._tcp.shop.web.example.org. 5 IN SRV 0 33 443 shop.web.example.org."], [],
      ["shop.web.example.org. 5 IN A 198.51.100.11", "shop.web.example.org. 5 IN A 198.51.100.10",
       "shop.web.example.org. 5 IN AAAA 2001:db8::10"])),
    ("https.tcp.shop.web.example.org.", "SRV",  # the underscores are optional, as in CoreDNS
     ("NOERROR", ["https.tcp.shop.web.example.org. 5 IN SRV 0 33 443 shop.web.example.org."], [],
      ["shop.web.example.org. 5 IN A 198.51.100.11", "shop.web.example.org. 5 IN A 198.51.100.10",
       "shop.web.example.org. 5 IN AAAA 2001:db8::10"])),
    ("_http._tcp.shop.web.example.org.", "A",  # a port's name has the addresses too (CoreDNS)
     ("NOERROR", ["_http._tcp.shop.web.example.org. 5 IN A 198.51.100.11",
                  "_http._tcp.shop.web.example.org. 5 IN A 198.51.100.10"], [], [])),
    ("_ftp._tcp.shop.web.example.org.", "SRV", NXDOMAIN),
    ("_http._udp.shop.web.example.org.", "SRV", NXDOMAIN),
    ("shop.web.example.org.", "TXT", NODATA),
    ("shop.web.example.org.", "PTR", NODATA),
    # two ports of one number: one SRV record, the weight counts both (CoreDNS)
    ("resolver.web.example.org.", "SRV",
     ("NOERROR", ["resolver.web.example.org. 5 IN SRV 0 25 53 resolver.web.example.org."], [],
      ["resolver.web.example.org. 5 IN A 198.51.100.20", "resolver.web.example.org. 5 IN A 198.51.100.21"])),
    # an ingress ip beside a hostname: the addresses only, never a CNAME beside them
    ("mixed.web.example.org.", "A", ("NOERROR", ["mixed.web.example.org. 5 IN A 198.51.100.30"], [], [])),
    ("mixed.web.example.org.", "CNAME", NODATA),
    # a hostname ingress alone: a CNAME for every type, and SRV to it from the port names
    ("cdn.web.example.org.", "CNAME", ("NOERROR", ["cdn.web.example.org. 5 IN CNAME www.example.com."], [], [])),
    ("_https._tcp.cdn.web.example.org.", "SRV",
     ("NOERROR", ["_https._tcp.cdn.web.example.org. 5 IN SRV 0 100 443 www.example.com."], [], [])),
    ("_https._tcp.cdn.web.example.org.", "A", NODATA),
    ("cdn.web.example.org.", "SRV",  # chased upstream, which has no SRV for it
     ("NXDOMAIN", ["cdn.web.example.org. 5 IN CNAME www.example.com."],
      ["example.com. 300 IN SOA ns.example.com. h.example.com. 1 7200 1800 86400 60"], [])),
    # names that do not exist, and those that exist without records
    ("internal.web.example.org.", "A", NXDOMAIN),  # no external address
    ("db.web.example.org.", "A", NXDOMAIN),  # headless, without `headless`
    ("db-0.db.web.example.org.", "A", NXDOMAIN),
    ("anything.shop.web.example.org.", "A", NXDOMAIN),  # CoreDNS answers the service's addresses here
    ("nothing.web.example.org.", "A", NXDOMAIN),
    ("shop.nons.example.org.", "A", NXDOMAIN),
    ("x._https._tcp.shop.web.example.org.", "A", NXDOMAIN),  # too long
    ("web.example.org.", "A", NODATA),
    ("quiet.example.org.", "TXT", NODATA),  # a namespace without services exists
    ("nons.example.org.", "A", NXDOMAIN),
    # the apex and its name server
    ("example.org.", "SOA", ("NOERROR", [SOA], [], [])),
    ("example.org.", "NS", ("NOERROR", ["example.org. 5 IN NS ns1.dns.example.org."], [],
                            ["ns1.dns.example.org. 5 IN A 192.0.2.53", "ns1.dns.example.org. 5 IN AAAA 2001:db8::53"])),
    ("example.org.", "A", NODATA),
    ("dns.example.org.", "A", NODATA),
    ("ns1.dns.example.org.", "A", ("NOERROR", ["ns1.dns.example.org. 5 IN A 192.0.2.53"], [], [])),
    ("ns1.dns.example.org.", "AAAA", ("NOERROR", ["ns1.dns.example.org. 5 IN AAAA 2001:db8::53"], [], [])),
    ("ns1.dns.example.org.", "TXT", NODATA),
    ("ns2.dns.example.org.", "A", NXDOMAIN),
    ("x.ns1.dns.example.org.", "A", NXDOMAIN),
    # PTR in the reverse zone listed on k8s_external, under the first zone that is not a reverse zone
    ("10.100.51.198.in-addr.arpa.", "PTR",
     ("NOERROR", ["10.100.51.198.in-addr.arpa. 5 IN PTR shop.web.example.org."], [], [])),
    ("21.100.51.198.in-addr.arpa.", "PTR",
     ("NOERROR", ["21.100.51.198.in-addr.arpa. 5 IN PTR resolver.web.example.org."], [], [])),
    ("10.100.51.198.in-addr.arpa.", "A",
     ("NOERROR", [], [f"100.51.198.in-addr.arpa. 5 IN SOA ns1.dns.100.51.198.in-addr.arpa. "
                      f"hostmaster.dns.100.51.198.in-addr.arpa. {SERIAL} 7200 1800 86400 5"], [])),
    ("99.100.51.198.in-addr.arpa.", "PTR",
     ("NXDOMAIN", [], [f"100.51.198.in-addr.arpa. 5 IN SOA ns1.dns.100.51.198.in-addr.arpa. "
                       f"hostmaster.dns.100.51.198.in-addr.arpa. {SERIAL} 7200 1800 86400 5"], [])),
    # the cluster's reverse zone never answers PTR for an external address; its own addresses it does
    ("53.2.0.192.in-addr.arpa.", "PTR",
     ("NXDOMAIN", [], [f"in-addr.arpa. 5 IN SOA ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. {SERIAL} "
                       "7200 1800 86400 5"], [])),
    ("1.20.96.10.in-addr.arpa.", "PTR",
     ("NOERROR", ["1.20.96.10.in-addr.arpa. 5 IN PTR shop.web.svc.cluster.local."], [], [])),
    ("shop.web.svc.cluster.local.", "A", ("NOERROR", ["shop.web.svc.cluster.local. 5 IN A 10.96.20.1"], [], [])),
]


@pytest.mark.parametrize("name, qtype, expected", ANSWERS, ids=[f"{n}{t}" for n, t, _ in ANSWERS])
def test_names_of_services_outside_the_cluster(main: Pipeline, name: str, qtype: str,
                                               expected: Expected) -> None:
    reply = ask(main, name, qtype)
    assert outcome(reply) == expected
    assert reply.flags & dns.flags.AA or (name, qtype) == ("cdn.web.example.org.", "SRV")  # chased: not all ours


def test_a_hostname_is_a_cname_with_the_targets_records_once_whatever_the_ports() -> None:
    """CoreDNS repeats the CNAME and the upstream's records per port (cdn has two); here each comes once."""
    pipeline = pipeline_for(cluster(), settings=block_of(MAIN))
    reply = ask(pipeline, "cdn.web.example.org.", "A")
    assert outcome(reply) == ("NOERROR", ["cdn.web.example.org. 5 IN CNAME www.example.com.",
                                          "www.example.com. 300 IN A 192.0.2.10"], [], [])
    assert not reply.flags & dns.flags.AA  # part of the answer is not ours
    assert fakes(pipeline)[0].asked == ["www.example.com."]


def test_without_forward_a_hostname_is_the_cname_alone() -> None:
    pipeline = pipeline_for(cluster(), settings=block_of(HEADLESS))
    assert outcome(ask(pipeline, "cdn.web.example.org.", "A")) == (
        "NOERROR", ["cdn.web.example.org. 5 IN CNAME www.example.com."], [], [])


HEADLESS_ANSWERS = [
    ("db.web.example.org.", "A", ("NOERROR", ["db.web.example.org. 5 IN A 10.244.1.10",
                                              "db.web.example.org. 5 IN A 10.244.1.11"], [], [])),
    ("db.web.example.org.", "SRV", ("NOERROR", ["db.web.example.org. 5 IN SRV 0 50 5432 db-0.db.web.example.org.",
                                                "db.web.example.org. 5 IN SRV 0 50 5432 db-1.db.web.example.org."],
                                    [], ["db-0.db.web.example.org. 5 IN A 10.244.1.10",
                                         "db-1.db.web.example.org. 5 IN A 10.244.1.11"])),
    ("_postgres._tcp.db.web.example.org.", "SRV",
     ("NOERROR", ["_postgres._tcp.db.web.example.org. 5 IN SRV 0 50 5432 db-0.db.web.example.org.",
                  "_postgres._tcp.db.web.example.org. 5 IN SRV 0 50 5432 db-1.db.web.example.org."],
      [], ["db-0.db.web.example.org. 5 IN A 10.244.1.10", "db-1.db.web.example.org. 5 IN A 10.244.1.11"])),
    ("_http._tcp.db.web.example.org.", "SRV", NXDOMAIN),
    ("db-1.db.web.example.org.", "A", ("NOERROR", ["db-1.db.web.example.org. 5 IN A 10.244.1.11"], [], [])),
    ("db-0.db.web.example.org.", "SRV",
     ("NOERROR", ["db-0.db.web.example.org. 5 IN SRV 0 100 5432 db-0.db.web.example.org."], [],
      ["db-0.db.web.example.org. 5 IN A 10.244.1.10"])),
    ("db-0.db.web.example.org.", "AAAA", NODATA),
    ("db-2.db.web.example.org.", "A", NXDOMAIN),  # not ready
    ("internal.web.example.org.", "A", NXDOMAIN),  # not headless, no external address
    ("anything.shop.web.example.org.", "A", NXDOMAIN),  # external addresses: no endpoint names
    ("shop.web.example.org.", "A", ("NOERROR", ["shop.web.example.org. 5 IN A 198.51.100.11",
                                                "shop.web.example.org. 5 IN A 198.51.100.10"], [], [])),
]


@pytest.mark.parametrize("name, qtype, expected", HEADLESS_ANSWERS, ids=[f"{n}{t}" for n, t, _ in HEADLESS_ANSWERS])
def test_headless_answers_ready_endpoints(headless: Pipeline, name: str, qtype: str,
                                         expected: Expected) -> None:
    assert outcome(ask(headless, name, qtype)) == expected


def test_apex_and_ttl_change_the_soa_the_name_server_and_every_record() -> None:
    text = ". {\n    kubernetes cluster.local\n    k8s_external example.org {\n        apex ext\n        ttl 60\n" \
           "    }\n}\n"
    pipeline = pipeline_for(cluster(), settings=block_of(text))
    soa = f"example.org. 60 IN SOA ns1.ext.example.org. hostmaster.ext.example.org. {SERIAL} 7200 1800 86400 60"
    assert rrs(ask(pipeline, "example.org.", "SOA")) == [soa]
    assert rrs(ask(pipeline, "example.org.", "NS"), "additional")[0] == "ns1.ext.example.org. 60 IN A 192.0.2.53"
    assert rrs(ask(pipeline, "ns1.ext.example.org.", "A")) == ["ns1.ext.example.org. 60 IN A 192.0.2.53"]
    assert outcome(ask(pipeline, "ns1.dns.example.org.", "A")) == ("NXDOMAIN", [], [soa], [])  # a service "ns1"
    assert rrs(ask(pipeline, "_http._tcp.shop.web.example.org.", "SRV"))[0].split()[1] == "60"


def test_without_the_dns_service_the_name_server_has_the_blocks_bind_addresses() -> None:
    text = ". {\n    bind 127.0.0.1 0.0.0.0\n    kubernetes cluster.local {\n        dns_service kube-system/other\n" \
           "    }\n    k8s_external example.org\n}\n"
    pipeline = pipeline_for(cluster(), settings=block_of(text))
    assert rrs(ask(pipeline, "ns1.dns.example.org.", "A")) == ["ns1.dns.example.org. 5 IN A 127.0.0.1"]


def test_fallthrough_passes_on_names_that_do_not_exist_and_only_those() -> None:
    text = ". {\n    kubernetes cluster.local\n    k8s_external example.org {\n        fallthrough\n    }\n" \
           "    forward . 192.0.2.53\n}\n"
    pipeline = pipeline_for(cluster(), settings=block_of(text))
    reply = ask(pipeline, "nothing.web.example.org.", "A")
    assert rrs(reply, "authority")[0].startswith("example.com. 300 IN SOA")  # the upstream's answer
    assert ask(pipeline, "shop.web.example.org.", "TXT").rcode() == dns.rcode.NOERROR  # NODATA is ours
    assert rrs(ask(pipeline, "ns2.dns.example.org.", "A"), "authority") == [SOA]  # never below the apex
    assert fakes(pipeline)[0].asked == ["nothing.web.example.org."]


def test_fallthrough_covers_its_zones_only() -> None:
    text = ". {\n    kubernetes cluster.local\n    k8s_external example.org {\n        fallthrough other.org\n" \
           "    }\n    forward . 192.0.2.53\n}\n"
    pipeline = pipeline_for(cluster(), settings=block_of(text))
    assert outcome(ask(pipeline, "nothing.web.example.org.", "A")) == NXDOMAIN
    assert fakes(pipeline)[0].asked == []


def test_before_the_cluster_is_read_a_missing_name_is_servfail_not_nxdomain() -> None:
    registry = Registry(required_kinds=KINDS)
    pipeline = pipeline_for(registry=registry, settings=block_of(MAIN))
    assert ask(pipeline, "shop.web.example.org.", "A").rcode() == dns.rcode.SERVFAIL
    assert rrs(ask(pipeline, "example.org.", "SOA")) == [SOA.replace(str(SERIAL), "0")]


def test_zone_transfers_are_refused(main: Pipeline) -> None:
    assert ask(main, "example.org.", "AXFR", via_tcp=True).rcode() == dns.rcode.REFUSED


# -- a change of the cluster reaches the answers --------------------------------------------------------------

def replaced(records: list[Record], namespace: str, name: str, **fields: object) -> Service:
    (service,) = [r for r in records if isinstance(r, Service) and (r.namespace, r.name) == (namespace, name)]
    return dataclasses.replace(service, **fields)  # type: ignore[arg-type]


def test_a_change_of_external_addresses_changes_the_answers_the_table_kept() -> None:
    records = cluster()
    registry = registry_with(records)
    pipeline = pipeline_for(registry=registry, settings=block_of(MAIN))
    questions = [("shop.web.example.org.", "A"), ("10.100.51.198.in-addr.arpa.", "PTR"),
                 ("99.100.51.198.in-addr.arpa.", "PTR"), ("example.org.", "NS"), ("resolver.web.example.org.", "A")]
    before = {q: outcome(ask(pipeline, *q)) for q in questions}
    assert before == {q: outcome(ask(pipeline, *q)) for q in questions}  # now from the answer table
    registry.apply([Put(replaced(records, "web", "shop", external_ips=("198.51.100.99",))),
                    Put(replaced(records, "kube-system", "kube-dns", external_ips=("192.0.2.54",)))],
                   now=SERIAL)
    assert rrs(ask(pipeline, "shop.web.example.org.", "A")) == ["shop.web.example.org. 5 IN A 198.51.100.99"]
    assert ask(pipeline, "10.100.51.198.in-addr.arpa.", "PTR").rcode() == dns.rcode.NXDOMAIN
    assert rrs(ask(pipeline, "99.100.51.198.in-addr.arpa.", "PTR")) == [
        "99.100.51.198.in-addr.arpa. 5 IN PTR shop.web.example.org."]
    assert rrs(ask(pipeline, "example.org.", "NS"), "additional") == ["ns1.dns.example.org. 5 IN A 192.0.2.54"]
    assert outcome(ask(pipeline, "resolver.web.example.org.", "A")) == before[("resolver.web.example.org.", "A")]


def test_a_service_that_loses_its_load_balancer_disappears_and_one_that_gets_one_appears() -> None:
    records = cluster()
    registry = registry_with(records)
    pipeline = pipeline_for(registry=registry, settings=block_of(MAIN))
    assert ask(pipeline, "internal.web.example.org.", "A").rcode() == dns.rcode.NXDOMAIN
    assert ask(pipeline, "cdn.web.example.org.", "CNAME").answer
    registry.apply([Put(replaced(records, "web", "internal", external_hostname="lb.example.net")),
                    Put(replaced(records, "web", "cdn", external_hostname=""))], now=SERIAL)
    assert rrs(ask(pipeline, "internal.web.example.org.", "CNAME")) == [
        "internal.web.example.org. 5 IN CNAME lb.example.net."]
    assert ask(pipeline, "cdn.web.example.org.", "CNAME").rcode() == dns.rcode.NXDOMAIN


def test_a_hostname_the_rest_of_the_chain_answers_itself_comes_with_its_records() -> None:
    """A load balancer named by a cluster name: kubernetes, next in the chain, answers the target."""
    records = cluster()
    records.append(replaced(records, "web", "internal", external_hostname="shop.web.svc.cluster.local"))
    pipeline = pipeline_for(records, settings=block_of(MAIN))
    reply = ask(pipeline, "internal.web.example.org.", "A")
    assert outcome(reply) == ("NOERROR", ["internal.web.example.org. 5 IN CNAME shop.web.svc.cluster.local.",
                                          "shop.web.svc.cluster.local. 5 IN A 10.96.20.1"], [], [])
    assert reply.flags & dns.flags.AA and fakes(pipeline)[0].asked == []


def test_ptr_targets_lie_under_the_first_zone_that_is_not_a_reverse_zone() -> None:
    text = ". {\n    kubernetes cluster.local\n    k8s_external 100.51.198.in-addr.arpa example.org\n}\n"
    pipeline = pipeline_for(cluster(), settings=block_of(text))
    assert rrs(ask(pipeline, "30.100.51.198.in-addr.arpa.", "PTR")) == [
        "30.100.51.198.in-addr.arpa. 5 IN PTR mixed.web.example.org."]
