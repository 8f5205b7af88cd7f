"""One listener's query path: `handle(data, via_tcp) -> bytes | Forward | None`, for UDP and TCP alike.

Theory of operation.  A query goes one way:
1. `exact`: the reply already sent for these exact query bytes (after the ID): one dict lookup, the
   query's ID in front, done.  Stub resolvers repeat themselves, so this answers most queries.  The
   replies of questions kept per namespace (below) are kept by their bytes apart, per namespace,
   and looked up, with the client's namespace, only when the table holds such questions.
2. the question key (the question with its name lower-cased, plus a mode byte for RD, CD, EDNS,
   DO and an NSID asked for), read from the raw bytes without decoding the message
   (`protocol.wire.read_plain`): the answer table's entry for it, cut to the client's UDP limit,
   with the query's ID and the question's case patched in.  An entry whose answer comes from upstream sends the question to
   its block's outbound side, whose cache may answer at once.  A question whose answer depends on the
   client's namespace (autopath's walk) has an entry per namespace: the client's is looked up in the
   current snapshot, for this query.
3. the slow path: the query decoded properly; what the server answers before any plugin (FORMERR,
   NOTIMP, BADVERS, REFUSED: `chain.chain.admission`) is decided here, where messages enter; the
   query is routed to the server block with the longest zone that covers the name, answered by the
   block's chain of plugins (chain/chain.py) against its registry view, encoded, and kept in the
   answer table, unless the answer depends on the client (per namespace when it depends on the
   client's namespace only).
Whatever the slow path cannot finish at once (an upstream exchange) comes back as `Forward`, which
the transport completes with `complete()` as a bounded task.  An answer whose question the chain
rewrote (`Answer.relay`, the rewrite plugin) is asked upstream, and of the forward cache, as
rewritten, and every reply to it, errors included, is written back by `relay.restore`.  An answer
whose CNAME a rewrite cname rule may retarget (`Answer.follow`) is finished in `complete()` too and
never kept: the new target is asked of the whole listener again (`_followed`) and joined.

The table keeps answers across snapshots: a registry publication reaches `publish()` through the
event loop and drops only the answers that change touches (answer_table.py).  Everything that
escapes as an exception is a bug: the query gets SERVFAIL and a rate-limited log line.

Counting for the `prometheus` plugin is per answer: each exact reply carries the `Tally` of its
label set, so a counted query costs two clock reads and a few increments.  `_observe` counts and
logs every reply but one kind: an exact reply on a listener without a query log, the bulk of a busy
server's, is counted where it is found.  A listener with neither metrics nor a query log skips both.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from dataclasses import dataclass
from time import perf_counter
from typing import Callable, NamedTuple, Optional, Protocol

from dns_server.chain.chain import Chain, admission, undecodable
from dns_server.chain.plugin import CLIENT, CLIENT_NAMESPACE, Question
from dns_server.cluster.snapshot import Change, Snapshot
from dns_server.config.model import ServerBlock
from dns_server.plugins.bufsize import bufsize_of
from dns_server.plugins.forward.outbound import CACHE, FORWARD, Outbound
from dns_server.plugins.forward.upstreams import NoAnswer, Overloaded
from dns_server.plugins.kubernetes.chase import joined, target_key
from dns_server.plugins.log import QueryLog, QueryLogWriter, QueryRecord
from dns_server.plugins.loop import LoopProbe
from dns_server.plugins.nsid import identified, nsid_of
from dns_server.plugins.trust_client_subnet import Network, trusted_networks, trusts
from dns_server.protocol import client_subnet
from dns_server.protocol.answer import Answer, Count, Outcome, Relay
from dns_server.protocol.codes import CLASS_IN, HINFO, MAX_TCP_MESSAGE, NO_EDNS_PAYLOAD, REFUSED, SERVFAIL
from dns_server.protocol.encode import Unencodable, encode, error_reply, fit, with_option
from dns_server.protocol.names import canonical_address, longest_zone, zone_text
from dns_server.protocol.wire import (
    HEADER_LEN,
    MODE_DO,
    Drop,
    FormErr,
    Query,
    decode_query,
    header_only_reply,
    name_to_wire,
    plain_query,
    question_key,
    read_plain,
    stub_query,
)
from dns_server.serving.answer_table import AnswerTable, Entry, View, keeps_more_exact

log = logging.getLogger(__name__)

DROPPED = "dropped"  # the metrics zone of queries no block takes (CoreDNS's vars.Dropped)
FIRST_BUCKET = 0.00025  # the first bucket of CoreDNS's TimeBuckets
EXACT_TIMED = 64  # one counted exact reply in this many is timed (`Pipeline._handle_observed`); a power of two
EXACT_UNTIMED = EXACT_TIMED - 1  # the mask: hits & EXACT_UNTIMED is 0 for the one timed
RESTAMP_SLICE = 1_000  # kept replies given a new serial per turn of the event loop (about 2-5 ms)
_TYPE_CLASS = struct.Struct("!HH")
MAX_FOLLOWS = 8  # CNAME targets a rewrite cname rule may have looked up again for one query (CoreDNS: no bound)


class Tally(Protocol):
    """metrics.Tally: the queries of one label set."""

    count: int
    seconds: float

    def add_slow(self, seconds: float) -> None: ...


class QueryMetrics(Protocol):
    """metrics.QueryMetrics: finds the Tally of a label set."""

    def tally(self, server: str, zone: str, view: str, proto: str, family: str, qtype: int, rcode: int,
              plugin: str, do: bool, request_size: int, response_size: int, counts: tuple[Count, ...] = ()) -> Tally: ...


ErrorReporter = Callable[[int, str, int, str], None]  # rcode, name, qtype, reason (the errors plugin)
Peer = Optional[tuple[str, int]]  # the client's address and port, as the transport got them


class QueryHandler(Protocol):
    """`Pipeline.handle`: the reply to a message from `peer`, a Forward to finish upstream, or None to send nothing."""

    def __call__(self, data: bytes, via_tcp: bool, peer: Peer = None) -> bytes | Forward | None: ...


class Labels(NamedTuple):
    """What metrics know of an answer: fixed per question."""

    zone: str  # the block's zone the name fell in, as CoreDNS prints it, or "dropped"
    plugin: str  # the plugin that wrote the reply ("" for the server)
    counts: tuple[Count, ...] = ()  # the plugins' own counters each reply adds one to (Answer.counts)


class Block:
    """One server block as the router runs it: its query chain, registry view and outbound side."""

    def __init__(self, settings: ServerBlock, view: View, chain: Chain, outbound: Outbound | None = None,
                 errors: ErrorReporter | None = None, query_log: QueryLog | None = None,
                 loop: LoopProbe | None = None) -> None:
        self.settings = settings
        self.view = view
        self.chain = chain
        self.outbound = outbound
        self.errors = errors
        self.query_log = query_log  # the block's `log` directives, if any
        self.loop = loop  # the `loop` plugin's probe, while it runs
        self.bufsize = bufsize_of(settings)
        self.nsid = nsid_of(settings)
        self.trusted = trusted_networks(settings)  # whose client-subnet options name the client (None: no one's)


@dataclass(frozen=True, slots=True)
class ForwardTarget:
    """Where a forwarded question goes: a block's outbound side and its forward directive.

    `relay`: the question asked upstream instead of the client's (rewrite), which writes replies back.
    """

    block: Block
    outbound: Outbound
    index: int
    name: str
    relay: Relay | None = None


@dataclass(frozen=True, slots=True)
class Forward:
    """A query to finish upstream: the whole question, or (chase) a CNAME target's records."""

    data: bytes
    query: Query
    answer: Answer  # FORWARD, or CHASE: an answer ending in a CNAME whose target lies outside the cluster
    via_tcp: bool
    block: Block
    zone: str
    peer: Peer
    share: bool  # may join an identical exchange in flight (not the loop plugin's probe)
    started: float  # perf_counter() when it was handed over
    client: str | None = None  # the address the question is asked for (a forward's `client_subnet` sends it)
    echo: bytes = b""  # the client-subnet option the reply carries: it was answered for that client only


class Pipeline:
    """The query path of one listener (an address and port, UDP and TCP)."""

    def __init__(self, routes: list[tuple[str, Block]], server: str = "dns://:53", family: str = "1",
                 metrics: QueryMetrics | None = None, table: AnswerTable | None = None,
                 query_log: QueryLogWriter | None = None, local: str = "", port: int = 0,
                 panicked: Callable[[], None] | None = None) -> None:
        self.routes = sorted(routes, key=lambda route: -len(route[0]))
        self._zones = tuple(zone for zone, _ in self.routes)
        self._blocks = {zone: block for zone, block in self.routes}
        self._other_classes = any(block.chain.other_classes for _, block in self.routes)
        self.table = table if table is not None else AnswerTable()  # an empty table is falsy
        self.server = server
        self.family = family
        self.metrics = metrics
        self._counters = self.table.counters  # the runtime puts the metrics' in before it builds the pipeline
        self._exact_udp = self.table.exact_udp
        self._exact_tcp = self.table.exact_tcp
        self._namespaced_udp = self.table.namespaced_udp
        self._namespaced_tcp = self.table.namespaced_tcp
        self._tally: Tally | None = None  # the tally of the reply `_answer` returned last (metered only)
        self._exact_seconds = 0.0  # how long the last timed exact reply took (metered, without a query log)
        self._labels: dict[tuple[str, str, tuple[Count, ...]], Labels] = {}
        self._last_error_log = 0.0
        self._writer = query_log if any(block.query_log for _, block in self.routes) else None
        self._local = local  # our address, for the query log
        self._address = (local, port) if local else None  # the listener's, for the chain (rewrite's {server_ip})
        self._panicked = panicked  # counts internal errors (coredns_panics_total)
        self._restamp_scheduled = False
        self._observed = metrics is not None or self._writer is not None
        # the transports' entry, chosen once: a listener that neither counts nor logs pays nothing for either
        self.handle: QueryHandler = self._handle_observed if self._observed else self._handle_plain

    # -- snapshots -------------------------------------------------------------------------------
    def publish(self, view: View, change: Change, serial_changed: bool) -> None:
        """`view` has moved on by `change`: the answers it touches are dropped (event loop thread).

        A new serial is written into the kept negative replies `RESTAMP_SLICE` entries per turn of
        the event loop (`AnswerTable.restamp`), all at once where no loop runs (tests, tools).
        """
        self.table.publish(view, change, serial_changed)
        if serial_changed and not self._restamp_scheduled:
            self._restamp()

    def _restamp(self) -> None:
        self._restamp_scheduled = False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.table.restamp()
            return
        if self.table.restamp(RESTAMP_SLICE):
            self._restamp_scheduled = True
            loop.call_soon(self._restamp)

    def answer_ahead(self, question: Question) -> None:
        """Answer a question as glibc's and musl's resolvers ask it, and keep the reply (serving/warmup.py).

        Nothing is sent, counted or logged.  A question kept already, or whose name no query can
        carry, is left alone; one whose answer comes from upstream or depends on the client is not
        kept (as for a query).
        """
        try:
            data = stub_query(*question)
        except FormErr:
            return
        plain = read_plain(data)
        assert plain is not None  # a stub query is a plain one
        key, end, payload = plain
        if key in self.table.entries or key in self.table.namespaced:
            return
        try:
            self._resolve(data, plain_query(data, key, end, payload), False, None)
        except Exception:
            self._log_bug()

    # -- the hot path ------------------------------------------------------------------------------
    def _handle_plain(self, data: bytes, via_tcp: bool, peer: Peer = None) -> bytes | Forward | None:
        """`handle` on a listener that neither counts nor logs its replies."""
        hit = (self._exact_tcp if via_tcp else self._exact_udp).get(data[2:])
        if hit is not None:
            return data[:2] + hit.tail
        return self._answer(data, via_tcp, peer)

    def _handle_observed(self, data: bytes, via_tcp: bool, peer: Peer = None) -> bytes | Forward | None:
        """`handle`, with every reply sent now counted into its tally and logged (a Forward's when it is finished).

        An exact reply on a listener without a query log, what a saturated server mostly sends, is
        counted right here, as `_observe` would: a call less per query.  Only one in EXACT_TIMED is
        timed; the others add the last timed one's duration: a dictionary look-up takes less than the
        two clock reads that would time it (half of what counting cost).
        """
        counters = self._counters
        if counters.hits & EXACT_UNTIMED and self._exact_seconds:  # (0 until one is timed, and with a query log)
            hit = (self._exact_tcp if via_tcp else self._exact_udp).get(data[2:])
            if hit is not None and hit.tally is not None:
                counters.hits += 1
                tally = hit.tally
                tally.count += 1
                tally.seconds += self._exact_seconds
                return data[:2] + hit.tail
        start = perf_counter()
        hit = (self._exact_tcp if via_tcp else self._exact_udp).get(data[2:])
        if hit is not None:
            reply: bytes | Forward | None = data[:2] + hit.tail
            tally = hit.tally
            counters.hits += 1
            if tally is not None and self._writer is None:
                seconds = self._exact_seconds = perf_counter() - start
                tally.count += 1
                tally.seconds += seconds
                if seconds > FIRST_BUCKET:
                    tally.add_slow(seconds)
                return reply
        else:
            self._tally = None
            reply = self._answer(data, via_tcp, peer)
            tally = self._tally
        if reply.__class__ is bytes:
            assert isinstance(reply, bytes)
            self._observe(data, reply, via_tcp, peer, tally, perf_counter() - start)
        return reply

    def _observe(self, data: bytes, reply: bytes, via_tcp: bool, peer: Peer, tally: Tally | None,
                 seconds: float) -> None:
        """Count a reply (prometheus) and log it (log); exact replies, unlogged, are counted in `_handle_observed`."""
        if tally is not None:
            tally.count += 1
            tally.seconds += seconds
            if seconds > FIRST_BUCKET:
                tally.add_slow(seconds)
        if self._writer is not None:
            self._log(data, reply, via_tcp, peer, seconds)

    def _answer(self, data: bytes, via_tcp: bool, peer: Peer) -> bytes | Forward | None:
        try:
            if self.table.namespaced:
                hits = (self._namespaced_tcp if via_tcp else self._namespaced_udp).get(data[2:])
                if hits is not None:
                    hit = hits.by_namespace.get(_client_namespace(hits.view.snapshot, None, peer))
                    if hit is not None:
                        self._tally = hit.tally
                        self.table.counters.hits += 1
                        return data[:2] + hit.tail
            plain = read_plain(data)
            if plain is None:
                return self._slow(data, via_tcp, peer)
            key, end, payload = plain
            entry = self.table.get(key)
            if entry is not None:
                return self._serve(entry, data, key, end, payload, via_tcp, peer)
            group = self.table.namespaced.get(key)
            if group is not None:
                named = _named_client(group.trusted, data, peer) if group.trusted is not None else None
                namespace = _client_namespace(group.view.snapshot, named, peer)
                entry = self.table.for_namespace(group, namespace)
                if entry is not None:
                    reply = self._serve_one_client(entry, data, key, end, payload, via_tcp, _echo(named))
                    self.table.remember_for_namespace(entry, group, namespace, via_tcp, data[2:], reply[2:],
                                                      self._tally)
                    return reply
            return self._resolve(data, plain_query(data, key, end, payload), via_tcp, peer)
        except (FormErr, Drop):
            return self._slow(data, via_tcp, peer)
        except Exception:  # a bug: answer SERVFAIL, keep serving
            self._log_bug()
            return header_only_reply(data, SERVFAIL)

    def _serve(self, entry: Entry, data: bytes, key: bytes, end: int, payload: int,
               via_tcp: bool, peer: Peer) -> bytes | Forward | None:
        """An entry's reply for this query: cut to its limit, with the query's ID and question case."""
        limit = reply_limit(via_tcp, payload, entry.bufsize)
        target: ForwardTarget | None = entry.forward
        if target is not None:
            relay = target.relay
            if relay is not None and not relay.fits(data[end + 15:]):  # past a plain query's OPT header
                return self._slow(data, via_tcp, peer)
            cached = target.outbound.cached(key if relay is None else relay.key(key), limit)
            if cached is None:
                return self._slow(data, via_tcp, peer)  # becomes a Forward
            reply = identified(target.block.chain.forwarded(_from_upstream(data, cached, end, relay, limit)),
                               target.block.nsid, key, limit)
            if self.metrics is not None:
                self._tally = self._tally_for(entry.labels.zone, CACHE, data, reply, key, via_tcp)
            return reply
        reply = _as_asked(data, entry.reply(limit), end)
        tally = None
        if self.metrics is not None:
            labels = entry.labels
            tally = self._tally = self._tally_for(labels.zone, labels.plugin, data, reply, key, via_tcp, labels.counts)
        turns = tuple(_as_asked(data, wire, end)[2:] for wire in entry.turns(limit)) \
            if entry.rotations and keeps_more_exact(entry) else ()
        self.table.remember(entry, via_tcp, data[2:], reply[2:], tally, turns)
        return reply

    def _serve_one_client(self, entry: Entry, data: bytes, key: bytes, end: int, payload: int, via_tcp: bool,
                          echo: bytes) -> bytes:
        """An entry's reply for this client (not kept by its query's bytes here), with the client-subnet echo."""
        limit = reply_limit(via_tcp, payload, entry.bufsize) - len(echo)
        reply = with_option(_as_asked(data, entry.reply(limit), end), echo)
        if self.metrics is not None:
            labels = entry.labels
            self._tally = self._tally_for(labels.zone, labels.plugin, data, reply, key, via_tcp, labels.counts)
        return reply

    # -- the slow path -----------------------------------------------------------------------------
    def _slow(self, data: bytes, via_tcp: bool, peer: Peer) -> bytes | Forward | None:
        try:
            query = decode_query(data)
        except Drop:
            return None
        except FormErr:
            return self._dropped(data, header_only_reply(data, undecodable(data)), via_tcp)
        try:
            return self._resolve(data, query, via_tcp, peer)
        except Exception:
            self._log_bug()
            return self._dropped(data, error_reply(query, SERVFAIL, NO_EDNS_PAYLOAD), via_tcp)

    def _resolve(self, data: bytes, query: Query, via_tcp: bool, peer: Peer) -> bytes | Forward | None:
        zone = longest_zone(query.name, self._zones)
        rcode = admission(query, zone, self._other_classes)
        if rcode:
            return self._dropped(data, error_reply(query, rcode, NO_EDNS_PAYLOAD), via_tcp)
        assert zone is not None
        block = self._blocks[zone]
        probe = block.loop is not None and query.qtype == HINFO and query.name == block.loop.name
        if probe:
            assert block.loop is not None
            block.loop.arrived(peer)
        snapshot = block.view.snapshot
        named = _named_client(block.trusted, data, peer) if block.trusted is not None else None
        client = peer if named is None else (named, 0)  # the option carries no port
        answer = block.chain.resolve(query.name, query.qtype, snapshot, client, query.qclass, via_tcp,
                                     query.options if query.edns else None, self._address)
        per_client = CLIENT in answer.depends or CLIENT_NAMESPACE in answer.depends
        echo = _echo(named) if per_client else b""
        key = question_key(query)
        labels = self._labels.get((zone, answer.plugin, answer.counts))
        if labels is None:
            labels = self._labels[(zone, answer.plugin, answer.counts)] = Labels(zone_text(zone), answer.plugin,
                                                                                 answer.counts)
        end = HEADER_LEN + len(query.question) - 4
        payload = query.payload if query.edns else NO_EDNS_PAYLOAD
        if answer.outcome is Outcome.FORWARD or answer.outcome is Outcome.CHASE:
            assert block.outbound is not None  # the resolver forwards only to a block's forward directives
            relay = answer.relay
            upstream = key if relay is None else relay.key(key)  # the question asked upstream
            limit = reply_limit(via_tcp, payload, block.bufsize) - len(echo)
            if answer.follow is None and answer.outcome is Outcome.FORWARD:  # (rewrite cname: `complete`, not kept)
                target = ForwardTarget(block, block.outbound, answer.forward,
                                       query.name if relay is None else relay.name, relay)
                if not per_client:  # a client's own question goes upstream each time
                    self.table.put(key, Entry(b"", -1, block.view, answer.depends, block.bufsize, labels,
                                              forward=target))
                cached = block.outbound.cached(upstream, limit)
                if cached is not None:
                    reply = identified(block.chain.forwarded(_from_upstream(data, cached, end, relay, limit)),
                                       block.nsid, key, limit)
                    return self._count_reply(data, with_option(reply, echo), labels.zone, CACHE, via_tcp)
            elif answer.follow is None:
                chased = block.outbound.cached(target_key(upstream, answer.chase), MAX_TCP_MESSAGE)
                if chased is not None:
                    reply = identified(_restored(joined(query, answer, chased, block.bufsize, limit), query, relay,
                                                 limit), block.nsid, key, limit)
                    return self._count_reply(data, with_option(reply, echo), labels.zone, answer.plugin,
                                             via_tcp)  # the CNAME's plugin
            if block.outbound.refuses(answer.forward):
                refused = _restored(error_reply(query, REFUSED, block.bufsize), query, relay, limit)
                return self._count_reply(data, refused, zone_text(zone), FORWARD, via_tcp)
            return Forward(data, query, answer, via_tcp, block, zone, peer, not probe, perf_counter(),
                           None if client is None else client[0], echo)
        if answer.follow is not None:  # rewrite cname: a CNAME target to look up again (complete), never kept
            return Forward(data, query, answer, via_tcp, block, zone, peer, not probe, perf_counter(),
                           None if client is None else client[0], echo)
        try:
            encoded = encode(query, answer, block.bufsize)
        except Unencodable as error:  # cluster data no reply can carry (a name with an escaped dot, ...)
            if block.errors is not None:
                block.errors(SERVFAIL, query.name, query.qtype, f"cannot encode the answer: {error}")
            return self._count_reply(data, error_reply(query, SERVFAIL, block.bufsize), labels.zone, answer.plugin,
                                     via_tcp, answer.counts)
        nsid = None if answer.outcome is Outcome.SERVFAIL else block.nsid  # a plugin's error: the server writes it
        rotations = tuple(identified(encode(query, answer._replace(answer=records), block.bufsize).wire, nsid, key,
                                     MAX_TCP_MESSAGE) for records in answer.rotations) if answer.rotations else ()
        entry = Entry(identified(encoded.wire, nsid, key, MAX_TCP_MESSAGE), encoded.serial_at, block.view,
                      answer.depends, block.bufsize, labels, rotations=rotations, serial=snapshot.serial)
        if answer.outcome is Outcome.SERVFAIL and answer.reason and block.errors is not None:
            block.errors(SERVFAIL, query.name, query.qtype, answer.reason)  # not kept: logged every time, as CoreDNS
            return self._serve_one_client(entry, data, key, end, payload, via_tcp, echo)
        if CLIENT in answer.depends:  # only for this client: never kept
            return self._serve_one_client(entry, data, key, end, payload, via_tcp, echo)
        if CLIENT_NAMESPACE in answer.depends:  # for the clients of this namespace only
            self.table.put_for_namespace(key, _client_namespace(snapshot, named, peer), entry, block.trusted)
            return self._serve_one_client(entry, data, key, end, payload, via_tcp, echo)
        self.table.put(key, entry)
        return self._serve(entry, data, key, end, payload, via_tcp, peer)

    # -- forwarded questions -----------------------------------------------------------------------
    async def complete(self, forward: Forward) -> bytes | None:
        """Finish a Forward: relay the question upstream, append upstream records to a CNAME, or (rewrite
        cname) look a retargeted CNAME's new target up again."""
        reply = await self._finish(forward, MAX_FOLLOWS)
        if self._observed:
            answer = forward.answer
            plugin = FORWARD if answer.outcome is Outcome.FORWARD else answer.plugin  # a CHASE: the CNAME's
            tally = self._tally_for_raw(zone_text(forward.zone), plugin, forward.data, reply, forward.via_tcp) \
                if self.metrics is not None else None
            self._observe(forward.data, reply, forward.via_tcp, forward.peer, tally, perf_counter() - forward.started)
        return reply

    async def _finish(self, forward: Forward, follows: int) -> bytes:
        """`complete` without counting: `follows` more CNAME targets may be looked up again (rewrite cname)."""
        query, block, answer = forward.query, forward.block, forward.answer
        limit = reply_limit(forward.via_tcp, query.payload, block.bufsize) - len(forward.echo)
        if answer.outcome is not Outcome.FORWARD and answer.outcome is not Outcome.CHASE:
            try:
                reply = identified(encode(query, answer, block.bufsize).wire, block.nsid, question_key(query),
                                   MAX_TCP_MESSAGE)
                return fit(await self._followed(with_option(reply, forward.echo), forward, follows), limit)
            except Exception:
                self._log_bug()
                return error_reply(query, SERVFAIL, block.bufsize)
        assert block.outbound is not None
        key, name, asked = question_key(query), query.name, limit
        relay = answer.relay
        if relay is not None:
            key, name = relay.key(key), relay.name
        if answer.outcome is Outcome.CHASE:
            key, name, asked = target_key(key, answer.chase), answer.chase, MAX_TCP_MESSAGE
        try:
            cached = block.outbound.cached(key, asked) if answer.follow is not None else None  # see _resolve
            reply = cached or await block.outbound.resolve(key, name, answer.forward, query.payload, forward.via_tcp,
                                                           asked, share=forward.share, client=forward.client)
            if answer.outcome is Outcome.CHASE:
                reply = _restored(joined(query, answer, reply, block.bufsize, limit), query, relay, limit)
            elif relay is not None:
                reply = block.chain.forwarded(_restored(reply, query, relay, limit))
            else:
                reply = block.chain.forwarded(_relayed(reply, query))
            reply = with_option(identified(reply, block.nsid, question_key(query), limit), forward.echo)
            if answer.follow is not None:
                reply = fit(await self._followed(reply, forward, follows), limit)
        except Overloaded:
            reply = _restored(error_reply(query, REFUSED, block.bufsize), query, relay, limit)
        except NoAnswer as failure:
            if block.errors is not None:
                block.errors(SERVFAIL, query.name, query.qtype, str(failure))
            reply = _restored(error_reply(query, SERVFAIL, block.bufsize), query, relay, limit)
        except Exception:
            self._log_bug()
            reply = error_reply(query, SERVFAIL, block.bufsize)
        return reply

    async def _followed(self, reply: bytes, forward: Forward, follows: int) -> bytes:
        """The reply with its CNAME retargeted and the new target's records (rewrite cname: CoreDNS's
        upstream.Lookup, the target asked of the whole server, with the query's flags and options)."""
        follow, query = forward.answer.follow, forward.query
        assert follow is not None
        target = follow.target(reply)
        if target is None or not follows:
            return reply
        try:
            question = name_to_wire(target) + _TYPE_CLASS.pack(follow.qtype, CLASS_IN)
        except (FormErr, UnicodeError):  # not a name: nothing to look up
            return reply
        data = forward.data[:HEADER_LEN] + question + forward.data[HEADER_LEN + len(query.question):]
        looked_up = self._answer(data, True, forward.peer)  # over TCP: the whole answer, cut to the client's limit
        if isinstance(looked_up, Forward):
            looked_up = await self._finish(looked_up, follows - 1)
        return reply if looked_up is None else follow.join(reply, looked_up)

    def refuse(self, forward: Forward) -> bytes:
        """The reply to a Forward the transport cannot take on (too many in flight on a connection)."""
        return error_reply(forward.query, REFUSED, forward.block.bufsize)

    def _log(self, data: bytes, reply: bytes, via_tcp: bool, peer: Peer, seconds: float) -> None:
        """Queue a query-log line, for the block the query went to, if it logs."""
        assert self._writer is not None
        try:
            name = decode_query(data).name
        except (FormErr, Drop):
            return
        zone = longest_zone(name, self._zones)
        block = self._blocks[zone] if zone is not None else None
        if block is not None and block.query_log is not None:
            host, port = peer if peer is not None else ("", 0)
            self._writer.submit(block.query_log, QueryRecord(host, port, self._local, "tcp" if via_tcp else "udp",
                                                             data, reply, seconds))

    # -- metrics -------------------------------------------------------------------------------------
    def _tally_for(self, zone: str, plugin: str, data: bytes, reply: bytes, key: bytes, via_tcp: bool,
                   counts: tuple[Count, ...] = ()) -> Tally:
        assert self.metrics is not None
        qtype = key[-4] | key[-5] << 8  # the key ends with type, class and the mode byte
        return self.metrics.tally(self.server, zone, "", "tcp" if via_tcp else "udp", self.family, qtype,
                                  reply[3] & 0x0F, plugin, bool(key[-1] & MODE_DO), len(data), len(reply), counts)

    def _dropped(self, data: bytes, reply: bytes | None, via_tcp: bool) -> bytes | None:
        """A reply the server writes itself, before any block: counted under the zone `dropped`."""
        if reply is not None:
            self._count_reply(data, reply, DROPPED, "", via_tcp)
        return reply

    def _count_reply(self, data: bytes, reply: bytes, zone: str, plugin: str, via_tcp: bool,
                     counts: tuple[Count, ...] = ()) -> bytes:
        if self.metrics is not None:
            self._tally = self._tally_for_raw(zone, plugin, data, reply, via_tcp, counts)
        return reply

    def _tally_for_raw(self, zone: str, plugin: str, data: bytes, reply: bytes, via_tcp: bool,
                       counts: tuple[Count, ...] = ()) -> Tally:
        assert self.metrics is not None
        qtype, do = _question_type_and_do(data)
        return self.metrics.tally(self.server, zone, "", "tcp" if via_tcp else "udp", self.family, qtype,
                                  reply[3] & 0x0F, plugin, do, len(data), len(reply), counts)

    def _log_bug(self) -> None:
        if self._panicked is not None:
            self._panicked()
        now = time.monotonic()
        if now - self._last_error_log >= 1.0:  # at most one traceback a second
            self._last_error_log = now
            log.exception("internal error while answering a query (answered SERVFAIL)")


def reply_limit(via_tcp: bool, payload: int, bufsize: int) -> int:
    """The most a reply may take: a TCP message; over UDP the client's EDNS size up to the block's, at least 512."""
    return MAX_TCP_MESSAGE if via_tcp else max(min(payload, bufsize), NO_EDNS_PAYLOAD)


def _as_asked(data: bytes, wire: bytes, end: int) -> bytes:
    """A kept reply with the query's ID and its question as written (the case of its name); `end`: the name's end."""
    return data[:2] + wire[2:HEADER_LEN] + data[HEADER_LEN:end] + wire[end:]


def _from_upstream(data: bytes, wire: bytes, end: int, relay: Relay | None, limit: int) -> bytes:
    """A reply from the forward cache for the query `data`: its ID and question patched in, or written back."""
    if relay is None:
        return _as_asked(data, wire, end)
    return relay.restore(wire, data[:2], data[HEADER_LEN:end + 4], limit)


def _restored(reply: bytes, query: Query, relay: Relay | None, limit: int) -> bytes:
    """A reply to `query` written back by the rewrite that asked upstream for another question, if any."""
    if relay is None:
        return reply
    return relay.restore(reply, query.id.to_bytes(2, "big"), query.question, limit)


def _relayed(reply: bytes, query: Query) -> bytes:
    """A forwarded reply (ID 0, lower-case question) with the query's ID and question case."""
    end = HEADER_LEN + len(query.question)
    return query.id.to_bytes(2, "big") + reply[2:HEADER_LEN] + query.question + reply[end:]


def _named_client(trusted: tuple[Network, ...], data: bytes, peer: Peer) -> str | None:
    """The address a trusted sender's client-subnet option names (trust_client_subnet), else None."""
    if peer is None or not trusts(trusted, canonical_address(peer[0])):
        return None
    return client_subnet.client_address(data)


def _client_namespace(snapshot: Snapshot, named: str | None, peer: Peer) -> str | None:
    """The namespace of the client: the one a trusted client-subnet option named, else the peer."""
    if named is not None:
        return snapshot.client_namespace(named)
    return None if peer is None else snapshot.client_namespace(peer[0])


def _echo(named: str | None) -> bytes:
    """The client-subnet option a reply made for the client a trusted option named carries (scope /32): none else."""
    return b"" if named is None else client_subnet.option(named, scoped=True)


def _question_type_and_do(data: bytes) -> tuple[int, bool]:
    """The question's type and the DO bit of a query, from raw bytes (0, False when unreadable)."""
    try:
        query = decode_query(data)
    except (FormErr, Drop):
        return 0, False
    return query.qtype, query.do

