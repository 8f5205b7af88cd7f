"""rewrite: its directives (each refusal, with its file and line), and every rule type through the router.

Blocks are built from Corefile text; queries go through the real router (`pipeline_for`) over the
example cluster (tests/cluster_data.py), forwarded names to the fake upstreams of tests/doubles.py
(which record the names they were asked), and replies are read by dnspython.
"""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from dns_server.cluster.records import Service
from dns_server.cluster.updates import Put
from dns_server.config.corefile import parse_text
from dns_server.config.model import ServerBlock
from dns_server.config.syntax import CorefileError
from dns_server.plugins import build_config
from dns_server.plugins.forward.upstreams import NoAnswer
from dns_server.serving.router import Forward, Pipeline
from tests.cluster_data import example_records, registry_with
from tests.doubles import FakeForwarder, fakes, pipeline_for

Z = "cluster.local"
KUBERNETES = f"kubernetes.default.svc.{Z}"  # the example cluster's ClusterIP 10.96.0.1, SRV port https/443


def block_of(rules: str, *, reverse: bool = False, extra: str = "") -> ServerBlock:
    """A root block: the rules, kubernetes for cluster.local (and in-addr.arpa), forward and cache."""
    zones = f"{Z} in-addr.arpa" if reverse else Z
    text = f". {{\n{rules}\n    kubernetes {zones}\n    forward . 192.0.2.53\n    cache\n{extra}}}\n"
    return build_config(parse_text(text)).blocks[0]


def pipeline_with(rules: str, **options: str | bool) -> Pipeline:
    return pipeline_for(settings=block_of(rules, **options))  # type: ignore[arg-type]


def ask(pipeline: Pipeline, name: str, qtype: str = "A", *, via_tcp: bool = False,
        rdclass: str = "IN") -> dns.message.Message:
    """The reply to `name qtype`, a forwarded question finished as the transport finishes it."""
    query = dns.message.make_query(name, qtype, rdclass=rdclass)
    reply = pipeline.handle(query.to_wire(), via_tcp)
    if isinstance(reply, Forward):
        reply = asyncio.run(pipeline.complete(reply))
    assert isinstance(reply, bytes)
    message = dns.message.from_wire(reply)
    assert message.id == query.id
    return message


def question(reply: dns.message.Message) -> str:
    """The question as the client sees it, case included."""
    return reply.question[0].to_text()


def records(reply: dns.message.Message, section: str = "answer") -> list[str]:
    return [rrset.to_text() for rrset in getattr(reply, section)]


# -- setup ---------------------------------------------------------------------------------------------

def test_every_rewrite_line_of_a_block_is_one_rule_in_corefile_order() -> None:
    settings = block_of("    rewrite name a.example.org b.example.org\n"
                        "    rewrite continue {\n        ttl regex .* 30\n    }\n"
                        "    rewrite type AAAA A").setting("rewrite")
    assert [type(rule).__name__ for rule in settings.rules] == ["NameRule", "ReplyRule", "TypeRule"]
    assert [rule.mode for rule in settings.rules] == ["stop", "continue", "stop"]


@pytest.mark.parametrize("rules, line, message", [
    ("rewrite", 2, "no rule type specified for rewrite"),
    ("rewrite name", 2, "too few arguments for a name rule"),
    ("rewrite name a.com", 2, "too few arguments for a name rule"),
    ("rewrite stop", 2, "stop rule must begin with a rule type"),
    ("rewrite continue {\n}", 2, "continue rule must begin with a rule type"),
    ("rewrite foo a b", 2, 'invalid rule type "foo"'),
    ("rewrite stop foo a b", 2, 'invalid rule type "stop"'),  # CoreDNS names the first word
    ("rewrite name a.com b.com c.com", 2, "name rule supports only exact, prefix, suffix, substring, and regex name "
                                          "matching, received: a.com"),
    ("rewrite name fuzzy a b", 2, "name rule supports only exact, prefix, suffix, substring, and regex name "
                                  "matching, received: fuzzy"),
    ("rewrite name regex [bad[ bar", 2, "invalid regex matching pattern: [bad["),
    ("rewrite name regex (a) {1}.{2}", 2, "the rewrite regex pattern ({1}.{2}) uses more subexpressions than its "
                                          "corresponding matching regex pattern ((a))"),
    ("rewrite name regex a(?=b) c", 2, "invalid regex matching pattern: a(?=b)"),  # RE2 has no look-ahead
    ("rewrite name regex (a)\\1 c", 2, "invalid regex matching pattern: (a)\\1"),
    ("rewrite name regex \\pL+ c", 2, "the regular expression syntax '\\p' in \\pL+ is not supported by this server"),
    ("rewrite name regex " + "a" * 10001 + " b", 2, "regex pattern too long: 10001 > 10000"),
    ("rewrite stop {\n    answer name bar foo\n    name regex foo bar\n}", 3,
     "response rewrites must begin with a name rule"),
    ("rewrite stop {\n    name regex foo bar\n    answer name bar foo\n    name baz\n}", 5,
     "name answer rule for regex rule: 2 arguments required"),
    ("rewrite name regex (a) b NoAnswer name x y", 2,
     "exceeded the number of arguments for a non-answer rule argument for regex rule"),
    ("rewrite name regex (a) b answer ttl x y", 2, 'invalid type "ttl" for answer rule for regex rule'),
    ("rewrite name regex (a) b answer", 2, "invalid arguments for regex rule"),
    ("rewrite name regex (a) b answer auto answer", 2, "type missing for answer rule for regex rule"),
    ("rewrite name regex (a) b answer name (x y", 2, "name answer rule for regex rule: invalid regex matching "
                                                     "pattern: (x"),
    ("rewrite name regex (a) b answer auto name x y", 2,
     "auto name answer rule cannot be combined with explicit name anwer rules"),
    ("rewrite type A", 2, "type rules must have exactly two arguments"),
    ("rewrite type any a a", 2, "type rules must have exactly two arguments"),
    ("rewrite type A XY", 2, 'invalid type "XY"'),
    ("rewrite class CH IN IN", 2, "class rules must have exactly two arguments"),
    ("rewrite class XY IN", 2, 'invalid class "XY"'),
    ("rewrite ttl a.com", 2, "too few (1) arguments for a ttl rule"),
    ("rewrite ttl a.com 4294967296", 2, "invalid TTL '4294967296' for a ttl rule"),
    ("rewrite ttl a.com 300-30", 2, "invalid TTL '300-30' for a ttl rule"),
    ("rewrite ttl a.com -", 2, "invalid TTL '-' for a ttl rule"),
    ("rewrite ttl a.com 1-2-3", 2, "invalid TTL '1-2-3' for a ttl rule"),
    ("rewrite ttl exact a.com 30 extra", 2, "invalid TTL '' for a ttl rule"),
    ("rewrite ttl fuzzy a.com 30", 2, "ttl rule supports only exact, prefix, suffix, substring, and regex name "
                                      "matching"),
    ("rewrite ttl regex ( 30", 2, "invalid regex pattern in a ttl rule: ("),
    ("rewrite rcode a.com SERVFAIL", 2, "too few (2) arguments for a rcode rule"),
    ("rewrite rcode a.com 24 NOERROR", 2, "invalid matching RCODE '24' for a rcode rule"),
    ("rewrite rcode a.com SERVFAIL BOGUS", 2, "invalid replacement RCODE 'BOGUS' for a rcode rule"),
    ("rewrite rcode a.com SERVFAIL BADCOOKIE", 2,
     "the extended replacement RCODE 'BADCOOKIE' is not supported by this server"),
    ("rewrite rcode regex ( 2 0", 2, "invalid regex pattern in a rcode rule: ("),
    ("rewrite cname a.com", 2, "too few (1) arguments for a cname rule"),
    ("rewrite cname exact a.com b.com c.com", 2, "too few (4) arguments for a cname rule"),
    ("rewrite continue cname fuzzy a.com b.com", 2, "unknown cname rewrite type: fuzzy"),
    ("rewrite cname regex [bad[ b.com", 2, "invalid cname rewrite regex pattern: [bad["),
    ("rewrite cname regex " + "a" * 10001 + " b", 2, "regex pattern too long in a cname rule: 10001 > 10000"),
    ("rewrite name a.com b.com {\n    answer auto\n}", 3, "a rule written on the directive's line takes no block"),
    ("rewrite stop {\n    name a.com b.com {\n    }\n}", 3, "Unexpected token '{', expecting argument"),
])
def test_a_bad_rule_is_one_line_naming_the_file_and_line(rules: str, line: int, message: str) -> None:
    with pytest.raises(CorefileError) as raised:
        build_config(parse_text(f". {{\n{rules}\n}}\n"))
    assert str(raised.value) == f"plugin/rewrite: Corefile:{line} - Error during parsing: {message}"


@pytest.mark.parametrize("rule", [
    "rewrite name regex (.*)\\.example\\.com {1}.default.svc.cluster.local",
    "rewrite stop name regex foo bar answer name bar foo",
    "rewrite name substring foo.example.com bar.default.svc.cluster.local answer value x y answer auto",
    "rewrite ttl example.com. 30-", "rewrite ttl example.com. -30", "rewrite ttl prefix www 0",
    "rewrite rcode regex (.*)\\.coredns\\.rocks SERVFAIL NOERROR", "rewrite rcode exact a.com 2 0",
    "rewrite class ch in", "rewrite type any hinfo",
])
def test_coredns_rules_are_read(rule: str) -> None:
    assert len(block_of(rule).setting("rewrite").rules) == 1


# -- name rules ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", [f"rewrite name exact my.example.org {KUBERNETES}",
                                  f"rewrite name My.Example.Org. {KUBERNETES}."])
@pytest.mark.parametrize("via_tcp", [False, True])
def test_exact_answers_the_name_asked_with_the_records_of_the_name_it_rewrites_to(rule: str, via_tcp: bool) -> None:
    pipeline = pipeline_with(rule)
    for _ in range(2):  # the second time from the answer table, under the question as asked
        reply = ask(pipeline, "My.Example.ORG.", via_tcp=via_tcp)
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
        assert question(reply) == "My.Example.ORG. IN A"
        assert [text.lower() for text in records(reply)] == ["my.example.org. 5 in a 10.96.0.1"]
    assert fakes(pipeline)[0].asked == []


def test_a_name_no_rule_matches_is_answered_as_without_rewrite() -> None:
    plain, rewritten = pipeline_with(""), pipeline_with(f"rewrite name exact my.example.org {KUBERNETES}")
    for name in (KUBERNETES, f"missing.default.svc.{Z}"):
        assert records(ask(rewritten, name)) == records(ask(plain, name))
        assert records(ask(rewritten, name), "authority") == records(ask(plain, name), "authority")


@pytest.mark.parametrize("rule, owner", [
    ("rewrite name prefix www kubernetes", KUBERNETES),  # only the question is restored
    ("rewrite name prefix www kubernetes answer auto", f"www.default.svc.{Z}"),
])
def test_prefix_writes_the_answer_back_only_with_answer_auto(rule: str, owner: str) -> None:
    reply = ask(pipeline_with(rule), f"www.default.svc.{Z}")
    assert question(reply) == f"www.default.svc.{Z}. IN A"
    assert records(reply) == [f"{owner}. 5 IN A 10.96.0.1"]


def test_suffix_with_answer_auto_swaps_the_suffix_back_in_owners_and_srv_targets() -> None:
    pipeline = pipeline_with("rewrite name suffix .example.org .svc.cluster.local answer auto")
    assert records(ask(pipeline, "kubernetes.default.example.org")) == ["kubernetes.default.example.org. 5 IN A "
                                                                        "10.96.0.1"]
    reply = ask(pipeline, "_https._tcp.kubernetes.default.example.org", "SRV")
    assert records(reply) == ["_https._tcp.kubernetes.default.example.org. 5 IN SRV 0 100 443 "
                              "kubernetes.default.example.org."]
    assert records(reply, "additional") == ["kubernetes.default.example.org. 5 IN A 10.96.0.1"]


def test_substring_without_answer_rules_leaves_the_owner_as_the_rewritten_name() -> None:
    """Gardener's rule: CoreDNS restores the question only (its README's 'mismatch')."""
    reply = ask(pipeline_with(f"rewrite name substring foo.example.com {KUBERNETES}"), "foo.example.com")
    assert question(reply) == "foo.example.com. IN A"
    assert records(reply) == [f"{KUBERNETES}. 5 IN A 10.96.0.1"]


def test_regex_with_groups_and_answer_name_as_gardener_and_aks_write_it() -> None:
    pipeline = pipeline_with("    rewrite stop {\n"
                             "        name regex (.*)\\.example\\.com {1}.default.svc.cluster.local\n"
                             "        answer name (.*)\\.default\\.svc\\.cluster\\.local {1}.example.com\n"
                             "    }")
    reply = ask(pipeline, "Kubernetes.Example.COM")
    assert question(reply) == "Kubernetes.Example.COM. IN A"
    assert [text.lower() for text in records(reply)] == ["kubernetes.example.com. 5 in a 10.96.0.1"]
    missing = ask(pipeline, "nothing.example.com")
    assert missing.rcode() == dns.rcode.NXDOMAIN and records(missing, "authority")[0].startswith(f"{Z}. 5 IN SOA")


def test_a_regex_searches_anywhere_in_the_name_and_fills_every_group() -> None:
    reply = ask(pipeline_with("rewrite name regex ([a-z]+)-([a-z]+)\\.example\\.org {1}.{2}.svc.cluster.local"),
                "a.kubernetes-default.example.org")
    assert records(reply) == [f"{KUBERNETES}. 5 IN A 10.96.0.1"]


def test_continue_hands_its_question_to_the_next_rule_and_every_rule_writes_back() -> None:
    pipeline = pipeline_with("    rewrite continue name exact a.example.org b.example.org\n"
                             f"    rewrite name exact b.example.org {KUBERNETES}")
    assert records(ask(pipeline, "a.example.org")) == ["a.example.org. 5 IN A 10.96.0.1"]
    assert fakes(pipeline)[0].asked == []


def test_stop_ends_the_rule_list() -> None:
    pipeline = pipeline_with("    rewrite name exact a.example.org b.example.org\n"
                             f"    rewrite name exact b.example.org {KUBERNETES}")
    reply = ask(pipeline, "a.example.org")
    assert reply.rcode() == dns.rcode.NXDOMAIN and question(reply) == "a.example.org. IN A"
    assert fakes(pipeline)[0].asked == ["b.example.org."]


@pytest.mark.parametrize("target", ["{1}..svc.cluster.local", "{1}{1}{1}{1}{1}{1}{1}{1}.svc.cluster.local"])
def test_a_name_that_is_no_domain_name_after_the_rewrite_is_servfail(target: str) -> None:
    """An empty label, a label over 63 characters: CoreDNS's "invalid name after rewrite"."""
    pipeline = pipeline_with(f"rewrite name regex ^([a-z]+)\\.bad\\.org {target}")
    reply = ask(pipeline, "abcdefghi.bad.org")
    assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer and not reply.authority


def test_a_rewritten_answer_is_dropped_from_the_table_when_the_cluster_changes() -> None:
    registry = registry_with(example_records())
    pipeline = pipeline_for(registry=registry, settings=block_of(f"rewrite name exact new.example.org "
                                                                 f"new.shop.svc.{Z}"))
    assert ask(pipeline, "new.example.org").rcode() == dns.rcode.NXDOMAIN
    registry.apply([Put(Service("shop", "new", ("10.96.9.9",), False, "", ()))])
    assert records(ask(pipeline, "new.example.org")) == ["new.example.org. 5 IN A 10.96.9.9"]


# -- forwarded names -----------------------------------------------------------------------------------------

def test_a_forwarded_name_goes_upstream_rewritten_and_comes_back_as_asked() -> None:
    pipeline = pipeline_with("    rewrite name exact web.example.org www.example.com\n"
                             "    rewrite name exact site.example.org www.example.com")
    reply = ask(pipeline, "Web.Example.ORG")
    assert question(reply) == "Web.Example.ORG. IN A" and not reply.flags & dns.flags.AA
    assert [text.lower() for text in records(reply)] == ["web.example.org. 300 in a 192.0.2.10"]
    again = pipeline.handle(dns.message.make_query("web.example.org", "A").to_wire(), False)
    assert isinstance(again, bytes)  # from the forward cache at once, under the rewritten question
    assert records(dns.message.from_wire(again)) == ["web.example.org. 300 IN A 192.0.2.10"]
    assert records(ask(pipeline, "site.example.org")) == ["site.example.org. 300 IN A 192.0.2.10"]
    assert fakes(pipeline)[0].asked == ["www.example.com."]  # both names share the rewritten question's entry


def test_a_forwarded_reply_gets_its_names_and_values_written_back_over_tcp() -> None:
    pipeline = pipeline_with("    rewrite stop {\n        name suffix .in-addr.example .in-addr.arpa answer auto\n"
                             "        answer value (.*)\\.example\\.com\\. {1}.example.org.\n    }")
    reply = ask(pipeline, "9.9.96.10.in-addr.example", "PTR", via_tcp=True)
    assert question(reply) == "9.9.96.10.in-addr.example. IN PTR"
    assert records(reply) == ["9.9.96.10.in-addr.example. 300 IN PTR upstream.example.org."]
    assert fakes(pipeline)[0].asked == ["9.9.96.10.in-addr.arpa."]


def test_an_externalname_target_is_chased_for_the_rewritten_name() -> None:
    pipeline = pipeline_with(f"rewrite name exact pay.example.org payments-api.shop.svc.{Z}")
    for _ in range(2):
        reply = ask(pipeline, "pay.example.org")
        assert records(reply) == ["pay.example.org. 5 IN CNAME api.payments.example.com.",
                                  "api.payments.example.com. 300 IN A 192.0.2.20"]
    assert fakes(pipeline)[0].asked == ["api.payments.example.com."]


# -- type, class, ttl, rcode -----------------------------------------------------------------------------------

def test_type_asks_for_another_type_and_answers_under_the_question_asked() -> None:
    pipeline = pipeline_with("rewrite type AAAA A")
    reply = ask(pipeline, KUBERNETES, "AAAA")
    assert question(reply) == f"{KUBERNETES}. IN AAAA" and records(reply) == [f"{KUBERNETES}. 5 IN A 10.96.0.1"]
    forwarded = ask(pipeline, "www.example.com", "AAAA")
    assert question(forwarded) == "www.example.com. IN AAAA"
    assert records(forwarded) == ["www.example.com. 300 IN A 192.0.2.10"]
    assert [query.question[0].rdtype for query in fakes(pipeline)[0].queries] == [dns.rdatatype.A]


def test_class_asks_in_class_in_for_a_question_in_class_ch() -> None:
    """Classes other than IN reach the chain only with chaos (or forward) in the block, as in CoreDNS."""
    pipeline = pipeline_with("rewrite class CH IN", extra="    chaos\n")
    reply = ask(pipeline, KUBERNETES, rdclass="CH")
    assert question(reply) == f"{KUBERNETES}. CH A"
    assert [(rrset.rdclass, rrset[0].to_text()) for rrset in reply.answer] == [(dns.rdataclass.IN, "10.96.0.1")]
    forwarded = ask(pipeline, "www.example.com", rdclass="CH")
    assert question(forwarded) == "www.example.com. CH A" and records(forwarded) == ["www.example.com. 300 IN A "
                                                                                     "192.0.2.10"]
    assert [query.question[0].rdclass for query in fakes(pipeline)[0].queries] == [dns.rdataclass.IN]


@pytest.mark.parametrize("rule, expected, srv", [
    (f"rewrite ttl {KUBERNETES} 100", {100}, {5}),  # exact: not the SRV name
    (f"rewrite ttl suffix .svc.{Z} 30-300", {30}, {30}),  # raised to the range, additional records too
    ("rewrite ttl regex ^kubernetes\\. -3", {3}, {5}),
    ("rewrite ttl prefix kubernetes 1-", {5}, {5}),  # within the range: unchanged
    ("rewrite ttl substring nothing 100", {5}, {5}),
])
def test_ttl_sets_or_clamps_the_ttl_of_every_record(rule: str, expected: set[int], srv: set[int]) -> None:
    pipeline = pipeline_with(rule)
    assert {rrset.ttl for rrset in ask(pipeline, KUBERNETES).answer} == expected
    reply = ask(pipeline, f"_https._tcp.{KUBERNETES}", "SRV")
    assert {rrset.ttl for rrset in reply.answer + reply.additional} == srv


def test_ttl_applies_to_the_soa_and_to_forwarded_records() -> None:
    pipeline = pipeline_with(f"    rewrite continue ttl suffix .{Z} 60\n    rewrite ttl www.example.com -60")
    assert [rrset.ttl for rrset in ask(pipeline, f"missing.default.svc.{Z}").authority] == [60]
    assert [rrset.ttl for rrset in ask(pipeline, "www.example.com").answer] == [60]
    assert [rrset.ttl for rrset in ask(pipeline, "www.example.com").answer] == [60]  # from the cache too


def test_rcode_replaces_the_rcode_of_cluster_and_forwarded_replies() -> None:
    pipeline = pipeline_with(f"    rewrite continue rcode suffix .{Z} NXDOMAIN NOERROR\n"
                             "    rewrite rcode suffix example.com 3 5")
    cluster = ask(pipeline, f"missing.default.svc.{Z}")
    assert cluster.rcode() == dns.rcode.NOERROR and cluster.flags & dns.flags.AA
    assert records(cluster, "authority")[0].startswith(f"{Z}. 5 IN SOA")
    assert ask(pipeline, "missing.example.com").rcode() == dns.rcode.REFUSED
    assert ask(pipeline, "www.example.com").rcode() == dns.rcode.NOERROR


def test_rcode_applies_to_the_servfail_of_an_upstream_that_does_not_answer() -> None:
    pipeline = pipeline_with("rewrite rcode www.example.com SERVFAIL NOERROR")
    fakes(pipeline)[0].fail = NoAnswer("timeout")
    reply = ask(pipeline, "www.example.com")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer


def test_answer_value_rewrites_the_names_inside_every_kind_of_forwarded_record() -> None:
    """MX, SRV, NAPTR, DNAME (which dnslib keeps raw) and the SOA's MNAME, as CoreDNS's getRecordValueForRewrite."""
    def respond(query: dns.message.Message) -> dns.message.Message:
        reply = dns.message.make_response(query)
        owner = query.question[0].name
        for rdtype, text in (("MX", "10 mail.example.com."), ("SRV", "0 0 80 web.example.com."),
                             ("NAPTR", '1 1 "S" "SIP+D2U" "" sip.example.com.'), ("DNAME", "target.example.com."),
                             ("A", "192.0.2.1")):
            reply.answer.append(dns.rrset.from_text(owner, 300, "IN", rdtype, text))
        reply.authority.append(dns.rrset.from_text("example.com.", 300, "IN", "SOA",
                                                   "ns.example.com. h.example.com. 1 2 3 4 5"))
        return reply

    settings = block_of("    rewrite stop {\n        name exact all.example.org www.example.com\n"
                        "        answer value (.*)\\.example\\.com\\. {1}.example.org.\n    }")
    pipeline = pipeline_for(settings=settings, forwarders=[FakeForwarder(settings.setting("forward")[0], respond)])
    reply = ask(pipeline, "all.example.org", "MX")
    assert records(reply) == ["all.example.org. 300 IN MX 10 mail.example.org.",
                              "all.example.org. 300 IN SRV 0 0 80 web.example.org.",
                              'all.example.org. 300 IN NAPTR 1 1 "S" "SIP+D2U" "" sip.example.org.',
                              "all.example.org. 300 IN DNAME target.example.org.",
                              "all.example.org. 300 IN A 192.0.2.1"]
    assert records(reply, "authority") == ["example.com. 300 IN SOA ns.example.org. h.example.com. 1 2 3 4 5"]


def test_an_upstream_reply_that_cannot_be_read_back_is_servfail() -> None:
    """An A record of three bytes: the reply cannot be written back, the client gets SERVFAIL (not silence)."""
    def respond(query: dns.message.Message) -> bytes:
        wire = bytearray(dns.message.make_response(query).to_wire())
        wire[6:8] = b"\x00\x01"  # ANCOUNT 1
        return bytes(wire) + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x03\x01\x02\x03"

    settings = block_of("rewrite name exact a.example.org www.example.com")
    pipeline = pipeline_for(settings=settings, forwarders=[FakeForwarder(settings.setting("forward")[0], respond)])
    reply = ask(pipeline, "a.example.org")
    assert reply.rcode() == dns.rcode.SERVFAIL and question(reply) == "a.example.org. IN A"
