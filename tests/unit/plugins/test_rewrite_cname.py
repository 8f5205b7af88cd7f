"""rewrite cname: a reply's CNAME target replaced and the new target looked up again through the server.

Queries go through the real router (`pipeline_for`) over the example cluster; names outside it go
to a fake upstream (tests/doubles.py) that answers `UPSTREAM` and records what it was asked.
Replies are read by dnspython.  CoreDNS's reference: plugin/rewrite/cname_target.go and its tests.
"""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from dns_server.cluster.records import Service
from dns_server.cluster.updates import Put
from dns_server.config.corefile import parse_text
from dns_server.plugins import build_config, chain_for
from dns_server.serving.answer_table import View
from dns_server.serving.router import MAX_FOLLOWS, Block, Pipeline
from tests.cluster_data import example_records, registry_with
from tests.doubles import FakeForwarder, fakes, outbound_for, pipeline_for
from tests.unit.plugins.test_rewrite import KUBERNETES, Z, ask, block_of, records

UPSTREAM = {  # name -> the records an upstream answers for it: its CNAMEs, and those of the type asked
    "my-app.com.": [("CNAME", "my-app.example."), ("CNAME", "my-app.com.cdn.example.net."), ("A", "20.2.0.1")],
    "my-app.com.other.cdn.com.": [("A", "30.3.0.1"), ("TXT", '"other"')],
    "loop.example.": [("CNAME", "loop.example.")],
}


def respond(query: dns.message.Message) -> dns.message.Message:
    reply = dns.message.make_response(query)
    name = query.question[0].name
    owner = name
    for rdtype, text in UPSTREAM.get(name.to_text(), []):
        if rdtype not in ("CNAME", dns.rdatatype.to_text(query.question[0].rdtype)):
            continue
        reply.answer.append(dns.rrset.from_text(owner, 200, "IN", rdtype, text))
        if rdtype == "CNAME":
            owner = dns.name.from_text(text)
    if not reply.answer:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    return reply


def pipeline_with(rules: str, extra: str = "") -> Pipeline:
    settings = block_of(rules, extra=extra)
    return pipeline_for(settings=settings, forwarders=[FakeForwarder(settings.setting("forward")[0], respond)])


@pytest.mark.parametrize("rule", [
    "rewrite cname exact my-app.com.cdn.example.net my-app.com.other.cdn.com",
    "rewrite cname prefix my-app.com.cdn.example.net my-app.com.other.cdn.com",
    "rewrite cname suffix .cdn.example.net. .other.cdn.com.",
    "rewrite cname substring cdn.example.net other.cdn.com",
    "rewrite cname regex (.*).cdn.example.net. {1}.other.cdn.com.",  # CoreDNS's README example
])
@pytest.mark.parametrize("via_tcp", [False, True])
def test_a_forwarded_cname_is_retargeted_and_the_new_target_looked_up(rule: str, via_tcp: bool) -> None:
    pipeline = pipeline_with(rule)
    for _ in range(2):  # never kept as it was: the second reply is made again the same way
        reply = ask(pipeline, "my-app.com", via_tcp=via_tcp)
        assert reply.rcode() == dns.rcode.NOERROR
        assert records(reply) == ["my-app.com. 200 IN CNAME my-app.example.",
                                  "my-app.example. 200 IN CNAME my-app.com.other.cdn.com.",
                                  "my-app.com.other.cdn.com. 200 IN A 30.3.0.1"]
    assert "my-app.com.other.cdn.com." in fakes(pipeline)[0].asked


def test_a_reply_whose_cname_no_rule_matches_stays_as_it_came() -> None:
    pipeline = pipeline_with("rewrite cname suffix .nowhere.example. .other.cdn.com.")
    reply = ask(pipeline, "my-app.com")
    assert records(reply) == ["my-app.com. 200 IN CNAME my-app.example.",
                              "my-app.example. 200 IN CNAME my-app.com.cdn.example.net.",
                              "my-app.com.cdn.example.net. 200 IN A 20.2.0.1"]
    assert fakes(pipeline)[0].asked == ["my-app.com."]


def test_an_externalname_cname_is_retargeted_to_a_cluster_name() -> None:
    """The kubernetes plugin's CNAME and the upstream's records for it: replaced by the cluster's answer."""
    pipeline = pipeline_with(f"rewrite cname exact api.payments.example.com. {KUBERNETES}.")
    reply = ask(pipeline, f"payments-api.shop.svc.{Z}")
    assert records(reply) == [f"payments-api.shop.svc.{Z}. 5 IN CNAME {KUBERNETES}.",
                              f"{KUBERNETES}. 5 IN A 10.96.0.1"]


def test_a_retargeted_reply_follows_a_change_of_the_new_target() -> None:
    """The reply is never kept; the new target's answer is dropped from the table when the cluster changes."""
    registry = registry_with(example_records())
    settings = block_of(f"rewrite cname exact api.payments.example.com. new.shop.svc.{Z}.")
    pipeline = pipeline_for(registry=registry, settings=settings,
                            forwarders=[FakeForwarder(settings.setting("forward")[0], respond)])
    assert records(ask(pipeline, f"payments-api.shop.svc.{Z}")) == [
        f"payments-api.shop.svc.{Z}. 5 IN CNAME new.shop.svc.{Z}."]
    registry.apply([Put(Service("shop", "new", ("10.96.9.9",), False, "", ()))])
    assert records(ask(pipeline, f"payments-api.shop.svc.{Z}")) == [
        f"payments-api.shop.svc.{Z}. 5 IN CNAME new.shop.svc.{Z}.", f"new.shop.svc.{Z}. 5 IN A 10.96.9.9"]


def test_a_cname_the_chain_makes_is_retargeted_and_looked_up_upstream() -> None:
    """A template's CNAME (an answer the chain makes itself): the new target is asked of the whole server."""
    pipeline = pipeline_with("rewrite cname suffix .cdn.example.net. .other.cdn.com.",
                             extra='    template IN TXT app.example.org {\n'
                                   '        answer "{{ .Name }} 60 IN CNAME my-app.com.cdn.example.net."\n    }\n')
    for _ in range(2):
        reply = ask(pipeline, "app.example.org", "TXT")
        assert records(reply) == ["app.example.org. 60 IN CNAME my-app.com.other.cdn.com.",
                                  'my-app.com.other.cdn.com. 200 IN TXT "other"']
    assert fakes(pipeline)[0].asked == ["my-app.com.other.cdn.com."]


def test_the_new_target_goes_through_the_rules_again() -> None:
    """As CoreDNS's upstream.Lookup, the new target is served by the server's chain, rewrite included (a
    `stop` cname rule applies to every question: the rules after it would never be reached)."""
    pipeline = pipeline_with("rewrite continue cname exact api.payments.example.com. web.example.org.\n"
                             f"    rewrite name exact web.example.org {KUBERNETES}")
    reply = ask(pipeline, f"payments-api.shop.svc.{Z}")
    assert records(reply) == [f"payments-api.shop.svc.{Z}. 5 IN CNAME web.example.org.",
                              "web.example.org. 5 IN A 10.96.0.1"]


def test_a_stop_cname_rule_ends_the_rules_for_every_question() -> None:
    """CoreDNS's cname rule reports every question rewritten: a `stop` one (the default) ends the list."""
    pipeline = pipeline_with("rewrite cname exact elsewhere.example. other.example.\n"
                             f"    rewrite name exact my.example.org {KUBERNETES}")
    assert ask(pipeline, "my.example.org").rcode() == dns.rcode.NXDOMAIN
    assert fakes(pipeline)[0].asked == ["my.example.org."]


def with_cluster_block(rules: str) -> tuple[Pipeline, FakeForwarder]:
    """A root block (the rules, forward) and a cluster.local block (kubernetes alone) on one listener."""
    root, cluster = build_config(parse_text(
        f". {{\n{rules}\n    forward . 192.0.2.53\n}}\n{Z} {{\n    kubernetes\n}}\n")).blocks
    view = View(registry_with(example_records()).snapshot)
    forwarder = FakeForwarder(root.setting("forward")[0], respond)
    blocks = [Block(root, view, chain_for(root), outbound_for(root, [forwarder])),
              Block(cluster, view, chain_for(cluster))]
    return Pipeline([(zone, block) for block in blocks for zone in block.settings.zones]), forwarder


def test_the_new_target_is_asked_of_the_block_that_owns_it() -> None:
    """As CoreDNS's upstream.Lookup (the whole server): the root block's reply, the cluster block's target."""
    pipeline, forwarder = with_cluster_block(f"    rewrite cname exact my-app.com.cdn.example.net. {KUBERNETES}.")
    reply = ask(pipeline, "my-app.com")
    assert records(reply) == ["my-app.com. 200 IN CNAME my-app.example.",
                              f"my-app.example. 200 IN CNAME {KUBERNETES}.",
                              f"{KUBERNETES}. 5 IN A 10.96.0.1"]
    assert forwarder.asked == ["my-app.com."]


def test_the_new_target_is_asked_with_the_type_the_rules_left() -> None:
    """As CoreDNS, whose lookup copies the request as the rules left it (in class IN)."""
    pipeline, _ = with_cluster_block(f"    rewrite continue type TXT A\n"
                                     f"    rewrite cname exact my-app.com.cdn.example.net. {KUBERNETES}.")
    assert records(ask(pipeline, "my-app.com", "TXT"))[-1] == f"{KUBERNETES}. 5 IN A 10.96.0.1"


def test_a_rule_that_retargets_to_the_same_name_ends() -> None:
    """CoreDNS would look the name up again without end; here the eighth lookup's reply is the answer."""
    (settings,) = build_config(parse_text(". {\n    rewrite cname exact loop.example. loop.example.\n"
                                          "    forward . 192.0.2.53\n}\n")).blocks  # no cache: every lookup asks
    pipeline = pipeline_for(settings=settings, forwarders=[FakeForwarder(settings.setting("forward")[0], respond)])
    reply = ask(pipeline, "loop.example")
    assert reply.rcode() == dns.rcode.NOERROR and records(reply) == ["loop.example. 200 IN CNAME loop.example."]
    assert fakes(pipeline)[0].asked == ["loop.example."] * (1 + MAX_FOLLOWS)
