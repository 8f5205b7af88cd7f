"""DNS over TCP (RFC 7766): length-prefixed messages, pipelining, idle timeout, connection cap.

- Several queries may arrive back to back on one connection; each is answered as soon as it is
  ready, forwarded ones possibly out of order (RFC 7766 6.2.1.1).
- The idle timeout counts from the last complete query (or the connection's start): a client
  trickling a byte at a time cannot keep a connection open.
- Past the connection cap, new connections are closed at once so established ones keep working.
- Past `MAX_PENDING_PER_CONNECTION` forwarded queries in flight on one connection, a further one is
  answered REFUSED at once rather than left unanswered.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from dns_server.serving.router import Forward, Pipeline

log = logging.getLogger(__name__)

MAX_PENDING_PER_CONNECTION = 100  # forwarded queries in flight on one connection


class TcpServer:
    """Shared state of one TCP listener: its settings and the open connections."""

    def __init__(self, pipeline: Pipeline, idle_timeout: float, max_connections: int) -> None:
        self.pipeline = pipeline
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.connections: set[TcpConnection] = set()

    def protocol(self) -> TcpConnection:
        return TcpConnection(self)

    def close_all(self) -> None:
        for connection in list(self.connections):
            connection.close()


class TcpConnection(asyncio.Protocol):
    def __init__(self, server: TcpServer) -> None:
        self._server = server  # its pipeline is read per message: a reload may replace it
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._peer: tuple[str, int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._pending: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        if len(self._server.connections) >= self._server.max_connections:
            stream.abort()
            return
        self._transport = stream
        peer = stream.get_extra_info("peername")
        self._peer = (str(peer[0]), int(peer[1])) if peer else None
        self._server.connections.add(self)
        self._deadline = self._loop.time() + self._server.idle_timeout
        self._timer = self._loop.call_at(self._deadline, self._check_idle)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 2:
            length = buffer[start] << 8 | buffer[start + 1]
            if len(buffer) - start - 2 < length:
                break
            message = bytes(buffer[start + 2:start + 2 + length])
            start += 2 + length
            self._deadline = self._loop.time() + self._server.idle_timeout
            self._answer(message)
            if self._transport is None:
                return
        if start:
            del buffer[:start]

    def _answer(self, message: bytes) -> None:
        reply = self._server.pipeline.handle(message, True, self._peer)
        if reply is None:
            return
        if reply.__class__ is bytes:
            self._send(reply)
            return
        assert isinstance(reply, Forward)
        if len(self._pending) >= MAX_PENDING_PER_CONNECTION:
            self._send(self._server.pipeline.refuse(reply))
            return
        task = asyncio.ensure_future(self._finish(reply))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _finish(self, forward: Forward) -> None:
        reply = await self._server.pipeline.complete(forward)
        if reply is not None:
            self._send(reply)

    def _send(self, reply: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(len(reply).to_bytes(2, "big") + reply)

    def _check_idle(self) -> None:
        if self._transport is None:
            return
        if self._pending or self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(max(self._deadline, self._loop.time() + 0.1), self._check_idle)
            return
        self.close()

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()  # a client that does not read gets no more answers

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
        for task in self._pending:
            task.cancel()
