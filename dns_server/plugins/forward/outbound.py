"""A block's way out: the `cache` plugin in front of its `forward` directives.

Theory of operation.  The pipeline asks `cached()` on its hot path, synchronously: a hit costs a
dict lookup and no task.  On a miss it runs `resolve()` as a task, which
- shares one upstream exchange among identical questions in flight; the exchange runs in a task
  of its own, so a client that goes away takes nothing from the others waiting for it (a forward
  with `client_subnet` asks for each client on its own: the question carries the client's address);
- asks the forward directive the resolver chose; when the upstream's rcode is one of that
  directive's `next` rcodes, asks the next forward directive that takes the name, if any
  (CoreDNS's `next`);
- stores the reply in the cache (when there is one; never a reply for one client only, whose
  client-subnet option has a scope) and returns it with its TTLs as of now;
- when nothing answered in time, serves an expired entry within the `serve_stale` window, if any,
  else raises NoAnswer (-> SERVFAIL).  With serve-stale's `immediate` mode (CoreDNS's default) an
  expired entry is served at once from `cached()` and refreshed in the background.
Prefetch refreshes popular entries in the background shortly before they expire.  Background
refreshes are skipped when the forwarder is saturated and do not count against `max_concurrent`.
Without a cache, nothing is kept: every question goes upstream (as in CoreDNS without `cache`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Coroutine

from dns_server.plugins.cache import (
    BadReply,
    Entry,
    ForwardCache,
    Reply,
    prepare,
    uncached,
)
from dns_server.plugins.forward.forwarder import Forwarder
from dns_server.plugins.forward.upstreams import NoAnswer
from dns_server.protocol.names import canonical_address
from dns_server.protocol.wire import decode_name

log = logging.getLogger(__name__)

CACHE, FORWARD = "cache", "forward"  # the plugin that wrote a forwarded reply, for metrics


class Outbound:
    """Forwarded questions of one server block: its cache (optional) and its forward directives."""

    def __init__(self, forwarders: list[Forwarder], names: list[Callable[[str], bool]], cache: ForwardCache | None,
                 bufsize: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.forwarders = forwarders
        self._takes = names  # per forwarder: whether it takes a name (FROM and except)
        self.cache = cache
        self.bufsize = bufsize
        self._clock = clock
        self._shared: dict[tuple[bytes, int, str | None], asyncio.Future[Entry]] = {}
        self._background: set[asyncio.Task[None]] = set()

    # -- the pipeline's interface --------------------------------------------------------------
    def cached(self, key: bytes, limit: int) -> bytes | None:
        """A cached reply for the question key, fitting `limit` bytes (ID 0, question lower case), or None."""
        cache = self.cache
        if cache is None:
            return None
        now = self._clock()
        entry = cache.get(key, now)
        if entry is not None:
            if cache.prefetch and cache.wants_prefetch(entry, now):
                self._refresh(key, entry)
            return entry.render(now, limit)
        if cache.serve_stale and not cache.settings.serve_stale_verify:
            stale = cache.stale(key, now)
            if stale is not None:
                cache.stats.served_stale += 1
                self._refresh(key, stale)
                return stale.render(now, limit, stale=True)
        return None

    def refuses(self, index: int) -> bool:
        """Whether forward directive `index` refuses a new question now (counted as a rejection)."""
        forwarder = self.forwarders[index]
        if forwarder.saturated():
            forwarder.metrics.rejected()
            return True
        return False

    async def resolve(self, key: bytes, name: str, index: int, payload: int, via_tcp: bool, limit: int,
                      share: bool = True, client: str | None = None) -> bytes:
        """The reply for the question key from upstream (or served stale); raises Overloaded or NoAnswer.

        With `share`, an identical question already in flight is waited for instead of asked again.
        `client`: the address a forward with `client_subnet` passes on.
        """
        client = canonical_address(client) if client and self.forwarders[index].settings.client_subnet else None
        shared = self._shared.get((key, index, client)) if share else None
        if shared is None:
            shared = self._start(key, name, index, payload, via_tcp, share, client)
        try:
            entry = await asyncio.shield(shared)
        except NoAnswer:
            stale = self.cache.stale(key, self._clock()) if self.cache is not None else None
            if stale is None:
                raise
            self.cache.stats.served_stale += 1  # type: ignore[union-attr]
            return stale.render(self._clock(), limit, stale=True)
        return entry.render(self._clock(), limit)

    async def close(self) -> None:
        """Stop refreshing, close every forwarder."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for forwarder in self.forwarders:
            await forwarder.close()

    # -- exchanges -----------------------------------------------------------------------------
    def _start(self, key: bytes, name: str, index: int, payload: int, via_tcp: bool,
               share: bool = True, client: str | None = None) -> asyncio.Future[Entry]:
        """Start the exchange for a question as a task of its own, shared by everyone who asks meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Entry] = loop.create_future()
        shared_key = (key, index, client)
        if share:
            self._shared[shared_key] = future

        async def run() -> None:
            try:
                entry = await self._fetch(key, name, index, payload, via_tcp, client)
            except BaseException as error:  # noqa: BLE001 - handed to every waiter
                if not future.done():
                    future.set_exception(error if isinstance(error, Exception) else NoAnswer("cancelled"))
                    future.exception()  # retrieved: no "never retrieved" warning when nobody waited
                if not isinstance(error, Exception):
                    raise
            else:
                future.set_result(entry)
            finally:
                if self._shared.get(shared_key) is future:
                    del self._shared[shared_key]

        self._spawn(run())
        return future

    async def _fetch(self, key: bytes, name: str, index: int, payload: int, via_tcp: bool,
                     client: str | None) -> Entry:
        """Ask forward directive `index` (and the next ones its `next` rcodes send the question to)."""
        while True:
            forwarder = self.forwarders[index]
            raw = await forwarder.exchange(key, payload, via_tcp, client)
            try:
                reply = prepare(raw, self.bufsize, key[-1])
            except BadReply as error:
                raise NoAnswer(f"unreadable reply from upstream: {error}") from None
            after = self._next(name, index) if reply.rcode in forwarder.settings.next_rcodes else -1
            if after < 0:
                return self._keep(key, name, reply)
            index = after

    def _next(self, name: str, index: int) -> int:
        for later in range(index + 1, len(self.forwarders)):
            if self._takes[later](name):
                return later
        return -1

    def _keep(self, key: bytes, name: str, reply: Reply) -> Entry:
        if self.cache is None or reply.scoped:
            return uncached(reply, self._clock())
        return self.cache.store(key, name, reply, self._clock())

    def _refresh(self, key: bytes, entry: Entry) -> None:
        """Refresh an entry in the background (prefetch, or serve-stale's immediate mode)."""
        if entry.refreshing or any(shared_key == key for shared_key, _, _ in self._shared):
            return
        target = self._refresh_target(key)
        if target is None or self.forwarders[target[1]].saturated():
            return
        entry.refreshing = True
        assert self.cache is not None
        self.cache.stats.prefetches += 1
        name, index = target
        future = self._start(key, name, index, self.bufsize, False)
        future.add_done_callback(lambda done: done.cancelled() or done.exception())

    def _refresh_target(self, key: bytes) -> tuple[str, int] | None:
        """The name and forward directive of a cached question key."""
        name = decode_name(key)
        for index in range(len(self.forwarders)):
            if self._takes[index](name):
                return name, index
        return None

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

