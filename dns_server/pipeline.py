"""One pipeline for every transport: `handle(wire, via_tcp) -> bytes | Forward | None`.

Theory of operation.  Answers are a pure function of (question, snapshot), so the pipeline keeps,
per snapshot, the encoded reply for every question it has answered.  The hot path reads only the
header and the question, builds the cache key (the question with its name lower-cased, plus a
byte for the EDNS mode and the RD/CD flags), and on a hit patches in the query's ID and question
case and returns.  On a miss it decodes the query properly, resolves, encodes, stores, and
returns.  In front of that, a UDP reply is also kept under the exact bytes of its query after the
ID: stub resolvers send the same bytes for the same question, so most queries are answered by one
dict lookup and a concatenation, without reading the question at all.  A new snapshot from the
registry replaces both caches as a whole (one assignment), so a reply never mixes two snapshots.

Questions outside the cluster zones are answered by the forwarder (the `Upstream`).  The
per-snapshot cache marks such a question with an empty reply, so the hot path goes straight to
the forwarder's own cache; on a hit the reply is patched and returned like any other, without a
task.  Only a miss comes back as `Forward`, which the transport finishes with `complete()` as a
bounded task.  The resolver is still asked first for every question after a snapshot change, so
a name the cluster starts to own (a reverse name of a new ClusterIP) is never answered from the
forwarder's cache.  Everything that escapes as an exception is a bug: the query gets SERVFAIL and
a rate-limited log line with the traceback.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from dnslib import DNSRecord

from dns_server.config import Config
from dns_server.encode import (
    BADVERS, MAX_TCP_MESSAGE, build, encode, error_reply, truncate, without_additional,
)
from dns_server.resolver import REFUSED, SERVFAIL, Answer, resolve
from dns_server.snapshot import Snapshot
from dns_server.upstreams import NoAnswer, Overloaded
from dns_server.wire import (
    HEADER_LEN, NO_EDNS_PAYLOAD, Drop, FormErr, Query, decode_query, header_only_reply, name_to_wire,
    question_end,
)

log = logging.getLogger(__name__)

FORMERR, NOTIMP = 1, 4
OPCODE_QUERY = 0
MAX_CACHED_ANSWERS = 100_000  # per snapshot; the cache is dropped and refilled past this
_OPT_PREFIX = b"\x00\x00\x29"  # root owner name, type OPT
_DO_BIT = 0x80  # in the high byte of the OPT flags
FORWARDED = b""  # in the per-snapshot cache: this question's answer comes from the forwarder


class Upstream(Protocol):
    """What the pipeline needs from the forwarder (dns_server.forward.Forwarder).

    Questions are given as cache keys (`Pipeline.cache_key`); replies come back with ID 0 and the
    question in lower case, already cut to `limit` bytes (truncated, TC set, when they do not fit).
    """

    def cached(self, key: bytes, limit: int) -> bytes | None:
        """A cached reply, without I/O, or None."""

    def saturated(self) -> bool:
        """Whether a new forwarded query would be refused."""

    async def forward(self, key: bytes, payload: int, via_tcp: bool, limit: int) -> bytes:
        """The upstream reply; raises Overloaded or NoAnswer."""


@dataclass(frozen=True, slots=True)
class Forward:
    """A query to finish upstream: the whole question, or (chase) a CNAME target's records."""

    data: bytes
    query: Query
    answer: Answer  # FORWARD, or an answer ending in a CNAME whose target lies outside the cluster
    via_tcp: bool


class Pipeline:
    def __init__(self, config: Config, snapshot: Snapshot, upstream: Upstream | None = None) -> None:
        self.config = config
        self.upstream = upstream
        self._max_payload = config.max_udp_payload
        # the snapshot, its answers by question key, and its final UDP replies by query bytes after the ID
        self._state: tuple[Snapshot, dict[bytes, bytes], dict[bytes, bytes]] = (snapshot, {}, {})
        self._last_error_log = 0.0

    @property
    def snapshot(self) -> Snapshot:
        return self._state[0]

    def publish(self, snapshot: Snapshot) -> None:
        """Serve `snapshot` from now on, with fresh answer caches (may be called from any thread)."""
        self._state = (snapshot, {}, {})

    def handle(self, data: bytes, via_tcp: bool) -> bytes | Forward | None:
        """The reply to one message, a Forward to finish upstream, or None to send nothing."""
        snapshot, cache, exact = self._state
        if not via_tcp:
            tail = exact.get(data[2:])
            if tail is not None:
                return data[:2] + tail
        try:
            # Fast path: a plain query (QR=0, opcode 0, one question, nothing but maybe an OPT).
            if (len(data) > HEADER_LEN and not data[2] & 0xF8
                    and data[4:10] == b"\x00\x01\x00\x00\x00\x00"):
                end = question_end(data)
                qend = end + 4
                arcount = data[11] | data[10] << 8
                mode = (data[2] & 0x01) << 2 | (data[3] & 0x10) >> 1  # RD and CD
                limit = NO_EDNS_PAYLOAD
                if arcount == 1 and data[qend:qend + 3] == _OPT_PREFIX and data[qend + 6:qend + 7] == b"\x00":
                    if len(data) != qend + 11 + (data[qend + 10] | data[qend + 9] << 8):
                        return self._slow(data, via_tcp, snapshot, cache, exact)
                    mode |= 2 if data[qend + 7] & _DO_BIT else 1
                    limit = max(min(data[qend + 4] | data[qend + 3] << 8, self._max_payload), NO_EDNS_PAYLOAD)
                elif arcount or len(data) != qend:
                    return self._slow(data, via_tcp, snapshot, cache, exact)
                name = data[HEADER_LEN:end]
                lowered = name.lower()
                key = lowered + data[end:qend] + bytes((mode,))
                reply = cache.get(key)
                if reply is not None:
                    forwarded = reply is FORWARDED
                    if forwarded:
                        assert self.upstream is not None
                        reply = self.upstream.cached(key, MAX_TCP_MESSAGE if via_tcp else limit)
                        if reply is None:
                            return self._slow(data, via_tcp, snapshot, cache, exact)
                    elif not via_tcp and len(reply) > limit:
                        reply = self._fitted(key, reply, qend - HEADER_LEN, limit, cache)
                    if name != lowered:  # echo the question's case: the cache holds it in lower case
                        reply = reply[:HEADER_LEN] + name + reply[end:]
                    reply = data[:2] + reply[2:]
                    # only cluster answers are kept by query bytes: the forwarder's expire with their TTLs
                    return reply if via_tcp or forwarded else _remember(exact, data, reply)
            return self._slow(data, via_tcp, snapshot, cache, exact)
        except (FormErr, Drop):
            return self._slow(data, via_tcp, snapshot, cache, exact)
        except Exception:  # a bug: answer SERVFAIL, keep serving
            self._log_bug()
            return header_only_reply(data, SERVFAIL)

    def _slow(self, data: bytes, via_tcp: bool, snapshot: Snapshot,
              cache: dict[bytes, bytes], exact: dict[bytes, bytes]) -> bytes | Forward | None:
        try:
            query = decode_query(data)
        except Drop:
            return None
        except FormErr:
            opcode = (data[2] >> 3) & 0xF
            return header_only_reply(data, FORMERR if opcode == OPCODE_QUERY else NOTIMP)
        try:
            return self._answer(data, query, via_tcp, snapshot, cache, exact)
        except Exception:
            self._log_bug()
            return error_reply(query, SERVFAIL, self._max_payload)

    def _answer(self, data: bytes, query: Query, via_tcp: bool, snapshot: Snapshot,
                cache: dict[bytes, bytes], exact: dict[bytes, bytes]) -> bytes | Forward | None:
        if query.opcode != OPCODE_QUERY:
            return error_reply(query, NOTIMP, self._max_payload)
        if query.edns and query.edns_version != 0:
            return error_reply(query, BADVERS, self._max_payload)
        answer = resolve(query.name, query.qtype, query.qclass, snapshot, self.config)
        key = self.cache_key(query)
        if len(cache) >= MAX_CACHED_ANSWERS:
            cache.clear()
        if answer.forward or answer.chase:
            if self.upstream is None:
                if answer.forward:
                    return error_reply(query, REFUSED, self._max_payload)
                answer = Answer(answer.rcode, answer.answer, authoritative=True)  # the CNAME alone
            else:
                return self._forwarded(data, query, answer, via_tcp, key, cache)
        reply = encode(query, answer, self._max_payload)
        cache[key] = reply
        question_len = len(query.question)
        if not via_tcp and len(reply) > self.udp_limit(query):
            reply = self._fitted(key, reply, question_len, self.udp_limit(query), cache)
        elif len(reply) > MAX_TCP_MESSAGE:
            reply = truncate(reply, question_len)
        # echo the question exactly as asked: the cached reply holds it in lower case
        reply = reply[:HEADER_LEN] + query.question + reply[HEADER_LEN + question_len:]
        return reply if via_tcp else _remember(exact, data, reply)

    def _forwarded(self, data: bytes, query: Query, answer: Answer, via_tcp: bool, key: bytes,
                   cache: dict[bytes, bytes]) -> bytes | Forward:
        """A forwarded question answered from the forwarder's cache, REFUSED, or a Forward."""
        assert self.upstream is not None
        limit = self._limit(query, via_tcp)
        if answer.forward:
            cache[key] = FORWARDED
            reply = self.upstream.cached(key, limit)
            if reply is not None:
                return self._relayed(reply, query)
        else:
            target = self.upstream.cached(self._chase_key(query, answer.chase), MAX_TCP_MESSAGE)
            if target is not None:
                return self._chased(query, answer, target, via_tcp)
        if self.upstream.saturated():
            return error_reply(query, REFUSED, self._max_payload)
        return Forward(data, query, answer, via_tcp)

    @staticmethod
    def cache_key(query: Query) -> bytes:
        """The same key the fast path computes from the raw bytes."""
        rd = (query.flags >> 8) & 0x01
        cd = (query.flags >> 4) & 0x01
        edns = (2 if query.do else 1) if query.edns else 0
        return query.key + bytes((rd << 2 | cd << 3 | edns,))

    @staticmethod
    def _chase_key(query: Query, target: str) -> bytes:
        """The key of the question for an ExternalName target: the query's type, class and mode."""
        key = Pipeline.cache_key(query)
        return name_to_wire(target) + key[-5:]

    def _limit(self, query: Query, via_tcp: bool) -> int:
        return MAX_TCP_MESSAGE if via_tcp else self.udp_limit(query)

    def udp_limit(self, query: Query) -> int:
        """The largest UDP reply this client accepts (RFC 6891 6.2.5, capped by our own limit)."""
        if not query.edns:
            return NO_EDNS_PAYLOAD
        return max(min(query.payload, self._max_payload), NO_EDNS_PAYLOAD)

    @staticmethod
    def _fitted(key: bytes, reply: bytes, question_len: int, limit: int, cache: dict[bytes, bytes]) -> bytes:
        """A reply too big for a UDP client, cut to fit `limit` bytes.

        Additional records are dropped first, without TC, since the client can do without them
        (RFC 2181 9); only when the answer and authority sections alone do not fit is the reply
        cut to its question with TC set, so the client retries over TCP.  Both forms are kept
        beside the reply (their keys cannot collide with a question key: a label is at most 63).
        """
        lean_key = b"A" + key
        lean = cache.get(lean_key)
        if lean is None:
            lean = cache[lean_key] = without_additional(reply, question_len)
        if len(lean) <= limit:
            return lean
        short_key = b"T" + key
        short = cache.get(short_key)
        if short is None:
            short = cache[short_key] = truncate(reply, question_len)
        return short

    async def complete(self, forward: Forward) -> bytes | None:
        """Finish a Forward: relay the question upstream, or append upstream records to a CNAME."""
        assert self.upstream is not None
        query = forward.query
        try:
            if forward.answer.forward:
                reply = await self.upstream.forward(self.cache_key(query), query.payload, forward.via_tcp,
                                                    self._limit(query, forward.via_tcp))
                return self._relayed(reply, query)
            target = await self.upstream.forward(self._chase_key(query, forward.answer.chase), query.payload,
                                                 forward.via_tcp, MAX_TCP_MESSAGE)
            return self._chased(query, forward.answer, target, forward.via_tcp)
        except Overloaded:
            return error_reply(query, REFUSED, self._max_payload)
        except NoAnswer:
            return error_reply(query, SERVFAIL, self._max_payload)
        except Exception:
            self._log_bug()
            return error_reply(query, SERVFAIL, self._max_payload)

    @staticmethod
    def _relayed(reply: bytes, query: Query) -> bytes:
        """A forwarder reply with the query's ID and question case."""
        end = HEADER_LEN + len(query.question)
        return query.id.to_bytes(2, "big") + reply[2:HEADER_LEN] + query.question + reply[end:]

    def _chased(self, query: Query, answer: Answer, target: bytes, via_tcp: bool) -> bytes:
        """The CNAME of an ExternalName followed by its target's records from upstream, in one answer."""
        upstream = DNSRecord.parse(target)
        message = build(query, upstream.header.rcode, answer, self._max_payload)
        message.header.aa = 0  # part of the answer is not ours (RFC 1035 4.1.1)
        message.rr.extend(upstream.rr)
        if not upstream.rr:
            message.auth.extend(upstream.auth)  # the target's SOA, for negative caching (RFC 2308 3)
        reply = bytes(message.pack())
        question_len = len(query.question)
        if len(reply) > self._limit(query, via_tcp):
            reply = truncate(reply, question_len)
        return reply[:HEADER_LEN] + query.question + reply[HEADER_LEN + question_len:]

    def _log_bug(self) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 1.0:  # at most one traceback a second
            self._last_error_log = now
            log.exception("internal error while answering a query (answered SERVFAIL)")


def _remember(exact: dict[bytes, bytes], query: bytes, reply: bytes) -> bytes:
    """Keep a final UDP reply under its query's bytes after the ID; returns the reply."""
    if len(exact) >= MAX_CACHED_ANSWERS:
        exact.clear()
    exact[query[2:]] = reply[2:]
    return reply
