"""EDNS Client Subnet (RFC 7871, option 8) carrying one client's whole address, between our own servers.

A node-local cache that forwards with `client_subnet` adds the option to each upstream query with
its client's address as SOURCE PREFIX-LENGTH 32 (or 128); a cluster server that trusts the sender
(`trust_client_subnet`) answers as if that address had asked.  Its reply echoes the option with
SCOPE PREFIX-LENGTH 32 (128) when the answer depended on the client, and carries none otherwise,
which RFC 7871 7.3 reads as scope 0: an answer for every client.  Only whole addresses are read:
a shorter prefix names no one client.
"""

from __future__ import annotations

import ipaddress
import struct

from dns_server.protocol.codes import OPT
from dns_server.protocol.wire import HEADER_LEN, FormErr, skip_name

CLIENT_SUBNET = 8  # the EDNS option code (RFC 7871 6)
FAMILIES = {4: (1, 32), 6: (2, 128)}  # IP version -> (ECS FAMILY, a whole address's prefix length)
_OPTION = struct.Struct("!HHHBB")  # code, length, family, source prefix, scope prefix
_RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, rdlength
_COUNTS = struct.Struct("!HHHH")


def option(address: str, scoped: bool) -> bytes:
    """The option for one whole address; `scoped`: the answer depended on it (a reply's scope)."""
    ip = ipaddress.ip_address(address)
    family, prefix = FAMILIES[ip.version]
    return _OPTION.pack(CLIENT_SUBNET, 4 + len(ip.packed), family, prefix, prefix if scoped else 0) + ip.packed


def client_address(message: bytes) -> str | None:
    """The address of the message's client-subnet option when it carries a whole address, else None."""
    found = _client_subnet(message)
    if found is None:
        return None
    family, source, _, address = found
    for known_family, prefix in FAMILIES.values():
        if family == known_family and source == prefix and len(address) == prefix // 8:
            return str(ipaddress.ip_address(address))
    return None


def scope(options: bytes) -> int:
    """The SCOPE PREFIX-LENGTH of the client-subnet option among an OPT record's options (its RDATA);
    0 when there is none (RFC 7871 7.3)."""
    found = _find(options)
    return 0 if found is None else found[2]


def _client_subnet(message: bytes) -> tuple[int, int, int, bytes] | None:
    found = _opt_rdata(message)
    return None if found is None else _find(message[found[0]:found[1]])


def _find(options: bytes) -> tuple[int, int, int, bytes] | None:
    """(FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH, ADDRESS) of the first client-subnet option."""
    at = 0
    while at + 4 <= len(options):
        code, length = struct.unpack_from("!HH", options, at)
        if code == CLIENT_SUBNET and length >= 4 and at + 4 + length <= len(options):
            _, _, family, source, scope_prefix = _OPTION.unpack_from(options, at)
            return family, source, scope_prefix, options[at + 8:at + 4 + length]
        at += 4 + length
    return None


def _opt_rdata(message: bytes) -> tuple[int, int] | None:
    """Where the OPT record's RDATA starts and ends, or None (no OPT, or a message that cannot be read)."""
    try:
        qdcount, ancount, nscount, arcount = _COUNTS.unpack_from(message, 4)
        at = HEADER_LEN
        for _ in range(qdcount):
            at = skip_name(message, at) + 4
        for index in range(ancount + nscount + arcount):
            at = skip_name(message, at)
            rtype, _, _, rdlength = _RR_FIXED.unpack_from(message, at)
            at += 10
            if rtype == OPT and index >= ancount + nscount and at + rdlength <= len(message):
                return at, at + rdlength
            at += rdlength
    except (FormErr, struct.error):
        return None
    return None
