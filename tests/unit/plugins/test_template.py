"""template: its directives (every refusal at start, with its file and line), the Go template subset, the
records it renders, the order in which templates match and fall through, and the AAAA idiom through the router."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from prometheus_client import generate_latest

from dns_server.config.corefile import parse_text
from dns_server.config.model import FALLTHROUGH_ALL, ServerBlock
from dns_server.config.syntax import CorefileError
from dns_server.observability.metrics import Metrics
from dns_server.plugins import build_config, chain_for
from dns_server.plugins.template import presentation
from dns_server.plugins.template.gotemplate import RenderError, TemplateError, parse, parse_uint
from dns_server.plugins.template.record import DEFAULT_TTL, parse_record
from dns_server.plugins.template.setup import TemplateSettings, go_regex
from dns_server.protocol.answer import Outcome
from dns_server.protocol.codes import CLASS_CH, TXT, A
from dns_server.serving.router import Pipeline
from tests.cluster_data import example_records, registry_with
from tests.doubles import fakes, pipeline_for
from tests.unit.plugins.test_rewrite import ask as ask_finished
from tests.unit.plugins.test_rewrite import records
from tests.unit.plugins.test_rewrite_cname import pipeline_with as forwarding_pipeline

PEER = ("192.0.2.7", 40000)


def block_of(text: str) -> ServerBlock:
    return build_config(parse_text(text, env={})).blocks[0]


def settings_of(text: str) -> TemplateSettings:
    settings: TemplateSettings = block_of(text).setting("template")
    return settings


def ask(pipeline: Pipeline, name: str, qtype: str = "A", *, peer: tuple[str, int] = PEER,
        via_tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, qtype, use_edns=0)
    reply = pipeline.handle(query.to_wire(), via_tcp, peer)
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply, one_rr_per_rrset=True)


def texts(section: list[dns.rrset.RRset]) -> list[str]:
    return [rrset.to_text() for rrset in section]


# -- the directives -----------------------------------------------------------------------------------------

def test_a_template_takes_the_blocks_zones_unless_it_names_its_own() -> None:
    settings = settings_of("example.org test. {\n    template IN A\n    template ANY ANY other.org. {\n"
                           "        fallthrough\n        upstream\n    }\n}\n")
    first, second = settings.rules
    assert (first.qclass, first.qtype, first.zones) == (1, A, ("example.org", "test"))
    assert (second.qclass, second.qtype, second.zones, second.fall) == (255, 255, ("other.org",), FALLTHROUGH_ALL)
    assert [regex.pattern for regex in first.regexes] == [".*"]
    assert settings.zones == ("example.org", "test", "other.org")


BAD = [
    ("template", "Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after "
                 "'template'"),
    ("template X", "Corefile:2 - Error during parsing: invalid query class X"),
    ("template in A", "Corefile:2 - Error during parsing: invalid query class in"),
    ("template IN", "Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'IN'"),
    ("template IN X", "Corefile:2 - Error during parsing: invalid RR class X"),
    ("template IN aaaa", "Corefile:2 - Error during parsing: invalid RR class aaaa"),
    ("template IN A {\n\n        notavailable\n    }", "Corefile:4 - Error during parsing: Wrong argument count or "
                                                      "unexpected line ending after 'notavailable'"),
    ("template IN A {\n        answer\n    }", "Corefile:3 - Error during parsing: Wrong argument count or "
                                               "unexpected line ending after 'answer'"),
    ("template IN A {\n        match\n    }", "Corefile:3 - Error during parsing: Wrong argument count or "
                                              "unexpected line ending after 'match'"),
    ("template IN A {\n        rcode\n    }", "Corefile:3 - Error during parsing: Wrong argument count or "
                                              "unexpected line ending after 'rcode'"),
    ("template IN A {\n        rcode UNDEFINED\n    }", "Corefile:3 - Error during parsing: unknown rcode UNDEFINED"),
    ("template IN A {\n        rcode noerror\n    }", "Corefile:3 - Error during parsing: unknown rcode noerror"),
    ("template IN A {\n        rcode REFUSED\n    }", "Corefile:3 - Error during parsing: rcode REFUSED is not "
                                                      "supported by this server"),
    ("template IN A {\n        rcode NXDOMAIN extra\n    }", "Corefile:3 - Error during parsing: Wrong argument "
                                                             "count or unexpected line ending after 'extra'"),
    ("template IN A {\n        var a 1\n    }", "Corefile:3 - Error during parsing: option 'var' is not supported "
                                                "by this server"),
    ("template IN A {\n        expr true\n    }", "Corefile:3 - Error during parsing: option 'expr' is not "
                                                  "supported by this server"),
    ('template IN A {\n        ederror 21 "Blocked"\n    }', "Corefile:3 - Error during parsing: option 'ederror' "
                                                           "is not supported by this server"),
    ("template IN A {\n        match (\n    }", "Corefile:3 - Error during parsing: could not parse regex: (, "),
    ("template IN A {\n        match " + "a" * 10001 + "\n    }",
     "Corefile:3 - Error during parsing: regex pattern too long: 10001 > 10000"),
    ("template IN A {\n        match ^(a)\\1$\n    }", "Corefile:3 - Error during parsing: could not parse regex: "
                                                       "^(a)\\1$, the escape \\1 is not supported by this server"),
    ("template IN A {\n        match x(?=y)\n    }", "Corefile:3 - Error during parsing: could not parse regex: "
                                                     "x(?=y), the group (?=y... is not supported"),
    ("template IN A {\n        match a{,3}\n    }", "the repeat {,n} is not supported"),
    ("template IN A {\n        match [[:alpha:]]\n    }", "a POSIX class [:...:] is not supported"),
    ("template IN A {\n        match a*+\n    }", "a possessive repeat"),
    ("template IN A {\n        match a\\Z\n    }", "the escape \\Z is not supported"),
    ('template IN A {\n        answer "{{"\n    }', 'Corefile:3 - Error during parsing: could not compile template: '
                                                   '{{, template: answer:1: unclosed action'),
    ('template IN A {\n        authority "{{ notAFunction }}"\n    }', 'template: authority:1: function '
                                                                      '"notAFunction" not defined'),
    ('template IN A {\n        answer "{{ if .Name }}x{{ end }}"\n    }', "'if' is not supported by this server"),
    ('template IN A {\n        answer "{{ .Name | printf }}"\n    }', "pipelines ('|') are not supported"),
    ('template IN A {\n        answer "{{ $x := 1 }}"\n    }', "variables ('$') are not supported"),
    ('template IN A {\n        answer "{{ printf \\"%s\\" .Name }}"\n    }', "the function printf is not supported"),
    ('template IN A {\n        answer "{{ .Message }} 60 IN A 1.2.3.4"\n    }', ".Message is not supported"),
    ('template IN A {\n        answer "{{ .Question.Name }} 60 IN A 1.2.3.4"\n    }', ".Question is not supported"),
    ('template IN A {\n        answer "{{ .Grup.d }} 60 IN A 1.2.3.4"\n    }', "can't evaluate field Grup"),
    ('template IN A {\n        answer "{{ .Name }} 60 IN A {{ parseInt }}"\n    }',
     "wrong number of args for parseInt: want 3 got 0"),
    ('template IN A {\n        answer "{{ .Name }} 60 IN A {{ parseInt .Name 0 8 }}"\n    }',
     "the base of parseInt must be a number from 2 to 36"),
    ('template IN A {\n        answer "{{ .Name }} 60 IN A {{ parseInt (parseInt \\"1\\" 10 8) 10 8 }}"\n    }',
     "the first argument of parseInt must be a string"),
    ('template IN A {\n        answer "{{ .Name }} 60 IN A {{ index .Name 1 }}"\n    }',
     "index .Name 1 is not supported"),
    ('template IN A {\n        answer "{{ .Name }}"\n    }', "no record type in '{{ .Name }}'"),
    ('template IN A {\n        answer ""\n    }', "the template writes no record"),
    ('template IN A {\n        answer " {{ .Name }} 60 IN A 10.0.0.1"\n    }', "must start with its owner name"),
    ('template IN A {\n        answer "{{ .Name }} 60 IN A 999.1.1.1"\n    }', "could not compile template: "),
    ('template IN A {\n        answer "{{ .Name }} 60 IN BOGUS x"\n    }', "not a TTL, class or type: 'BOGUS'"),
    ('template IN A {\n        answer "{{ .Name }} {{ .Group.ttl }} IN A 10.0.0.1"\n    }',
     "the TTL, class and type of the record must be written out"),
    ('template IN A {\n        answer "{{ .Match }} 60 IN A 10.0.0.1"\n    }',
     "an owner name from .Match, .Group or .Regex"),
    ('template IN A {\n        answer "{{ .Name }} 60 IN CNAME target.example.org." "{{ .Name }} 60 IN A 10.0.0.1"'
     '\n    }',
     "Corefile:3 - Error during parsing: a CNAME beside other answer records to A or AAAA questions is not "
     "supported by this server"),
    ('template ANY ANY {\n        answer "{{ .Name }} 60 IN TXT x"\n'
     '        answer "{{ .Name }} 60 IN CNAME target.example.org."\n    }',
     "Corefile:4 - Error during parsing: a CNAME beside other answer records"),
]


@pytest.mark.parametrize("line, message", BAD)
def test_a_bad_template_is_one_line_naming_the_file_line_and_token(line: str, message: str) -> None:
    with pytest.raises(CorefileError) as error:
        block_of(f"example.org {{\n    {line}\n}}\n")
    text = str(error.value)
    assert text.startswith("plugin/template: Corefile:") and "\n" not in text
    assert message in text


@pytest.mark.parametrize("template", [
    'template IN A {\n        answer "{{ .Name }} 60 IN CNAME t.example.org."\n    }',  # alone: its target looked up
    'template IN CNAME {\n        answer "{{ .Name }} 60 IN CNAME t.example.org." "{{ .Name }} 60 IN CNAME u.example.org."'
    '\n    }',  # no A or AAAA question reaches it
    'template IN A {\n        additional "{{ .Name }} 60 IN CNAME t.example.org." "{{ .Name }} 60 IN A 10.0.0.1"'
    '\n    }',  # CoreDNS looks up answers only
])
def test_a_cname_is_refused_only_beside_other_answers_to_a_or_aaaa(template: str) -> None:
    settings_of(f"example.org {{\n    {template}\n}}\n")


@pytest.mark.parametrize("pattern, python", [
    ("^ip-(?P<a>[0-9]*)[.]example[.]$", "^ip-(?P<a>[0-9]*)[.]example[.]$"),
    ("example\\.org\\.\\z", "example\\.org\\.\\Z"),
    ("(?i)A{2,3}?b*?[]z]", "(?i)A{2,3}?b*?[]z]"),
    ("[\\z]", "[\\z]"),
])
def test_go_regexes_read_by_python_the_same_way(pattern: str, python: str) -> None:
    assert go_regex(pattern) == (python, "")


# -- the Go template subset ---------------------------------------------------------------------------------

DATA = {"Name": "ip-10-1-2.example.", "Zone": "example.", "Class": "IN", "Type": "A", "Remote": "192.0.2.7",
        "Regex": "^ip-(?P<a>[0-9]+)-([0-9]+)-([0-9]+)", "Match": ["ip-10-1-2", "10", "1", "2"],
        "Group": {"0": "ip-10-1-2", "1": "10", "2": "1", "3": "2", "a": "10"}}


@pytest.mark.parametrize("text, rendered", [
    ("{{ .Name }} {{.Zone}} {{ .Class }} {{ .Type }} {{ .Remote }}", "ip-10-1-2.example. example. IN A 192.0.2.7"),
    ("{{ index .Match 1 }}.{{ .Group.a }}.{{ index .Group \"3\" }}", "10.10.2"),
    ("[{{ .Group.missing }}] [{{ index .Group \"missing\" }}]", "[<no value>] []"),
    ("{{ .Match }} {{ .Group }}", "[ip-10-1-2 10 1 2] map[0:ip-10-1-2 1:10 2:1 3:2 a:10]"),
    ("a {{- .Type -}} \n b", "aAb"),
    ("a {{/* a comment */}}b{{- /* trimmed */ -}} c", "a bc"),
    ("{{ parseInt \"ff\" 16 8 }} {{ parseInt (index .Match 1) 16 0 }} {{ parseInt .Group.a 2 64 }}", "255 16 2"),
    ("{{ \"}}\" }}{{ `raw` }}{{ 7 }}", "}}raw7"),
])
def test_the_template_subset_renders_as_go_does(text: str, rendered: str) -> None:
    assert parse("answer", text).render(DATA) == rendered


@pytest.mark.parametrize("text, error", [
    ('{{ .Name }} 60 IN TXT "{{ index .Match 5 }}"',
     'template: answer:1:26: executing "answer" at <index .Match 5>: error calling index: index out of range: 5'),
    ('{{ .Name }} 60 IN TXT "{{ parseInt "gg" 16 8 }}"',  # CoreDNS's own test's text
     'template: answer:1:26: executing "answer" at <parseInt "gg" 16 8>: error calling parseInt: '
     'strconv.ParseUint: parsing "gg": invalid syntax'),
    ("{{ parseInt .Group.x 10 8 }}", 'template: answer:1:3: executing "answer" at <.Group.x>: invalid value; '
                                     "expected string"),
])
def test_an_execution_error_has_gos_text(text: str, error: str) -> None:
    with pytest.raises(RenderError) as raised:
        parse("answer", text).render(DATA)
    assert str(raised.value) == error


def test_a_template_says_whether_it_reads_the_client() -> None:
    assert parse("answer", "{{ .Name }} 60 IN A {{ .Remote }}").fields == {"Name", "Remote"}
    assert "Remote" not in parse("answer", "{{ .Name }} 60 IN A {{ parseInt .Group.a 10 8 }}").fields


@pytest.mark.parametrize("text, base, bits, value", [
    ("ff", 16, 8, 255), ("0", 2, 1, 0), ("12", 10, 0, 12), ("zz", 36, 64, 1295),
    ("100", 16, 8, "value out of range"), ("", 10, 64, "invalid syntax"), ("-1", 10, 64, "invalid syntax"),
    ("1_0", 10, 64, "invalid syntax"), ("19", 8, 64, "invalid syntax"), ("18446744073709551616", 10, 64,
                                                                         "value out of range"),
])
def test_parse_int_is_gos_parse_uint(text: str, base: int, bits: int, value: int | str) -> None:
    if isinstance(value, int):
        assert parse_uint(text, base, bits) == value
    else:
        with pytest.raises(ValueError, match=f'^strconv.ParseUint: parsing "{text}": {value}$'):
            parse_uint(text, base, bits)


def test_a_template_with_an_unclosed_comment_is_refused() -> None:
    with pytest.raises(TemplateError, match="unclosed comment"):
        parse("answer", "{{/* x }}")


# -- records ------------------------------------------------------------------------------------------------

def test_a_rendered_line_reads_as_a_zone_file_record() -> None:
    record = parse_record("ip.example. IN A 10.0.0.1 ; a comment")
    assert (record.rr.name, record.rr.rtype, record.rr.ttl, record.rr.data, record.rdclass) == (
        "ip.example", A, DEFAULT_TTL, "10.0.0.1", 1)
    soa = parse_record("invalid CH 60 SOA ns.invalid. hostmaster.invalid (1 60\n 60 60 60)")
    assert (soa.rr.name, soa.rr.ttl, soa.rdclass) == ("invalid", 60, CLASS_CH)
    assert soa.rr.data == dns.rdata.from_text("IN", "SOA", "ns.invalid. hostmaster.invalid. 1 60 60 60 60").to_wire()
    assert parse_record("@ 5 TXT a \"b c\"").rr[:3] == ("", TXT, 5)


@pytest.mark.parametrize("text", ["test.example.", "", "a. 60 IN A 1.2.3.4.5", "a. 60 IN A 1.2.3.4 junk"])
def test_a_rendered_line_that_is_no_record_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="^dns: "):
        parse_record(text)


@pytest.mark.parametrize("name, printed", [
    ("", "."), ("ip-1.example", "ip-1.example."), ("a\\.b.example", "a\\.b.example."),
    ("a b;c(d)@e\"f'g.x", "a\\ b\\;c\\(d\\)\\@e\\\"f\\'g.x."), ("\x00\x7f\\\\.x", "\\000\\127\\\\.x."),
])
def test_names_are_printed_as_coredns_prints_them(name: str, printed: str) -> None:
    assert presentation(name) == printed


# -- answers through the router -----------------------------------------------------------------------------

MULTI = """. {
    template IN TXT example {
        match "$^"
        rcode SERVFAIL
        fallthrough
    }
    template IN A example {
        match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        fallthrough
    }
    template IN A example {
        match ^ip-10-
        answer "{{ .Name }} 60 IN A 192.0.2.1"
        fallthrough
    }
    template IN MX example {
        match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN MX 10 {{ .Name }}"
        additional "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
    }
    template ANY ANY invalid {
        rcode NXDOMAIN
        authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
    }
    whoami
}
"""


@pytest.fixture(scope="module")
def multi() -> Pipeline:
    return pipeline_for([], settings=block_of(MULTI))


def passed_on(reply: dns.message.Message) -> bool:
    """Whether whoami (the next plugin) answered: the client's address in the additional section."""
    return [rrset.to_text() for rrset in reply.additional[:1]] == [f"{reply.question[0].name} 0 IN A {PEER[0]}"]


def test_the_first_template_that_matches_answers_with_aa(multi: Pipeline) -> None:
    for _ in range(2):  # the second time from the answer table
        reply = ask(multi, "ip-10-11-12-13.Example.")
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
        assert texts(reply.answer) == ["ip-10-11-12-13.Example. 60 IN A 10.11.12.13"]
    mx = ask(multi, "ip-10-11-12-13.example.", "MX")
    assert texts(mx.answer) == ["ip-10-11-12-13.example. 60 IN MX 10 ip-10-11-12-13.example."]
    assert texts(mx.additional) == ["ip-10-11-12-13.example. 60 IN A 10.11.12.13"]


def test_a_template_that_misses_passes_on_only_with_fallthrough(multi: Pipeline) -> None:
    assert passed_on(ask(multi, "some.example.", "TXT"))  # first template falls through, no other takes TXT
    assert passed_on(ask(multi, "something.example.", "A"))  # the second and the third fall through
    third = ask(multi, "ip-10-x.example.", "A")  # the second falls through, the third matches
    assert texts(third.answer) == ["ip-10-x.example. 60 IN A 192.0.2.1"]
    failed = ask(multi, "something.example.", "MX")  # the MX template has no fallthrough: SERVFAIL
    assert failed.rcode() == dns.rcode.SERVFAIL and not failed.flags & dns.flags.AA
    assert not failed.answer and not failed.additional
    assert passed_on(ask(multi, "www.example.org.", "A"))  # outside every template's zones


def test_a_question_of_type_any_is_tried_against_every_template(multi: Pipeline) -> None:
    reply = ask(multi, "ip-10-1-2-3.example.", "ANY")  # TXT template misses, falls through; the A one answers
    assert texts(reply.answer) == ["ip-10-1-2-3.example. 60 IN A 10.1.2.3"]


def test_rcode_nxdomain_answers_with_aa_and_the_templated_authority(multi: Pipeline) -> None:
    reply = ask(multi, "test.invalid.", "AAAA")
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.flags & dns.flags.AA and not reply.answer
    assert texts(reply.authority) == ["invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"]


def test_rcode_servfail_is_a_bare_servfail() -> None:
    pipeline = pipeline_for([], settings=block_of('. {\n    template ANY ANY {\n        rcode SERVFAIL\n'
                                                  '        answer "{{ .Name }} 60 IN A 10.0.0.1"\n    }\n}\n'))
    reply = ask(pipeline, "a.example.")
    assert reply.rcode() == dns.rcode.SERVFAIL and not reply.flags & dns.flags.AA and not reply.answer


def test_a_template_that_fails_to_render_or_parse_is_servfail_with_the_error() -> None:
    settings = block_of('. {\n    template IN TXT {\n        match ^(a)?b\n        answer "{{ .Name }} 60 IN TXT '
                        '{{ index .Match 2 }}"\n    }\n    template IN A {\n        match ^(?P<ip>.*)[.]ip[.]$\n'
                        '        answer "{{ .Name }} 60 IN A {{ .Group.ip }}"\n    }\n}\n')
    chain = chain_for(settings)
    snapshot = registry_with([]).snapshot
    failed = chain.resolve("b.example", TXT, snapshot)
    assert failed.outcome is Outcome.SERVFAIL
    assert failed.reason == ('template: answer:1:25: executing "answer" at <index .Match 2>: error calling index: '
                             "index out of range: 2")
    good = chain.resolve("10.0.0.1.ip", A, snapshot)
    assert [(rr.name, rr.data) for rr in good.answer] == [("10.0.0.1.ip", "10.0.0.1")]
    bad = chain.resolve("10.0.0.300.ip", A, snapshot)
    assert bad.outcome is Outcome.SERVFAIL and bad.reason.startswith("dns: ")


def test_the_records_keep_their_ttl_and_class() -> None:
    settings = block_of('. {\n    template ANY TXT {\n        answer "{{ .Name }} {{ .Class }} TXT \\"{{ .Type }}\\""\n'
                        '    }\n}\n')
    answer = chain_for(settings).resolve("version.example", TXT, registry_with([]).snapshot, qclass=CLASS_CH)
    assert answer.record_class == CLASS_CH and answer.outcome is Outcome.ANSWER
    (rr,) = answer.answer
    assert (rr.ttl, rr.data) == (DEFAULT_TTL, b"\x03TXT")


def test_an_answer_that_reads_the_client_is_never_served_to_another() -> None:
    pipeline = pipeline_for([], settings=block_of('. {\n    template IN A {\n'
                                                  '        answer "{{ .Name }} 0 IN A {{ .Remote }}"\n    }\n}\n'))
    for _ in range(2):
        for peer in (("192.0.2.1", 1111), ("192.0.2.2", 2222)):
            assert texts(ask(pipeline, "who.example.", peer=peer).answer) == [f"who.example. 0 IN A {peer[0]}"]
    assert not pipeline.table.entries


@pytest.mark.parametrize("qclass", ["IN", "ANY"])
@pytest.mark.parametrize("via_tcp", [False, True])
def test_the_aaaa_idiom_answers_every_aaaa_with_noerror_aa_and_nothing_else(qclass: str, via_tcp: bool) -> None:
    """`template IN|ANY AAAA . { rcode NOERROR }` on IPv4-only clusters: before kubernetes and forward."""
    settings = block_of(f". {{\n    forward . 192.0.2.53\n    kubernetes cluster.local\n    template {qclass} AAAA . "
                        "{\n        rcode NOERROR\n    }\n}\n")
    pipeline = pipeline_for(example_records(), settings=settings)
    for _ in range(2):
        for name in ("kubernetes.default.svc.cluster.local.", "nothing.default.svc.cluster.local.",
                     "www.example.com.", "."):
            reply = ask(pipeline, name, "AAAA", via_tcp=via_tcp)
            assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
            assert not reply.answer and not reply.authority and not reply.additional
    assert all(not forwarder.asked for forwarder in fakes(pipeline))
    a = ask(pipeline, "kubernetes.default.svc.cluster.local.", "A")
    assert texts(a.answer) == ["kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"]
    assert len(pipeline.table) == 5  # the four AAAA answers are kept like any other, and the A


def test_a_template_of_another_class_passes_the_question_on() -> None:
    settings = block_of('. {\n    template CH TXT {\n        answer "{{ .Name }} 0 CH TXT ch"\n    }\n'
                        '    template ANY TXT {\n        answer "{{ .Name }} 0 IN TXT any"\n    }\n}\n')
    chain = chain_for(settings)
    snapshot = registry_with([]).snapshot
    assert chain.resolve("a.example", TXT, snapshot).answer[0].data == b"\x03any"
    ch = chain.resolve("a.example", TXT, snapshot, qclass=CLASS_CH)
    assert (ch.answer[0].data, ch.record_class) == (b"\x02ch", CLASS_CH)


def test_every_query_a_template_matched_counts_its_failures_too() -> None:
    """CoreDNS's three template counters, by the template's zone and the question's class and type (the
    template's for ANY); a reply from the answer table counts as the first did."""
    metrics = Metrics()
    settings = block_of('. {\n    template IN AAAA example.org {\n        rcode NOERROR\n    }\n'
                        '    template IN TXT fail.test {\n        match ^(a)?b\n'
                        '        answer "{{ .Name }} 60 IN TXT {{ index .Match 2 }}"\n    }\n'
                        '    template IN A fail.test {\n        match ^(?P<ip>.*)[.]ip[.]\n'
                        '        answer "{{ .Name }} 60 IN A {{ .Group.ip }}"\n    }\n}\n')
    pipeline = pipeline_for([], settings=settings, metrics=metrics.queries)
    for via_tcp in (False, False, True):
        assert ask(pipeline, "www.example.org.", "AAAA", via_tcp=via_tcp).rcode() == dns.rcode.NOERROR
    assert ask(pipeline, "www.example.org.", "ANY").rcode() == dns.rcode.NOERROR
    assert ask(pipeline, "b.fail.test.", "TXT").rcode() == dns.rcode.SERVFAIL
    assert ask(pipeline, "10.0.0.300.ip.fail.test.", "A").rcode() == dns.rcode.SERVFAIL
    text = generate_latest(metrics.registry).decode()
    assert sorted(line for line in text.splitlines() if line.startswith("coredns_template_")) == sorted([
        'coredns_template_matches_total{class="IN",server="dns://:53",type="AAAA",view="",zone="example.org."} 4.0',
        'coredns_template_matches_total{class="IN",server="dns://:53",type="TXT",view="",zone="fail.test."} 1.0',
        'coredns_template_matches_total{class="IN",server="dns://:53",type="A",view="",zone="fail.test."} 1.0',
        'coredns_template_template_failures_total{class="IN",section="answer",server="dns://:53",'
        'template="{{.Name}} 60 IN TXT {{index .Match 2}}",type="TXT",view="",zone="fail.test."} 1.0',
        'coredns_template_rr_failures_total{class="IN",section="answer",server="dns://:53",'
        'template="{{.Name}} 60 IN A {{.Group.ip}}",type="A",view="",zone="fail.test."} 1.0'])


# -- a CNAME's target looked up (CoreDNS's upstream.Lookup) ------------------------------------------------

def cname_pipeline(answer: str, qtype: str = "A") -> Pipeline:
    """kubernetes for cluster.local, forward to a fake upstream (test_rewrite_cname's), and a template."""
    return forwarding_pipeline("", extra=f'    template IN {qtype} app.example.org {{\n        answer "{answer}"\n    }}\n')


@pytest.mark.parametrize("via_tcp", [False, True])
def test_a_cname_to_a_cluster_name_is_followed_by_its_records(via_tcp: bool) -> None:
    pipeline = cname_pipeline("{{ .Name }} 60 IN CNAME kubernetes.default.svc.cluster.local.")
    for _ in range(2):  # never kept: made again the same way
        reply = ask_finished(pipeline, "web.app.example.org", via_tcp=via_tcp)
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
        assert records(reply) == ["web.app.example.org. 60 IN CNAME kubernetes.default.svc.cluster.local.",
                                  "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"]
    assert not fakes(pipeline)[0].asked


def test_a_cname_to_an_outside_name_is_followed_by_the_upstreams_records() -> None:
    pipeline = cname_pipeline("{{ .Name }} 60 IN CNAME my-app.com.")
    assert records(ask_finished(pipeline, "web.app.example.org")) == [
        "web.app.example.org. 60 IN CNAME my-app.com.", "my-app.com. 200 IN CNAME my-app.example.",
        "my-app.example. 200 IN CNAME my-app.com.cdn.example.net.", "my-app.com.cdn.example.net. 200 IN A 20.2.0.1"]
    assert fakes(pipeline)[0].asked == ["my-app.com."]


def test_a_cname_is_followed_for_a_and_aaaa_questions_only() -> None:
    pipeline = cname_pipeline("{{ .Name }} 60 IN CNAME my-app.com.", qtype="ANY")
    assert records(ask_finished(pipeline, "web.app.example.org", "MX")) == [
        "web.app.example.org. 60 IN CNAME my-app.com."]
    assert fakes(pipeline)[0].asked == []
    ask_finished(pipeline, "web.app.example.org", "AAAA")
    assert fakes(pipeline)[0].asked == ["my-app.com."]
