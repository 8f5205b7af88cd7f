"""A plugin defined only here joins the chain without a change anywhere else: the worked example of README's
"How to add a plugin".

`TxtPlugin` is what a module dns_server/plugins/<directive>.py would hold: a setup that reads its directive
with config.setup.Reader, a Handler, and a PluginSpec.  Its directive, `DIRECTIVE TEXT`, answers TXT with
TEXT for every name in the block's zones and passes every other type to the next plugin.

Where it can sit: config.build refuses a directive that is not in config.model.PLUGIN_ORDER (CoreDNS's
plugin.cfg) as `Unknown directive`, and runs the setups and orders the chain by that list.  So a plugin
added from outside takes the name of a CoreDNS directive this server does not implement: `route53`
(between `hosts` and `kubernetes` in plugin.cfg; it serves AWS Route 53 zones, which this server never
will), given to `build_config` and `chain_for` through their
`plugins=` parameter.  A directive CoreDNS does not have needs a line in PLUGIN_ORDER (a code change);
the last test pins that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import dns.rcode
import pytest
from dnslib import QTYPE

from dns_server.chain.chain import Chain
from dns_server.chain.plugin import Handler, Next, PluginSpec, Request
from dns_server.config.corefile import parse_text
from dns_server.config.model import PLUGIN_ORDER, Config, ServerBlock
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import CorefileError, Directive
from dns_server.plugins import PLUGINS, build_config, chain_for
from dns_server.protocol.answer import RR, Answer, Outcome
from dns_server.protocol.names import in_zone
from dns_server.serving.answer_table import View
from dns_server.serving.router import Block, Pipeline
from tests.cluster_data import example_records, registry_with
from tests.doubles import UPSTREAM, Z, ask, connect, outbound_for

# --- the plugin: what dns_server/plugins/route53.py would hold --------------------------------------------

DIRECTIVE = "route53"  # a CoreDNS directive this server does not implement (see the module docstring)
TXT = QTYPE.TXT
TTL = 30


@dataclass(frozen=True, slots=True)
class TxtSettings:
    text: str


def setup(found: Sequence[Directive], context: SetupContext) -> TxtSettings:
    """`route53 TEXT`, once per server block, no options."""
    plugin = Reader(DIRECTIVE)
    directive = plugin.once(found)
    text = plugin.one_arg(directive)
    plugin.no_options(directive)
    return TxtSettings(text.text)


class TxtHandler(Handler):
    def __init__(self, settings: TxtSettings, block: ServerBlock) -> None:
        self.text = settings.text
        self.zones = block.zones

    def serve(self, request: Request, next: Next) -> Answer:
        if request.qtype == TXT and any(in_zone(request.name, zone) for zone in self.zones):
            return request.reads.answer(Outcome.ANSWER, (RR(request.name, TXT, TTL, self.text),), plugin=DIRECTIVE)
        return next(request)


TxtPlugin = PluginSpec(DIRECTIVE, setup, TxtHandler, in_chain=True)
WITH_TXT = tuple(spec for spec in PLUGINS if spec.name != DIRECTIVE) + (TxtPlugin,)  # our plugin.cfg, plus it

# --- a Corefile that uses it ---------------------------------------------------------------------------------

TEXT = "hello from a test plugin"
# The directives in an order unlike plugin.cfg's: the chain must not follow it.
COREFILE = f"""\
{Z}:5353 {{
    forward . {UPSTREAM}
    kubernetes {Z}
    route53 "{TEXT}"
    cache 30
    loadbalance
}}
"""
SNAPSHOT = registry_with(example_records()).snapshot


def config(text: str = COREFILE) -> Config:
    return build_config(parse_text(text, env={}), plugins=WITH_TXT)


def chain(text: str = COREFILE) -> Chain:
    (block,) = config(text).blocks
    return chain_for(block, WITH_TXT)


def resolve(name: str, qtype: int) -> Answer:
    return chain().resolve(name, qtype, SNAPSHOT)


def records(answer: Answer) -> list[tuple[str, int, object]]:
    return [(rr.name, rr.rtype, rr.data) for rr in answer.answer]


# --- the chain -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [f"frontend.shop.svc.{Z}", f"nothing.here.{Z}", Z])
def test_it_answers_txt_for_every_name_in_the_zone(name: str) -> None:
    answer = resolve(name, TXT)
    assert (answer.outcome, answer.plugin) == (Outcome.ANSWER, DIRECTIVE)
    assert records(answer) == [(name, TXT, TEXT)]


def test_it_comes_before_kubernetes_which_has_a_txt_record_of_its_own() -> None:
    """`dns-version.Z TXT` is kubernetes's answer ("1.1.0") when the plugin is not in the block."""
    without = build_config(parse_text(COREFILE.replace(f'    route53 "{TEXT}"\n', ""), env={}), plugins=WITH_TXT)
    assert records(chain_for(without.blocks[0], WITH_TXT).resolve(f"dns-version.{Z}", TXT, SNAPSHOT)) == [
        (f"dns-version.{Z}", TXT, "1.1.0")]
    assert records(resolve(f"dns-version.{Z}", TXT)) == [(f"dns-version.{Z}", TXT, TEXT)]


def test_other_types_go_to_the_next_plugin() -> None:
    found = resolve(f"frontend.shop.svc.{Z}", QTYPE.A)
    assert (found.outcome, found.plugin) == (Outcome.ANSWER, "kubernetes")
    assert records(found) == [(f"frontend.shop.svc.{Z}", QTYPE.A, "10.96.10.20")]
    missing = resolve(f"nothing.here.{Z}", QTYPE.A)
    assert (missing.outcome, missing.plugin) == (Outcome.NXDOMAIN, "kubernetes")


def test_names_outside_the_zone_go_to_the_next_plugin() -> None:
    """The router sends a block only its zones' names; the chain alone can be asked any (kubernetes passes it on)."""
    assert resolve("www.example.com", TXT).outcome is Outcome.FORWARD


def test_it_sits_where_plugin_cfg_puts_it_whatever_the_corefile_order() -> None:
    assert PLUGIN_ORDER.index("loadbalance") < PLUGIN_ORDER.index(DIRECTIVE) < PLUGIN_ORDER.index("kubernetes")
    (block,) = config().blocks
    assert block.directives == ("loadbalance", "cache", DIRECTIVE, "kubernetes", "forward")
    assert list(chain().handlers) == ["loadbalance", DIRECTIVE, "kubernetes", "forward"]  # cache acts outside


@pytest.mark.parametrize("line, location, after", [
    ("route53", "Corefile:4", "route53"),  # no text
    ("route53 one two", "Corefile:4", "two"),  # two
])
def test_a_bad_argument_is_refused_with_the_file_and_line(line: str, location: str, after: str) -> None:
    text = f"{Z}:5353 {{\n    kubernetes {Z}\n\n    {line}\n}}\n"
    with pytest.raises(CorefileError) as error:
        config(text)
    assert str(error.value) == (f"plugin/route53: {location} - Error during parsing: "
                                f"Wrong argument count or unexpected line ending after '{after}'")


def test_a_second_directive_in_one_block_is_refused() -> None:
    with pytest.raises(CorefileError, match=r"^plugin/route53: Corefile:3 - Error during parsing: this plugin can "
                                            r"only be used once per Server Block$"):
        config(f"{Z}:5353 {{\n    route53 a\n    route53 b\n}}\n")


def test_without_its_spec_the_directive_is_not_supported() -> None:
    """What makes the directive known is the spec passed in `plugins=`, nothing else."""
    with pytest.raises(CorefileError, match=r"^Corefile:4 - Error during parsing: plugin 'route53' is not "
                                            r"supported by this server$"):
        build_config(parse_text(COREFILE, env={}))


def test_a_directive_coredns_does_not_have_needs_a_line_in_plugin_order() -> None:
    """The limit of adding a plugin from outside: the name must be in config.model.PLUGIN_ORDER."""
    renamed = PluginSpec("answer_txt", setup, TxtHandler, in_chain=True)
    with pytest.raises(CorefileError, match=r"^Corefile:2 - Error during parsing: Unknown directive 'answer_txt'$"):
        build_config(parse_text(f"{Z}:5353 {{\n    answer_txt hello\n}}\n", env={}), plugins=PLUGINS + (renamed,))


# --- through the router --------------------------------------------------------------------------------------

def pipeline() -> Pipeline:
    """One listener over the example cluster, its block built from COREFILE, wired as the runtime wires it."""
    (settings,) = config().blocks
    registry = registry_with(example_records())
    view = View(registry.snapshot)
    served = Block(settings, view, chain_for(settings, WITH_TXT), outbound_for(settings))
    result = Pipeline([(zone, served) for zone in settings.zones])
    connect(registry, view, result)
    return result


def test_through_the_router_the_plugin_answers_txt_and_kubernetes_the_rest() -> None:
    served = pipeline()
    for _ in range(2):  # the second time from the answer table
        txt = ask(served, f"frontend.shop.svc.{Z}", "TXT")
        assert txt.rcode() == dns.rcode.NOERROR
        assert [rrset.to_text() for rrset in txt.answer] == [f'frontend.shop.svc.{Z}. {TTL} IN TXT "{TEXT}"']
        a = ask(served, f"frontend.shop.svc.{Z}", "A")
        assert [rrset.to_text() for rrset in a.answer] == [f"frontend.shop.svc.{Z}. 5 IN A 10.96.10.20"]
    assert len(served.table) == 2  # both answers kept under their question: the plugin's is an answer like any
