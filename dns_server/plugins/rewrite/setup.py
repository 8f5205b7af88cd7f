"""`rewrite` directives -> an ordered tuple of rules (CoreDNS 1.14's plugin/rewrite setup.go and newRule).

One directive is one rule; all of a block's `rewrite` directives are one list, in Corefile order.
`rewrite stop {...}` and `rewrite continue {...}` (fewer than two arguments on the line) read every
token of the block into that rule.  Error texts are CoreDNS's, with the file, line and token.
Refused by name: metadata labels as `edns0 local` variables, a replacement
rcode above 15 (it needs the OPT record of an EDNS query), and the regular-expression features of
Go's RE2 that Python's `re` reads differently.  Go's RE2 refuses what `re` alone has (look-around, back references): so do we.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Sequence, Union

from dnslib import QTYPE

from dns_server.config.setup import MAX_UINT32, Reader, SetupContext, last
from dns_server.config.syntax import CorefileError, Directive, Token
from dns_server.plugins.rewrite.cname import CnameRule
from dns_server.plugins.rewrite.edns0 import (
    APPEND,
    LOCAL,
    NSID_RULE,
    REPLACE,
    SET,
    SUBNET,
    SUBNET_RULE,
    UNSET,
    VARIABLES,
    Edns0Rule,
)
from dns_server.plugins.rewrite.rules import (
    CONTINUE,
    EXACT,
    MATCH_TYPES,
    PREFIX,
    REGEX,
    STOP,
    SUBSTRING,
    SUFFIX,
    ClassRule,
    Matcher,
    NameRule,
    OwnerRule,
    RcodeRule,
    RegexReplace,
    ReplyRule,
    ResponseRule,
    Rule,
    SwapSuffix,
    TtlRule,
    TypeRule,
    ValueRule,
)
from dns_server.protocol.codes import NSID, RCODE_NAMES

NAME = "rewrite"
MAX_REGEX = 10000  # CoreDNS's maxRegexpLen
MAX_TTL_RANGE = 2147483647  # `MIN-`: CoreDNS's upper bound
MAX_REPLACEMENT_RCODE = 15  # higher rcodes need an OPT record to carry their upper bits
# miekg/dns's StringToType: dnslib's names, and those it lacks
TYPES: dict[str, int] = {**{name: value for name, value in QTYPE.reverse.items() if name != "A6"},
                         "MD": 3, "MF": 4, "MB": 7, "MG": 8, "MR": 9, "WKS": 11, "MINFO": 14, "X25": 19,
                         "ISDN": 20, "RT": 21, "NSAPPTR": 23, "PX": 26, "GPOS": 27, "NXT": 30, "EID": 31,
                         "NIMLOC": 32, "ATMA": 34, "SINK": 40, "SMIMEA": 53, "NINFO": 56, "RKEY": 57,
                         "TALINK": 58, "UINFO": 100, "UID": 101, "GID": 102, "UNSPEC": 103, "NID": 104,
                         "L32": 105, "L64": 106, "LP": 107, "MAILB": 253, "MAILA": 254, "AVC": 258,
                         "AMTRELAY": 260, "RESINFO": 261, "NXNAME": 128}
CLASSES = {"IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}  # miekg/dns's StringToClass
RCODES = {name: value for value, name in RCODE_NAMES.items()}
# What Go's RE2 reads and Python's `re` reads differently or not at all: refused by name.
_RE2_ONLY = re.compile(r"\\[pPQCz]|\[\[:|\(\?<[A-Za-z]|\(\?[a-zA-Z]*U")
# What Python's `re` reads and Go's RE2 refuses (look-around, atomic groups, conditionals, back references).
_RE_ONLY = re.compile(r"\(\?(?:[=!#>(]|<[=!]|P=)|\\[1-9Z]")


AnyRule = Union[Rule, Edns0Rule, CnameRule]


class RewriteSettings(NamedTuple):
    rules: tuple[AnyRule, ...]


def setup(found: Sequence[Directive], context: SetupContext) -> RewriteSettings:
    plugin = Reader(NAME)
    return RewriteSettings(tuple(_Rules(plugin, directive).rule() for directive in found))


def normalize(text: str) -> str:
    """CoreDNS's plugin.Name(text).Normalize(): lower case, fully qualified."""
    return (text if text.endswith(".") else text + ".").lower()


class _Rules:
    """One directive's rule (CoreDNS's newRule and the new...Rule it calls), its errors naming their token."""

    def __init__(self, plugin: Reader, directive: Directive) -> None:
        self.plugin = plugin
        self.directive = directive
        tokens = list(directive.args)
        if directive.block is not None:
            if len(tokens) >= 2:
                first = directive.block[0].name if directive.block else last(directive)
                raise plugin.error(first, "a rule written on the directive's line takes no block")
            for option in plugin.options(directive):
                tokens += [option.name, *option.args]
        self.tokens = tokens

    def error(self, token: Token | None, message: str) -> CorefileError:
        return self.plugin.error(token or (self.tokens[-1] if self.tokens else self.directive.name), message)

    def rule(self) -> AnyRule:
        tokens = self.tokens
        if not tokens:
            raise self.error(None, "no rule type specified for rewrite")
        first = tokens[0].text.lower()
        if first in (CONTINUE, STOP):
            if len(tokens) < 2:
                raise self.error(tokens[0], f"{first} rule must begin with a rule type")
            mode, kind_token, args = first, tokens[1], tokens[2:]
        else:
            mode, kind_token, args = STOP, tokens[0], tokens[1:]
        kind = kind_token.text.lower()
        if kind == "answer":
            raise self.error(kind_token, "response rewrites must begin with a name rule")
        if kind == "name":
            return self.name_rule(mode, args)
        if kind in ("type", "class"):
            if len(args) != 2:
                raise self.error(None, f"{kind} rules must have exactly two arguments")
            names = TYPES if kind == "type" else CLASSES
            old, new = (self.lookup(names, token, kind) for token in args)
            return TypeRule(mode, old, new) if kind == "type" else ClassRule(mode, old, new)
        if kind == "ttl":
            return self.ttl_rule(mode, args)
        if kind == "rcode":
            return self.rcode_rule(mode, args)
        if kind == "cname":
            return self.cname_rule(mode, args)
        if kind == "edns0":
            return self.edns0_rule(mode, args)
        raise self.error(kind_token, f'invalid rule type "{tokens[0].text}"')

    def lookup(self, names: dict[str, int], token: Token, kind: str) -> int:
        value = names.get(token.text.upper())
        if value is None:
            raise self.error(token, f'invalid {kind} "{token.text.upper()}"')
        return value

    # -- name ----------------------------------------------------------------------------------------
    def name_rule(self, mode: str, args: list[Token]) -> NameRule:
        if len(args) < 2:
            raise self.error(None, "too few arguments for a name rule")
        if len(args) == 2:
            kind, source, target = EXACT, normalize(args[0].text), normalize(args[1].text)
        else:
            kind = args[0].text.lower()
            if kind == REGEX:
                source, target = args[1].text, args[2].text
            else:
                source, target = normalize(args[1].text), normalize(args[2].text)
        auto = False
        answers: tuple[ResponseRule, ...] = ()
        if len(args) > 3:
            auto, answers = self.answer_rules(kind, args[3:])
        where = args[1]
        if kind == EXACT:
            self.regex(target, source, where)  # as CoreDNS, which compiles TO as a pattern here
            return NameRule(mode, Matcher(EXACT, source), target, True, answers)
        if kind == SUFFIX:
            if auto:
                back = SwapSuffix(target, source)
                answers = (OwnerRule(back), ValueRule(back), *answers)
            return NameRule(mode, Matcher(SUFFIX, source), target, False, answers)
        if kind in (PREFIX, SUBSTRING):
            return NameRule(mode, Matcher(kind, source), target, auto, answers)
        if kind == REGEX:
            pattern = self.regex(source, target, where)
            return NameRule(mode, Matcher(REGEX, pattern=pattern), normalize(target), auto, answers)
        raise self.error(args[0], "name rule supports only exact, prefix, suffix, substring, and regex name matching, "
                                  f"received: {kind}")

    def answer_rules(self, kind: str, args: list[Token]) -> tuple[bool, tuple[ResponseRule, ...]]:
        """`answer auto`, `answer name FROM TO`, `answer value FROM TO` (`answer` optional after the first)."""
        if len(args) < 2:
            raise self.error(args[-1], f"invalid arguments for {kind} rule")
        auto = False
        rules: list[ResponseRule] = []
        names = 0
        at = 0
        seen = ""
        while at < len(args):
            if not seen and args[at].text != "answer":
                raise self.error(args[at], "exceeded the number of arguments for a non-answer rule argument for "
                                           f"{kind} rule")
            if args[at].text == "answer":
                at += 1
            if at == len(args):
                raise self.error(args[-1], f"type missing for answer rule for {kind} rule")
            token = args[at]
            seen = token.text
            at += 1
            if seen == "auto":
                auto = True
                continue
            if seen not in ("name", "value"):
                raise self.error(token, f'invalid type "{seen}" for answer rule for {kind} rule')
            if len(args) - at < 2:
                raise self.error(token, f"{seen} answer rule for {kind} rule: 2 arguments required")
            source, target = args[at].text, args[at + 1].text
            pattern = self.regex(source, target, args[at], f"{seen} answer rule for {kind} rule: ")
            rewriter = RegexReplace(pattern, normalize(target))
            if seen == "name":
                rules.append(OwnerRule(rewriter))
                names += 1
            else:
                rules.append(ValueRule(rewriter))
            at += 2
        if auto and names:
            raise self.error(args[0], "auto name answer rule cannot be combined with explicit name anwer rules")
        return auto, tuple(rules)

    def regex(self, source: str, target: str, token: Token, prefix: str = "") -> re.Pattern[str]:
        """CoreDNS's isValidRegexPattern: a pattern of at most 10000 characters, which TO's `{n}` do not outnumber."""
        if len(source) > MAX_REGEX:
            raise self.error(token, f"{prefix}regex pattern too long: {len(source)} > {MAX_REGEX}")
        pattern = self.compile(source, token, f"{prefix}invalid regex matching pattern: {source}")
        used = sum(1 for index in range(101) if "{" + str(index) + "}" in target)
        if used > pattern.groups:
            raise self.error(token, f"{prefix}the rewrite regex pattern ({target}) uses more subexpressions than its "
                                    f"corresponding matching regex pattern ({source})")
        return pattern

    def compile(self, source: str, token: Token, invalid: str) -> re.Pattern[str]:
        """Go's regexp.Compile, for the patterns Python's `re` reads the same way."""
        unsupported = _RE2_ONLY.search(source)
        if unsupported is not None:
            raise self.error(token, f"the regular expression syntax '{unsupported.group()}' in {source} is not "
                                    "supported by this server")
        if _RE_ONLY.search(source) is not None:
            raise self.error(token, invalid)
        try:
            return re.compile(source)
        except (re.error, OverflowError, RecursionError):
            raise self.error(token, invalid) from None

    # -- ttl and rcode -----------------------------------------------------------------------------------
    def matcher(self, args: list[Token], rule: str) -> Matcher:
        """The name a ttl or rcode rule matches: `[TYPE] NAME`."""
        if len(args) == 1:
            return Matcher(EXACT, normalize(args[0].text))
        kind, source = args[0].text.lower(), args[1]
        if kind == REGEX:
            if len(source.text) > MAX_REGEX:
                raise self.error(source, f"regex pattern too long in a {rule} rule: {len(source.text)} > {MAX_REGEX}")
            invalid = f"invalid regex pattern in a {rule} rule: {source.text}"
            return Matcher(REGEX, pattern=self.compile(source.text, source, invalid))
        if kind not in MATCH_TYPES:
            raise self.error(args[0], f"{rule} rule supports only exact, prefix, suffix, substring, and regex name "
                                      "matching")
        return Matcher(kind, normalize(source.text))

    def cname_rule(self, mode: str, args: list[Token]) -> CnameRule:
        if len(args) == 2:
            kind, source, to = EXACT, args[0], args[1]
        elif len(args) == 3:
            kind, source, to = args[0].text.lower(), args[1], args[2]
            if kind not in MATCH_TYPES:
                raise self.error(args[0], f"unknown cname rewrite type: {kind}")
        else:
            raise self.error(None, f"too few ({len(args)}) arguments for a cname rule")
        if kind == EXACT:
            return CnameRule(mode, kind, normalize(source.text), normalize(to.text))
        if kind != REGEX:
            return CnameRule(mode, kind, source.text.lower(), to.text.lower())
        text = source.text.lower()
        if len(text) > MAX_REGEX:
            raise self.error(source, f"regex pattern too long in a cname rule: {len(text)} > {MAX_REGEX}")
        pattern = self.compile(text, source, f"invalid cname rewrite regex pattern: {text}")
        return CnameRule(mode, kind, text, to.text.lower(), pattern)

    def ttl_rule(self, mode: str, args: list[Token]) -> ReplyRule:
        if len(args) < 2:
            raise self.error(None, f"too few ({len(args)}) arguments for a ttl rule")
        text = args[-1].text if len(args) <= 3 else ""
        limits = ttl_range(text)
        if limits is None:
            raise self.error(args[-1], f"invalid TTL '{text}' for a ttl rule")
        return ReplyRule(mode, self.matcher(args[:-1], "ttl"), TtlRule(*limits))

    def rcode_rule(self, mode: str, args: list[Token]) -> ReplyRule:
        if len(args) < 3:
            raise self.error(None, f"too few ({len(args)}) arguments for a rcode rule")
        old_text, new_text = (args[-2].text, args[-1].text) if len(args) <= 4 else ("", "")
        old, new = rcode_value(old_text), rcode_value(new_text)
        if old is None:
            raise self.error(args[-2], f"invalid matching RCODE '{old_text}' for a rcode rule")
        if new is None:
            raise self.error(args[-1], f"invalid replacement RCODE '{new_text}' for a rcode rule")
        if new > MAX_REPLACEMENT_RCODE:
            raise self.error(args[-1], f"the extended replacement RCODE '{new_text}' is not supported by this server")
        return ReplyRule(mode, self.matcher(args[:-2], "rcode"), RcodeRule(old, new))

    # -- edns0 ----------------------------------------------------------------------------------------
    def edns0_rule(self, mode: str, args: list[Token]) -> Edns0Rule:
        """CoreDNS's newEdns0Rule: `local|nsid|subnet set|append|replace|unset ...`, `revert` last."""
        if len(args) < 2:
            raise self.error(None, "too few arguments for an EDNS0 rule")
        kind, action = args[0].text.lower(), args[1].text.lower()
        if action not in (SET, APPEND, REPLACE, UNSET):
            raise self.error(args[1], f'invalid action: "{action}"')
        if kind not in (LOCAL, NSID_RULE, SUBNET_RULE):
            raise self.error(args[0], f'invalid rule type "{kind}"')
        if action == UNSET:
            wanted = {LOCAL: (3, "exactly two arguments"), NSID_RULE: (2, "exactly one argument"),
                      SUBNET_RULE: (2, "exactly one argument")}[kind]
            if len(args) != wanted[0]:
                raise self.error(None, f"{kind} unset action requires {wanted[1]}")
            code = {LOCAL: 0, NSID_RULE: NSID, SUBNET_RULE: SUBNET}[kind]
            return Edns0Rule(mode, kind, action, self.uint(args[2], 16) if kind == LOCAL else code)
        revert = args[-1].text == "revert"
        if revert:
            args = args[:-1]
        if kind == NSID_RULE:
            if len(args) != 2:
                raise self.error(None, "EDNS0 NSID rules can accept no more than one arg")
            return Edns0Rule(mode, kind, action, NSID, revert=revert)
        if len(args) != 4:
            raise self.error(None, f"EDNS0 {kind} rules require three or four args")
        if kind == SUBNET_RULE:
            v4, v6 = self.uint(args[2], 16), self.uint(args[3], 16)
            if v4 > 32:
                raise self.error(args[2], f"invalid IPv4 bit mask length {v4}")
            if v6 > 128:
                raise self.error(args[3], f"invalid IPv6 bit mask length {v6}")
            return Edns0Rule(mode, kind, action, SUBNET, v4_prefix=v4, v6_prefix=v6, revert=revert)
        code, value = self.uint(args[2], 16), args[3]
        if value.text.startswith("{") and value.text.endswith("}"):
            if value.text in VARIABLES:
                return Edns0Rule(mode, kind, action, code, variable=value.text, revert=revert)
            if "/" in value.text:
                raise self.error(value, f"the metadata variable {value.text} is not supported by this server")
            raise self.error(value, f'unsupported variable name "{value.text}"')
        return Edns0Rule(mode, kind, action, code, self.hex_or_text(value), revert=revert)

    def uint(self, token: Token, bits: int) -> int:
        """Go's strconv.ParseUint(text, 0, bits), with its error text."""
        text = token.text
        value = _go_uint(text)
        if value is None:
            raise self.error(token, f'strconv.ParseUint: parsing "{text}": invalid syntax')
        if value >= 1 << bits:
            raise self.error(token, f'strconv.ParseUint: parsing "{text}": value out of range')
        return value

    def hex_or_text(self, token: Token) -> bytes:
        """A local option's data: hex after `0x` (Go's hex.DecodeString, with its errors), else the text."""
        text = token.text
        if not text.startswith("0x"):
            return text.encode()
        digits = text[2:]
        for char in digits:
            if char not in "0123456789abcdefABCDEF":
                raise self.error(token, f"encoding/hex: invalid byte: U+{ord(char):04X} {char!r}")
        if len(digits) % 2:
            raise self.error(token, "encoding/hex: odd length hex string")
        return bytes.fromhex(digits)


def _go_uint(text: str) -> int | None:
    """Go's ParseUint with base 0 (0x, 0o, 0b, a leading 0 for octal, `_` between digits), None if invalid."""
    body, base = text, 10
    for prefix, prefix_base in (("0x", 16), ("0o", 8), ("0b", 2)):
        if text[:2].lower() == prefix:
            body, base = text[2:], prefix_base
            break
    else:
        if len(text) > 1 and text[0] == "0":
            body, base = text[1:], 8
    if base != 10 and body.startswith("_"):
        body = body[1:]
    if not body.isascii() or not body.replace("_", "").isalnum() or body[0] == "_" or body[-1] == "_" or "__" in body:
        return None
    try:
        return int(body.replace("_", ""), base)
    except ValueError:
        return None


def _uint32(text: str) -> int | None:
    """Go's strconv.ParseUint(text, 10, 32), None on error."""
    if not re.fullmatch(r"[0-9]+", text) or int(text) > MAX_UINT32:
        return None
    return int(text)


def ttl_range(text: str) -> tuple[int, int] | None:
    """CoreDNS's isValidTTL: `N`, `MIN-MAX`, `-MAX` or `MIN-` as (low, high), None if invalid."""
    parts = text.split("-")
    if len(parts) == 1:
        value = _uint32(parts[0])
        return None if value is None else (value, value)
    if len(parts) != 2 or parts == ["", ""]:
        return None
    low = 0 if parts[0] == "" else _uint32(parts[0])
    high = MAX_TTL_RANGE if parts[1] == "" else _uint32(parts[1])
    if low is None or high is None or low > high:
        return None
    return low, high


def rcode_value(text: str) -> int | None:
    """CoreDNS's isValidRCode: a number up to 23, or an rcode's name (any case)."""
    number = _uint32(text)
    if number is not None and number <= 23:
        return number
    return RCODES.get(text.upper())
