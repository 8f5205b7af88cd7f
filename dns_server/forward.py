"""Asking the upstream resolvers, with the forwarding cache in front: the pipeline's `Upstream`.

Theory of operation.  The pipeline asks `cached()` on its hot path, synchronously: a hit costs a
dict lookup and no task.  On a miss the transport runs `forward()` as a task, which
- refuses at once (Overloaded -> REFUSED) when `max_concurrent` forwarded queries are in flight,
  as CoreDNS's forward plugin does;
- shares one upstream exchange among identical questions in flight;
- builds the upstream query from the question key alone (wire.query_for_key): a fresh random ID,
  the client's RD and CD bits, and, when the client sent EDNS, an OPT with its buffer size and DO
  bit (RFC 6891);
- asks the upstreams in the policy's order, each with a read timeout of 2 s and all within 5 s
  (CoreDNS's forward plugin), cycling through the list again while time is left; an upstream that
  refuses the connection is not asked again for this query;
- goes over UDP, retrying over TCP when the reply is truncated, or over TCP from the start when
  the client came over TCP (RFC 7766 6.2.1.1);
- over UDP, shares one connected socket per upstream among the queries in flight (each with an
  unpredictable ID of its own), replaced every 10 s as CoreDNS replaces its upstream connections,
  so the source port changes too (RFC 5452 9.2); a reply whose ID or question does not match a
  query in flight is discarded (RFC 5452 9.1);
- stores what it got in the cache and returns it with its TTLs as of now; when nothing answered
  in time it serves a stale entry if serve-stale allows one, else raises NoAnswer (-> SERVFAIL).
Every failure counts against the upstream; one that is marked down is probed with `. NS` every
0.5 s until it answers.  Prefetch (optional) refreshes popular entries in the background shortly
before they expire; serve-stale (optional) answers from expired entries while every upstream is
down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from typing import Callable, Coroutine

from dns_server.cache import BadReply, Entry, ForwardCache
from dns_server.config import MAX_UPSTREAMS, Config, format_address
from dns_server.upstreams import (
    DNS_PORT, MAX_FAILS, NoAnswer, Overloaded, Server, Upstreams, loops_back, resolv_conf_nameservers,
)
from dns_server.wire import MODE_RD, query_for_key, reply_matches

log = logging.getLogger(__name__)

READ_TIMEOUT = 2.0  # CoreDNS forward: read timeout per upstream
DEADLINE = 5.0  # CoreDNS forward: the overall timeout of one forwarded query
PROBE_INTERVAL = 0.5  # CoreDNS forward: health_check default
CHANNEL_LIFETIME = 10.0  # CoreDNS forward: `expire` of its cached upstream connections
MIN_WAIT = 0.01  # no new attempt with less time left (uvloop's timers have 1 ms resolution)
MAX_MESSAGE = 65535
MAX_READS = 64  # datagrams read per readiness callback before the loop gets a turn
ID_BATCH = 2048  # random bytes fetched at once: IDs for 1024 queries per system call
PROBE_KEY = b"\x00\x00\x02\x00\x01" + bytes((MODE_RD,))  # `. NS IN`, as CoreDNS's health check asks
_TC = 0x02


class Forwarder:
    """Forwards questions to the upstreams and caches the replies."""

    def __init__(self, upstreams: Upstreams, cache: ForwardCache, max_concurrent: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.upstreams = upstreams
        self.cache = cache
        self.max_concurrent = max_concurrent
        self._clock = clock
        self._in_flight = 0
        self._shared: dict[bytes, asyncio.Future[Entry]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._probes: dict[Server, asyncio.Task[None]] = {}
        self._channels: dict[Server, UdpChannel] = {}
        self._ids = QueryIds()

    # -- the pipeline's interface --------------------------------------------------------------
    def cached(self, key: bytes, limit: int) -> bytes | None:
        """A cached reply for the question key, fitting `limit` bytes (ID 0, question lower case)."""
        cache = self.cache
        now = self._clock()
        entry = cache.get(key, now)
        if entry is not None:
            if cache.prefetch and cache.wants_prefetch(entry, now) and not self.saturated():
                entry.refreshing = True
                self._spawn(self._refresh(key))
            return entry.render(now, limit)
        if cache.serve_stale and self.upstreams.all_down():
            stale = cache.stale(key, now)
            if stale is not None:
                return stale.render(now, limit, stale=True)
        return None

    def saturated(self) -> bool:
        """Whether a new forwarded query would be refused."""
        return self._in_flight >= self.max_concurrent

    async def forward(self, key: bytes, payload: int, via_tcp: bool, limit: int) -> bytes:
        """The upstream reply for the question key, fitting `limit` bytes; raises Overloaded or NoAnswer."""
        if self._in_flight >= self.max_concurrent:
            raise Overloaded()
        self._in_flight += 1
        try:
            entry = await self._resolve(key, payload, via_tcp)
        except NoAnswer:
            stale = self.cache.stale(key, self._clock())
            if stale is None:
                raise
            return stale.render(self._clock(), limit, stale=True)
        finally:
            self._in_flight -= 1
        return entry.render(self._clock(), limit)

    async def close(self) -> None:
        """Stop probing and prefetching, close the upstream sockets."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    # -- resolution ----------------------------------------------------------------------------
    async def _resolve(self, key: bytes, payload: int, via_tcp: bool) -> Entry:
        shared = self._shared.get(key)
        if shared is not None:
            return await asyncio.shield(shared)
        future: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._shared[key] = future
        try:
            entry = await self._ask_upstreams(key, payload, via_tcp)
        except BaseException as error:
            future.set_exception(error if isinstance(error, NoAnswer) else NoAnswer())
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._shared[key]
        future.set_result(entry)
        return entry

    async def _ask_upstreams(self, key: bytes, payload: int, via_tcp: bool) -> Entry:
        template = query_for_key(key, 0, payload)
        question_len = len(key) - 1
        deadline = self._clock() + DEADLINE
        candidates = self.upstreams.order()
        turn = 0
        while candidates:
            now = self._clock()
            if deadline - now < MIN_WAIT:
                break
            server = candidates[turn % len(candidates)]
            try:
                reply = await self._exchange(server, template, question_len, via_tcp, deadline)
                entry = self.cache.store(key, reply, self._clock())
            except TimeoutError:
                log.debug("upstream %s: no answer within %.1f s", server, min(READ_TIMEOUT, deadline - now))
                self._failed(server)
                turn += 1
            except (OSError, BadReply) as error:
                log.debug("upstream %s: %s", server, error)
                self._failed(server)
                candidates.remove(server)
            else:
                self._succeeded(server)
                return entry
        raise NoAnswer()

    async def _exchange(self, server: Server, query: bytes, question_len: int, via_tcp: bool,
                        deadline: float) -> bytes:
        """One upstream's reply: over UDP, or TCP when asked or when the UDP reply is truncated.

        `query` gets a fresh unpredictable ID for every exchange (RFC 5452 9.2).
        """
        if not via_tcp:
            reply = await self._channel(server).ask(query, question_len, self._ids, self._timeout(deadline))
            if not reply[2] & _TC:
                return reply
        query = self._ids.take().to_bytes(2, "big") + query[2:]
        return await _tcp(server, query, question_len, self._timeout(deadline))

    def _channel(self, server: Server) -> UdpChannel:
        """The server's UDP channel, replaced once it is CHANNEL_LIFETIME old."""
        channel = self._channels.get(server)
        loop = asyncio.get_running_loop()
        if channel is None or channel.closed or loop.time() - channel.opened >= CHANNEL_LIFETIME:
            if channel is not None:
                channel.retire()
            channel = self._channels[server] = UdpChannel(server, loop)
        return channel

    def _timeout(self, deadline: float) -> float:
        return max(min(READ_TIMEOUT, deadline - self._clock()), 0.0)

    async def _refresh(self, key: bytes) -> None:
        """Prefetch: ask upstream again for a popular entry about to expire."""
        self._in_flight += 1
        try:
            await self._resolve(key, self.cache.max_payload, False)
        except NoAnswer:
            pass  # the entry expires as it would have without prefetch
        finally:
            self._in_flight -= 1

    # -- health --------------------------------------------------------------------------------
    def _failed(self, server: Server) -> None:
        if self.upstreams.failed(server) and server not in self._probes:
            log.warning("upstream %s failed %d times in a row: marked down, probing it with '. NS'",
                        server, MAX_FAILS)
            task = self._spawn(self._probe(server))
            self._probes[server] = task
            task.add_done_callback(lambda _: self._probes.pop(server, None))

    def _succeeded(self, server: Server) -> None:
        if self.upstreams.succeeded(server):
            log.info("upstream %s answers again", server)

    async def _probe(self, server: Server) -> None:
        query = query_for_key(PROBE_KEY, 0, 0)
        while server.down:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                await self._channel(server).ask(query, len(PROBE_KEY) - 1, self._ids, READ_TIMEOUT)
            except OSError:  # TimeoutError included
                continue
            self._succeeded(server)  # any reply will do, whatever its rcode (as in CoreDNS)

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


def upstream_addresses(config: Config) -> list[tuple[str, int]]:
    """The upstreams to forward to: --upstream, else resolv.conf's nameservers; never ourselves."""
    if config.upstreams:
        candidates = list(config.upstreams)
    else:
        path = config.resolv_conf
        try:
            text = path.read_text(errors="replace")
        except OSError as error:
            log.warning("cannot read %s: %s", path, error.strerror or error)
            return []
        found, bad = resolv_conf_nameservers(text)
        for line in bad:
            log.warning("%s: ignoring %r: not an IP address", path, line)
        if len(found) > MAX_UPSTREAMS:
            log.warning("%s lists %d nameservers: using the first %d", path, len(found), MAX_UPSTREAMS)
        candidates = [(host, DNS_PORT) for host in found[:MAX_UPSTREAMS]]
    chosen = []
    for upstream in candidates:
        if loops_back(upstream, config.listen, is_local_address):
            log.warning("not forwarding to %s: it is one of our own listen addresses (queries would loop)",
                        format_address(*upstream))
        else:
            chosen.append(upstream)
    return chosen


def is_local_address(host: str) -> bool:
    """Whether `host` is an address of this machine (only those can be bound)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, 0))
        except OSError:
            return False
    return True


def forwarder_for(config: Config) -> Forwarder | None:
    """The forwarder for names outside the cluster zones, or None (they are refused) without upstreams."""
    addresses = upstream_addresses(config)
    if not addresses:
        log.warning("no upstream resolvers: names outside the cluster zones will be refused")
        return None
    cache = ForwardCache(config.cache_size, config.max_udp_payload, config.serve_stale, config.prefetch)
    upstreams = Upstreams(addresses, config.upstream_policy, random.Random())
    log.info("forwarding names outside the cluster zones to %s (policy %s, cache of %d answers%s%s)",
             ", ".join(format_address(*a) for a in addresses), config.upstream_policy, config.cache_size,
             ", prefetch" if config.prefetch else "",
             f", serve-stale {config.serve_stale:g} s" if config.serve_stale else "")
    return Forwarder(upstreams, cache, config.max_concurrent)


class QueryIds:
    """Unpredictable query IDs (RFC 5452 9.2), from the system's random source in batches."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def take(self) -> int:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(ID_BATCH), 0
        at = self._at
        self._at += 2
        return self._pool[at] << 8 | self._pool[at + 1]


class UdpChannel:
    """A connected UDP socket to one upstream, shared by the queries in flight to it.

    A datagram goes to the query waiting under its ID, and only if it answers that query (ID and
    question, RFC 5452 9.1); anything else is dropped.  A socket error such as an ICMP port
    unreachable fails every query waiting here: they all went to that upstream.  A retired channel
    takes no new queries and closes once the last one in flight has finished.
    """

    def __init__(self, server: Server, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.opened = loop.time()
        self.closed = False
        self._retired = False
        self._loop = loop
        self._waiting: dict[int, tuple[bytes, int, asyncio.Future[bytes]]] = {}
        self._sock = socket.socket(socket.AF_INET6 if server.ipv6 else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.setblocking(False)
            self._sock.connect((server.host, server.port))
        except OSError:
            self._sock.close()
            raise
        loop.add_reader(self._sock.fileno(), self._readable)

    async def ask(self, query: bytes, question_len: int, ids: QueryIds, timeout: float) -> bytes:
        """The reply to `query` (its ID replaced by a fresh one); raises OSError or TimeoutError."""
        qid = ids.take()
        while qid in self._waiting:
            qid = ids.take()
        query = qid.to_bytes(2, "big") + query[2:]
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._waiting[qid] = (query, question_len, future)
        try:
            self._sock.send(query)
            async with asyncio.timeout(timeout):
                return await future
        finally:
            del self._waiting[qid]
            if self._retired and not self._waiting:
                self.close()

    def _readable(self) -> None:
        for _ in range(MAX_READS):
            try:
                reply = self._sock.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError as error:
                for _, _, future in self._waiting.values():
                    if not future.done():
                        future.set_exception(error)
                # libuv (uvloop) stops watching a socket once it reported an error: watch it again
                self._loop.remove_reader(self._sock.fileno())
                self._loop.add_reader(self._sock.fileno(), self._readable)
                return
            waiting = self._waiting.get(int.from_bytes(reply[:2], "big")) if len(reply) >= 2 else None
            if waiting is not None and not waiting[2].done() and reply_matches(reply, waiting[0], waiting[1]):
                waiting[2].set_result(reply)
            else:
                log.debug("upstream %s: discarded a reply that matches no query in flight", self.server)

    def retire(self) -> None:
        self._retired = True
        if not self._waiting:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for _, _, future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionAbortedError("the upstream socket was closed"))


async def _tcp(server: Server, query: bytes, question_len: int, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET6 if server.ipv6 else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (server.host, server.port))
            await loop.sock_sendall(sock, len(query).to_bytes(2, "big") + query)
            while True:
                length = int.from_bytes(await _recv_exactly(sock, 2), "big")
                reply = await _recv_exactly(sock, length)
                if reply_matches(reply, query, question_len):
                    return reply
                log.debug("upstream %s: discarded a reply that does not match the query", server)


async def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < count:
        chunk = await loop.sock_recv(sock, count - len(data))
        if not chunk:
            raise ConnectionResetError("the upstream closed the connection")
        data += chunk
    return data
