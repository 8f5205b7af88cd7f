"""The rewrite rules and the response rules they collect, as CoreDNS 1.14's plugin/rewrite has them (pure).

A rule sees the question as CoreDNS's rules see it: the name lower case and fully qualified (with
the trailing dot), the type, the class.  `Rule.apply` gives the question it rewrites to and the
response rules it adds, or None when it does not apply.  A `Reverse` holds the response rules
collected for one question and writes a reply back with them, the last collected first (CoreDNS's
ResponseReverter): owner names, the names inside records (of SRV, MX, CNAME, NS, DNAME, NAPTR,
SOA's MNAME, PTR), TTLs, and the rcode, which CoreDNS rewrites once per record of the reply (once
when there is none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Union, cast

from dns_server.protocol.answer import RR, Answer, RData, SoaData, SrvData
from dns_server.protocol.codes import CNAME, NS, PTR, SOA, SRV

STOP, CONTINUE = "stop", "continue"
EXACT, PREFIX, SUFFIX, SUBSTRING, REGEX = "exact", "prefix", "suffix", "substring", "regex"
MATCH_TYPES = (EXACT, PREFIX, SUFFIX, SUBSTRING, REGEX)
DNAME, NAPTR = 39, 35  # in replies from upstream only


class Question(NamedTuple):
    name: str  # lower case, fully qualified: "www.example.org."
    qtype: int
    qclass: int


def fqdn(name: str) -> str:
    """A request's name (no trailing dot; the root "") as the rules read it."""
    return name + "."


def substitute(replacement: str, match: re.Match[str]) -> str:
    """`{0}`..`{n}` in `replacement` filled with the match's groups, one after the other, as CoreDNS does."""
    for index in range(len(match.groups()) + 1):
        replacement = replacement.replace("{" + str(index) + "}", match.group(index) or "")
    return replacement


# -- string rewriters: a name -> the name written back ---------------------------------------------

@dataclass(frozen=True, slots=True)
class Remap:
    """`orig` and the names below it mapped to `replacement` (answer auto of exact, prefix, substring, regex)."""

    orig: str
    replacement: str

    def __call__(self, name: str) -> str:
        if name == self.orig:
            return self.replacement
        cut = len(name) - len(self.orig)
        if cut > 0 and name[cut - 1] == "." and name.endswith(self.orig):
            return name[:cut] + self.replacement
        return name


@dataclass(frozen=True, slots=True)
class SwapSuffix:
    """A name ending in `suffix` gets `replacement` instead (answer auto of a suffix rule)."""

    suffix: str
    replacement: str

    def __call__(self, name: str) -> str:
        if name.endswith(self.suffix):
            return name[:len(name) - len(self.suffix)] + self.replacement
        return name


@dataclass(frozen=True, slots=True)
class RegexReplace:
    """A name the pattern matches becomes `replacement` with its groups (answer name, answer value)."""

    pattern: re.Pattern[str]
    replacement: str

    def __call__(self, name: str) -> str:
        match = self.pattern.search(name)
        return name if match is None else substitute(self.replacement, match)


Rewriter = Callable[[str], str]


# -- response rules ----------------------------------------------------------------------------------

class OwnerRule(NamedTuple):
    rewriter: Rewriter


class ValueRule(NamedTuple):
    rewriter: Rewriter


class TtlRule(NamedTuple):
    low: int
    high: int


class RcodeRule(NamedTuple):
    old: int
    new: int


ResponseRule = Union[OwnerRule, ValueRule, TtlRule, RcodeRule]


class Reverse(NamedTuple):
    """The response rules collected for one question, each kind in the order they apply (last collected first)."""

    owners: tuple[Rewriter, ...]
    values: tuple[Rewriter, ...]
    ttls: tuple[TtlRule, ...]
    rcodes: tuple[RcodeRule, ...]

    @classmethod
    def of(cls, collected: list[ResponseRule]) -> Reverse:
        last_first = collected[::-1]
        return cls(tuple(rule.rewriter for rule in last_first if isinstance(rule, OwnerRule)),
                   tuple(rule.rewriter for rule in last_first if isinstance(rule, ValueRule)),
                   tuple(rule for rule in last_first if isinstance(rule, TtlRule)),
                   tuple(rule for rule in last_first if isinstance(rule, RcodeRule)))

    def owner(self, name: str) -> str:
        """A fully qualified name (an owner) written back."""
        for rewrite in self.owners:
            name = rewrite(name)
        return name

    def value(self, name: str) -> str:
        """A fully qualified name inside a record written back."""
        for rewrite in self.values:
            name = rewrite(name)
        return name

    def ttl(self, ttl: int) -> int:
        for rule in self.ttls:
            if ttl < rule.low:
                ttl = rule.low
            elif ttl > rule.high:
                ttl = rule.high
        return ttl

    def rcode(self, rcode: int, records: int) -> int:
        """The reply's rcode after CoreDNS's rcode rules, which it applies once per record (once for none)."""
        for _ in range(max(records, 1) if self.rcodes else 0):
            for rule in self.rcodes:
                if rcode == rule.old:
                    rcode = rule.new
        return rcode

    def answer(self, answer: Answer) -> Answer:
        """An answer from the chain written back (FORWARD and CHASE are written back upstream's: `relay`)."""
        sections = [tuple(self._record(rr) for rr in section)
                    for section in (answer.answer, answer.authority, answer.additional)]
        rotations = tuple(tuple(self._record(rr) for rr in records) for records in answer.rotations)
        rcode = self.rcode(answer.rcode, sum(map(len, sections))) if self.rcodes else answer.set_rcode
        return answer._replace(answer=sections[0], authority=sections[1], additional=sections[2],
                               rotations=rotations, set_rcode=rcode)

    def _record(self, rr: RR) -> RR:
        name = _relative(self.owner(fqdn(rr.name))) if self.owners else rr.name
        data: RData = rr.data
        if self.values:
            if rr.rtype in (CNAME, NS, PTR):
                data = _relative(self.value(fqdn(cast(str, data))))
            elif rr.rtype == SRV:
                priority, weight, port, target = cast(SrvData, data)
                data = (priority, weight, port, _relative(self.value(fqdn(target))))
            elif rr.rtype == SOA:
                soa = cast(SoaData, data)
                data = (_relative(self.value(fqdn(soa[0]))), *soa[1:])
        return RR(name, rr.rtype, self.ttl(rr.ttl), data)


def _relative(name: str) -> str:
    """A fully qualified name as a record holds it: no trailing dot, the root "", lower case."""
    return (name[:-1] if name.endswith(".") else name).lower()


# -- rules ---------------------------------------------------------------------------------------------

class Matcher(NamedTuple):
    """How a rule matches a name: exact, prefix, suffix, substring (against `text`) or regex (`pattern`)."""

    kind: str
    text: str = ""
    pattern: Optional[re.Pattern[str]] = None

    def matches(self, name: str) -> bool:
        kind = self.kind
        if kind == EXACT:
            return name == self.text
        if kind == PREFIX:
            return name.startswith(self.text)
        if kind == SUFFIX:
            return name.endswith(self.text)
        if kind == SUBSTRING:
            return self.text in name
        assert self.pattern is not None
        return self.pattern.search(name) is not None


Applied = Optional[tuple[Question, tuple[ResponseRule, ...]]]


class NameRule(NamedTuple):
    """`name [TYPE] FROM TO [answer ...]`: the question's name rewritten; `auto` adds the way back."""

    mode: str
    match: Matcher
    to: str
    auto: bool  # exact: always; suffix: its swap is in `answers` already
    answers: tuple[ResponseRule, ...]

    def apply(self, question: Question) -> Applied:
        name = question.name
        kind, text = self.match.kind, self.match.text
        if kind == EXACT:
            renamed = self.to if name == text else None
        elif kind == PREFIX:
            renamed = self.to + name[len(text):] if name.startswith(text) else None
        elif kind == SUFFIX:
            renamed = name[:len(name) - len(text)] + self.to if name.endswith(text) else None
        elif kind == SUBSTRING:
            renamed = name.replace(text, self.to) if text in name else None
        else:
            assert self.match.pattern is not None
            found = self.match.pattern.search(name)
            renamed = None if found is None else substitute(self.to, found)
        if renamed is None:
            return None
        responses = self.answers
        if self.auto:
            back = Remap(renamed, name)
            responses = (OwnerRule(back), ValueRule(back), *responses)
        return question._replace(name=renamed), responses


class TypeRule(NamedTuple):
    mode: str
    old: int
    new: int

    def apply(self, question: Question) -> Applied:
        return (question._replace(qtype=self.new), ()) if question.qtype == self.old else None


class ClassRule(NamedTuple):
    mode: str
    old: int
    new: int

    def apply(self, question: Question) -> Applied:
        return (question._replace(qclass=self.new), ()) if question.qclass == self.old else None


class ReplyRule(NamedTuple):
    """`ttl` and `rcode`: for a name that matches, the question stays and the reply gets `response`."""

    mode: str
    match: Matcher
    response: ResponseRule

    def apply(self, question: Question) -> Applied:
        return (question, (self.response,)) if self.match.matches(question.name) else None


Rule = Union[NameRule, TypeRule, ClassRule, ReplyRule]
