"""The plugin interface: what each directive of a server block is to this server.

A plugin is one module under dns_server/plugins, named as its CoreDNS directive, that defines a
`PluginSpec`: its name, its `setup` (the directive's arguments and options in one server block ->
its settings, beside its behaviour) and, when it has a place in the query chain, `handler`
(settings -> a `Handler`).  dns_server/plugins/__init__.py lists the specs; a server block's chain is
its directives' handlers in CoreDNS's plugin.cfg order.  Adding a plugin is a module and a line
there: nothing in the router or the chain changes.

A handler is pure: `serve(request, next) -> Answer`, no I/O, no clock.  How each kind fits:
- one that answers (kubernetes, hosts; template, chaos): returns its Answer for the names it owns
  and `next(request)` for the others;
- one that passes on (`fallthrough`): returns `next(request)` where it would have said NXDOMAIN;
- one that rewrites (rewrite): calls `next(request.renamed(...))` and rewrites the records of the
  answer back to the name asked; the router keeps the answer under the question as asked.  A
  forwarded answer carries an `Answer.relay`: the question asked upstream, and how its reply is
  written back (`forwarded(reply)` sees no question);
- one whose answer depends on the client (whoami, template's `.Remote`): reads `request.client()`
  (address, port, transport), which records the `CLIENT` dependency: the router never keeps such an
  answer for another client.  One whose answer depends only on the namespace of the pod that asks
  (autopath) reads `request.client_namespace()` instead, which records `CLIENT_NAMESPACE`: the
  router keeps the answer per namespace and serves it only to clients it finds in that namespace;
- one that serves a second zone from the same cluster data (k8s_external): reads the snapshot
  through `request.reads`, as kubernetes does, so the answer table invalidates it the same way;
- one that forwards (forward): returns `Outcome.FORWARD` naming its directive; the router hands the
  question to the block's outbound side (the `cache` plugin in front of the forwarders);
- one that changes every reply (loadbalance): offers rotations of the answer it gets from `next`,
  and turns forwarded replies in `forwarded(reply)`, the hook for replies the chain never saw;
- one whose data pods ask for by name (kubernetes): lists in `stub_questions(snapshot, services)` the
  questions pods' stub resolvers ask of it, which the server answers ahead (serving/warmup.py).
Plugins with no handler act around the chain: bind, bufsize, health, ready, reload (the server),
prometheus, errors, log, nsid (the router observes every reply, cached ones too), cache and loop (the
outbound side).  `in_chain` says whether CoreDNS has a handler for it (`coredns_plugin_enabled`, and
the plugin named in "no next plugin found").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional

from dns_server.cluster.snapshot import (
    SYNCED,
    ImportEntry,
    ServiceEntry,
    ServiceKey,
    Snapshot,
    address_dependency,
    external_dependency,
    import_dependency,
    namespace_dependency,
    pod_dependency,
    service_dependency,
)
from dns_server.config.model import ServerBlock
from dns_server.protocol.answer import RR, Answer, Count, Dependency, Outcome
from dns_server.protocol.codes import CLASS_IN

Peer = Optional[tuple[str, int]]  # the client's address and port, as the transport got them (or a trusted
# node-local cache named them: plugins/trust_client_subnet.py)
Question = tuple[str, int]  # a name (lower case, no trailing dot) and a type, asked in class IN
CLIENT: Dependency = ("client",)  # an answer that depends on who asked: never served to another client
# an answer that depends on the namespace of the pod that asked: served only to clients of that namespace
CLIENT_NAMESPACE: Dependency = ("client namespace",)


class Client(NamedTuple):
    """Who asked: what `Request.client()` tells a plugin whose answer depends on it."""

    address: str
    port: int
    via_tcp: bool


class Reads:
    """The snapshot, read through methods that record each index entry consulted as a dependency.

    An answer made with `answer()` depends on everything read so far for the question: exactly what
    a change of the cluster must touch to invalidate it (serving/answer_table.py).
    """

    __slots__ = ("snapshot", "deps")

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.deps: set[Dependency] = set()

    def service(self, key: ServiceKey) -> ServiceEntry | None:
        self.deps.add(service_dependency(key))
        return self.snapshot.services.get(key)

    def service_import(self, key: ServiceKey) -> ImportEntry | None:
        """A ServiceImport of the cluster set, with its ready endpoints (the `multicluster` option)."""
        self.deps.add(import_dependency(key))
        return self.snapshot.imports.get(key)

    def namespace_exists(self, namespace: str) -> bool:
        self.deps.add(namespace_dependency(namespace))
        return namespace in self.snapshot.namespaces

    def pod_running(self, namespace: str, address: str) -> bool:
        self.deps.add(pod_dependency((namespace, address)))
        return self.snapshot.pod_running(namespace, address)

    def reverse(self, address: str) -> tuple[str, ...]:
        self.deps.add(address_dependency(address))
        return self.snapshot.reverse.get(address, ())

    def external(self, address: str) -> tuple[str, ...]:
        """The services ("svc.ns") that have this external address (k8s_external's PTR)."""
        self.deps.add(external_dependency(address))
        return self.snapshot.external.get(address, ())

    def synced(self) -> bool:
        if self.snapshot.synced:
            return True  # once synced, a snapshot never becomes unsynced again
        self.deps.add(SYNCED)
        return False

    def answer(self, outcome: Outcome, answer: tuple[RR, ...] = (), authority: tuple[RR, ...] = (),
               additional: tuple[RR, ...] = (), *, forward: int = -1, chase: str = "", plugin: str = "",
               reason: str = "", counts: tuple[Count, ...] = ()) -> Answer:
        """An Answer that depends on everything read so far."""
        return Answer(outcome, answer, authority, additional, forward, chase, plugin, reason, frozenset(self.deps),
                      counts=counts)


class Request:
    """One question as the plugins see it: the name (lower case, no trailing dot), type and class, the reads."""

    __slots__ = ("name", "qtype", "reads", "peer", "qclass", "via_tcp", "options", "local")

    def __init__(self, name: str, qtype: int, reads: Reads, peer: Peer = None, qclass: int = CLASS_IN,
                 via_tcp: bool = False, options: bytes | None = None, local: Peer = None) -> None:
        self.name = name
        self.qtype = qtype
        self.reads = reads
        self.peer = peer
        self.qclass = qclass  # IN, unless the listener takes other classes (see `PluginSpec.other_classes`)
        self.via_tcp = via_tcp
        self.options = options  # the query's EDNS options (its OPT record's RDATA), None without EDNS (rewrite edns0)
        self.local = local  # the listener's address and port (rewrite edns0's {server_ip}, {server_port})

    def client(self) -> Client | None:
        """Who asked, and over which transport; the answer now depends on it (the router keeps it for no one else)."""
        self.reads.deps.add(CLIENT)
        return None if self.peer is None else Client(*self.peer, self.via_tcp)

    def client_namespace(self) -> str | None:
        """The namespace of the pod that asked (None: no pod's address); the answer now depends on it.

        Narrower than `client()`: the router keeps the answer for every client in that namespace.
        """
        self.reads.deps.add(CLIENT_NAMESPACE)
        return None if self.peer is None else self.reads.snapshot.client_namespace(self.peer[0])

    def renamed(self, name: str, qtype: int | None = None, qclass: int | None = None) -> Request:
        """The same request for another name (a CNAME target, a rewritten question), with the same reads."""
        return Request(name, self.qtype if qtype is None else qtype, self.reads, self.peer,
                       self.qclass if qclass is None else qclass, self.via_tcp, self.options, self.local)


Next = Callable[[Request], Answer]


class Handler:
    """A plugin's place in one block's query chain.  The default passes every question on."""

    def serve(self, request: Request, next: Next) -> Answer:
        return next(request)

    def forwarded(self, reply: bytes) -> bytes:
        """A reply from upstream (which no handler saw as an Answer), as this plugin would change it."""
        return reply

    def stub_questions(self, snapshot: Snapshot, services: Iterable[ServiceKey] | None) -> Iterator[Question]:
        """The questions (name, type) pods' stub resolvers ask of this plugin's data about `services`
        (None: every one), worth answering before anyone asks."""
        return iter(())


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """One plugin: its directive, its setup, its handler (None: it acts outside the query chain)."""

    name: str
    setup: Callable[..., Any]  # config.setup.Setup: (directives, SetupContext) -> settings
    handler: Callable[[Any, ServerBlock], Handler] | None = None
    in_chain: bool = False  # CoreDNS has a handler for it (what `coredns_plugin_enabled` lists)
    # A listener refuses questions of a class other than IN unless one of its blocks has a plugin that
    # takes them (CoreDNS's EnableChaos: chaos, forward).
    other_classes: bool = False
