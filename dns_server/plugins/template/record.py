"""A rendered template as the resource record it writes: one zone-file line, as CoreDNS's dns.NewRR reads it.

The line is `OWNER [TTL] [CLASS] TYPE RDATA` (TTL and class in either order), relative names under
the root, TTL 3600 when none is given, comments and parentheses as in a zone file; only the first
record of the text counts.  dnspython reads the record data (always as class IN data: miekg/dns
reads an A record's address whatever the class); the record becomes an `RR` whose data is its
RDATA in wire form (an A record keeps its address as text, as the encoder wants).

`header` looks at a template before any question: the record type must be written out (or be
`{{ .Type }}`), so that the start can refuse a record that cannot parse and tell a CNAME.
"""

from __future__ import annotations

from typing import NamedTuple

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.ttl

from dns_server.plugins.template.gotemplate import Action, Field, GoTemplate, Literal, Node, TemplateError
from dns_server.protocol.answer import RR
from dns_server.protocol.codes import A

DEFAULT_TTL = 3600  # miekg/dns's dns.NewRR
DYNAMIC = -1  # a record type that is the question's (`{{ .Type }}`)
_PLACEHOLDER = "\x00"


class Record(NamedTuple):
    rr: RR
    rdclass: int


def parse_record(text: str) -> Record:
    """The first record of `text`; ValueError (with dnspython's reason) when there is none."""
    try:
        tokens = dns.tokenizer.Tokenizer(text)
        token = tokens.get(want_leading=True)
        if token.is_whitespace():
            raise ValueError("a record must start with its owner name")
        if not token.is_identifier():
            raise ValueError(f"not a resource record: {text!r}")
        owner = dns.name.from_text(token.value, origin=dns.name.root)
        ttl: int | None = None
        rdclass: int | None = None
        while True:
            token = tokens.get()
            if not token.is_identifier():
                raise ValueError(f"no record type in {text!r}")
            kind, value = _header_field(token.value, ttl is None, rdclass is None)
            if kind == "type":
                rdtype = value
                break
            if kind == "class":
                rdclass = value
            else:
                ttl = value
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.RdataType.make(rdtype), tokens,
                                    origin=dns.name.root, relativize=False)
        data: str | bytes = str(getattr(rdata, "address")) if rdtype == A else rdata.to_wire() or b""
    except (dns.exception.DNSException, ValueError, TypeError) as error:
        raise ValueError(f"dns: {error}") from None
    name = "" if owner == dns.name.root else owner.to_text(omit_final_dot=True)
    return Record(RR(name, rdtype, DEFAULT_TTL if ttl is None else ttl, data),
                  dns.rdataclass.IN if rdclass is None else rdclass)


def _header_field(text: str, ttl_free: bool, class_free: bool) -> tuple[str, int]:
    """What a word after the owner is, in miekg/dns's order: a type, else a class, else a TTL."""
    try:
        return "type", dns.rdatatype.from_text(text)
    except dns.exception.DNSException:
        pass
    if class_free:
        try:
            return "class", dns.rdataclass.from_text(text)
        except dns.exception.DNSException:
            pass
    if ttl_free:
        try:
            return "ttl", dns.ttl.from_text(text)
        except dns.exception.DNSException:
            pass
    raise ValueError(f"not a TTL, class or type: {text!r}")


def header(template: GoTemplate) -> int:
    """The type of the record `template` writes (DYNAMIC: the question's); TemplateError when it cannot
    be told at start, or when the record, all of whose parts are known at start, does not parse."""
    skeleton = []
    actions = []
    for part in template.parts:
        if isinstance(part, str):
            skeleton.append(part)
        else:
            skeleton.append(_PLACEHOLDER)
            actions.append(part)
    text = "".join(skeleton)
    if text[:1].isspace():
        raise TemplateError("a record must start with its owner name")
    fields = text.split()
    if not fields:
        raise TemplateError("the template writes no record")
    seen = fields[0].count(_PLACEHOLDER)  # actions in the owner name: any that cannot write a space
    if any(_may_space(action.node) for action in actions[:seen]):
        raise TemplateError("an owner name from .Match, .Group or .Regex (which can hold spaces) is not supported "
                            "by this server")
    ttl_free = class_free = True
    rtype: int | None = None
    probe = [fields[0]]
    for word in fields[1:]:
        if word == _PLACEHOLDER and _is(actions[seen], "Class") and class_free:
            class_free = False
            probe.append("IN")
            seen += 1
            continue
        if word == _PLACEHOLDER and _is(actions[seen], "Type"):
            rtype = DYNAMIC
            break
        if _PLACEHOLDER in word:
            raise TemplateError("the TTL, class and type of the record must be written out in the template (or be "
                                "{{ .Class }} and {{ .Type }})")
        if word.startswith(";"):
            break
        try:
            kind, value = _header_field(word, ttl_free, class_free)
        except ValueError as error:
            raise TemplateError(str(error)) from None
        probe.append(word)
        if kind == "type":
            rtype = value
            break
        if kind == "class":
            class_free = False
        else:
            ttl_free = False
    if rtype is None:
        raise TemplateError(f"no record type in {template.source!r}")
    if rtype != DYNAMIC and len(actions) == seen:  # every action is in the owner or the class: parse it now
        rest = text.split(None, len(probe))[len(probe):]
        try:
            parse_record(" ".join(probe + rest).replace(_PLACEHOLDER, "x"))
        except ValueError as error:
            raise TemplateError(str(error)) from None
    return rtype


def _is(action: Action, field: str) -> bool:
    return action.node == Field((field,))


def _may_space(node: Node) -> bool:
    if isinstance(node, Field):
        return node.path in (("Match",), ("Group",), ("Regex",))
    if isinstance(node, Literal):
        return any(char.isspace() for char in str(node.value))
    return False  # index of a name's match, a number
