"""Answers kept across snapshots are exactly the answers a fresh server would give (property test).

A registry goes through random batches of changes to a small cluster whose objects collide often
(the same few names, addresses and ports), its clock moving on by 0 to 2 seconds per batch so the
SOA serial sometimes changes and sometimes not.  One pipeline keeps its answer table across every
publication, as the server does, and is asked every question of every shape before each batch;
after each batch, every answer it holds (by question key, and by the exact bytes of the queries
that made them) is compared with the reply of a pipeline built afresh on the same snapshot.  They must be identical, byte for byte.  This is the rule
`snapshot.invalidated` and the dependencies the resolver records must keep between them.  With autopath, the
answers kept per namespace meet the same rule for every client, while pods come, go and move between namespaces.
"""

from __future__ import annotations

import itertools

import dns.message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dns_server.cluster.records import (
    ENDPOINT_SLICE,
    KINDS,
    NAMESPACE,
    POD,
    SERVICE,
    Endpoint,
    EndpointSlice,
    Namespace,
    Pod,
    Port,
    Service,
)
from dns_server.cluster.registry import Registry
from dns_server.cluster.snapshot import Change, Snapshot
from dns_server.cluster.updates import Put, Remove, Replace, Update
from dns_server.config.model import Fallthrough, ServerBlock, ZoneKey
from dns_server.plugins import chain_for
from dns_server.plugins.autopath import AutopathSettings
from dns_server.plugins.bufsize import bufsize_of
from dns_server.plugins.forward.forwarder import Forwarder
from dns_server.plugins.forward.outbound import Outbound
from dns_server.plugins.forward.setup import ForwardSettings, Upstream
from dns_server.plugins.k8s_external import ExternalSettings
from dns_server.plugins.kubernetes.setup import KubernetesSettings, PodMode
from dns_server.protocol.names import REVERSE_ZONES
from dns_server.protocol.wire import query_for_key
from dns_server.serving.answer_table import View
from dns_server.serving.router import Block, Forward, Pipeline
from tests.clock import Clock
from tests.doubles import server_block

Z = "cluster.local"
NAMESPACES = ("a", "b")
SERVICES = ("s1", "s2", "h1")
CLUSTER_IPS = ("10.96.0.1", "10.96.0.2", "fd00::1")
ENDPOINT_IPS = ("10.244.0.1", "10.244.0.2", "10.244.0.3", "fd00:10::3")
HOSTNAMES = ("", "web-0", "web-1")
EXTERNAL_IPS = ("198.51.100.1", "198.51.100.2", "2001:db8::1")  # k8s_external's
EXTERNAL_ZONE, EXTERNAL_REVERSE = "example.org", "100.51.198.in-addr.arpa"
PORTS = (Port("http", "TCP", 80), Port("dns", "UDP", 53), Port("", "TCP", 8080))


def cluster_ips() -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(CLUSTER_IPS), max_size=2, unique=True).map(tuple)


services = st.builds(
    Service, st.sampled_from(NAMESPACES), st.sampled_from(SERVICES),
    cluster_ips(), st.booleans(),
    st.sampled_from(("", "", "", "s1.a.svc.cluster.local", "example.com", "h1.b.svc.cluster.local")),
    st.lists(st.sampled_from(PORTS), max_size=2, unique=True).map(tuple),
    st.lists(st.sampled_from(EXTERNAL_IPS), max_size=2, unique=True).map(tuple),
    st.sampled_from(("", "", "lb.example.com")),
).map(lambda s: Service(s.namespace, s.name, () if s.headless or s.external_name else s.cluster_ips,
                        s.headless and not s.external_name, s.external_name, s.ports, s.external_ips,
                        "" if s.external_ips else s.external_hostname))
endpoints = st.builds(Endpoint, st.lists(st.sampled_from(ENDPOINT_IPS), min_size=1, max_size=2, unique=True).map(tuple),
                      st.booleans(), st.sampled_from(HOSTNAMES), st.sampled_from(("", "pod-x")))
slices = st.builds(EndpointSlice, st.sampled_from(NAMESPACES), st.sampled_from(("e1", "e2", "e3")),
                   st.sampled_from(SERVICES), st.lists(endpoints, max_size=3).map(tuple),
                   st.lists(st.sampled_from(PORTS), max_size=2, unique=True).map(tuple))
pods = st.builds(Pod, st.sampled_from(NAMESPACES), st.sampled_from(("p1", "p2")),
                 st.lists(st.sampled_from(ENDPOINT_IPS), max_size=1).map(tuple), st.booleans(),
                 st.booleans(), st.booleans(), st.integers(0, 2))  # hostNetwork, terminating, created: autopath's claims
namespaces = st.builds(Namespace, st.sampled_from(NAMESPACES + ("c",)))
records = st.one_of(services, slices, pods, namespaces)
updates = st.one_of(
    records.map(Put),
    records.map(lambda r: Remove(r.key)),
)
batches = st.lists(st.tuples(st.lists(updates, min_size=1, max_size=4), st.integers(0, 2)), min_size=1, max_size=8)


def questions() -> list[tuple[str, str]]:
    """Every shape of name the resolver answers, over the small universe the changes draw from."""
    names: list[tuple[str, str]] = [(Z, "SOA"), (Z, "NS"), (Z, "A"), (f"ns.dns.{Z}", "A"), (f"dns-version.{Z}", "TXT"),
                                    (f"dns.{Z}", "A"), (f"nope.{Z}", "A"), (f"svc.{Z}", "A")]
    for ns in NAMESPACES + ("c",):
        names += [(f"{ns}.svc.{Z}", "A"), (f"{ns}.pod.{Z}", "A")]
        for address in ENDPOINT_IPS:
            names.append((f"{address.replace('.', '-').replace(':', '-')}.{ns}.pod.{Z}", "A"))
        for svc in SERVICES:
            base = f"{svc}.{ns}.svc.{Z}"
            names += [(base, t) for t in ("A", "AAAA", "SRV", "CNAME", "TXT")]
            names += [(f"_http._tcp.{base}", "SRV"), (f"_dns._udp.{base}", "SRV"), (f"_http._tcp.{base}", "A")]
            names += [(f"{label}.{base}", "A") for label in ("web-0", "web-1", "10-244-0-1", "pod-x")]
    for address in CLUSTER_IPS + ENDPOINT_IPS + EXTERNAL_IPS + ("10.96.9.9",):
        names.append((dns.reversename.from_address(address).to_text(omit_final_dot=True), "PTR"))
    # k8s_external (headless): the apex and its glue, and every shape of name under its zone
    names += [(EXTERNAL_ZONE, "NS"), (EXTERNAL_ZONE, "SOA"), (f"ns1.dns.{EXTERNAL_ZONE}", "A"),
              (f"{EXTERNAL_REVERSE}", "SOA")]
    for ns in NAMESPACES + ("c",):
        names.append((f"{ns}.{EXTERNAL_ZONE}", "A"))
        for svc in SERVICES:
            base = f"{svc}.{ns}.{EXTERNAL_ZONE}"
            names += [(base, t) for t in ("A", "AAAA", "SRV", "CNAME", "TXT")]
            names += [(f"_http._tcp.{base}", "SRV"), (f"_dns._udp.{base}", "A"), (f"web-0.{base}", "A")]
    return names


import dns.reversename  # noqa: E402  (used by questions())

QUESTIONS = questions()


def block() -> ServerBlock:
    kubernetes = KubernetesSettings((Z, *REVERSE_ZONES), pods=PodMode.VERIFIED, fallthrough=Fallthrough(REVERSE_ZONES),
                                    ttl=30, dns_service=("a", "s1"))
    external = ExternalSettings((EXTERNAL_ZONE, EXTERNAL_REVERSE), headless=True)
    forward = (ForwardSettings("", (Upstream("192.0.2.1"),)),)
    return server_block((ZoneKey(""),), bind=("127.0.0.1",), kubernetes=kubernetes, k8s_external=external,
                        forward=forward)


def pipeline_on(view: View, settings: ServerBlock) -> Pipeline:
    forwards = settings.setting("forward")
    outbound = Outbound([Forwarder(f) for f in forwards], [f.handles for f in forwards], None, bufsize_of(settings))
    return Pipeline([("", Block(settings, view, chain_for(settings), outbound))])


def reply(pipeline: Pipeline, query: bytes, via_tcp: bool, peer: str | None = None) -> bytes | str:
    answer = pipeline.handle(query, via_tcp, None if peer is None else (peer, 40000))
    if isinstance(answer, Forward):
        return "forward"
    assert answer is not None
    return answer


def following(registry: Registry, settings_: ServerBlock) -> tuple[View, Pipeline]:
    """A pipeline that keeps its answer table across every publication of `registry`, as the server does."""
    view = View(registry.snapshot)
    kept = pipeline_on(view, settings_)

    def deliver(snapshot: Snapshot, change: Change) -> None:
        serial_changed = snapshot.serial != view.snapshot.serial
        view.snapshot = snapshot
        kept.publish(view, change, serial_changed)

    registry.subscribe(deliver)
    return view, kept


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=batches, cases=st.lists(st.booleans(), min_size=8, max_size=8))
def test_every_kept_answer_equals_a_fresh_one(batches: list[tuple[list[Update], int]], cases: list[bool]) -> None:
    clock = Clock(1_700_000_000.0)
    registry = Registry(required_kinds=KINDS, clock=clock)
    settings_ = block()
    view, kept = following(registry, settings_)
    ids = itertools.count(1)
    sent: list[tuple[bytes, bool]] = []

    def ask_all() -> None:
        """Every question, so every kind of dependency is in the table when the next batch lands."""
        sent.clear()
        for n, (name, qtype) in enumerate(QUESTIONS):
            if cases[n % len(cases)]:
                name = name.upper()
            message = dns.message.make_query(name, qtype, use_edns=0 if n % 3 else False)
            message.id = next(ids) % 65536
            query = message.to_wire()
            via_tcp = n % 5 == 0
            reply(kept, query, via_tcp)
            sent.append((query, via_tcp))

    ask_all()  # before the first sync: SERVFAIL where a name would be missing
    registry.apply([Replace(frozenset(KINDS), (Namespace("a"), Service("a", "s1", ("10.96.0.1",), False, "", ()))),])
    for batch, seconds in batches:
        ask_all()
        clock.now += seconds
        registry.apply(batch)
        fresh = pipeline_on(View(view.snapshot), settings_)
        for key in list(kept.table.entries):
            for via_tcp in (False, True):
                query = query_for_key(key, 4242, 1232)
                assert reply(kept, query, via_tcp) == reply(fresh, query, via_tcp), (key, via_tcp)
        for query, via_tcp in sent:  # exact-bytes replies too
            assert reply(kept, query, via_tcp) == reply(fresh, query, via_tcp), (query, via_tcp)


def test_a_change_keeps_the_answers_it_does_not_touch() -> None:
    """The point of the table: a change of one service leaves every other service's answer in place."""
    registry = Registry(required_kinds=(NAMESPACE, SERVICE, ENDPOINT_SLICE, POD))
    _, pipeline = following(registry, block())
    registry.apply([Replace(frozenset(KINDS), (Namespace("a"), Service("a", "s1", ("10.96.0.1",), False, "", ()),
                                               Service("a", "s2", ("10.96.0.2",), False, "", ())))])
    for name in ("s1", "s2"):
        pipeline.handle(dns.message.make_query(f"{name}.a.svc.{Z}", "A").to_wire(), False)
    assert len(pipeline.table.entries) == 2
    registry.apply([Put(Service("a", "s1", ("10.96.0.9",), False, "", ()))])
    kept = {bytes(key) for key in pipeline.table.entries}
    assert any(b"\x02s2" in key for key in kept) and not any(b"\x02s1" in key for key in kept)


# -- autopath: answers kept per client namespace -------------------------------------------------------------

CLIENTS = ENDPOINT_IPS + ("192.0.2.9",)  # pods' addresses (when some pod claims them), and no pod's
claiming_pods = st.builds(Pod, st.sampled_from(NAMESPACES + ("c",)), st.sampled_from(("p1", "p2", "p3")),
                          st.lists(st.sampled_from(ENDPOINT_IPS), max_size=1).map(tuple), st.booleans(),
                          st.booleans(), st.booleans(), st.integers(0, 2))
pod_updates = st.one_of(claiming_pods.map(Put), claiming_pods.map(lambda p: Remove(p.key)))
autopath_batches = st.lists(st.tuples(st.lists(st.one_of(updates, pod_updates, pod_updates), min_size=1, max_size=4),
                                      st.integers(0, 2)), min_size=1, max_size=6)
AUTOPATH_QUESTIONS = [f"{svc}.{ns}.svc.{Z}" for ns in NAMESPACES + ("c",) for svc in SERVICES + ("nope",)] + [
    f"{svc}.{other}.{ns}.svc.{Z}" for ns in NAMESPACES + ("c",) for other in NAMESPACES for svc in SERVICES]


def autopath_block() -> ServerBlock:
    return block().with_setting("autopath", AutopathSettings(("",), (), True))


def fresh_reply(settings_: ServerBlock, snapshot: Snapshot, query: bytes, via_tcp: bool, peer: str) -> bytes | str:
    """The reply of a pipeline that has kept nothing (built for this query alone)."""
    return reply(pipeline_on(View(snapshot), settings_), query, via_tcp, peer)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=autopath_batches)
def test_every_answer_kept_per_namespace_equals_a_fresh_one(batches: list[tuple[list[Update], int]]) -> None:
    clock = Clock(1_700_000_000.0)
    registry = Registry(required_kinds=KINDS, clock=clock)
    settings_ = autopath_block()
    view, kept = following(registry, settings_)
    registry.apply([Replace(frozenset(KINDS), (Namespace("a"), Service("a", "s1", ("10.96.0.1",), False, "", ()),
                                               Pod("a", "p1", (ENDPOINT_IPS[0],), True)))])
    ids = itertools.count(1)
    queries = []
    for n, name in enumerate(AUTOPATH_QUESTIONS):
        message = dns.message.make_query(name, "A", use_edns=0 if n % 2 else False)
        message.id = next(ids)
        queries.append((message.to_wire(), n % 5 == 0))
    for batch, seconds in batches:
        for query, via_tcp in queries:  # every client asks every question, so the table holds every namespace's
            for peer in CLIENTS:
                reply(kept, query, via_tcp, peer)
        clock.now += seconds
        registry.apply(batch)
        for query, via_tcp in queries:
            for peer in CLIENTS:
                assert reply(kept, query, via_tcp, peer) == fresh_reply(settings_, view.snapshot, query, via_tcp,
                                                                        peer), (query, peer)
