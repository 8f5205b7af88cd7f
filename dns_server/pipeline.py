"""One pipeline for every transport: `handle(wire, via_tcp) -> bytes | Forward | None`.

Theory of operation.  Answers are a pure function of (question, snapshot), so the pipeline keeps,
per snapshot, the encoded reply for every question it has answered.  The hot path reads only the
header and the question, builds the cache key (the question with its name lower-cased, plus a
byte for the EDNS mode and the RD/CD flags), and on a hit patches in the query's ID and question
case and returns.  On a miss it decodes the query properly, resolves, encodes, stores, and
returns.  A new snapshot from the registry replaces the cache as a whole (one assignment), so a
reply never mixes two snapshots.

Questions outside the cluster zones come back as `Forward`; the transport runs `complete()` for
them as a bounded task.  Everything that escapes as an exception is a bug: the query gets
SERVFAIL and a rate-limited log line with the traceback.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from dnslib import RR as WireRR

from dns_server.config import Config
from dns_server.encode import BADVERS, MAX_TCP_MESSAGE, build, encode, error_reply, truncate
from dns_server.resolver import REFUSED, SERVFAIL, Answer, resolve
from dns_server.snapshot import Snapshot
from dns_server.wire import (
    HEADER_LEN, NO_EDNS_PAYLOAD, Drop, FormErr, Query, decode_query, header_only_reply, question_end,
)

log = logging.getLogger(__name__)

FORMERR, NOTIMP = 1, 4
OPCODE_QUERY = 0
MAX_CACHED_ANSWERS = 100_000  # per snapshot; the cache is dropped and refilled past this
_OPT_PREFIX = b"\x00\x00\x29"  # root owner name, type OPT
_DO_BIT = 0x80  # in the high byte of the OPT flags


class Upstream(Protocol):
    """What the pipeline needs from the forwarder (dns_server.forward.Forwarder)."""

    async def forward(self, data: bytes, query: Query, via_tcp: bool) -> bytes: ...

    async def lookup(self, name: str, qtype: int, *, do: bool, via_tcp: bool) -> tuple[int, list[WireRR]]: ...


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
        self._state: tuple[Snapshot, dict[bytes, bytes]] = (snapshot, {})
        self._last_error_log = 0.0

    @property
    def snapshot(self) -> Snapshot:
        return self._state[0]

    def publish(self, snapshot: Snapshot) -> None:
        """Serve `snapshot` from now on, with a fresh answer cache (may be called from any thread)."""
        self._state = (snapshot, {})

    def handle(self, data: bytes, via_tcp: bool) -> bytes | Forward | None:
        """The reply to one message, a Forward to finish upstream, or None to send nothing."""
        snapshot, cache = self._state
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
                        return self._slow(data, via_tcp, snapshot, cache)
                    mode |= 2 if data[qend + 7] & _DO_BIT else 1
                    limit = max(min(data[qend + 4] | data[qend + 3] << 8, self._max_payload), NO_EDNS_PAYLOAD)
                elif arcount or len(data) != qend:
                    return self._slow(data, via_tcp, snapshot, cache)
                name = data[HEADER_LEN:end]
                lowered = name.lower()
                key = lowered + data[end:qend] + bytes((mode,))
                reply = cache.get(key)
                if reply is not None:
                    if not via_tcp and len(reply) > limit:
                        reply = self._truncated(key, reply, qend - HEADER_LEN, cache)
                    if name == lowered:
                        return data[:2] + reply[2:]
                    return data[:2] + reply[2:HEADER_LEN] + name + reply[end:]
            return self._slow(data, via_tcp, snapshot, cache)
        except (FormErr, Drop):
            return self._slow(data, via_tcp, snapshot, cache)
        except Exception:  # a bug: answer SERVFAIL, keep serving
            self._log_bug()
            return header_only_reply(data, SERVFAIL)

    def _slow(self, data: bytes, via_tcp: bool, snapshot: Snapshot,
              cache: dict[bytes, bytes]) -> bytes | Forward | None:
        try:
            query = decode_query(data)
        except Drop:
            return None
        except FormErr:
            opcode = (data[2] >> 3) & 0xF
            return header_only_reply(data, FORMERR if opcode == OPCODE_QUERY else NOTIMP)
        try:
            return self._answer(data, query, via_tcp, snapshot, cache)
        except Exception:
            self._log_bug()
            return error_reply(query, SERVFAIL, self._max_payload)

    def _answer(self, data: bytes, query: Query, via_tcp: bool, snapshot: Snapshot,
                cache: dict[bytes, bytes]) -> bytes | Forward | None:
        if query.opcode != OPCODE_QUERY:
            return error_reply(query, NOTIMP, self._max_payload)
        if query.edns and query.edns_version != 0:
            return error_reply(query, BADVERS, self._max_payload)
        answer = resolve(query.name, query.qtype, query.qclass, snapshot, self.config)
        if answer.forward or answer.chase:
            if self.upstream is None:
                if answer.forward:
                    return error_reply(query, REFUSED, self._max_payload)
                answer = Answer(answer.rcode, answer.answer, authoritative=True)  # the CNAME alone
            else:
                return Forward(data, query, answer, via_tcp)
        reply = encode(query, answer, self._max_payload)
        key = self.cache_key(query)
        if len(cache) >= MAX_CACHED_ANSWERS:
            cache.clear()
        cache[key] = reply
        question_len = len(query.question)
        if not via_tcp and len(reply) > self.udp_limit(query):
            reply = self._truncated(key, reply, question_len, cache)
        elif len(reply) > MAX_TCP_MESSAGE:
            reply = truncate(reply, question_len)
        # echo the question exactly as asked: the cached reply holds it in lower case
        return reply[:HEADER_LEN] + query.question + reply[HEADER_LEN + question_len:]

    @staticmethod
    def cache_key(query: Query) -> bytes:
        """The same key the fast path computes from the raw bytes."""
        rd = (query.flags >> 8) & 0x01
        cd = (query.flags >> 4) & 0x01
        edns = (2 if query.do else 1) if query.edns else 0
        return query.key + bytes((rd << 2 | cd << 3 | edns,))

    def udp_limit(self, query: Query) -> int:
        """The largest UDP reply this client accepts (RFC 6891 6.2.5, capped by our own limit)."""
        if not query.edns:
            return NO_EDNS_PAYLOAD
        return max(min(query.payload, self._max_payload), NO_EDNS_PAYLOAD)

    @staticmethod
    def _truncated(key: bytes, reply: bytes, question_len: int, cache: dict[bytes, bytes]) -> bytes:
        tkey = b"T" + key
        short = cache.get(tkey)
        if short is None:
            short = cache[tkey] = truncate(reply, question_len)
        return short

    async def complete(self, forward: Forward) -> bytes | None:
        """Finish a Forward: relay the question upstream, or append upstream records to a CNAME."""
        assert self.upstream is not None
        query = forward.query
        try:
            if forward.answer.forward:
                reply = await self.upstream.forward(forward.data, query, forward.via_tcp)
            else:
                rcode, records = await self.upstream.lookup(
                    forward.answer.chase, query.qtype, do=query.do, via_tcp=forward.via_tcp)
                message = build(query, rcode, forward.answer, self._max_payload)
                message.header.aa = 0  # part of the answer is not ours (RFC 1035 4.1.1)
                message.rr.extend(records)
                reply = bytes(message.pack())
        except Exception:
            self._log_bug()
            return error_reply(query, SERVFAIL, self._max_payload)
        if not forward.via_tcp and len(reply) > self.udp_limit(query):
            return truncate(reply, len(query.question))
        return reply

    def _log_bug(self) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 1.0:  # at most one traceback a second
            self._last_error_log = now
            log.exception("internal error while answering a query (answered SERVFAIL)")

