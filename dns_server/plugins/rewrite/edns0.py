"""The `edns0` rules: the EDNS options of a request, set, appended, replaced or unset (CoreDNS 1.14's edns0.go; pure).

An `Edns` holds the options one request carries, of the codes the block's rules name (the others
are not passed upstream, with or without rules), as a list the rules edit in order.  Each rule
does what CoreDNS's does, quirks included: a `local` or `nsid` `append` adds the option even when
the request has one; a `replace` applies only when it has one; a variable's or a subnet's `append`
does nothing when it has one; a `set` changes the first option of the code, or adds one.
`Edns.wire()` is what the upstream query's OPT record carries.

`Edns.per_client` says whether the options depend on who asked: the client's address, port or
transport, or options of the named codes that the client sent itself.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

from dns_server.chain.plugin import Request
from dns_server.protocol.codes import EDNS_OPTION, NSID
from dns_server.protocol.wire import edns_options

SUBNET = 8  # EDNS Client Subnet (RFC 7871)
LOCAL, NSID_RULE, SUBNET_RULE = "local", "nsid", "subnet"
SET, APPEND, REPLACE, UNSET = "set", "append", "replace", "unset"
QNAME, QTYPE, CLIENT_IP, CLIENT_PORT, PROTOCOL, SERVER_IP, SERVER_PORT = (
    "{qname}", "{qtype}", "{client_ip}", "{client_port}", "{protocol}", "{server_ip}", "{server_port}")
VARIABLES = (QNAME, QTYPE, CLIENT_IP, CLIENT_PORT, PROTOCOL, SERVER_IP, SERVER_PORT)
# The codes miekg/dns reads as an option type of their own: a `local` rule never matches them, as in CoreDNS.
TYPED_CODES = frozenset((1, 2, NSID, 4, 5, 6, 7, SUBNET, 9, 10, 11, 12, 15))  # miekg/dns v1.1.72
_U16 = struct.Struct("!H")
_SUBNET_HEAD = struct.Struct("!HBB")  # family, source prefix length, scope prefix length


class Edns:
    """The options of one request as the edns0 rules edit them: (code, data) pairs in order."""

    __slots__ = ("options", "request", "per_client")

    def __init__(self, request: Request, codes: frozenset[int]) -> None:
        self.request = request
        self.options = [option for option in edns_options(request.options or b"") if option[0] in codes]
        self.per_client = bool(self.options)

    def find(self, code: int, typed: bool) -> int:
        """Where the first option of the code is (-1: none); a `local` rule (typed False) sees only the codes
        miekg/dns reads as EDNS0_LOCAL."""
        if typed or code not in TYPED_CODES:
            for at, (found, _) in enumerate(self.options):
                if found == code:
                    return at
        return -1

    def wire(self) -> bytes:
        return b"".join(EDNS_OPTION.pack(code, len(data)) + data for code, data in self.options)


class Edns0Rule(NamedTuple):
    mode: str
    kind: str  # local, nsid, subnet
    action: str
    code: int
    data: bytes = b""  # local with a constant
    variable: str = ""  # local with a variable
    v4_prefix: int = 0  # subnet
    v6_prefix: int = 0
    revert: bool = False  # accepted: replies never carry the upstream's options (see the package docstring)

    @property
    def decided_by_request(self) -> bool:
        """Whether it applies or not depending on the request: then, as a `stop` rule, it decides what follows."""
        return self.action == REPLACE or (self.action != UNSET and (self.kind == SUBNET_RULE or bool(self.variable)))

    def edit(self, edns: Edns, name: str, qtype: int) -> bool:
        """Apply the rule to the request's options; whether it applied (CoreDNS's RewriteDone)."""
        if self.action == UNSET:
            edns.options = [option for option in edns.options if option[0] != self.code]
            return True
        if self.kind == SUBNET_RULE:
            data = self.subnet(edns)
        elif self.variable:
            data = self.value(edns, name, qtype)
        else:
            data = self.data
        if data is None:
            return False
        at = edns.find(self.code, self.kind != LOCAL)
        if at >= 0:
            if self.action in (SET, REPLACE):
                edns.options[at] = (self.code, data)
                return True
            if self.variable or self.kind == SUBNET_RULE:
                return False
        if self.action in (SET, APPEND):
            edns.options.append((self.code, data))
            return True
        return False

    def value(self, edns: Edns, name: str, qtype: int) -> bytes | None:
        """A variable's value in wire form (CoreDNS's ruleData), None when there is none."""
        request = edns.request
        if self.variable == QNAME:
            return name.encode("latin-1")
        if self.variable == QTYPE:
            return _U16.pack(qtype)
        if self.variable == SERVER_PORT:
            return None if request.local is None else _U16.pack(request.local[1])
        edns.per_client = True  # the rest is the client's, or written in its address family
        peer = request.peer
        if peer is None:
            return None
        if self.variable == CLIENT_PORT:
            return _U16.pack(peer[1])
        if self.variable == PROTOCOL:
            return b"tcp" if request.via_tcp else b"udp"
        if self.variable == CLIENT_IP:
            return _in_family(peer[0], _family(peer[0]))
        return None if request.local is None else _in_family(request.local[0], _family(peer[0]))

    def subnet(self, edns: Edns) -> bytes | None:
        """The client's subnet option (CoreDNS's fillEcsData): its address cut to the family's prefix length."""
        edns.per_client = True
        peer = edns.request.peer
        if peer is None:
            return None
        ip = ipaddress.ip_address(peer[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        family, prefix = (1, self.v4_prefix) if ip.version == 4 else (2, self.v6_prefix)
        network = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
        return _SUBNET_HEAD.pack(family, prefix, 0) + network.network_address.packed[:(prefix + 7) // 8]


def _family(address: str) -> int:
    """Go's Request.Family(): 1 for an IPv4 (or IPv4-mapped) address, else 2."""
    ip = ipaddress.ip_address(address)
    return 1 if isinstance(ip, ipaddress.IPv4Address) or ip.ipv4_mapped is not None else 2


def _in_family(address: str, family: int) -> bytes | None:
    """Go's ipToWire: 4 bytes (None when the address has no IPv4 form) or 16."""
    ip = ipaddress.ip_address(address)
    if family == 1:
        if ip.version == 4:
            return ip.packed
        mapped = ip.ipv4_mapped
        return None if mapped is None else mapped.packed
    return ip.packed if ip.version == 6 else ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed).packed
