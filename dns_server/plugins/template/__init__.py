"""The `template` plugin: answers written as Go templates for the questions a regex matches (CoreDNS 1.14).

- setup.py: the directives (`template CLASS TYPE [ZONE...] { match, answer, additional, authority,
  rcode, fallthrough, upstream }`), every refusal at start;
- gotemplate.py: the part of Go's text/template the templates are written in;
- record.py: a rendered template read as a zone-file line;
- here: the answers.  A name outside every template's zones goes to the next plugin.  Otherwise
  the templates are tried in Corefile order: one whose zones, class or type do not fit the
  question (ANY on either side fits) is skipped; one whose regexes (tried in order on the
  lower-case name as CoreDNS prints it, with the trailing dot) all miss passes the question to the
  next template when its `fallthrough` covers the name, else answers SERVFAIL.  The first match
  answers: `rcode SERVFAIL` a bare SERVFAIL; else AA, the rcode, and the records its templates
  render, in their sections.  After the last template, the next plugin.  A template that fails to
  render or to read as a record is SERVFAIL with the error (which `errors` logs), as in CoreDNS.
- A CNAME answered to an A or AAAA question: its target is looked up through the whole server
  (any block, as CoreDNS's `upstream.Lookup`) in the question's type, and the answer records found
  follow the CNAME, with that reply's TC bit (`CnameTarget`, which the router follows).
The answer depends on no cluster data, so the answer table keeps it like any other (but one with a
target to look up, which is made afresh each time); one that reads `.Remote` depends on the client
and is never given to another.

Metrics: an answer names the counters each of its replies adds one to (`Answer.counts`): CoreDNS's
`coredns_template_matches_total{server,zone,view,class,type}` for every question a template
matched (the template's zone; the question's class and type, or the template's for ANY), and
`coredns_template_template_failures_total` (a template that failed to execute) or
`coredns_template_rr_failures_total` (a rendering that is no record), with the `section` and the
`template` as Go prints it.  The router counts them with the query's tally, so a reply from the
answer table counts as a fresh one does: every query a template answers, as CoreDNS without
`cache`.  (CoreDNS's `cache` sits before `template`, so with it CoreDNS counts only its misses.)
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional

import dns.name
import dns.rdatatype
from dnslib import DNSRecord

from dns_server.chain.plugin import Handler, Next, PluginSpec, Request
from dns_server.config.model import ServerBlock
from dns_server.plugins.template.gotemplate import RenderError
from dns_server.plugins.template.record import parse_record
from dns_server.plugins.template.setup import CLASS_NAMES, NAME, Rule, TemplateSettings, setup
from dns_server.protocol.answer import RR, Answer, Outcome
from dns_server.protocol.codes import AAAA, ANY, CLASS_ANY, CNAME, NXDOMAIN, SERVFAIL, A
from dns_server.protocol.names import canonical_address, longest_zone, zone_text

OUTCOMES = {NXDOMAIN: Outcome.NXDOMAIN}  # NOERROR: ANSWER
# CoreDNS's counters (plugin/template/metrics.go), which an answer names in `Answer.counts`
MATCHES = "coredns_template_matches_total"
TEMPLATE_FAILURES = "coredns_template_template_failures_total"
RR_FAILURES = "coredns_template_rr_failures_total"
_SPECIAL = frozenset(" '@;()\"")  # escaped with a backslash in a name as miekg/dns prints it (and . and \)
_PLAIN = re.compile(r"[!#-&*-:<-?A-\[\]-~]*")  # printable ASCII but the specials and the backslash


class Template(Handler):
    def __init__(self, settings: TemplateSettings, block: ServerBlock) -> None:
        self.rules = settings.rules
        self.zones = settings.zones

    def serve(self, request: Request, next: Next) -> Answer:
        name = request.name
        if longest_zone(name, self.zones) is None:
            return next(request)
        printed = ""
        for rule in self.rules:
            zone = longest_zone(name, rule.zones)
            if zone is None:
                continue
            if rule.qclass != CLASS_ANY and request.qclass != CLASS_ANY and request.qclass != rule.qclass:
                continue
            if rule.qtype != ANY and request.qtype != ANY and request.qtype != rule.qtype:
                continue
            printed = printed or presentation(name)
            for regex in rule.regexes:
                match = regex.compiled.search(printed)
                if match is not None:
                    return _answer(rule, regex.pattern, match, zone, printed, request)
            if not rule.fall.covers(name):
                return request.reads.answer(Outcome.SERVFAIL, plugin=NAME)
        return next(request)


def _answer(rule: Rule, pattern: str, match: re.Match[str], zone: str, printed: str, request: Request) -> Answer:
    qclass = CLASS_NAMES.get(rule.qclass if request.qclass == CLASS_ANY else request.qclass, "")
    qtype = _type_name(rule.qtype if request.qtype == ANY else request.qtype)
    matched = (MATCHES, zone_text(zone), qclass, qtype)
    if rule.rcode == SERVFAIL:
        return request.reads.answer(Outcome.SERVFAIL, plugin=NAME, counts=(matched,))
    groups = [match.group()] + [group or "" for group in match.groups()]
    named = {str(index): group for index, group in enumerate(groups)}
    named.update({key: value or "" for key, value in match.groupdict().items()})
    remote = ""
    if rule.remote:
        client = request.client()
        remote = canonical_address(client.address) if client is not None else ""
    data: dict[str, object] = {
        "Name": printed, "Zone": zone_text(zone), "Regex": pattern, "Match": groups, "Group": named,
        "Class": qclass, "Type": qtype, "Remote": remote,
    }
    classes: set[int] = set()
    sections: list[tuple[RR, ...]] = []
    for templates in (rule.answer, rule.additional, rule.authority):  # CoreDNS's order decides the error reported
        records = []
        for template in templates:
            try:
                text = template.render(data)
            except RenderError as error:
                failed = (TEMPLATE_FAILURES, *matched[1:], template.name, template.printed)
                return request.reads.answer(Outcome.SERVFAIL, plugin=NAME, reason=str(error),
                                            counts=(matched, failed))
            try:
                record = parse_record(text)
            except ValueError as error:
                failed = (RR_FAILURES, *matched[1:], template.name, template.printed)
                return request.reads.answer(Outcome.SERVFAIL, plugin=NAME, reason=str(error),
                                            counts=(matched, failed))
            classes.add(record.rdclass)
            records.append(record.rr)
        sections.append(tuple(records))
    answer, additional, authority = sections
    if len(classes) > 1:
        return request.reads.answer(Outcome.SERVFAIL, plugin=NAME, counts=(matched,),
                                    reason="plugin/template: records of more than one class in one answer are not "
                                           "supported by this server")
    reply = request.reads.answer(OUTCOMES.get(rule.rcode, Outcome.ANSWER), answer, authority, additional, plugin=NAME,
                                 counts=(matched,))
    if request.qtype in (A, AAAA) and len(answer) == 1 and answer[0].rtype == CNAME:  # setup allows no other
        wire = answer[0].data
        assert isinstance(wire, bytes)  # a template's records carry their RDATA in wire form
        target = dns.name.from_wire(wire, 0)[0]
        reply = reply._replace(follow=CnameTarget(target.to_text(omit_final_dot=True).lower(), request.qtype))
    return reply._replace(record_class=classes.pop()) if classes else reply


class CnameTarget(NamedTuple):
    """The target of a CNAME a template answered to an A or AAAA question, to look up (`protocol.answer.Follow`)."""

    name: str
    qtype: int

    def target(self, reply: bytes) -> Optional[str]:
        return self.name

    def join(self, reply: bytes, looked_up: bytes) -> bytes:
        """The template's reply with the answer records of the target's reply after its CNAME, and its TC bit."""
        message, found = DNSRecord.parse(reply), DNSRecord.parse(looked_up)
        message.rr += found.rr
        message.header.tc = found.header.tc
        return bytes(message.pack())


def _type_name(qtype: int) -> str:
    """miekg/dns TypeToString: the mnemonic, "" for a type it has no name for."""
    text = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))
    return "" if text.startswith("TYPE") else text


def presentation(name: str) -> str:
    """A question name (lower case, `.` and `\\` escaped in labels) as CoreDNS prints it: fully qualified,
    the specials escaped with a backslash and other bytes outside printable ASCII as \\DDD (miekg/dns)."""
    if _PLAIN.fullmatch(name):
        return name + "." if name else "."
    labels = []
    label: list[str] = []
    chars = iter(name)
    for char in chars:
        if char == ".":
            labels.append(label)
            label = []
            continue
        if char == "\\":
            char = next(chars)
        label.append(char)
    labels.append(label)
    return "".join("".join(_printed(char) for char in label) + "." for label in labels)


def _printed(char: str) -> str:
    if char in _SPECIAL or char in ".\\":
        return "\\" + char
    if not " " <= char <= "~":
        return f"\\{ord(char):03d}"
    return char


PLUGIN = PluginSpec(NAME, setup, Template, in_chain=True)
