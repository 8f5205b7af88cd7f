"""One `forward` directive: its upstreams, their health, and the exchanges with them.

Theory of operation.  `exchange()` sends one question (given as a question key) upstream and
returns the upstream's reply as it came.  It
- refuses at once (Overloaded -> REFUSED) when `max_concurrent` exchanges are in flight, as
  CoreDNS's forward plugin does;
- builds the upstream query from the question key alone (wire.query_for_key): a fresh random ID,
  the client's RD and CD bits, and, when the client sent EDNS, an OPT with its buffer size and DO
  bit (RFC 6891); with `client_subnet`, an OPT in any case, carrying the client's whole address
  (protocol/client_subnet.py);
- asks the upstreams in the policy's order, each with a read timeout of 2 s and all within 5 s
  (CoreDNS's forward plugin), cycling through the list again while time is left; an upstream that
  refuses the connection is not asked again for this query;
- goes over UDP, retrying over TCP when the reply is truncated, or over TCP from the start when
  the client came over TCP (RFC 7766 6.2.1.1); `force_tcp` always uses TCP, `prefer_udp` always
  starts with UDP; a `tls://` upstream always over TLS, on kept connections (tls.py);
- over UDP, shares one connected socket per upstream among the queries in flight (each with an
  unpredictable ID of its own), replaced every `expire` seconds as CoreDNS replaces its upstream
  connections, so the source port changes too (RFC 5452 9.2); a reply whose ID or question does not
  match a query in flight is discarded (RFC 5452 9.1).
Every failure counts against the upstream (a failed TLS handshake too: the query was never sent);
one that is marked down is probed with `<domain> NS` every `health_check` seconds until it answers,
over TLS for a `tls://` upstream and over TCP with `force_tcp`.  The cache, prefetch and serve-stale
are the block's (outbound.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import ssl
import time
from typing import Callable, Coroutine, Protocol

from dns_server.plugins.forward.setup import ForwardSettings
from dns_server.plugins.forward.tls import TlsPool
from dns_server.plugins.forward.upstreams import NoAnswer, Overloaded, Server, Upstreams
from dns_server.protocol import client_subnet
from dns_server.protocol.client_subnet import CLIENT_SUBNET
from dns_server.protocol.codes import CLASS_IN, MAX_TCP_MESSAGE, NS, TC
from dns_server.protocol.wire import MODE_RD, has_option, key_question_len, name_to_wire, query_for_key, reply_matches

log = logging.getLogger(__name__)

READ_TIMEOUT = 2.0  # CoreDNS forward: read timeout per upstream
DEADLINE = 5.0  # CoreDNS forward: the overall timeout of one forwarded query
MIN_WAIT = 0.01  # no new attempt with less time left (uvloop's timers have 1 ms resolution)
MAX_READS = 64  # datagrams read per readiness callback before the loop gets a turn
ID_BATCH = 2048  # random bytes fetched at once: IDs for 1024 queries per system call
NS_IN = NS.to_bytes(2, "big") + CLASS_IN.to_bytes(2, "big")  # the health probe's question type and class


class ProxyMetrics(Protocol):
    """What the forwarder reports to the metrics (coredns_proxy_*, coredns_forward_*)."""

    def request(self, to: str, rcode: int | None, seconds: float) -> None:
        """One exchange with an upstream; rcode None when it failed (no reply)."""

    def health_failure(self, to: str) -> None: ...

    def rejected(self) -> None:
        """A query refused because `max_concurrent` exchanges were in flight."""

    def broken(self) -> None:
        """Every upstream was down: one was tried at random."""


class _NoMetrics:
    def request(self, to: str, rcode: int | None, seconds: float) -> None:
        pass

    def health_failure(self, to: str) -> None:
        pass

    def rejected(self) -> None:
        pass

    def broken(self) -> None:
        pass


class Forwarder:
    """Sends questions to the upstreams of one `forward` directive."""

    def __init__(self, settings: ForwardSettings, rng: random.Random | None = None,
                 metrics: ProxyMetrics | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.upstreams = Upstreams([(u.host, u.port) for u in settings.to], settings.policy, rng or random.Random(),
                                   settings.max_fails, settings.failfast_all_unhealthy)
        self.metrics: ProxyMetrics = metrics or _NoMetrics()
        self._clock = clock
        self._in_flight = 0
        self._background: set[asyncio.Task[None]] = set()
        self._probes: dict[Server, asyncio.Task[None]] = {}
        self._channels: dict[Server, UdpChannel] = {}
        self._tls: dict[Server, TlsPool] = {}  # the tls:// upstreams
        for server, upstream in zip(self.upstreams.servers, settings.to):
            if upstream.tls_name is not None:
                if settings.tls_context is None:
                    raise ValueError(f"tls://{upstream} has no TLS context")
                self._tls[server] = TlsPool(server, settings.tls_context, upstream.tls_name, settings.expire)
        self._ids = QueryIds()
        self._probe_key = name_to_wire(settings.health_check_domain) + NS_IN + bytes(
            (MODE_RD if settings.health_check_rd else 0,))

    def saturated(self) -> bool:
        """Whether a new exchange would be refused."""
        limit = self.settings.max_concurrent
        return bool(limit) and self._in_flight >= limit

    async def exchange(self, key: bytes, payload: int, via_tcp: bool, client: str | None = None) -> bytes:
        """The upstream reply for the question key (asked for `client`, with `client_subnet`); raises
        Overloaded or NoAnswer."""
        if self.saturated():
            self.metrics.rejected()
            raise Overloaded()
        options = b""
        if client and self.settings.client_subnet and not has_option(key[key_question_len(key):-1], CLIENT_SUBNET):
            options = client_subnet.option(client, scoped=False)  # unless a rewrite rule wrote the client's subnet
        self._in_flight += 1
        try:
            return await self._ask_upstreams(key, payload, via_tcp, options)
        finally:
            self._in_flight -= 1

    async def close(self) -> None:
        """Stop probing, close the upstream sockets."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        for pool in self._tls.values():
            pool.close()

    # -- exchanges -----------------------------------------------------------------------------
    async def _ask_upstreams(self, key: bytes, payload: int, via_tcp: bool, options: bytes) -> bytes:
        template = query_for_key(key, 0, payload, options)
        question_len = key_question_len(key)
        deadline = self._clock() + DEADLINE
        candidates = self.upstreams.order()
        if not candidates:
            raise NoAnswer("no healthy upstream (failfast_all_unhealthy_upstreams)")
        if all(server.down for server in candidates):
            self.metrics.broken()
        tcp = self.settings.force_tcp or (via_tcp and not self.settings.prefer_udp)
        reason = "no upstream answered"
        turn = 0
        while candidates:
            now = self._clock()
            if deadline - now < MIN_WAIT:
                break
            server = candidates[turn % len(candidates)]
            proto = "tcp-tls" if server in self._tls else "tcp" if tcp else "udp"
            try:
                reply = await self._exchange(server, template, question_len, tcp, deadline)
            except TimeoutError:
                reason = f"read {proto} {server}: i/o timeout"
                log.debug("upstream %s: no answer within %.1f s", server, min(READ_TIMEOUT, deadline - now))
                self.metrics.request(str(server), None, self._clock() - now)
                self._failed(server)
                turn += 1
            except OSError as error:
                reason = f"{proto} {server}: {_failure_text(error)}"
                log.debug("upstream %s: %s", server, error)
                self.metrics.request(str(server), None, self._clock() - now)
                self._failed(server)
                candidates.remove(server)
            else:
                self.metrics.request(str(server), reply[3] & 0x0F, self._clock() - now)
                self._succeeded(server)
                return reply
        raise NoAnswer(reason)

    async def _exchange(self, server: Server, query: bytes, question_len: int, tcp: bool,
                        deadline: float) -> bytes:
        """One upstream's reply: over UDP, or TCP when asked or when the UDP reply is truncated.

        `query` gets a fresh unpredictable ID for every exchange (RFC 5452 9.2).  A `tls://` upstream:
        over TLS, always.
        """
        pool = self._tls.get(server)
        if pool is not None:
            query = self._ids.take().to_bytes(2, "big") + query[2:]
            return await pool.exchange(query, question_len, self._timeout(deadline))
        if not tcp:
            reply = await self._channel(server).ask(query, question_len, self._ids, self._timeout(deadline))
            if not reply[2] & TC:
                return reply
        query = self._ids.take().to_bytes(2, "big") + query[2:]
        return await _tcp(server, query, question_len, self._timeout(deadline))

    def _channel(self, server: Server) -> UdpChannel:
        """The server's UDP channel, replaced once it is `expire` seconds old."""
        channel = self._channels.get(server)
        loop = asyncio.get_running_loop()
        if channel is None or channel.closed or loop.time() - channel.opened >= self.settings.expire:
            if channel is not None:
                channel.retire()
            channel = self._channels[server] = UdpChannel(server, loop)
        return channel

    def _timeout(self, deadline: float) -> float:
        return max(min(READ_TIMEOUT, deadline - self._clock()), 0.0)

    # -- health --------------------------------------------------------------------------------
    def _failed(self, server: Server) -> None:
        if self.upstreams.failed(server) and server not in self._probes:
            log.warning("upstream %s failed %d times in a row: marked down, probing it every %g s",
                        server, server.max_fails, self.settings.health_check)
            task = self._spawn(self._probe(server))
            self._probes[server] = task
            task.add_done_callback(lambda _: self._probes.pop(server, None))

    def _succeeded(self, server: Server) -> None:
        if self.upstreams.succeeded(server):
            log.info("upstream %s answers again", server)

    async def _probe(self, server: Server) -> None:
        query = query_for_key(self._probe_key, 0, 0)
        while server.down:
            await asyncio.sleep(self.settings.health_check)
            pool = self._tls.get(server)
            try:
                if pool is not None:
                    query = self._ids.take().to_bytes(2, "big") + query[2:]
                    await pool.probe(query, len(self._probe_key) - 1, READ_TIMEOUT)
                elif self.settings.force_tcp:  # probed the way it is asked, as CoreDNS does
                    query = self._ids.take().to_bytes(2, "big") + query[2:]
                    await _tcp(server, query, len(self._probe_key) - 1, READ_TIMEOUT)
                else:
                    await self._channel(server).ask(query, len(self._probe_key) - 1, self._ids, READ_TIMEOUT)
            except OSError:  # TimeoutError and failed TLS handshakes included
                self.metrics.health_failure(str(server))
                continue
            self._succeeded(server)  # any reply will do, whatever its rcode (as in CoreDNS)

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


def _failure_text(error: OSError) -> str:
    """Why an exchange failed, in words: the system's text, or what the TLS handshake found."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"tls: failed to verify certificate: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return f"tls: {error.reason or error}"
    # asyncio's sock_connect words a refusal as "Connect call failed (...)"; its TLS handshake says nothing of an EOF
    return os.strerror(error.errno) if error.errno else str(error) or "the upstream closed the connection"


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
                reply = self._sock.recv(MAX_TCP_MESSAGE)
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
