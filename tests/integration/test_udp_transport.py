"""The UDP transport on a real socket and a real event loop (asyncio's and uvloop's), judged by dnspython.

It reads its socket itself when the loop reports it readable, a batch at a time, with recvmmsg and
sendmmsg (the compiled `_mmsg` module) or a recvfrom and a sendto per datagram (the fallback): these
tests pin down, for both, that every datagram is answered even when far more than a batch is
waiting, that a large query is read whole, that both give the same bytes, and that closing gives the
port back.  They need the compiled module: `scripts/test`'s install builds it.
"""

from __future__ import annotations

import asyncio
import socket
from types import ModuleType
from typing import Any, Awaitable, Callable, Coroutine

import dns.edns
import dns.message
import dns.rcode
import pytest
import uvloop

from dns_server.serving import _mmsg
from dns_server.serving.udp import BATCH, UdpServer
from tests.doubles import pipeline_for

NAME = "frontend.shop.svc.cluster.local"
LOOPS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {"asyncio": asyncio.run, "uvloop": uvloop.run}
PATHS: dict[str, ModuleType | None] = {"mmsg": _mmsg, "per datagram": None}


def serve_and(check: Callable[[tuple[str, int]], Awaitable[None]], loop: str, path: str = "mmsg",
              family: socket.AddressFamily = socket.AF_INET) -> None:
    """Run `check(address)` against a UdpServer on loopback (an ephemeral port), then close it."""

    async def main() -> None:
        pipeline = pipeline_for()
        server = UdpServer(pipeline, max_pending=10, mmsg=PATHS[path])
        server.open("::1" if family == socket.AF_INET6 else "127.0.0.1", 0, family)
        try:
            await check(server.address)
        finally:
            server.close()

    LOOPS[loop](main())


async def replies(client: socket.socket, count: int) -> list[dns.message.Message]:
    """Read `count` replies without blocking the loop the server runs on."""
    loop = asyncio.get_running_loop()
    received = []
    for _ in range(count):
        received.append(dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(client, 65535), 30)))
    return received


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("loop", LOOPS)
def test_every_waiting_datagram_is_answered_not_just_one_batch(loop: str, path: str) -> None:
    async def check(address: tuple[str, int]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.setblocking(False)
            queries = [dns.message.make_query(NAME, "A") for _ in range(BATCH * 3 + 5)]
            for query in queries:  # all queued before the server's loop gets to run
                client.sendto(query.to_wire(), address)
            answered = await replies(client, len(queries))
        assert sorted(r.id for r in answered) == sorted(q.id for q in queries)
        assert all(r.answer[0][0].to_text() == "10.96.10.20" for r in answered)

    serve_and(check, loop, path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("loop", LOOPS)
def test_a_large_query_is_read_whole(loop: str, path: str) -> None:
    async def check(address: tuple[str, int]) -> None:
        query = dns.message.make_query(NAME, "A", use_edns=0, payload=1232,
                                       options=[dns.edns.GenericOption(dns.edns.OptionType.PADDING, bytes(6000))])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.setblocking(False)
            wire = query.to_wire(max_size=65535)
            assert len(wire) > 6000
            client.sendto(wire, address)
            (reply,) = await replies(client, 1)
        assert reply.id == query.id and reply.rcode() == dns.rcode.NOERROR
        assert reply.answer[0][0].to_text() == "10.96.10.20"

    serve_and(check, loop, path)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["IPv4", "IPv6"])
def test_both_paths_send_the_same_bytes_to_each_client(family: socket.AddressFamily) -> None:
    """Several clients' queries, of several kinds, waiting at once: each client gets, byte for byte,
    what the per-datagram path sends it (IPv6: the 4-tuple addresses survive the round trip)."""
    questions = [(NAME, "A"), (NAME, "AAAA"), ("nothing.shop.svc.cluster.local", "A"), ("cluster.local", "SOA")]

    def answers_from(path: str) -> list[list[bytes]]:
        received: list[list[bytes]] = []

        async def check(address: tuple[str, int]) -> None:
            clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(3)]
            try:
                for client in clients:
                    client.setblocking(False)
                    for number, (name, rdtype) in enumerate(questions):
                        query = dns.message.make_query(name, rdtype, use_edns=number % 2 - 1)
                        query.id = number
                        client.sendto(query.to_wire(), address)
                loop = asyncio.get_running_loop()
                for client in clients:
                    wires = [await asyncio.wait_for(loop.sock_recv(client, 65535), 30) for _ in questions]
                    received.append(sorted(wires))
            finally:
                for client in clients:
                    client.close()

        serve_and(check, "uvloop", path, family)
        return received

    batched = answers_from("mmsg")
    assert batched == answers_from("per datagram")
    assert len(batched) == 3 and all(len(wires) == len(questions) for wires in batched)
    assert dns.message.from_wire(batched[0][0]).answer[0][0].to_text() == "10.96.10.20"


def test_send_drops_what_cannot_be_sent_and_sends_the_rest() -> None:
    """The module alone on real sockets: an address that is not one (of the wrong types too), or one
    the kernel refuses (IPv6 on an IPv4 socket), is skipped, as UDP drops it, and the datagrams
    after it still go."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind(("127.0.0.1", 0))
        client.bind(("127.0.0.1", 0))
        client.settimeout(10)
        peer = client.getsockname()
        replies: list[Any] = [(b"first", peer), (b"bad", ("not an address", 53)), (b"no host", (None, 53)),
                              (b"no port", ("127.0.0.1", "53")), (b"refused", ("::1", 53, 0, 0)), (b"last", peer)]
        taken = _mmsg.send(server.fileno(), replies)
        assert taken == 2
        assert [client.recv(100), client.recv(100)] == [b"first", b"last"]

        client.sendto(b"query", server.getsockname())
        server.settimeout(10)
        server.recv(100, socket.MSG_PEEK)  # arrived: receive() does not wait
        assert _mmsg.receive(server.fileno(), 8) == [(b"query", peer)]
        assert _mmsg.receive(server.fileno(), 8) == []


@pytest.mark.parametrize("loop", LOOPS)
def test_close_gives_the_port_back(loop: str) -> None:
    bound: list[tuple[str, int]] = []

    async def check(address: tuple[str, int]) -> None:
        bound.append(address)

    serve_and(check, loop)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(bound[0])  # raises if the server still held it
