"""TCP connections (RFC 7766): pipelining, the idle timeout, forwarded queries in flight, the connection cap.

Real parts: the server process (`python -m dns_server`) on the bundled zones/ example cluster, and
plain TCP sockets driven the way each test's client behaves (dnspython builds and reads the
messages).  Where a forwarded query is in flight, the upstream is the real unbound behind
`SlowRelay` (tests/integration/upstream.py), a relay that holds each query for a while.
"""

from __future__ import annotations

import socket
import time

import dns.message
import dns.rcode

from tests.cluster_data import ZONES
from tests.integration.server import ServerProcess, read_framed, texts
from tests.integration.upstream import SlowRelay, Unbound

Z = "cluster.local"
NAME = f"frontend.shop.svc.{Z}"
REPLY_WAIT = 30.0  # generous: how long a client waits for a reply, or for the server to close


def query(name: str = NAME) -> tuple[dns.message.Message, bytes]:
    """A query and its TCP framing (RFC 1035 4.2.2: a two-byte length first)."""
    message = dns.message.make_query(name, "A")
    wire = message.to_wire()
    return message, len(wire).to_bytes(2, "big") + wire


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=REPLY_WAIT)


def next_reply(sock: socket.socket) -> dns.message.Message | None:
    """The next message on the connection, or None once the server has closed it."""
    wire = read_framed(sock)
    return dns.message.from_wire(wire) if wire is not None else None


def exchange(sock: socket.socket, name: str = NAME) -> dns.message.Message:
    message, wire = query(name)
    sock.sendall(wire)
    reply = next_reply(sock)
    assert reply is not None, "the server closed the connection instead of answering"
    assert reply.id == message.id
    return reply


def test_pipelined_queries_are_all_answered_on_one_connection() -> None:
    names = [NAME, f"cart.shop.svc.{Z}", f"nope.shop.svc.{Z}", f"postgres.data.svc.{Z}"]
    queries = [query(name) for name in names]
    with ServerProcess("--fixtures", str(ZONES)) as server, connect(server) as sock:
        sock.sendall(b"".join(wire for _, wire in queries))  # all at once, before any reply
        replies = [next_reply(sock) for _ in queries]
        by_id = {reply.id: reply for reply in replies if reply is not None}
        assert [by_id[message.id].rcode() for message, _ in queries] == [0, 0, dns.rcode.NXDOMAIN, 0]
        assert exchange(sock).answer  # and the connection stays open for more


def test_a_trickling_client_is_closed_at_the_idle_deadline_of_its_last_complete_query() -> None:
    """After one complete query, the next comes a byte at a time: each gap (0.4 s) is shorter than the
    idle timeout (1 s), the whole (about 20 s) far longer.  Bytes do not count as activity, so the
    connection is closed before that query is complete, and it is never answered."""
    gap = 0.4
    with ServerProcess("--fixtures", str(ZONES), "--tcp-idle-timeout", "1") as server, connect(server) as sock:
        assert exchange(sock).answer  # the idle deadline counts from here
        _, trickled = query()
        sock.settimeout(gap)
        sent = 0
        closed = False
        while not closed and sent < len(trickled):
            try:
                sock.sendall(trickled[sent:sent + 1])
                sent += 1
                closed = sock.recv(65537) == b""  # a reply instead of the close fails below
                assert closed, "the trickled query was answered: the connection was kept open by its bytes"
            except TimeoutError:
                continue  # still open after a gap: send the next byte
            except (ConnectionResetError, BrokenPipeError):
                closed = True
        assert closed and sent < len(trickled), "the connection stayed open while a whole query trickled in"


def test_a_busy_connection_stays_open_past_the_idle_timeout() -> None:
    """A query every 0.2 s for 5 s on one connection, with an idle timeout of 2 s: every one is answered."""
    idle, busy_for = 2.0, 5.0
    with ServerProcess("--fixtures", str(ZONES), "--tcp-idle-timeout", f"{idle:g}") as server, \
            connect(server) as sock:
        started = time.monotonic()
        answered = 0
        while time.monotonic() - started < busy_for:  # how long the client keeps busy, not a measurement
            assert exchange(sock).answer[0][0].to_text() == "10.96.10.20", f"after {answered} answers"
            answered += 1
            time.sleep(0.2)
        assert answered > busy_for / idle


def test_a_forwarded_query_in_flight_keeps_the_connection_open_until_its_reply(unbound: Unbound) -> None:
    """Idle timeout 0.5 s; the upstream is the real unbound behind a relay that holds each query 1.2 s."""
    with SlowRelay(unbound, delay=1.2) as relay, \
            ServerProcess("--fixtures", str(ZONES), "--tcp-idle-timeout", "0.5", "--upstream", relay.address) \
            as server, connect(server) as sock:
        reply = exchange(sock, "www.example.com")
        assert reply.rcode() == dns.rcode.NOERROR
        assert texts(reply.answer) == {"www.example.com. A 192.0.2.10"}
        assert relay.relayed >= 1  # it came the slow way
        assert next_reply(sock) is None  # and once idle, the connection is closed


def test_past_the_connection_cap_new_connections_are_closed_and_held_ones_keep_working() -> None:
    with ServerProcess("--fixtures", str(ZONES), "--max-tcp-connections", "3") as server:
        held = [connect(server) for _ in range(3)]
        try:
            for sock in held:  # answered on each: the server holds all three
                assert exchange(sock).answer
            with connect(server) as extra:
                assert next_reply(extra) is None  # closed by the server, unanswered
            assert exchange(held[0]).answer
        finally:
            for sock in held:
                sock.close()

