"""The `rewrite` plugin: the question rewritten before the rest of the chain, the reply written back (CoreDNS 1.14).

Rules (setup.py, rules.py, edns0.py): `name` (exact, prefix, suffix, substring, regex with `{n}`
groups, and `answer auto|name|value`), `type`, `class`, `ttl` (a value or a range), `rcode`,
`edns0` (`local`, `nsid`, `subnet`: `set`, `append`, `replace`, `unset`, and `revert`), `cname`
(cname.py); each `stop` (the default) or `continue`.  All `rewrite` directives of a block are one ordered list.
The rules run on the question as asked; a rule that applies hands the question it made to the
next rule, and a `stop` rule that applies ends the list.  A name that is not a domain name after a rewrite is
SERVFAIL ("invalid name after rewrite").

Design: the rewrite is a handler, not a step of the router.  `serve` runs the rules and calls
`next` with the rewritten question (`Request.renamed`), then writes the answer back
(`rules.Reverse.answer`): owner names and the names inside records by the collected `answer` rules
(an exact rule always maps its new name back; `auto` does for the others), TTLs clamped, the rcode
replaced.  The router encodes that answer to the client's own question, so the client sees its
name, type, class and case; the answer table keeps it under the question as asked, with the
snapshot entries the rewritten question read, so a cluster change drops it as it drops any other.
The rewritten question is thereby answered (and cached) once per name asked, not once for all the
names rewritten to it: CoreDNS's chain does the same work per question, and keeping the table's
lookup before the chain keeps the hot path one dict lookup whatever the rules.  A question the
chain sends upstream (FORWARD, or an ExternalName's target: CHASE) comes back with a
`relay.Rewritten`: the router asks upstream, and the forward cache, for the rewritten question,
which names rewritten to it share, and passes every reply it relays through `Rewritten.restore`.

EDNS options.  The request carries its OPT record's options as received (`Request.options`); only
a block with edns0 rules reads them (`edns0.Edns`), those of the codes its rules name, and the
rules edit that list.  What matters of it is what goes upstream: the relay carries the edited
options inside its question key (`wire.with_options`), so the forwarder sends them and the forward
cache and the exchanges in flight keep each set of options apart; a cluster answer does not depend
on them.  The answer table keeps an answer for everyone only when its options are the same for
everyone: an answer forwarded with a client's address, port or transport in its options, or with
options the client itself sent of the named codes, records the CLIENT dependency; a kept relay is
not used for a query that carries such options (`Rewritten.fits`: it takes the slow path); and a
`stop` edns0 rule that applies to some requests only (`replace`, a variable's or a subnet's) makes
every answer after it CLIENT, since it decides which rules follow.  Differences from CoreDNS: the
client's other options do not go upstream (they never do here); a query without EDNS gets none
in its reply even when a rule gave the upstream query an OPT record; `{qname}` is the name lower
case; `revert` is accepted and changes nothing, since replies never carry the upstream's options
(they are what it would remove or restore); metadata labels as variables are refused at start.

CNAME targets (`cname`).  A cname rule applies to every question (a `stop` one ends the list) and
gives the answer a `cname.Retarget` (`Answer.follow`) when its reply may hold a CNAME: a forwarded
or chased one always, one the chain made when it has a CNAME.  The router makes that reply, and when
a rule retargets its CNAME, asks the whole server for the new target (CoreDNS's upstream.Lookup:
any block, its rewrite rules again) and joins the two.  Such a reply is never kept in the answer
table: it is made again each time, from the forward cache's entries (which end with their TTLs) and
the table's entries for the new target (which a cluster change drops).  Differences from CoreDNS:
only the first CNAME a rule matches is retargeted (CoreDNS goes on through the old records and
looks up again for each further match); the new target is asked with the client's type, even when
a `type` rule changed it; a target looked up again eight times for one query ends there (CoreDNS
has no bound: a rule to the same name recurses without end).

Not supported, refused at start by name: a replacement rcode above 15.  Unlike CoreDNS, a reply never shows the rewritten question,
even when only `continue` rules without response rules applied (CoreDNS then restores nothing).
"""

from __future__ import annotations

from dns_server.chain.plugin import CLIENT, Handler, Next, PluginSpec, Request
from dns_server.config.model import ServerBlock
from dns_server.plugins.rewrite.cname import CnameRule, Retarget
from dns_server.plugins.rewrite.edns0 import Edns, Edns0Rule
from dns_server.plugins.rewrite.relay import Rewritten
from dns_server.plugins.rewrite.rules import STOP, Question, ResponseRule, Reverse, fqdn
from dns_server.plugins.rewrite.setup import NAME, RewriteSettings, setup
from dns_server.protocol.answer import Answer, Outcome
from dns_server.protocol.codes import CNAME
from dns_server.protocol.names import valid_domain
from dns_server.protocol.wire import FormErr, name_to_wire

__all__ = ["NAME", "PLUGIN", "Rewrite", "RewriteSettings"]


class Rewrite(Handler):
    def __init__(self, settings: RewriteSettings, block: ServerBlock) -> None:
        self.rules = settings.rules
        self.codes = frozenset(rule.code for rule in self.rules if isinstance(rule, Edns0Rule))
        # a `stop` edns0 rule that applies or not depending on the request decides which rules follow
        self.deciding = frozenset(index for index, rule in enumerate(self.rules[:-1])
                                  if isinstance(rule, Edns0Rule) and rule.mode == STOP and rule.decided_by_request)

    def serve(self, request: Request, next: Next) -> Answer:
        asked = Question(fqdn(request.name), request.qtype, request.qclass)
        question = asked
        collected: list[ResponseRule] = []
        applied = False
        edns: Edns | None = None
        decided = False
        retargets: list[CnameRule] = []
        for index, rule in enumerate(self.rules):
            if isinstance(rule, CnameRule):
                retargets.append(rule)
            elif isinstance(rule, Edns0Rule):
                if edns is None:
                    edns = Edns(request, self.codes)
                decided = decided or index in self.deciding
                if not rule.edit(edns, question.name, question.qtype):
                    continue
            else:
                done = rule.apply(question)
                if done is None:
                    continue
                question, responses = done
                name = question.name[:-1] if question.name.endswith(".") else question.name
                if not question.name.endswith(".") or not valid_domain(name):
                    return request.reads.answer(Outcome.SERVFAIL, reason=f"invalid name after rewrite: {question.name}")
                applied = True
                collected.extend(responses)
            if rule.mode == STOP:
                break
        if not applied and edns is None and not retargets:
            return next(request)
        name = question.name[:-1]
        answer = next(request.renamed(name, question.qtype, question.qclass) if applied else request)
        if not applied and edns is None:  # cname rules alone
            return _retargeted(answer, retargets, question.qtype)
        if decided:
            answer = answer._replace(depends=answer.depends | {CLIENT})
        reverse = Reverse.of(collected)
        if answer.outcome is Outcome.FORWARD or answer.outcome is Outcome.CHASE:
            try:
                wire = name_to_wire(name)
            except (FormErr, UnicodeError):
                return request.reads.answer(Outcome.SERVFAIL, reason=f"invalid name after rewrite: {question.name}")
            options = b""
            if edns is not None:
                options = edns.wire()
                if edns.per_client:
                    answer = answer._replace(depends=answer.depends | {CLIENT})
            relay = Rewritten(name, wire, question.qtype, question.qclass, reverse, options, self.codes)
            return _retargeted(answer, retargets, question.qtype)._replace(relay=relay)
        return _retargeted(reverse.answer(answer) if applied else answer, retargets, question.qtype)


def _retargeted(answer: Answer, rules: list[CnameRule], qtype: int) -> Answer:
    """The answer with the cname rules to follow, if its reply may have a CNAME (the router reads the reply)."""
    if rules and (answer.outcome is Outcome.FORWARD or answer.outcome is Outcome.CHASE
                  or any(rr.rtype == CNAME for rr in answer.answer)):
        return answer._replace(follow=Retarget(tuple(rules[::-1]), qtype))
    return answer


PLUGIN = PluginSpec(NAME, setup, Rewrite, in_chain=True)
