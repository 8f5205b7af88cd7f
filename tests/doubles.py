"""Values the unit tests build again and again, socket-free.

- `block(**options)`: the server block the command-line flags make (`.:5353`, kubernetes for
  cluster.local and the reverse zones, forward to one upstream, cache, errors), with kubernetes
  options and block fields replaced by name.
- `pipeline_for(records, ...)`: one listener's pipeline over a registry of those records, wired as
  the runtime wires it (the registry's publications reach the answer table through the view).
- `FakeForwarder`: a `forward` directive's upstreams without sockets, answering from `RECORDS`;
  it stands where `forward.Forwarder` stands, in front of the real `Outbound` and `ForwardCache`.
- `ask` / `reply_of`: a dnspython query through a pipeline, a Forward finished as a transport would.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Callable, Iterable

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from dns_server.cli import build_parser, config_from_args
from dns_server.cluster.records import (
    Endpoint,
    EndpointSlice,
    Namespace,
    Port,
    Record,
    Service,
)
from dns_server.cluster.registry import Registry
from dns_server.cluster.snapshot import Change, Snapshot
from dns_server.config.model import PLUGIN_ORDER, ServerBlock, ZoneKey
from dns_server.observability.metrics import QueryMetrics
from dns_server.plugins import chain_for
from dns_server.plugins.bufsize import bufsize_of
from dns_server.plugins.cache import ForwardCache
from dns_server.plugins.forward.outbound import Outbound
from dns_server.plugins.forward.setup import ForwardSettings, Upstream
from dns_server.plugins.hosts import Hosts, HostsTable
from dns_server.plugins.kubernetes.setup import KubernetesSettings
from dns_server.protocol import client_subnet
from dns_server.protocol.answer import Answer
from dns_server.protocol.wire import query_for_key
from dns_server.serving.answer_table import AnswerTable, View
from dns_server.serving.router import Block, Forward, Pipeline
from tests.clock import Clock
from tests.cluster_data import example_records, registry_with

Z = "cluster.local"
UPSTREAM = "192.0.2.53"
FLAGS = ["--upstream", UPSTREAM, "--listen", "127.0.0.1:5353"]
FLAGS_BLOCK = config_from_args(build_parser().parse_args(FLAGS)).blocks[0]

_KUBERNETES_FIELDS = {field.name for field in dataclasses.fields(KubernetesSettings)}


def block(**options: Any) -> ServerBlock:
    """The flags' server block; each option replaces a kubernetes setting or a directive's settings of that name.

    A directive set to None (or, for `forward`, to ()) is left out of the block.
    """
    if "keys" in options:
        return dataclasses.replace(block(**{k: v for k, v in options.items() if k != "keys"}), keys=options["keys"])
    unknown = set(options) - _KUBERNETES_FIELDS - set(PLUGIN_ORDER)
    if unknown:
        raise TypeError(f"neither a kubernetes setting nor a directive: {sorted(unknown)}")
    kubernetes = dataclasses.replace(FLAGS_BLOCK.setting("kubernetes"),
                                     **{k: v for k, v in options.items() if k in _KUBERNETES_FIELDS})
    result = FLAGS_BLOCK.with_setting("kubernetes", kubernetes)
    for directive, settings in options.items():
        if directive in PLUGIN_ORDER and directive not in _KUBERNETES_FIELDS:
            result = result.with_setting(directive, settings if settings or settings == 0 else None)
    return result


def server_block(keys: tuple[ZoneKey, ...], *, location: str = "", **directives: Any) -> ServerBlock:
    """A server block with these directives' settings (a directive given None, False or () is left out)."""
    result = ServerBlock(keys, location=location)
    for directive, settings in directives.items():
        result = result.with_setting(directive, settings if settings or settings == 0 else None)
    return result


def resolve(name: str, qtype: int, snapshot: Snapshot, settings: ServerBlock, hosts: HostsTable | None = None) -> Answer:
    """The answer of `settings`'s chain (built for this question), with `hosts` as its hosts table."""
    chain = chain_for(settings)
    handler = chain.handler("hosts")
    if isinstance(handler, Hosts) and hosts is not None:
        handler.table = hosts
    return chain.resolve(name, qtype, snapshot)


def forward_to(from_zone: str = "", *, upstream: str = UPSTREAM, **settings: Any) -> ForwardSettings:
    """One `forward FROM UPSTREAM` directive."""
    return ForwardSettings(from_zone, (Upstream(upstream),), **settings)


def big_headless(count: int) -> list[Record]:
    """The example cluster plus `many.big.svc.Z`: a headless service with `count` ready endpoints (port http/80)."""
    endpoints = tuple(Endpoint((f"10.1.{i // 250}.{i % 250 + 1}",), True, "", "") for i in range(count))
    http = (Port("http", "TCP", 80),)
    return example_records() + [Namespace("big"), Service("big", "many", (), True, "", http),
                                EndpointSlice("big", "many-1", "many", endpoints, http)]


# What the fake upstreams know: (name, type) -> [(TTL, rdata text)]; anything else is NXDOMAIN.
RECORDS: dict[tuple[str, str], list[tuple[int, str]]] = {
    ("www.example.com.", "A"): [(300, "192.0.2.10")],
    ("api.payments.example.com.", "A"): [(300, "192.0.2.20")],
    ("9.9.96.10.in-addr.arpa.", "PTR"): [(300, "upstream.example.com.")],
    ("big.example.com.", "TXT"): [(300, f'"{c * 200}"') for c in "abcdef"],
}
UPSTREAM_SOA = "ns.example.com. h.example.com. 1 7200 1800 86400 60"


def canned_reply(query: dns.message.Message) -> dns.message.Message:
    """The reply an upstream that knows RECORDS gives (NXDOMAIN with example.com's SOA otherwise)."""
    question = query.question[0]
    reply = dns.message.make_response(query)
    found = RECORDS.get((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
    if found is None:
        reply.set_rcode(dns.rcode.NXDOMAIN)
        reply.authority.append(dns.rrset.from_text("example.com.", 300, "IN", "SOA", UPSTREAM_SOA))
    for ttl, text in found or []:
        reply.answer.append(dns.rrset.from_text(question.name, ttl, "IN", question.rdtype, text))
    return reply


class RejectCounter:
    """The part of forward.ProxyMetrics the outbound side reports to."""

    def __init__(self) -> None:
        self.rejections = 0

    def rejected(self) -> None:
        self.rejections += 1


Responder = Callable[[dns.message.Message], "dns.message.Message | bytes"]


class FakeForwarder:
    """`forward.Forwarder` without sockets: `exchange` answers with `respond(query)` (a message, or raw bytes).

    `gate` (set it to an unset asyncio.Event) holds every exchange until it is set; `fail` makes
    exchanges raise; `full` makes the forwarder saturated.  `asked` lists the names asked, in order.
    """

    def __init__(self, settings: ForwardSettings | None = None, respond: Responder = canned_reply) -> None:
        self.settings = settings or forward_to()
        self.respond = respond
        self.metrics = RejectCounter()
        self.asked: list[str] = []
        self.queries: list[dns.message.Message] = []
        self.full = False
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None

    def saturated(self) -> bool:
        return self.full

    async def exchange(self, key: bytes, payload: int, via_tcp: bool, client: str | None = None) -> bytes:
        options = client_subnet.option(client, scoped=False) if client and self.settings.client_subnet else b""
        query = dns.message.from_wire(query_for_key(key, 7, payload, options))
        self.asked.append(query.question[0].name.to_text())
        self.queries.append(query)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        reply = self.respond(query)
        return reply if isinstance(reply, bytes) else reply.to_wire(max_size=65535)

    async def close(self) -> None:
        pass


def outbound_for(settings: ServerBlock, forwarders: list[FakeForwarder] | None = None,
                 clock: Callable[[], float] | None = None) -> Outbound:
    """The block's outbound side as the runtime builds it, over fake forwarders."""
    fakes = forwarders if forwarders is not None else [FakeForwarder(f) for f in settings.setting("forward")]
    cache = ForwardCache(settings.setting("cache"), settings.zones) if settings.setting("cache") is not None else None
    return Outbound(fakes, [f.settings.handles for f in fakes], cache, bufsize_of(settings),  # type: ignore[arg-type]
                    clock or Clock())


def connect(registry: Registry, view: View, pipeline: Pipeline) -> None:
    """Deliver the registry's publications to the pipeline, as runtime.Cluster.deliver does on the loop."""

    def deliver(snapshot: Snapshot, change: Change) -> None:
        serial_changed = snapshot.serial != view.snapshot.serial
        view.snapshot = snapshot
        pipeline.publish(view, change, serial_changed)

    registry.subscribe(deliver)


def pipeline_for(records: Iterable[Record] | None = None, *, settings: ServerBlock | None = None,
                 registry: Registry | None = None, forwarders: list[FakeForwarder] | None = None,
                 hosts: HostsTable | None = None, clock: Callable[[], float] | None = None,
                 table: AnswerTable | None = None, metrics: QueryMetrics | None = None,
                 local: tuple[str, int] = ("", 0)) -> Pipeline:
    """A pipeline with one block (the flags' by default) over a registry of `records` (the example cluster);
    `local`: the listener's address and port."""
    settings = settings or block()
    if registry is None:
        registry = registry_with(records if records is not None else example_records())
    view = View(registry.snapshot)
    outbound = outbound_for(settings, forwarders, clock) if settings.setting("forward") else None
    chain = chain_for(settings)
    handler = chain.handler("hosts")
    if isinstance(handler, Hosts) and hosts is not None:
        handler.table = hosts
    served = Block(settings, view, chain, outbound)
    pipeline = Pipeline([(zone, served) for zone in settings.zones], table=table, metrics=metrics,
                        local=local[0], port=local[1])
    connect(registry, view, pipeline)
    return pipeline


def the_block(pipeline: Pipeline) -> Block:
    """The block of a one-block pipeline."""
    (block_,) = {id(b): b for _, b in pipeline.routes}.values()
    return block_


def fakes(pipeline: Pipeline) -> list[FakeForwarder]:
    outbound = the_block(pipeline).outbound
    assert outbound is not None
    return outbound.forwarders  # type: ignore[return-value]


def reply_of(pipeline: Pipeline, data: bytes, via_tcp: bool = False) -> bytes:
    """The pipeline's reply to raw query bytes, a Forward finished the way a transport does."""
    reply = pipeline.handle(data, via_tcp)
    if isinstance(reply, Forward):
        reply = asyncio.run(pipeline.complete(reply))
    assert isinstance(reply, bytes)
    return reply


def ask(pipeline: Pipeline, query: dns.message.Message | str, qtype: str = "A", via_tcp: bool = False,
        **options: Any) -> dns.message.Message:
    """The reply to a query (or to a query for `name qtype` made with `options`), read by dnspython."""
    if isinstance(query, str):
        query = dns.message.make_query(query, qtype, **options)
    return dns.message.from_wire(reply_of(pipeline, query.to_wire(), via_tcp))
