"""The encoded answers of one listener, kept across snapshots: only what a change touches is dropped.

Theory of operation.  An answer is a pure function of (question, snapshot, block settings), so the
reply encoded for a question can be served again until the cluster data it was read from changes.
Each `Entry` keeps the encoded reply with the dependencies the resolver recorded (a service entry,
a namespace, a pod address, a reverse name, the sync flag, the hosts table).  When the registry
publishes a snapshot, `publish` takes its `Change`, asks `snapshot.invalidated` which dependencies
it touches, and drops exactly the entries that depend on one of them; every other entry stays, so
a cluster that changes all the time keeps nearly all of its answers warm.

The SOA serial (the time of the last change) is in every negative answer.  It is not a dependency:
an entry that carries it is re-stamped with the current serial in place (`encode.patch_serial`) the
next time it is served, which costs a few hundred nanoseconds instead of a resolve.

Keys are question keys (the question with its name lower-cased, plus the mode byte: RD, CD, EDNS,
DO); an entry holds the reply for that key with the question in lower case and serves every UDP
limit from it (`encode.fit`, kept per limit) and, with `loadbalance`, a few rotations of its address
records.  In front of the keys, `exact` maps the exact bytes of a query (after its ID) to the final
reply (after its ID): stub resolvers send the same bytes again and again, so most queries cost one
dict lookup; a loadbalanced answer's exact entry (`TurningHit`) holds every rotation and gives the
next at each lookup.  An exact entry belongs to the entry it was made from and goes with it.

An answer that depends on the namespace of the pod that asks (autopath's walk: the `CLIENT_NAMESPACE`
dependency) is kept in `namespaced`, a `Namespaced` per question key holding one entry per namespace
(None: clients that are no pod's).  The router finds the client's namespace afresh for each query
(`Snapshot.client_namespace`), so an address that changes hands gets its new namespace's entry at
once, and serves an entry only to clients of its namespace, never from `exact` (whose keys are a
query's bytes, which do not say who sent them: its exact replies are kept apart, per namespace, in
`namespaced_udp` and `namespaced_tcp`).  Only questions no plain entry answers look there:
plain hits cost nothing more.  Such a question counts as one answer against the table's room (its
entries are one per namespace that asked).  An answer that depends on the client itself (`CLIENT`)
is not kept.

Blocks of one listener may read different registries (kubernetes blocks with different sources),
so each entry knows the `View` it was resolved against: the snapshot of its registry as the event
loop sees it.  Entries are dropped oldest first when the table is full, a slice at a time.  The
table is used by one thread only (the event loop's): the registries' publications reach it
through the loop, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dns_server.cluster.snapshot import Change, Snapshot, invalidated
from dns_server.plugins.trust_client_subnet import Network
from dns_server.protocol.answer import Dependency
from dns_server.protocol.encode import fit, patch_serial

MAX_ENTRIES = 100_000  # answers kept per listener; past it the oldest eighth is dropped
MAX_EXACT = 200_000  # exact-bytes replies kept; past it they are all dropped (the entries stay)
MAX_EXACT_PER_ENTRY = 8  # query byte patterns remembered per answer (case and EDNS variants)


@dataclass(slots=True)
class AnswerCacheCounters:
    """What the table counts for metrics: plain ints added to on the event loop, read when scraped.

    Hits are the queries answered by an entry or an exact reply (plain exact replies are counted only
    on a listener with `prometheus`, where counting is already paid for; those kept per namespace,
    which cost a lookup of the client anyway, always).
    """

    hits: int = 0
    misses: int = 0
    invalidations: int = 0  # entries dropped because a change touched what they were read from
    evictions: int = 0  # entries dropped because the table was full


class View:
    """A registry's snapshot as the event loop sees it: blocks resolve against it, entries compare serials with it."""

    __slots__ = ("snapshot",)

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot


@dataclass(slots=True, eq=False)
class ExactHit:
    """A final reply for one query's exact bytes: what the hot path sends after the query's ID."""

    tail: bytes  # the reply without its ID
    tally: Any  # metrics.Tally counting the queries answered by it (None when not counted)


@dataclass(slots=True, eq=False)
class TurningHit:
    """The final replies for one query's exact bytes of a loadbalanced answer: each read of `tail`
    is the next rotation, as `Entry.reply` takes them."""

    tails: tuple[bytes, ...]  # every rotation without its ID
    tally: Any
    turn: int = 0  # the rotation sent last

    @property
    def tail(self) -> bytes:
        self.turn = turn = (self.turn + 1) % len(self.tails)
        return self.tails[turn]


Hit = ExactHit | TurningHit  # what `exact` holds: `tail` is the reply to send after the query's ID


@dataclass(slots=True, eq=False)
class Entry:
    """The reply to one question key, and what it was read from.

    `wire` holds some query's ID (every user patches its own in) and the question in lower case.
    `rotations` (loadbalance) are the same reply with the address records rotated; a user takes
    them in turn.  `forward` marks a question whose answer comes from upstream: it holds the
    block's outbound side and the index of the forward directive, and `wire` is empty.
    """

    wire: bytes
    serial_at: int  # offset of the SOA serial in `wire` (and in every rotation), -1 if none
    view: View  # the registry view it was resolved against: its serial is the one to carry
    deps: frozenset[Dependency]
    bufsize: int  # the block's largest UDP reply
    labels: Any = None  # what metrics need to know of the answer (serving.router.Labels)
    rotations: tuple[bytes, ...] = ()
    forward: Any = None  # serving.router.ForwardTarget
    serial: int = 0  # the serial written at `serial_at`
    turn: int = 0
    fitted: dict[int, bytes] | None = None  # the reply cut to each UDP limit asked for (made when first needed)
    exact: list[tuple[dict[Any, Any], Any]] | None = None  # its exact replies (where they are kept, under what)

    def reply(self, limit: int) -> bytes:
        """The reply for a client that accepts `limit` bytes (a TCP client: 65535)."""
        wire = self.wire
        if self.rotations:
            self.turn = turn = (self.turn + 1) % len(self.rotations)
            wire = self.rotations[turn]
            return wire if len(wire) <= limit else fit(wire, limit)
        if len(wire) <= limit:
            return wire
        if self.fitted is None:
            self.fitted = {}
        cut = self.fitted.get(limit)
        if cut is None:
            cut = self.fitted[limit] = fit(wire, limit)
        return cut

    def turns(self, limit: int) -> tuple[bytes, ...]:
        """Every rotation for a client that accepts `limit` bytes, in the order `reply` takes them."""
        return tuple(wire if len(wire) <= limit else fit(wire, limit) for wire in self.rotations)

    def restamp(self, serial: int) -> None:
        """Write a newer SOA serial into the reply (and its rotations), dropping the cut copies."""
        self.wire = patch_serial(self.wire, self.serial_at, serial)
        self.rotations = tuple(patch_serial(r, self.serial_at, serial) for r in self.rotations)
        self.fitted = None
        self.serial = serial


@dataclass(slots=True, eq=False)
class NamespacedHits:
    """The final replies for one query's exact bytes whose answer depends on the client's namespace, per namespace."""

    view: View  # where the client's namespace is looked up
    by_namespace: dict[str | None, ExactHit]


@dataclass(slots=True, eq=False)
class Namespaced:
    """The entries of one question whose answer depends on the namespace of the pod that asks.

    `view` and `trusted` (the block's trust_client_subnet networks, None without it) are what the
    router needs to find a client's namespace.  `deps` are all its entries' dependencies: a change
    that touches one of them drops every namespace's entry.
    """

    view: View
    trusted: tuple[Network, ...] | None
    by_namespace: dict[str | None, Entry]
    deps: set[Dependency]


class AnswerTable:
    """Entries by question key (and namespace) and final replies by exact query bytes, invalidated by change."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES, max_exact: int = MAX_EXACT,
                 counters: AnswerCacheCounters | None = None) -> None:
        self.entries: dict[bytes, Entry] = {}
        self.namespaced: dict[bytes, Namespaced] = {}
        self.exact_udp: dict[bytes, Hit] = {}
        self.exact_tcp: dict[bytes, Hit] = {}
        self.namespaced_udp: dict[bytes, NamespacedHits] = {}  # exact replies of questions kept per namespace
        self.namespaced_tcp: dict[bytes, NamespacedHits] = {}
        self._by_dependency: dict[Dependency, set[bytes]] = {}
        self._stamped: list[Entry] = []  # entries with a serial and exact replies
        self._restamping: list[Entry] = []  # those of them whose exact replies may carry an older serial
        self._max_entries = max_entries
        self._max_exact = max_exact
        self.counters = AnswerCacheCounters() if counters is None else counters

    def __len__(self) -> int:
        return len(self.entries) + len(self.namespaced)

    def room_ahead(self) -> bool:
        """Whether answers made ahead (serving/warmup.py) may still be kept: they fill at most half the table."""
        return len(self) < self._max_entries // 2

    def get(self, key: bytes) -> Entry | None:
        """The entry for a question key, its serial brought up to date."""
        entry = self.entries.get(key)
        if entry is None:
            if key not in self.namespaced:  # a question kept per namespace is counted by `for_namespace`
                self.counters.misses += 1
            return None
        self.counters.hits += 1
        if entry.serial_at >= 0 and entry.serial != entry.view.snapshot.serial:  # `_current`, inline: the hot path
            entry.restamp(entry.view.snapshot.serial)
        return entry

    def for_namespace(self, group: Namespaced, namespace: str | None) -> Entry | None:
        """The entry of a question kept per namespace for a client of `namespace`, its serial brought up to date."""
        entry = group.by_namespace.get(namespace)
        if entry is None:
            self.counters.misses += 1
            return None
        self.counters.hits += 1
        return _current(entry)

    def put(self, key: bytes, entry: Entry) -> None:
        """Keep an entry resolved against its view's current snapshot."""
        self._make_room(key)
        self.entries[key] = entry
        self._index(key, entry.deps)

    def put_for_namespace(self, key: bytes, namespace: str | None, entry: Entry,
                          trusted: tuple[Network, ...] | None) -> None:
        """Keep an entry for the clients of one namespace (`trusted`: whose client-subnet options name the client)."""
        group = self.namespaced.get(key)
        if group is None:
            self._make_room(key)
            group = self.namespaced[key] = Namespaced(entry.view, trusted, {}, set())
        group.by_namespace[namespace] = entry
        group.deps.update(entry.deps)
        self._index(key, entry.deps)

    def _make_room(self, key: bytes) -> None:
        """Drop what is kept for `key`, or the oldest answers when the table is full."""
        if key in self.entries or key in self.namespaced:
            self._drop(key)
        elif len(self) >= self._max_entries:
            self._evict()

    def _index(self, key: bytes, deps: frozenset[Dependency]) -> None:
        for dependency in deps:
            keys = self._by_dependency.get(dependency)
            if keys is None:
                keys = self._by_dependency[dependency] = set()
            keys.add(key)

    def remember(self, entry: Entry, via_tcp: bool, query: bytes, reply: bytes, tally: Any,
                 turns: tuple[bytes, ...] = ()) -> None:
        """Keep a final reply under its query's exact bytes (both without the ID).  A loadbalanced
        entry's are `turns`, every rotation of the reply, `reply` the one its entry took last."""
        if entry.forward is not None or (entry.rotations and not turns):
            return  # forwarded answers age: not fixed bytes
        exact = self.exact_tcp if via_tcp else self.exact_udp
        if self._room_for_exact(entry, exact):
            exact[query] = TurningHit(turns, tally, entry.turn) if turns else ExactHit(reply, tally)
            self._kept_exact(entry, exact, query)

    def remember_for_namespace(self, entry: Entry, group: Namespaced, namespace: str | None, via_tcp: bool,
                               query: bytes, reply: bytes, tally: Any) -> None:
        """Keep a final reply for the clients of one namespace under its query's exact bytes.

        Not behind trust_client_subnet: whether a sender may name the client is not in the bytes.
        """
        if entry.rotations or group.trusted is not None:
            return
        exact = self.namespaced_tcp if via_tcp else self.namespaced_udp
        if self._room_for_exact(entry, exact):
            hits = exact.get(query)
            if hits is None:
                hits = exact[query] = NamespacedHits(group.view, {})
            hits.by_namespace[namespace] = ExactHit(reply, tally)
            self._kept_exact(entry, hits.by_namespace, namespace)

    def _room_for_exact(self, entry: Entry, exact: dict[bytes, Any]) -> bool:
        if not keeps_more_exact(entry):
            return False
        if len(exact) >= self._max_exact:
            exact.clear()  # the entries keep their (now stale) references: dropping them is harmless
        return True

    def _kept_exact(self, entry: Entry, exact: dict[Any, Any], under: Any) -> None:
        if entry.exact is None:
            entry.exact = []
        if entry.serial_at >= 0 and not entry.exact:
            self._stamped.append(entry)
        entry.exact.append((exact, under))

    def publish(self, view: View, change: Change, serial_changed: bool) -> None:
        """`view` has moved on by `change` (its snapshot already replaced): drop the entries it touches."""
        for dependency in invalidated(change) if self._by_dependency else ():  # nothing cached: nothing to drop
            for key in self._by_dependency.pop(dependency, ()):
                if key in self.entries or key in self.namespaced:
                    self._drop(key)
                    self.counters.invalidations += 1
        if serial_changed:
            self._restamping.extend(self._stamped)
            self._stamped = []

    def restamp(self, count: int | None = None) -> bool:
        """Write each view's current serial into the exact replies that a serial change left older,
        for `count` entries (None: all of them); True while some are left.

        Not done in `publish`: on a large cluster thousands of negative replies carry the serial,
        and under churn it moves once a second (78 ms of the event loop for 16,443 of them).  The
        router spreads the work over turns of the event loop; an exact reply served meanwhile carries
        the serial of a second before, which resolvers only pass on.
        """
        pending, stamped = self._restamping, self._stamped
        for _ in range(len(pending) if count is None else min(count, len(pending))):
            entry = pending.pop()
            if entry.exact:
                _restamp_exact(entry, entry.view.snapshot.serial)
                if entry.exact:
                    stamped.append(entry)
        return bool(pending)

    def _drop(self, key: bytes) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            _forget_exact(entry)
            deps: frozenset[Dependency] | set[Dependency] = entry.deps
        else:
            group = self.namespaced.pop(key)
            for kept in group.by_namespace.values():
                _forget_exact(kept)
            deps = group.deps
        for dependency in deps:
            keys = self._by_dependency.get(dependency)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_dependency[dependency]

    def _evict(self) -> None:
        """Drop the oldest eighth of the entries and of the questions kept per namespace (dicts keep insertion order)."""
        for kept in (self.entries, self.namespaced):
            oldest = [key for key, _ in zip(kept, range(max(len(kept) // 8, 1)))]
            for key in oldest:
                self._drop(key)
            self.counters.evictions += len(oldest)


def _current(entry: Entry) -> Entry:
    """The entry with its view's current serial written in."""
    if entry.serial_at >= 0 and entry.serial != entry.view.snapshot.serial:
        entry.restamp(entry.view.snapshot.serial)
    return entry


def keeps_more_exact(entry: Entry) -> bool:
    """Whether another query pattern of this entry may be kept by its exact bytes (0x20 clients vary the case)."""
    return entry.exact is None or len(entry.exact) < MAX_EXACT_PER_ENTRY


def _restamp_exact(entry: Entry, serial: int) -> None:
    """A newer serial in an entry and its exact replies, in place (a cut copy is dropped instead).

    Exact replies of negative answers are most of what a client asks again and again; the serial
    moves at most once a second, and a 4-byte patch each then costs far less than sending every one
    of them back through the key path.
    """
    entry.restamp(serial)
    whole = len(entry.wire) - 2  # an exact reply without its ID, not cut to a smaller client
    kept = []
    for exact, query in entry.exact or ():
        hit = exact.get(query)
        if hit is None:
            continue
        if hit.__class__ is ExactHit and len(hit.tail) == whole:
            hit.tail = patch_serial(hit.tail, entry.serial_at - 2, serial)
            kept.append((exact, query))
        else:
            del exact[query]
    entry.exact = kept or None


def _forget_exact(entry: Entry) -> None:
    if entry.exact:
        for exact, query in entry.exact:
            exact.pop(query, None)
        entry.exact = None

