"""One `forward` directive's exchanges, against an in-process stub upstream on loopback.

A stub (not a real server) because these cases need replies no real resolver sends on purpose:
a wrong ID, a wrong question, a truncated reply followed by a good one over TCP, silence on
demand.  The stub is a real UDP and TCP socket pair, so the forwarder's socket code runs as in
production; the real-upstream behaviour is covered by tests/integration/test_forwarding.py.  The
cache, serve-stale, prefetch and shared exchanges live in front of the forwarder
(tests/unit/plugins/forward/test_outbound.py).
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any, Awaitable, Callable, TypeVar

import dns.flags
import dns.message
import dns.rrset
import pytest
import uvloop

from dns_server.plugins.forward import forwarder as forward
from dns_server.plugins.forward.forwarder import MIN_WAIT, Forwarder
from dns_server.plugins.forward.setup import (
    DEFAULT_MAX_FAILS,
    ForwardSettings,
    Policy,
    Upstream,
)
from dns_server.plugins.forward.upstreams import NoAnswer, Overloaded
from dns_server.protocol.wire import decode_query, question_key

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


class Recorded:
    """forward.ProxyMetrics that keeps what it was told."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int | None]] = []
        self.rejections = 0
        self.health_failures: list[str] = []
        self.broken_count = 0

    def request(self, to: str, rcode: int | None, seconds: float) -> None:
        self.requests.append((to, rcode))

    def health_failure(self, to: str) -> None:
        self.health_failures.append(to)

    def rejected(self) -> None:
        self.rejections += 1

    def broken(self) -> None:
        self.broken_count += 1


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
    return question_key(decode_query(dns.message.make_query(name, qtype, **kw).to_wire()))  # type: ignore[arg-type]


HEALTH_CHECK = 0.05  # probe a down upstream every 50 ms


def forwarder_for(*ports: int, metrics: Recorded | None = None, **settings: Any) -> Forwarder:
    """A forwarder to loopback ports, sequential unless told otherwise."""
    options: dict[str, Any] = dict(policy=Policy.SEQUENTIAL, max_concurrent=100, health_check=HEALTH_CHECK)
    options.update(settings)
    directive = ForwardSettings("", tuple(Upstream("127.0.0.1", port) for port in ports), **options)
    forwarder = Forwarder(directive, random.Random(1), metrics)
    OPEN.append(forwarder)
    return forwarder


async def exchange(forwarder: Forwarder, name: str, via_tcp: bool = False, payload: int = 512,
                   **kw: object) -> dns.message.Message:
    return dns.message.from_wire(await forwarder.exchange(key_of(name, **kw), payload, via_tcp))


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same logic with shorter timers, so a silent upstream costs a fraction of a second."""
    monkeypatch.setattr(forward, "READ_TIMEOUT", 0.2)
    monkeypatch.setattr(forward, "DEADLINE", 0.5)


def test_replies_with_a_wrong_id_or_question_are_discarded() -> None:
    def respond(query: dns.message.Message, via_tcp: bool) -> list[bytes]:
        wrong_id = answer(query, "192.0.2.66", id=(query.id + 1) % 65536)
        other = dns.message.make_query("evil.example.com", "A")
        other.id = query.id
        wrong_question = answer(other, "192.0.2.67")
        return [wrong_id, wrong_question, answer(query, "192.0.2.1")]

    async def test() -> None:
        stub = await StubUpstream(respond).start()
        reply = await exchange(forwarder_for(stub.port), "www.example.com")
        assert reply.answer[0][0].to_text() == "192.0.2.1"
        stub.close()

    run(test)


def test_an_upstream_sending_only_wrong_replies_is_no_answer() -> None:
    async def test() -> None:
        stub = await StubUpstream(lambda q, tcp: [answer(q, id=(q.id + 1) % 65536)]).start()
        with pytest.raises(NoAnswer):
            await exchange(forwarder_for(stub.port), "www.example.com")
        stub.close()

    run(test)


def test_the_query_carries_the_clients_rd_cd_buffer_size_and_do_bit() -> None:
    async def test() -> None:
        stub = await StubUpstream(lambda q, tcp: [answer(q)]).start()
        key = key_of("WWW.Example.com", "A", use_edns=0, payload=4096, want_dnssec=True)
        await forwarder_for(stub.port).exchange(key, 4096, False)
        (query, via_tcp), = stub.received
        assert not via_tcp and query.flags & dns.flags.RD
        assert query.edns == 0 and query.payload == 4096 and query.ednsflags & dns.flags.DO
        assert query.question[0].name.to_text() == "www.example.com."
        plain = dns.message.make_query("plain.example.com", "A")
        plain.flags = dns.flags.CD  # no RD, CD set, no EDNS
        await forwarder_for(stub.port).exchange(question_key(decode_query(plain.to_wire())), 512, False)
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
        reply = await exchange(forwarder_for(stub.port), "a.example.com")
        assert not reply.flags & dns.flags.TC and reply.answer
        assert [via_tcp for _, via_tcp in stub.received] == [False, True]
        await exchange(forwarder_for(stub.port), "b.example.com", via_tcp=True)
        assert [via_tcp for _, via_tcp in stub.received] == [False, True, True]
        stub.close()

    run(test)


@pytest.mark.parametrize("settings, client_tcp, transports", [
    (dict(force_tcp=True), False, [True]),  # `force_tcp`: TCP whatever the client used
    (dict(prefer_udp=True), True, [False]),  # `prefer_udp`: UDP first even for a TCP client
    ({}, False, [False]),
    ({}, True, [True]),
])
def test_force_tcp_and_prefer_udp(settings: dict[str, bool], client_tcp: bool, transports: list[bool]) -> None:
    async def test() -> None:
        stub = await StubUpstream(lambda q, tcp: [answer(q)]).start()
        assert (await exchange(forwarder_for(stub.port, **settings), "c.example.com", via_tcp=client_tcp)).answer
        assert [via_tcp for _, via_tcp in stub.received] == transports
        stub.close()

    run(test)


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll `condition` on the running loop until it holds; TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_failover_and_down_marking_and_probing() -> None:
    silent = True

    def dead_until_revived(query: dns.message.Message, via_tcp: bool) -> list[bytes]:
        return [] if silent else [answer(query, "192.0.2.9")]

    async def test() -> None:
        nonlocal silent
        first = await StubUpstream(dead_until_revived).start()
        second = await StubUpstream(lambda q, tcp: [answer(q, "192.0.2.2")]).start()
        metrics = Recorded()
        forwarder = forwarder_for(first.port, second.port, metrics=metrics)
        for i in range(DEFAULT_MAX_FAILS):
            reply = await exchange(forwarder, f"n{i}.example.com")
            assert reply.answer[0][0].to_text() == "192.0.2.2"
        assert forwarder.upstreams.servers[0].down
        asked = len(first.received)
        await exchange(forwarder, "n9.example.com")
        assert all(q.question[0].name.to_text() == "." for q, _ in first.received[asked:])  # only probes now
        silent = False
        await until(lambda: not forwarder.upstreams.servers[0].down)
        probes = [q for q, _ in first.received if q.question[0].name.to_text() == "."]
        assert probes and all(q.question[0].rdtype == 2 and q.flags & dns.flags.RD for q in probes)  # `. NS`, RD
        reply = await exchange(forwarder, "back.example.com")
        assert reply.answer[0][0].to_text() == "192.0.2.9"
        failed = f"127.0.0.1:{first.port}"
        assert (failed, None) in metrics.requests and (f"127.0.0.1:{second.port}", 0) in metrics.requests
        await forwarder.close()
        first.close()
        second.close()

    run(test)


def test_with_force_tcp_the_probe_goes_over_tcp() -> None:
    """An upstream that answers over TCP only comes back: its probes are TCP too (CoreDNS's transport choice)."""
    silent = True

    def tcp_only(query: dns.message.Message, via_tcp: bool) -> list[bytes]:
        return [answer(query, "192.0.2.5")] if via_tcp and not silent else []

    async def test() -> None:
        nonlocal silent
        stub = await StubUpstream(tcp_only).start()
        forwarder = forwarder_for(stub.port, force_tcp=True)
        for i in range(DEFAULT_MAX_FAILS):
            with pytest.raises(NoAnswer):
                await exchange(forwarder, f"t{i}.example.com")
        assert forwarder.upstreams.servers[0].down
        silent = False
        await until(lambda: not forwarder.upstreams.servers[0].down)
        assert all(via_tcp for q, via_tcp in stub.received if q.question[0].name.to_text() == ".")
        await forwarder.close()
        stub.close()

    run(test)


def test_a_refusing_upstream_is_probed_until_it_answers() -> None:
    """A port nobody listens on (ICMP port unreachable) is marked down, then found again by the probe."""
    async def test() -> None:
        port = closed_port()
        forwarder = forwarder_for(port)
        for i in range(DEFAULT_MAX_FAILS):
            with pytest.raises(NoAnswer):
                await exchange(forwarder, f"r{i}.example.com")
        assert forwarder.upstreams.servers[0].down
        stub = await StubUpstream(lambda q, tcp: [answer(q, "192.0.2.7")], port=port).start()
        await until(lambda: not forwarder.upstreams.servers[0].down)
        reply = await exchange(forwarder, "again.example.com")
        assert reply.answer[0][0].to_text() == "192.0.2.7"
        stub.close()

    run(test)


def test_when_every_upstream_is_down_one_is_tried_or_none_with_failfast() -> None:
    async def test() -> None:
        silent = await StubUpstream(lambda q, tcp: []).start()
        metrics = Recorded()
        forwarder = forwarder_for(silent.port, metrics=metrics, max_fails=1)
        with pytest.raises(NoAnswer):
            await exchange(forwarder, "down.example.com")
        assert forwarder.upstreams.all_down()
        with pytest.raises(NoAnswer):
            await exchange(forwarder, "anyway.example.com")
        assert metrics.broken_count == 1  # tried anyway, and counted as such
        assert any(q.question[0].name.to_text() == "anyway.example.com." for q, _ in silent.received)
        failfast = forwarder_for(silent.port, max_fails=1, failfast_all_unhealthy=True)
        with pytest.raises(NoAnswer):
            await exchange(failfast, "first.example.com")
        with pytest.raises(NoAnswer, match="no healthy upstream"):
            await exchange(failfast, "never.example.com")
        assert not any(q.question[0].name.to_text() == "never.example.com." for q, _ in silent.received)
        silent.close()

    run(test)


def test_no_answer_within_the_deadline_and_a_refused_connection_is_not_retried() -> None:
    async def test() -> None:
        silent = await StubUpstream(lambda q, tcp: []).start()
        forwarder = forwarder_for(silent.port)
        started = asyncio.get_running_loop().time()
        with pytest.raises(NoAnswer, match="i/o timeout"):
            await exchange(forwarder, "x.example.com")
        # it kept trying until the deadline (less the stop before it: no new try with under 10 ms left)
        assert asyncio.get_running_loop().time() - started >= 0.5 - MIN_WAIT
        asked = [q for q, _ in silent.received if q.question[0].name.to_text() == "x.example.com."]
        assert len(asked) >= 2  # 0.2 s, 0.2 s, then the 0.1 s left (fewer on a slow machine)
        assert len({q.id for q in asked}) == len(asked)  # a fresh ID each time
        silent.close()
        closed = forwarder_for(closed_port())  # nobody listens there: ECONNREFUSED
        with pytest.raises(NoAnswer):
            await exchange(closed, "y.example.com")
        assert closed.upstreams.servers[0].fails == 1  # asked once, not again until the deadline

    run(test)


def test_over_the_concurrency_limit_is_overloaded() -> None:
    async def test() -> None:
        stub = await StubUpstream(lambda q, tcp: [answer(q)]).start()
        metrics = Recorded()
        forwarder = forwarder_for(stub.port, max_concurrent=3, metrics=metrics)
        slow = [asyncio.ensure_future(exchange(forwarder, f"slow{i}.example.com")) for i in range(3)]
        await asyncio.sleep(0)  # one turn of the loop: the three have started and wait for the upstream
        assert forwarder.saturated()
        with pytest.raises(Overloaded):
            await exchange(forwarder, "other.example.com")
        assert metrics.rejections == 1
        replies = await asyncio.gather(*slow)
        assert all(reply.answer for reply in replies)
        assert not forwarder.saturated()
        assert len(stub.received) == 3  # the refused one never went upstream
        stub.close()

    run(test)


def test_one_socket_per_upstream_is_shared_and_replaced_after_expire() -> None:
    """Queries in flight share a socket (source port); once it is `expire` old a new one is used."""
    async def test() -> None:
        stub = await StubUpstream(lambda q, tcp: [answer(q)]).start()
        forwarder = forwarder_for(stub.port)
        await asyncio.gather(*(exchange(forwarder, f"s{i}.example.com") for i in range(5)))
        assert len(set(stub.sources)) == 1
        expiring = forwarder_for(stub.port, expire=0.0)
        for i in range(3):
            await exchange(expiring, f"t{i}.example.com")
        assert len(set(stub.sources)) == 4  # a new source port each time
        stub.close()

    run(test)
