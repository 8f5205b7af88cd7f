"""DNS over UDP: receive, hand to the pipeline, send.  Nothing else happens here."""

from __future__ import annotations

import asyncio
from typing import cast
import logging
import socket

from dns_server.pipeline import Forward, Pipeline

log = logging.getLogger(__name__)

RECEIVE_BUFFER = 8 * 1024 * 1024  # bursts from many pods must not overflow the kernel queue
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux: exceeds rmem_max when privileged


class UdpServer(asyncio.DatagramProtocol):
    """One UDP listening socket."""

    def __init__(self, pipeline: Pipeline, max_pending: int) -> None:
        self._handle = pipeline.handle
        self._pipeline = pipeline
        self._max_pending = max_pending
        self._pending: set[asyncio.Task[None]] = set()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's are not subclasses
        self._sendto = self.transport.sendto
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            enlarge_receive_buffer(sock)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self._handle(data, False)
        if reply is None:
            return
        if reply.__class__ is bytes:
            self._sendto(reply, addr)
            return
        assert isinstance(reply, Forward)
        if len(self._pending) >= self._max_pending:
            return  # the forwarder's own limit answers REFUSED long before this; this only bounds memory
        task = asyncio.ensure_future(self._finish(reply, addr))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _finish(self, forward: Forward, addr: tuple[str, int]) -> None:
        reply = await self._pipeline.complete(forward)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self._sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error: %s", exc)

    def close(self) -> None:
        for task in self._pending:
            task.cancel()
        if self.transport is not None:
            self.transport.close()


def enlarge_receive_buffer(sock: socket.socket) -> None:
    """Ask for a large receive queue: forced when we may, else as large as the system allows."""
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
            return
        except OSError:
            continue
