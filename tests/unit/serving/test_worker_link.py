"""The channel between the supervisor and a worker (dns_server.serving.workers): what the supervisor
frames is what the worker applies, every frame arrives whole and in order however full the socket,
and the worker's event loop applies each batch as it arrives and acknowledges it after its
publication."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import threading

import dns.rcode

from dns_server.cluster.records import (
    Endpoint,
    EndpointSlice,
    MulticlusterSlice,
    Namespace,
    Pod,
    Port,
    Service,
    ServiceImport,
)
from dns_server.cluster.updates import Put, Remove, Replace
from dns_server.observability.metrics import Metrics
from dns_server.serving.workers import Message, WorkerHandle, WorkerLink, frame, unframe
from tests.cluster_data import example_records, registry_with
from tests.doubles import ask, pipeline_for

PORTS = (Port("http", "TCP", 80), Port("", "UDP", 53))
ENDPOINTS = (Endpoint(("10.244.1.5",), True, "web-0", "web-0"), Endpoint(("10.244.1.6", "fd00::6"), False, "", ""))
NEW_NAME = "fresh.default.svc.cluster.local"
NEW_SERVICE = Service("default", "fresh", ("10.96.7.7",), False, "", PORTS)


def test_every_record_and_update_arrives_as_it_was_sent() -> None:
    """Records are pickled as constructor calls (`BY_CONSTRUCTOR`): every field of every kind must survive."""
    records = (
        Namespace("team-a"),
        Service("team-a", "web", ("10.96.0.9", "fd00::9"), False, "", PORTS, ("198.51.100.7",), "lb.example.org"),
        Service("team-a", "db", (), True, "", ()),
        EndpointSlice("team-a", "db-x1", "db", ENDPOINTS, PORTS),
        Pod("team-a", "web-0", ("10.244.1.5",), True, host_network=True, terminating=True, created=1_700_000_000),
        ServiceImport("team-a", "web", ("10.110.0.1",), False, PORTS),
        MulticlusterSlice("team-a", "web-c1", "web", "cluster-1", ENDPOINTS, PORTS),
    )
    message = ("batch", 7, 1, [*(Put(record) for record in records), Remove(("Service", "team-a", "old")),
                               Replace(frozenset({"Pod", "Service"}), records)], 1_700_000_123.5)
    assert unframe(bytearray(frame(message))) == [message]


def test_frames_come_out_whole_however_the_bytes_are_cut() -> None:
    messages: list[Message] = [("ping", 1), ("batch", 2, 1, [Put(NEW_SERVICE)], None), ("scrape",)]
    data = b"".join(map(frame, messages))
    received = bytearray()
    out = []
    for byte in range(len(data)):
        received += data[byte:byte + 1]
        out += unframe(received)
    assert out == messages
    assert received == b""
    cut = bytearray(data[:-1])
    assert unframe(cut) == messages[:2]
    assert cut == frame(messages[2])[:-1]  # the partial message waits for the rest


def test_the_event_loop_applies_each_batch_as_it_arrives_and_acknowledges_it_after_publishing() -> None:
    """A batch cut in two reaches the worker's registry and its answer table (the new service is
    answered, though its NXDOMAIN was kept); a batch of a cluster the worker does not serve is
    acknowledged too; acknowledgements come in order; the link reports a closed channel."""
    registry = registry_with(example_records())
    pipeline = pipeline_for(registry=registry)
    assert ask(pipeline, NEW_NAME).rcode() == dns.rcode.NXDOMAIN  # and now kept in the answer table

    async def exchange() -> list[Message]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        closed = asyncio.Event()
        await WorkerLink.open(theirs, {3: registry}, Metrics(), closed.set)
        batch = frame(("batch", 1, 3, [Put(NEW_SERVICE)], 1_700_000_100.0))
        await loop.sock_sendall(ours, batch[:9])
        await asyncio.sleep(0)  # the loop may read the first piece alone (every cut: the test above)
        await loop.sock_sendall(ours, batch[9:] + frame(("batch", 2, 99, [Remove(NEW_SERVICE.key)], None))
                                + frame(("ping", 3)))
        received = bytearray()
        acks: list[Message] = []
        while len(acks) < 3:
            received += await loop.sock_recv(ours, 1 << 16)
            acks += unframe(received)
        ours.close()
        await asyncio.wait_for(closed.wait(), 10)
        return acks

    assert asyncio.run(exchange()) == [("ack", 1), ("ack", 2), ("ack", 3)]
    reply = ask(pipeline, NEW_NAME)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rdata.address for rdata in reply.answer[0]] == ["10.96.7.7"]


def test_the_supervisor_sends_every_frame_whole_and_in_order_however_full_the_socket() -> None:
    """Frames from two threads at once, far more than a socket pair holds, to a worker that reads
    them meanwhile: sent at once while the socket takes them, the rest by the sending thread, the
    worker reads each whole, in the order each thread posted them.  The worker is a real child
    process (`sleep`), which the handle reaps once the channel closes."""
    loop = asyncio.new_event_loop()
    ours, theirs = socket.socketpair()
    theirs.settimeout(10)
    child = subprocess.Popen(["sleep", "60"])
    exits: list[int] = []
    handle = WorkerHandle(0, child.pid, ours, loop, lambda worker, status: exits.append(status))
    handle.start()
    payload = "x" * 50_000
    messages: list[Message] = []

    def read() -> None:
        received = bytearray()
        while len(messages) < 80:
            received += theirs.recv(1 << 16)
            messages.extend(unframe(received))

    def post(thread: int) -> None:
        for number in range(40):
            handle.post(frame(("batch", number, thread, payload, None)))

    threads = [threading.Thread(target=read), *(threading.Thread(target=post, args=(thread,)) for thread in (1, 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for poster in (1, 2):
        assert [message[1] for message in messages if message[2] == poster] == list(range(40))
    assert all(message[3] == payload for message in messages)
    handle.signal(signal.SIGKILL)
    theirs.close()
    loop.run_until_complete(asyncio.wait_for(handle.exited, 10))
    loop.close()
    assert exits == [handle.exited.result()]
