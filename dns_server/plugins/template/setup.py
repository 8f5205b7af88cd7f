"""`template CLASS TYPE [ZONE...] { ... }`: every template directive of a block, read as CoreDNS 1.14 reads it.

Options: `match REGEX...` (Go's RE2 syntax, compiled here with Python's `re` after refusing what the
two read differently), `answer|additional|authority RR...` (gotemplate.py), `rcode CODE`,
`fallthrough [ZONE...]` and `upstream` (which CoreDNS reads and ignores, as here).  Refused by name:
`var`, `expr` (the expr language), `ederror` (EDNS options), the rcodes other than NOERROR,
NXDOMAIN and SERVFAIL, and a CNAME beside other answer records to A or AAAA questions (CoreDNS
looks each CNAME's target up after it; here one CNAME answer's is).  Every other option is
CoreDNS's argument error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import dns.rdatatype

from dns_server.config.model import NO_FALLTHROUGH, Fallthrough
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive, Token
from dns_server.plugins.template.gotemplate import GoTemplate, TemplateError, parse
from dns_server.plugins.template.record import header
from dns_server.protocol.codes import AAAA, ANY, CLASS_ANY, CNAME, NOERROR, NXDOMAIN, RCODE_NAMES, SERVFAIL, A

NAME = "template"
SECTIONS = ("answer", "additional", "authority")
MAX_REGEX_LEN = 10000  # CoreDNS's maxRegexpLen
DEFAULT_REGEX = ".*"
# miekg/dns StringToClass (case-sensitive, as CoreDNS reads CLASS)
CLASSES = {"IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": CLASS_ANY}
CLASS_NAMES = {number: name for name, number in CLASSES.items()}
RCODES = {name: number for number, name in RCODE_NAMES.items()} | {"BADVERS": 16}
SUPPORTED_RCODES = (NOERROR, NXDOMAIN, SERVFAIL)
UNSUPPORTED_OPTIONS = ("var", "expr", "ederror")


@dataclass(frozen=True, slots=True)
class Regex:
    pattern: str  # as written (`.Regex`)
    compiled: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class Rule:
    """One template directive."""

    qclass: int
    qtype: int
    zones: tuple[str, ...]
    regexes: tuple[Regex, ...]
    answer: tuple[GoTemplate, ...] = ()
    additional: tuple[GoTemplate, ...] = ()
    authority: tuple[GoTemplate, ...] = ()
    rcode: int = NOERROR
    fall: Fallthrough = NO_FALLTHROUGH
    remote: bool = False  # a template reads `.Remote`: the answer depends on the client


@dataclass(frozen=True, slots=True)
class TemplateSettings:
    rules: tuple[Rule, ...]
    zones: tuple[str, ...]  # every rule's zones: names outside them go to the next plugin at once


def setup(found: Sequence[Directive], context: SetupContext) -> TemplateSettings:
    plugin = Reader(NAME, unsupported=UNSUPPORTED_OPTIONS)
    rules = tuple(_rule(plugin, directive, context) for directive in found)
    return TemplateSettings(rules, tuple(dict.fromkeys(zone for rule in rules for zone in rule.zones)))


def _rule(plugin: Reader, directive: Directive, context: SetupContext) -> Rule:
    args = directive.args
    if not args:
        raise plugin.arg_error(directive.name)
    qclass = CLASSES.get(args[0].text)
    if qclass is None:
        raise plugin.error(args[0], f"invalid query class {args[0].text}")
    if len(args) < 2:
        raise plugin.arg_error(args[0])
    qtype = _qtype(args[1].text)
    if qtype is None:
        raise plugin.error(args[1], f"invalid RR class {args[1].text}")  # CoreDNS's words
    zones = plugin.zones(args[2:]) if args[2:] else context.zones
    regexes: list[Regex] = []
    sections: dict[str, list[GoTemplate]] = {section: [] for section in SECTIONS}
    answer_tokens: list[Token] = []
    rcode = NOERROR
    fall = NO_FALLTHROUGH
    for option in plugin.options(directive):
        name = option.name.text
        if name == "match":
            if not option.args:
                raise plugin.arg_error(option.name)
            regexes.extend(_regex(plugin, token) for token in option.args)
        elif name in SECTIONS:
            if not option.args:
                raise plugin.arg_error(option.name)
            for token in option.args:
                sections[name].append(_template(plugin, name, token))
                if name == "answer":
                    answer_tokens.append(token)
        elif name == "rcode":
            if not option.args:
                raise plugin.arg_error(option.name)
            if len(option.args) > 1:
                raise plugin.arg_error(option.args[1])
            rcode = _rcode(plugin, option.args[0])
        elif name == "fallthrough":
            fall = plugin.fallthrough(option)
        elif name == "upstream":
            pass  # CoreDNS reads it and its arguments, and ignores them ("remove soon")
        elif name in UNSUPPORTED_OPTIONS:
            raise plugin.unknown(option)
        else:
            raise plugin.arg_error(option.name)
    if qtype in (A, AAAA, ANY) and len(answer_tokens) > 1:
        for token, template in zip(answer_tokens, sections["answer"]):
            if header(template) == CNAME:
                raise plugin.error(token, "a CNAME beside other answer records to A or AAAA questions is not "
                                          "supported by this server (CoreDNS looks up each CNAME's target after it)")
    if not regexes:
        regexes.append(Regex(DEFAULT_REGEX, re.compile(DEFAULT_REGEX, re.ASCII)))
    templates = [template for section in SECTIONS for template in sections[section]]
    return Rule(qclass, qtype, zones, tuple(regexes), tuple(sections["answer"]), tuple(sections["additional"]),
                tuple(sections["authority"]), rcode, fall,
                remote=any("Remote" in template.fields for template in templates))


def _qtype(text: str) -> int | None:
    """miekg/dns StringToType: upper-case mnemonics (no TYPEnnn)."""
    if text != text.upper() or text.startswith("TYPE"):
        return None
    try:
        return int(dns.rdatatype.from_text(text))
    except dns.rdatatype.UnknownRdatatype:
        return None


def _rcode(plugin: Reader, token: Token) -> int:
    rcode = RCODES.get(token.text)
    if rcode is None:
        raise plugin.error(token, f"unknown rcode {token.text}")
    if rcode not in SUPPORTED_RCODES:
        raise plugin.error(token, f"rcode {token.text} is not supported by this server (NOERROR, NXDOMAIN and "
                                  "SERVFAIL are)")
    return rcode


def _template(plugin: Reader, section: str, token: Token) -> GoTemplate:
    try:
        template = parse(section, token.text)
        header(template)
    except TemplateError as error:
        raise plugin.error(token, f"could not compile template: {token.text}, {error}") from None
    return template


def _regex(plugin: Reader, token: Token) -> Regex:
    pattern = token.text
    if len(pattern) > MAX_REGEX_LEN:
        raise plugin.error(token, f"regex pattern too long: {len(pattern)} > {MAX_REGEX_LEN}")
    translated, problem = go_regex(pattern)
    if problem:
        raise plugin.error(token, f"could not parse regex: {pattern}, {problem} is not supported by this server "
                                  "(Go's RE2 syntax reads it otherwise, or not at all)")
    try:
        return Regex(pattern, re.compile(translated, re.ASCII))
    except re.error as error:
        raise plugin.error(token, f"could not parse regex: {pattern}, {error}") from None


_REPEAT = re.compile(r"\{(\d*)(,?)(\d*)\}")
_GROUP_FLAGS = re.compile(r"\(\?[imsU]*(?:-[imsU]*)?[:)]")


def go_regex(pattern: str) -> tuple[str, str]:
    """`pattern` (Go's RE2 syntax) as Python's `re` reads it the same, or what in it the two read differently.

    Refused: backreferences and octal escapes (`\\1`), `\\Z`, `\\u`, `\\U`, `\\N`, lookarounds,
    atomic and conditional groups, comments, possessive repeats, flags other than i, m, s, U, POSIX
    classes inside brackets and `{,n}` (all either errors in Go or read differently by Python).
    `\\z` becomes Python's `\\Z`.  Python's own errors (`\\pL`, a flag in mid-pattern, ...) refuse the
    rest.  Names are matched as ASCII (re.ASCII), as Go's `\\d`, `\\w`, `\\s` and `\\b` read them.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    repeat = False  # the last item was a repeat operator
    while i < n:
        char = pattern[i]
        if char == "\\":
            escape = pattern[i + 1:i + 2]
            if escape.isdigit() or escape in ("Z", "u", "U", "N"):
                return "", f"the escape \\{escape}"
            out.append("\\Z" if escape == "z" and not in_class else pattern[i:i + 2])
            i += 2
            repeat = False
            continue
        if in_class:
            if pattern.startswith("[:", i):
                return "", "a POSIX class [:...:]"
            if char == "]":
                in_class = False
            out.append(char)
            i += 1
            continue
        if char == "[":
            start = i
            i += 1
            if pattern[i:i + 1] == "^":
                i += 1
            if pattern[i:i + 1] == "]":
                i += 1
            out.append(pattern[start:i])
            in_class = True
            repeat = False
            continue
        if char == "(" and pattern.startswith("(?", i) and not pattern.startswith("(?P<", i) \
                and not pattern.startswith("(?:", i) and not _GROUP_FLAGS.match(pattern, i):
            return "", f"the group {pattern[i:i + 4]}..."
        if char in "*+?":
            if repeat and char == "+":
                return "", "a possessive repeat (*+, ++, ?+, {n}+)"
            out.append(char)
            i += 1
            if pattern[i:i + 1] == "?":  # lazy
                out.append("?")
                i += 1
            repeat = True
            continue
        bounds = _REPEAT.match(pattern, i) if char == "{" else None
        if bounds and bounds.group(2) and not bounds.group(1):
            return "", "the repeat {,n}"
        if bounds and bounds.group(1):
            out.append(bounds.group())
            i = bounds.end()
            if pattern[i:i + 1] == "?":
                out.append("?")
                i += 1
            repeat = True
            continue
        out.append(char)
        i += 1
        repeat = False
    return "".join(out), ""
