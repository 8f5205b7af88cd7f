"""The UDP transport on a real socket and a real event loop (asyncio's and uvloop's), judged by dnspython.

It reads its socket itself when the loop reports it readable, a batch at a time: these tests pin
down that every datagram is answered even when far more than a batch is waiting, that a large
query is read whole, and that closing gives the port back.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Awaitable, Callable

import dns.edns
import dns.message
import dns.rcode
import pytest
import uvloop

from dns_server.serving.udp import BATCH, UdpServer
from tests.doubles import pipeline_for

NAME = "frontend.shop.svc.cluster.local"
LOOPS: dict[str, Callable[[Awaitable[None]], None]] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


def serve_and(check: Callable[[tuple[str, int]], Awaitable[None]], loop: str) -> None:
    """Run `check(address)` against a UdpServer on 127.0.0.1 (an ephemeral port), then close it."""

    async def main() -> None:
        pipeline = pipeline_for()
        server = UdpServer(pipeline, max_pending=10)
        server.open("127.0.0.1", 0, socket.AF_INET)
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


@pytest.mark.parametrize("loop", LOOPS)
def test_every_waiting_datagram_is_answered_not_just_one_batch(loop: str) -> None:
    async def check(address: tuple[str, int]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.setblocking(False)
            queries = [dns.message.make_query(NAME, "A") for _ in range(BATCH * 3 + 5)]
            for query in queries:  # all queued before the server's loop gets to run
                client.sendto(query.to_wire(), address)
            answered = await replies(client, len(queries))
        assert sorted(r.id for r in answered) == sorted(q.id for q in queries)
        assert all(r.answer[0][0].to_text() == "10.96.10.20" for r in answered)

    serve_and(check, loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_large_query_is_read_whole(loop: str) -> None:
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

    serve_and(check, loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_close_gives_the_port_back(loop: str) -> None:
    bound: list[tuple[str, int]] = []

    async def check(address: tuple[str, int]) -> None:
        bound.append(address)

    serve_and(check, loop)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(bound[0])  # raises if the server still held it
