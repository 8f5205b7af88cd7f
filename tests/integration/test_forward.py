"""The forwarder's exchanges, against an in-process stub upstream on loopback.

A stub (not a real server) because these cases need replies no real resolver sends on purpose:
a wrong ID, a wrong question, a truncated reply followed by a good one over TCP, silence on
demand.  The stub is a real UDP and TCP socket pair, so the forwarder's socket code runs as in
production; the real-upstream behaviour is covered by tests/integration/test_forwarding.py.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Awaitable, Callable, TypeVar

import dns.flags
import dns.message
import dns.rrset
import pytest
import uvloop

from dns_server import forward
from dns_server.cache import ForwardCache
from dns_server.forward import Forwarder
from dns_server.pipeline import Pipeline
from dns_server.upstreams import MAX_FAILS, NoAnswer, Overloaded, Upstreams
from dns_server.wire import decode_query

T = TypeVar("T")
Responder = Callable[[dns.message.Message, bool], list[bytes]]


def answer(query: dns.message.Message, address: str = "192.0.2.1", ttl: int = 300, **changes: object) -> bytes:
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text(query.question[0].name, ttl, "IN", "A", address))
    for name, value in changes.items():
        setattr(reply, name, value)
    return reply.to_wire()


class StubUpstream:
    """UDP and TCP on one loopback port; `respond` decides what each query gets (possibly nothing)."""

    def __init__(self, respond: Responder, port: int = 0) -> None:
        self.respond = respond
        self.received: list[tuple[dns.message.Message, bool]] = []
        self.sources: list[tuple[str, int]] = []  # where each UDP query came from
        self.port = port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.AbstractServer | None = None

    async def start(self) -> StubUpstream:
        loop = asyncio.get_running_loop()
        stub = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                stub.sources.append(addr)
                for reply in stub._answer(data, False):
                    self.transport.sendto(reply, addr)  # type: ignore[attr-defined]

        wanted = self.port  # 0: any port whose number is free for both UDP and TCP
        while True:
            self._udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", wanted))
            self.port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", self.port)
            except OSError:
                self._udp.close()
                if wanted:
                    raise
                continue
            return self

    def _answer(self, data: bytes, via_tcp: bool) -> list[bytes]:
        query = dns.message.from_wire(data)
        self.received.append((query, via_tcp))
        return self.respond(query, via_tcp)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                for reply in self._answer(await reader.readexactly(length), True):
                    writer.write(len(reply).to_bytes(2, "big") + reply)
        except asyncio.IncompleteReadError:
            writer.close()

    def close(self) -> None:
        assert self._udp is not None and self._tcp is not None
        self._udp.close()
        self._tcp.close()


class Clock:
    """Monotonic time that a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return asyncio.get_running_loop().time() + self.offset


def closed_port() -> int:
    """A loopback UDP port nobody listens on (bound, then closed at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


OPEN: list[Forwarder] = []
RUNNERS = {"asyncio": asyncio.run, "uvloop": uvloop.run}  # the server uses uvloop when installed
runner = asyncio.run


@pytest.fixture(autouse=True, params=sorted(RUNNERS))
def event_loop_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs on both event loops: they differ in how socket errors are reported."""
    monkeypatch.setitem(globals(), "runner", RUNNERS[request.param])


def run(test: Callable[[], Awaitable[T]]) -> T:
    """Run a test coroutine (60 s at most), closing every forwarder it made."""
    async def main() -> T:
        try:
            return await asyncio.wait_for(test(), 60)
        finally:
            for forwarder in OPEN:
                await forwarder.close()
            OPEN.clear()

    return runner(main())


def key_of(name: str, qtype: str = "A", **kw: object) -> bytes:
    return Pipeline.cache_key(decode_query(dns.message.make_query(name, qtype, **kw).to_wire()))  # type: ignore[arg-type]


def forwarder_for(*ports: int, policy: str = "sequential", max_concurrent: int = 100, serve_stale: float = 0,
                  prefetch: bool = False, clock: Callable[[], float] | None = None) -> Forwarder:
    upstreams = Upstreams([("127.0.0.1", port) for port in ports], policy, random.Random(1))
    cache = ForwardCache(100, 1232, serve_stale, prefetch)
    forwarder = Forwarder(upstreams, cache, max_concurrent, clock) if clock else Forwarder(upstreams, cache, max_concurrent)
    OPEN.append(forwarder)
    return forwarder


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same logic with shorter timers, so a silent upstream costs a fraction of a second."""
    monkeypatch.setattr(forward, "READ_TIMEOUT", 0.2)
    monkeypatch.setattr(forward, "DEADLINE", 0.5)
    monkeypatch.setattr(forward, "PROBE_INTERVAL", 0.05)


def test_replies_with_a_wrong_id_or_question_are_discarded() -> None:
    def respond(query: dns.message.Message, via_tcp: bool) -> list[bytes]:
        wrong_id = answer(query, "192.0.2.66", id=(query.id + 1) % 65536)
        other = dns.message.make_query("evil.example.com", "A")
        other.id = query.id
        wrong_question = answer(other, "192.0.2.67")
        return [wrong_id, wrong_question, answer(query, "192.0.2.1")]

    async def test() -> None:
        stub = await StubUpstream(respond).start()
        reply = dns.message.from_wire(await forwarder_for(stub.port).forward(key_of("www.example.com"), 512, False, 512))
        assert reply.answer[0][0].to_text() == "192.0.2.1"
        stub.close()

    run(test)


def test_an_upstream_sending_only_wrong_replies_is_no_answer() -> None:
    async def test() -> None:
        stub = await StubUpstream(lambda q, tcp: [answer(q, id=(q.id + 1) % 65536)]).start()
        with pytest.raises(NoAnswer):
            await forwarder_for(stub.port).forward(key_of("www.example.com"), 512, False, 512)
        stub.close()

    run(test)


def test_the_query_carries_the_clients_rd_cd_buffer_size_and_do_bit() -> None:
    async def test() -> None:
        stub = await StubUpstream(lambda q, tcp: [answer(q)]).start()
        key = key_of("WWW.Example.com", "A", use_edns=0, payload=4096, want_dnssec=True)
        await forwarder_for(stub.port).forward(key, 4096, False, 1232)
        (query, via_tcp), = stub.received
        assert not via_tcp and query.flags & dns.flags.RD
        assert query.edns == 0 and query.payload == 4096 and query.ednsflags & dns.flags.DO
        assert query.question[0].name.to_text() == "www.example.com."
        plain = dns.message.make_query("plain.example.com", "A")
        plain.flags = dns.flags.CD  # no RD, CD set, no EDNS
        await forwarder_for(stub.port).forward(Pipeline.cache_key(decode_query(plain.to_wire())), 512, False, 512)
        query = stub.received[-1][0]
        assert query.flags & dns.flags.CD and not query.flags & dns.flags.RD and query.edns == -1
        stub.close()

    run(test)


def test_a_truncated_reply_is_retried_over_tcp_and_tcp_clients_go_over_tcp() -> None:
    def respond(query: dns.message.Message, via_tcp: bool) -> list[bytes]:
        if via_tcp:
            return [answer(query)]
        return [answer(query, flags=query.flags | dns.flags.QR | dns.flags.TC)]

    async def test() -> None:
        stub = await StubUpstream(respond).start()
        reply = dns.message.from_wire(await forwarder_for(stub.port).forward(key_of("a.example.com"), 512, False, 512))
        assert not reply.flags & dns.flags.TC and reply.answer
        assert [via_tcp for _, via_tcp in stub.received] == [False, True]
        await forwarder_for(stub.port).forward(key_of("b.example.com"), 512, True, 65535)
        assert [via_tcp for _, via_tcp in stub.received] == [False, True, True]
        stub.close()

    run(test)


def test_failover_and_down_marking_and_probing() -> None:
    silent = True

    def dead_until_revived(query: dns.message.Message, via_tcp: bool) -> list[bytes]:
        return [] if silent else [answer(query, "192.0.2.9")]

    async def test() -> None:
        nonlocal silent
        first = await StubUpstream(dead_until_revived).start()
        second = await StubUpstream(lambda q, tcp: [answer(q, "192.0.2.2")]).start()
        forwarder = forwarder_for(first.port, second.port)
        for i in range(MAX_FAILS):
            reply = dns.message.from_wire(await forwarder.forward(key_of(f"n{i}.example.com"), 512, False, 512))
            assert reply.answer[0][0].to_text() == "192.0.2.2"
        assert forwarder.upstreams.servers[0].down
        asked = len(first.received)
        await forwarder.forward(key_of("n9.example.com"), 512, False, 512)
        assert all(q.question[0].name.to_text() == "." for q, _ in first.received[asked:])  # only probes now
        silent = False
        await until(lambda: not forwarder.upstreams.servers[0].down)
        reply = dns.message.from_wire(await forwarder.forward(key_of("back.example.com"), 512, False, 512))
        assert reply.answer[0][0].to_text() == "192.0.2.9"
        await forwarder.close()
        first.close()
        second.close()

    run(test)


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll `condition` on the running loop until it holds; TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_a_refusing_upstream_is_probed_until_it_answers() -> None:
    """A port nobody listens on (ICMP port unreachable) is marked down, then found again by the probe."""
    async def test() -> None:
        port = closed_port()
        forwarder = forwarder_for(port)
        for i in range(MAX_FAILS):
            with pytest.raises(NoAnswer):
                await forwarder.forward(key_of(f"r{i}.example.com"), 512, False, 512)
        assert forwarder.upstreams.servers[0].down
        stub = await StubUpstream(lambda q, tcp: [answer(q, "192.0.2.7")], port=port).start()
        await until(lambda: not forwarder.upstreams.servers[0].down)
        reply = dns.message.from_wire(await forwarder.forward(key_of("again.example.com"), 512, False, 512))
        assert reply.answer[0][0].to_text() == "192.0.2.7"
        stub.close()

    run(test)


def test_no_answer_within_the_deadline_and_a_refused_connection_is_not_retried() -> None:
    async def test() -> None:
        silent = await StubUpstream(lambda q, tcp: []).start()
        forwarder = forwarder_for(silent.port)
        started = asyncio.get_running_loop().time()
        with pytest.raises(NoAnswer):
            await forwarder.forward(key_of("x.example.com"), 512, False, 512)
        assert asyncio.get_running_loop().time() - started >= 0.5  # it kept trying until the deadline
        asked = [q for q, _ in silent.received if q.question[0].name.to_text() == "x.example.com."]
        assert len(asked) >= 2  # 0.2 s, 0.2 s, then the 0.1 s left (fewer on a slow machine)
        assert len({q.id for q in asked}) == len(asked)  # a fresh ID each time
        silent.close()
        closed = forwarder_for(closed_port())  # nobody listens there: ECONNREFUSED
        with pytest.raises(NoAnswer):
            await closed.forward(key_of("y.example.com"), 512, False, 512)
        assert closed.upstreams.servers[0].fails == 1  # asked once, not again until the deadline
        await forwarder.close()
        await closed.close()

    run(test)


def test_over_the_concurrency_limit_is_overloaded_and_identical_questions_share_one_exchange() -> None:
    async def test() -> None:
        stub = await StubUpstream(lambda q, tcp: [answer(q)]).start()
        forwarder = forwarder_for(stub.port, max_concurrent=3)
        slow = [asyncio.ensure_future(forwarder.forward(key_of("same.example.com"), 512, False, 512))
                for _ in range(3)]
        await asyncio.sleep(0)  # one turn of the loop: the three have started and wait for the upstream
        assert forwarder.saturated()
        with pytest.raises(Overloaded):
            await forwarder.forward(key_of("other.example.com"), 512, False, 512)
        replies = await asyncio.gather(*slow)
        assert len({dns.message.from_wire(r).answer[0][0].to_text() for r in replies}) == 1
        assert len(stub.received) == 1  # three clients, one upstream query
        assert not forwarder.saturated()
        stub.close()

    run(test)


def test_serve_stale_when_the_upstream_stops_answering() -> None:
    answering = True

    async def test() -> None:
        nonlocal answering
        stub = await StubUpstream(lambda q, tcp: [answer(q, ttl=60)] if answering else []).start()
        clock = Clock()
        forwarder = forwarder_for(stub.port, serve_stale=3600, clock=clock)
        key = key_of("stale.example.com")
        await forwarder.forward(key, 512, False, 512)
        answering = False
        clock.offset = 120  # expired a minute ago
        assert forwarder.cached(key, 512) is None  # the upstream is not known to be down yet: ask it
        reply = dns.message.from_wire(await forwarder.forward(key, 512, False, 512))
        assert reply.answer[0][0].to_text() == "192.0.2.1" and reply.answer[0].ttl == 30  # RFC 8767
        await forwarder.forward(key, 512, False, 512)  # a second failure: the upstream is down
        assert forwarder.upstreams.all_down()
        stale = forwarder.cached(key, 512)  # now answered at once, without waiting for the deadline
        assert stale is not None and dns.message.from_wire(stale).answer[0].ttl == 30
        clock.offset = 60 + 3600 + 1
        with pytest.raises(NoAnswer):
            await forwarder.forward(key, 512, False, 512)
        await forwarder.close()
        stub.close()

    run(test)


def test_prefetch_refreshes_a_popular_entry_before_it_expires() -> None:
    async def test() -> None:
        stub = await StubUpstream(lambda q, tcp: [answer(q, ttl=100)]).start()
        clock = Clock()
        forwarder = forwarder_for(stub.port, prefetch=True, clock=clock)
        key = key_of("popular.example.com")
        await forwarder.forward(key, 512, False, 512)
        first = forwarder.cache.get(key, clock())
        clock.offset = 50
        assert forwarder.cached(key, 512) is not None
        assert len(stub.received) == 1  # half its life left: no prefetch yet
        clock.offset = 95  # 5% of its life left, and hit twice within a minute: popular
        assert forwarder.cached(key, 512) is not None
        await until(lambda: forwarder.cache.get(key, clock()) is not first)
        assert len(stub.received) == 2  # refreshed in the background, before it expired
        clock.offset = 150  # past the old entry's expiry: the refreshed one still serves
        assert forwarder.cached(key, 512) is not None and len(stub.received) == 2
        await forwarder.close()
        stub.close()

    run(test)


def test_one_socket_per_upstream_is_shared_and_replaced_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Queries in flight share a socket (source port); after CHANNEL_LIFETIME a new one is used."""
    async def test() -> None:
        stub = await StubUpstream(lambda q, tcp: [answer(q)]).start()
        forwarder = forwarder_for(stub.port)
        await asyncio.gather(*(forwarder.forward(key_of(f"s{i}.example.com"), 512, False, 512) for i in range(5)))
        assert len(set(stub.sources)) == 1
        monkeypatch.setattr(forward, "CHANNEL_LIFETIME", 0.0)
        for i in range(3):
            await forwarder.forward(key_of(f"t{i}.example.com"), 512, False, 512)
        assert len(set(stub.sources)) == 4  # a new source port each time
        stub.close()

    run(test)
