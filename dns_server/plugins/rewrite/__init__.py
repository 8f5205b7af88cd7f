"""The `rewrite` plugin: the question rewritten before the rest of the chain, the reply written back (CoreDNS 1.14).

Rules (setup.py, rules.py): `name` (exact, prefix, suffix, substring, regex with `{n}` groups, and
`answer auto|name|value`), `type`, `class`, `ttl` (a value or a range), `rcode`; each `stop` (the
default) or `continue`.  All `rewrite` directives of a block are one ordered list.  The rules run
on the question as asked; a rule that applies hands the question it made to the next rule, and a
`stop` rule that applies ends the list.  A name that is not a domain name after a rewrite is
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

Not supported, refused at start by name: the `edns0` rules (the upstream query is made from the
question key alone, so an option could not reach it) and `cname` rules (a second lookup during the
reply); a replacement rcode above 15.  Unlike CoreDNS, a reply never shows the rewritten question,
even when only `continue` rules without response rules applied (CoreDNS then restores nothing).
"""

from __future__ import annotations

from dns_server.chain.plugin import Handler, Next, PluginSpec, Request
from dns_server.config.model import ServerBlock
from dns_server.plugins.rewrite.relay import Rewritten
from dns_server.plugins.rewrite.rules import STOP, Question, ResponseRule, Reverse, fqdn
from dns_server.plugins.rewrite.setup import NAME, RewriteSettings, setup
from dns_server.protocol.answer import Answer, Outcome
from dns_server.protocol.names import valid_domain
from dns_server.protocol.wire import FormErr, name_to_wire

__all__ = ["NAME", "PLUGIN", "Rewrite", "RewriteSettings"]


class Rewrite(Handler):
    def __init__(self, settings: RewriteSettings, block: ServerBlock) -> None:
        self.rules = settings.rules

    def serve(self, request: Request, next: Next) -> Answer:
        asked = Question(fqdn(request.name), request.qtype, request.qclass)
        question = asked
        collected: list[ResponseRule] = []
        applied = False
        for rule in self.rules:
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
        if not applied:
            return next(request)
        name = question.name[:-1]
        answer = next(request.renamed(name, question.qtype, question.qclass))
        reverse = Reverse.of(collected)
        if answer.outcome is Outcome.FORWARD or answer.outcome is Outcome.CHASE:
            try:
                wire = name_to_wire(name)
            except (FormErr, UnicodeError):
                return request.reads.answer(Outcome.SERVFAIL, reason=f"invalid name after rewrite: {question.name}")
            return answer._replace(relay=Rewritten(name, wire, question.qtype, question.qclass, reverse))
        return reverse.answer(answer)


PLUGIN = PluginSpec(NAME, setup, Rewrite, in_chain=True)
