"""rewrite edns0: each option and action as the upstream query carries it, and what the answer table keeps.

Blocks are built from Corefile text; queries go through the real router (`pipeline_for`), forwarded
ones to the fake upstreams of tests/doubles.py, which record the queries they got (dnspython parses
them from the wire the forwarder would send).
"""

from __future__ import annotations

import asyncio

import dns.edns
import dns.message
import dns.rcode
import pytest

from dns_server.config.corefile import parse_text
from dns_server.config.syntax import CorefileError
from dns_server.plugins import build_config
from dns_server.serving.router import Forward, Pipeline
from tests.doubles import fakes, pipeline_for

WWW = "www.example.com."
KUBERNETES = "kubernetes.default.svc.cluster.local."
LOCAL = 0xFFEE
ALICE, BOB = ("10.1.2.3", 5353), ("10.9.8.7", 4242)


def pipeline_with(rules: str, *, cache: bool = True, local: tuple[str, int] = ("", 0)) -> Pipeline:
    text = (f". {{\n{rules}\n    kubernetes cluster.local\n    forward . 192.0.2.53\n"
            f"{'    cache' if cache else ''}\n}}\n")
    return pipeline_for(settings=build_config(parse_text(text)).blocks[0], local=local)


def ask(pipeline: Pipeline, name: str = WWW, qtype: str = "A", *, peer: tuple[str, int] = ALICE,
        options: list[dns.edns.Option] | None = None, via_tcp: bool = False, edns: bool = True) -> dns.message.Message:
    query = dns.message.make_query(name, qtype, use_edns=0 if edns or options else False, options=options or [])
    reply = pipeline.handle(query.to_wire(), via_tcp, peer)
    if isinstance(reply, Forward):
        reply = asyncio.run(pipeline.complete(reply))
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply)


def sent(pipeline: Pipeline) -> list[list[tuple[int, bytes]]]:
    """The EDNS options of every query the upstream got, in order."""
    return [[(option.otype, option.to_wire()) for option in query.options] for query in fakes(pipeline)[0].queries]


def local(data: bytes, code: int = LOCAL) -> dns.edns.GenericOption:
    return dns.edns.GenericOption(dns.edns.OptionType(code), data)


# -- setup ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule, message", [
    ("edns0 local", "too few arguments for an EDNS0 rule"),
    ("edns0 local add 0xffee abc", 'invalid action: "add"'),
    ("edns0 cookie set 1 2", 'invalid rule type "cookie"'),
    ("edns0 local set 0xffee", "EDNS0 local rules require three or four args"),
    ("edns0 local set 0xffee a b", "EDNS0 local rules require three or four args"),
    ("edns0 local set 0x1ffff abc", 'strconv.ParseUint: parsing "0x1ffff": value out of range'),
    ("edns0 local set ffee abc", 'strconv.ParseUint: parsing "ffee": invalid syntax'),
    ("edns0 local set 0xffee 0x6g", "encoding/hex: invalid byte: U+0067 'g'"),
    ("edns0 local set 0xffee 0x616", "encoding/hex: odd length hex string"),
    ("edns0 local set 0xffee {client_mac}", 'unsupported variable name "{client_mac}"'),
    ("edns0 local set 0xffee {kubernetes/client-namespace}",
     "the metadata variable {kubernetes/client-namespace} is not supported by this server"),
    ("edns0 local unset", "local unset action requires exactly two arguments"),
    ("edns0 local unset 0xffee revert", "local unset action requires exactly two arguments"),
    ("edns0 nsid set extra", "EDNS0 NSID rules can accept no more than one arg"),
    ("edns0 nsid unset revert", "nsid unset action requires exactly one argument"),
    ("edns0 subnet set 24", "EDNS0 subnet rules require three or four args"),
    ("edns0 subnet set 33 56", "invalid IPv4 bit mask length 33"),
    ("edns0 subnet set 24 129", "invalid IPv6 bit mask length 129"),
    ("edns0 subnet unset 24", "subnet unset action requires exactly one argument"),
])
def test_a_bad_edns0_rule_is_one_line_naming_the_file_and_line(rule: str, message: str) -> None:
    with pytest.raises(CorefileError) as raised:
        build_config(parse_text(f". {{\n    forward . 192.0.2.53\n    rewrite {rule}\n}}\n"))
    assert str(raised.value) == f"plugin/rewrite: Corefile:3 - Error during parsing: {message}"


@pytest.mark.parametrize("code", ["65518", "0xffee", "0XFFEE", "0o177756", "0177756", "0b1111111111101110", "65_518"])
def test_an_option_code_is_read_as_go_reads_a_number_of_any_base(code: str) -> None:
    pipeline = pipeline_with(f"    rewrite edns0 local set {code} abc")
    ask(pipeline)
    assert sent(pipeline) == [[(LOCAL, b"abc")]]


# -- local ---------------------------------------------------------------------------------------------

def test_local_set_sends_the_option_upstream_and_the_answer_is_kept_for_everyone() -> None:
    """A constant option: the same for every client, so the table keeps the answer and Bob's comes from the cache."""
    pipeline = pipeline_with("    rewrite edns0 local set 0xffee 0x61626364")
    assert ask(pipeline, peer=ALICE).answer[0].to_text() == "www.example.com. 300 IN A 192.0.2.10"
    assert ask(pipeline, peer=BOB).answer[0].to_text() == "www.example.com. 300 IN A 192.0.2.10"
    ask(pipeline, edns=False)  # a query without EDNS: the rule gives the upstream query an OPT record
    assert sent(pipeline) == [[(LOCAL, b"abcd")], [(LOCAL, b"abcd")]]
    assert len(pipeline.table) == 2


def test_local_set_replaces_the_clients_option_and_passes_no_other() -> None:
    pipeline = pipeline_with("    rewrite edns0 local set 0xffee abc", cache=False)
    ask(pipeline, options=[local(b"old"), local(b"other", 0xFFEF)])
    assert sent(pipeline) == [[(LOCAL, b"abc")]]


def test_a_client_whose_option_the_rules_read_is_never_served_a_kept_answer() -> None:
    """`append` keeps the client's option: a query carrying one is not answered from the kept relay."""
    pipeline = pipeline_with("    rewrite edns0 local append 0xffee abc")
    ask(pipeline)
    ask(pipeline, options=[local(b"mine")])
    ask(pipeline, options=[local(b"yours")])
    ask(pipeline)
    assert sent(pipeline) == [[(LOCAL, b"abc")], [(LOCAL, b"mine"), (LOCAL, b"abc")],
                              [(LOCAL, b"yours"), (LOCAL, b"abc")]]


def test_local_replace_changes_only_an_option_the_client_sent() -> None:
    pipeline = pipeline_with("    rewrite edns0 local replace 0xffee new", cache=False)
    ask(pipeline)
    ask(pipeline, options=[local(b"old")])
    assert sent(pipeline) == [[], [(LOCAL, b"new")]]


def test_local_unset_removes_the_clients_option() -> None:
    pipeline = pipeline_with("    rewrite edns0 local unset 0xffee", cache=False)
    ask(pipeline, options=[local(b"a"), local(b"b")])
    assert sent(pipeline) == [[]]


def test_a_local_rule_never_matches_a_code_with_a_type_of_its_own() -> None:
    """As miekg/dns reads option 10 as a COOKIE, a `local set 10` adds a second one (CoreDNS does)."""
    pipeline = pipeline_with("    rewrite edns0 local set 10 0x0102030405060708", cache=False)
    ask(pipeline, options=[local(b"\x09" * 8, 10)])
    assert sent(pipeline) == [[(10, b"\x09" * 8), (10, bytes(range(1, 9)))]]


# -- variables -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("variable, expected", [
    ("{qname}", b"www.example.com."),
    ("{qtype}", b"\x00\x1c"),
    ("{client_ip}", bytes((10, 1, 2, 3))),
    ("{client_port}", (5353).to_bytes(2, "big")),
    ("{protocol}", b"tcp"),
    ("{server_ip}", bytes((192, 0, 2, 1))),
    ("{server_port}", (1053).to_bytes(2, "big")),
])
def test_a_variable_is_the_requests_value_in_wire_form(variable: str, expected: bytes) -> None:
    pipeline = pipeline_with(f"    rewrite edns0 local set 0xffee {variable}", local=("192.0.2.1", 1053))
    ask(pipeline, qtype="AAAA", via_tcp=True)
    assert sent(pipeline) == [[(LOCAL, expected)]]


def test_a_client_dependent_variable_is_asked_for_each_client() -> None:
    """{client_ip}: never served to another client, from the answer table or the forward cache."""
    pipeline = pipeline_with("    rewrite edns0 local set 0xffee {client_ip}")
    ask(pipeline, peer=ALICE)
    ask(pipeline, peer=BOB)
    ask(pipeline, peer=ALICE)  # from the forward cache: the options are part of its key
    assert sent(pipeline) == [[(LOCAL, bytes((10, 1, 2, 3)))], [(LOCAL, bytes((10, 9, 8, 7)))]]


def test_server_ip_of_an_ipv6_listener_has_no_ipv4_form_and_the_rule_does_not_apply() -> None:
    pipeline = pipeline_with("    rewrite edns0 local set 0xffee {server_ip}", local=("::", 53))
    ask(pipeline)
    assert sent(pipeline) == [[]]


# -- nsid and subnet -----------------------------------------------------------------------------------

def test_nsid_set_asks_upstream_for_its_nsid_and_the_reply_gets_none_from_it() -> None:
    pipeline = pipeline_with("    rewrite edns0 nsid set revert", cache=False)
    reply = ask(pipeline)
    assert sent(pipeline) == [[(3, b"")]]
    assert not reply.options


def test_nsid_replace_applies_only_when_the_client_asked() -> None:
    pipeline = pipeline_with("    rewrite edns0 nsid replace", cache=False)
    ask(pipeline)
    ask(pipeline, options=[dns.edns.NSIDOption(b"")])
    assert sent(pipeline) == [[], [(3, b"")]]


@pytest.mark.parametrize("peer, expected", [
    (("10.1.2.3", 1), b"\x00\x01\x18\x00\x0a\x01\x02"),
    (("2001:db8:1:2::5", 1), b"\x00\x02\x38\x00\x20\x01\x0d\xb8\x00\x01\x00"),
    (("::ffff:10.1.2.3", 1), b"\x00\x01\x18\x00\x0a\x01\x02"),
])
def test_subnet_set_sends_the_clients_subnet(peer: tuple[str, int], expected: bytes) -> None:
    pipeline = pipeline_with("    rewrite edns0 subnet set 24 56")
    ask(pipeline, peer=peer)
    assert sent(pipeline) == [[(8, expected)]]


def test_subnet_append_leaves_a_clients_own_subnet() -> None:
    pipeline = pipeline_with("    rewrite edns0 subnet append 24 56", cache=False)
    ask(pipeline, options=[dns.edns.ECSOption("192.0.2.0", 24)])
    assert sent(pipeline) == [[(8, b"\x00\x01\x18\x00\xc0\x00\x02")]]


def test_subnet_unset_removes_the_clients_subnet() -> None:
    pipeline = pipeline_with("    rewrite edns0 subnet unset", cache=False)
    ask(pipeline, options=[dns.edns.ECSOption("192.0.2.0", 24)])
    assert sent(pipeline) == [[]]


# -- with the other rules ------------------------------------------------------------------------------

def test_rules_edit_the_options_in_order_and_a_stop_rule_ends_the_list() -> None:
    pipeline = pipeline_with("    rewrite continue edns0 local set 0xffee one\n"
                             "    rewrite edns0 local append 0xffef two\n"
                             "    rewrite edns0 local set 0xfff0 never", cache=False)
    ask(pipeline)
    assert sent(pipeline) == [[(LOCAL, b"one"), (0xFFEF, b"two")]]


def test_a_stop_rule_that_applies_only_to_some_requests_decides_for_each() -> None:
    """`replace` applies only with the option: then it stops, else the name rule after it runs."""
    pipeline = pipeline_with("    rewrite edns0 local replace 0xffee x\n"
                             f"    rewrite name www.example.com {KUBERNETES}", cache=False)
    assert ask(pipeline).answer[0].to_text() == "www.example.com. 5 IN A 10.96.0.1"
    assert ask(pipeline, options=[local(b"y")]).answer[0].to_text() == "www.example.com. 300 IN A 192.0.2.10"
    assert ask(pipeline).answer[0].to_text() == "www.example.com. 5 IN A 10.96.0.1"


def test_a_renamed_question_goes_upstream_with_its_options() -> None:
    pipeline = pipeline_with("    rewrite continue name www.example.org www.example.com\n"
                             "    rewrite edns0 local set 0xffee {qname}", cache=False)
    reply = ask(pipeline, "www.example.org.")
    assert reply.question[0].to_text() == "www.example.org. IN A"
    assert reply.answer[0].to_text() == "www.example.org. 300 IN A 192.0.2.10"
    assert sent(pipeline) == [[(LOCAL, b"www.example.com.")]]


def test_a_cluster_answer_does_not_depend_on_the_options_and_is_kept() -> None:
    pipeline = pipeline_with("    rewrite edns0 local set 0xffee {client_ip}")
    first = ask(pipeline, KUBERNETES, peer=ALICE)
    assert first.rcode() == dns.rcode.NOERROR and first.answer[0].to_text().endswith("A 10.96.0.1")
    assert len(pipeline.table) == 1
    assert fakes(pipeline)[0].queries == []


def test_an_externalname_target_is_chased_with_the_options() -> None:
    """The kubernetes plugin's CNAME to a name outside: its target goes upstream with the rules' options."""
    pipeline = pipeline_with("    rewrite edns0 local set 0xffee abc")
    for _ in range(2):
        reply = ask(pipeline, "payments-api.shop.svc.cluster.local.")
        assert [rrset.to_text() for rrset in reply.answer] == [
            "payments-api.shop.svc.cluster.local. 5 IN CNAME api.payments.example.com.",
            "api.payments.example.com. 300 IN A 192.0.2.20"]
    assert fakes(pipeline)[0].asked == ["api.payments.example.com."]
    assert sent(pipeline) == [[(LOCAL, b"abc")]]
