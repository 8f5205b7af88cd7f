"""The `loop` plugin: catch, at start, an upstream that forwards our own queries back to us.

As CoreDNS does it: each block with `loop` makes up a name `<random>.<random>.<zone>` and asks
itself `HINFO` for it, through one of its own listeners, so the question goes the way any other
would (to the forward directive that takes it).  Every time the question arrives, the block counts
it; arriving more than twice means an upstream sent it back to us (the first arrival is our own
probe), which is a forwarding loop: the server logs CoreDNS's fatal line and exits with status 1.
A probe that gets no reply resets the count and is sent again a second later; once one gets a
reply (whatever it says), probing ends and, two seconds later, counting too.  Probing gives up
after 30 s.  The looping probe must not be folded into the exchange already in flight for it, so
the pipeline forwards it unshared (`Outbound.resolve(share=False)`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
import time
from typing import Callable, Sequence

from dns_server.chain.plugin import PluginSpec
from dns_server.config.model import format_address
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive
from dns_server.protocol.codes import CLASS_IN, HINFO, MAX_TCP_MESSAGE, RD
from dns_server.protocol.names import zone_text

PROBE_DEADLINE = 30.0  # CoreDNS: probing ends after 30 s
PROBE_RETRY = 1.0  # CoreDNS: a probe without a reply is sent again after 1 s
COUNTING_AFTER_REPLY = 2.0  # CoreDNS: counting stops 2 s after a probe got a reply
PROBE_TIMEOUT = 2.0
MAX_RANDOM = 2**63  # Go's rand.Int(): a non-negative int64
TROUBLESHOOTING = "https://coredns.io/plugins/loop#troubleshooting"

log = logging.getLogger("dns_server.plugins.loop")


class LoopProbe:
    """One block's probe name and how often it has arrived."""

    def __init__(self, zone: str, on_loop: Callable[[str], None], rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        labels = f"{rng.randrange(MAX_RANDOM)}.{rng.randrange(MAX_RANDOM)}"
        self.zone = zone
        self.name = f"{labels}.{zone}" if zone else labels
        self.listener = ""  # where the probes go, for the fatal line
        self._on_loop = on_loop
        self._seen = 0
        self._counting = True

    def arrived(self, peer: tuple[str, int] | None) -> None:
        """The probe question arrived (from `peer`): count it; more than twice is a loop."""
        if not self._counting:
            return
        self._seen += 1
        if self._seen > 2:
            self._counting = False
            source = format_address(*peer) if peer is not None else "?"
            self._on_loop(f'Loop ({source} -> {self.listener}) detected for zone "{zone_text(self.zone)}", '
                          f'see {TROUBLESHOOTING}. Query: "HINFO {self.name}."')

    async def probe(self, host: str, port: int, bound: bool) -> None:
        """Send the probe to ourselves until one gets a reply (or 30 s pass); then stop counting.

        The fatal line names the listener as CoreDNS does: `:53` for a block without `bind`.
        """
        self.listener = format_address(host, port) if bound else f":{port}"
        query = _query(self.name)
        deadline = time.monotonic() + PROBE_DEADLINE
        while time.monotonic() < deadline:
            try:
                await _exchange(query, host, port)
            except OSError:  # TimeoutError included: try again
                self._seen = 0
                await asyncio.sleep(PROBE_RETRY)
                continue
            await asyncio.sleep(COUNTING_AFTER_REPLY)
            break
        self._counting = False


def _query(name: str) -> bytes:
    labels = b"".join(bytes((len(label),)) + label.encode("ascii") for label in name.split("."))
    return struct.pack("!HHHHHH", random.randrange(65536), RD << 8, 1, 0, 0, 0) + labels + b"\x00" + struct.pack(
        "!HH", HINFO, CLASS_IN)


async def _exchange(query: bytes, host: str, port: int) -> bytes:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        await loop.sock_sendall(sock, query)
        async with asyncio.timeout(PROBE_TIMEOUT):
            while True:
                reply = await loop.sock_recv(sock, MAX_TCP_MESSAGE)
                if reply[:2] == query[:2]:
                    return reply


# --- the directive ---

def setup(found: Sequence[Directive], context: SetupContext) -> bool:
    plugin = Reader("loop")
    directive = plugin.once(found)
    plugin.no_args(directive)
    plugin.no_options(directive)
    return True


PLUGIN = PluginSpec("loop", setup, in_chain=True)
