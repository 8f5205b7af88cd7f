"""Upstream resolvers: which to ask, in what order, which are down; where they come from.

Pure: the random source is passed in, nothing here does I/O or reads the clock.

Rules (CoreDNS's forward plugin is the precedent for each):
- Policies: `random` (the default) shuffles the upstreams for every query, `round_robin` starts
  each query at the next one, `sequential` always starts at the first.
- An upstream that fails `max_fails` times in a row is down: queries skip it while the forwarder
  probes it in the background; the first answer to anything brings it back.  With `max_fails` 0
  an upstream is never marked down.
- When every upstream is down, one is tried anyway (the health check itself may be what is
  broken), unless `failfast_all_unhealthy_upstreams` asks for SERVFAIL at once.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Callable, Iterable

from dns_server.plugins.forward.setup import DEFAULT_MAX_FAILS, Policy


class UpstreamError(Exception):
    """A forwarded query got no usable answer."""


class NoAnswer(UpstreamError):
    """No upstream answered in time (the client gets SERVFAIL); the message says what failed last."""


class Overloaded(UpstreamError):
    """Too many forwarded queries in flight (the client gets REFUSED)."""


@dataclass(eq=False, slots=True)
class Server:
    """One upstream resolver and its health."""

    host: str
    port: int
    max_fails: int = DEFAULT_MAX_FAILS
    fails: int = 0  # consecutive failures

    @property
    def down(self) -> bool:
        return 0 < self.max_fails <= self.fails

    @property
    def ipv6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.ipv6 else f"{self.host}:{self.port}"


class Upstreams:
    """The upstream servers, their health, and the selection policy."""

    def __init__(self, addresses: Iterable[tuple[str, int]], policy: Policy, rng: random.Random,
                 max_fails: int = DEFAULT_MAX_FAILS, failfast: bool = False) -> None:
        self.servers = [Server(host, port, max_fails) for host, port in addresses]
        if not self.servers:
            raise ValueError("at least one upstream is needed")
        self.policy = policy
        self.failfast = failfast
        self._rng = rng
        self._next = 0

    def order(self) -> list[Server]:
        """The servers to try for one query, in order: the healthy ones, or (all down) one of them or none."""
        servers = self.servers
        if self.policy is Policy.RANDOM:
            servers = servers[:]
            self._rng.shuffle(servers)
        elif self.policy is Policy.ROUND_ROBIN:
            start = self._next % len(servers)
            self._next = start + 1
            servers = servers[start:] + servers[:start]
        healthy = [server for server in servers if not server.down]
        if healthy or self.failfast:
            return healthy
        return [self._rng.choice(self.servers)]

    def all_down(self) -> bool:
        return all(server.down for server in self.servers)

    @staticmethod
    def failed(server: Server) -> bool:
        """Count a failure; True when this one marks the server down (start probing it)."""
        server.fails += 1
        return server.fails == server.max_fails

    @staticmethod
    def succeeded(server: Server) -> bool:
        """Count an answer; True when the server was down until now."""
        was_down = server.down
        server.fails = 0
        return was_down


def loops_back(upstream: tuple[str, int], listen: Iterable[tuple[str, int]], is_local: Callable[[str], bool]) -> bool:
    """Whether forwarding to `upstream` would reach this server itself.

    True when it is one of our listen addresses, or when we listen on a wildcard address on its
    port and it is an address of this machine (`is_local`).
    """
    host, port = upstream
    address = ipaddress.ip_address(host.split("%")[0])
    for listen_host, listen_port in listen:
        if listen_port != port:
            continue
        ours = ipaddress.ip_address(listen_host)
        if ours == address:
            return True
        if ours.is_unspecified and (address.is_loopback or is_local(host)):
            return True
    return False
