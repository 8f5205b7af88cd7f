"""DNS over TLS to one upstream of one `forward` directive (RFC 7858), as CoreDNS's plugin/pkg/proxy does it.

- Every exchange goes over TLS, the 2-byte length prefix before each message (RFC 7858 3.3),
  whichever transport the client came over.
- The handshake verifies the server's certificate and name (the directive's client context, the
  TO's server name, sent as SNI when it is a name): a failed check raises before the query is
  written, so an unverified upstream never sees it and never answers it.
- Connections are kept per upstream per directive (the pool belongs to the directive's
  forwarder, so two directives never share one).  An exchange takes the oldest idle connection,
  or dials one when none is idle; one query at a time per connection, given back after a good
  reply, closed after any error and after `expire` seconds idle.  When a kept connection turns
  out closed by the upstream, the exchange goes on at once on another one (as CoreDNS's
  ErrCachedClosed): an upstream closing idle connections (RFC 7766 6.2.3) is no failure.
- Health probes dial a connection of their own and close it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque

from dns_server.plugins.forward.upstreams import Server
from dns_server.protocol.wire import reply_matches

log = logging.getLogger(__name__)


class TlsConnection:
    """One TLS connection to the upstream; `used` is when it last gave a reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, used: float) -> None:
        self.reader = reader
        self.writer = writer
        self.used = used
        self.expiry: asyncio.TimerHandle | None = None

    def closed(self) -> bool:
        return self.writer.is_closing() or self.reader.at_eof()

    async def ask(self, query: bytes, question_len: int) -> bytes:
        """The reply to `query`; replies that do not answer it are discarded."""
        self.writer.write(len(query).to_bytes(2, "big") + query)
        await self.writer.drain()
        while True:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
            reply = await self.reader.readexactly(length)
            if reply_matches(reply, query, question_len):
                return reply
            log.debug("discarded a reply over TLS that does not match the query")

    def close(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        self.writer.close()


class TlsPool:
    """The kept TLS connections to one upstream of one forward directive."""

    def __init__(self, server: Server, context: ssl.SSLContext, server_name: str, expire: float) -> None:
        self.server = server
        self.context = context
        self.server_name = server_name
        self.expire = expire
        self._idle: deque[TlsConnection] = deque()  # oldest first
        self._closed = False

    async def exchange(self, query: bytes, question_len: int, timeout: float) -> bytes:
        """The upstream's reply over TLS; raises OSError (ssl.SSLError for a failed handshake) or TimeoutError."""
        async with asyncio.timeout(timeout):
            while True:
                connection = self._take()
                kept = connection is not None
                if connection is None:
                    connection = await self._dial()
                try:
                    reply = await connection.ask(query, question_len)
                except (asyncio.IncompleteReadError, ConnectionError) as error:
                    connection.close()
                    if kept:
                        log.debug("upstream %s closed a kept TLS connection: asking on another", self.server)
                        continue
                    raise ConnectionResetError("the upstream closed the TLS connection") from error
                except BaseException:
                    connection.close()
                    raise
                self._keep(connection)
                return reply

    async def probe(self, query: bytes, question_len: int, timeout: float) -> bytes:
        """A health probe's reply, over a connection of its own."""
        async with asyncio.timeout(timeout):
            connection = await self._dial()
            try:
                return await connection.ask(query, question_len)
            except asyncio.IncompleteReadError as error:
                raise ConnectionResetError("the upstream closed the TLS connection") from error
            finally:
                connection.close()

    def close(self) -> None:
        """Close the idle connections; those in use close when their exchange ends."""
        self._closed = True
        while self._idle:
            self._idle.popleft().close()

    async def _dial(self) -> TlsConnection:
        reader, writer = await asyncio.open_connection(self.server.host, self.server.port, ssl=self.context,
                                                       server_hostname=self.server_name)
        return TlsConnection(reader, writer, asyncio.get_running_loop().time())

    def _take(self) -> TlsConnection | None:
        """The oldest idle connection still open and not expired, or None."""
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection = self._idle.popleft()
            if connection.closed() or now - connection.used > self.expire:
                connection.close()
                continue
            if connection.expiry is not None:
                connection.expiry.cancel()
                connection.expiry = None
            return connection
        return None

    def _keep(self, connection: TlsConnection) -> None:
        if self._closed:
            connection.close()
            return
        loop = asyncio.get_running_loop()
        connection.used = loop.time()
        connection.expiry = loop.call_later(self.expire, self._expired, connection)
        self._idle.append(connection)

    def _expired(self, connection: TlsConnection) -> None:
        connection.expiry = None
        if connection in self._idle:
            self._idle.remove(connection)
            connection.close()
