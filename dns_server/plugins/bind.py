"""The addresses of a network interface, for `bind IFACE` (CoreDNS `plugin/bind`).

Read from the kernel over rtnetlink (Linux), with the standard library only: one RTM_GETADDR dump,
the interface picked by index.  Like Go's `net.Interface.Addrs` (which CoreDNS uses), an address is
IFA_LOCAL when the kernel gives one (point-to-point links) and IFA_ADDRESS otherwise; like
CoreDNS's bind plugin, IPv6 link-local addresses are left out (they need a zone to bind to) and
IPv4 link-local ones are kept.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Sequence

from dns_server.chain.plugin import PluginSpec
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive, Token
from dns_server.protocol.names import canonical_address

_NLMSG_HEADER = struct.Struct("=LHHLL")  # length, type, flags, sequence, port id
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
_RTATTR = struct.Struct("=HH")  # length, type
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWADDR, _RTM_GETADDR = 20, 22
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_IFA_ADDRESS, _IFA_LOCAL = 1, 2


def _align(length: int) -> int:
    return (length + 3) & ~3


def interface_addresses(name: str) -> tuple[str, ...]:
    """The addresses of interface `name`, or () when the machine has no interface of that name."""
    indexes = {ifname: index for index, ifname in socket.if_nameindex()}
    if name not in indexes:
        return ()
    found: list[str] = []
    for index, family, attributes in _dump_addresses():
        if index != indexes[name]:
            continue
        raw = attributes.get(_IFA_LOCAL, attributes.get(_IFA_ADDRESS))
        if raw is None or family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(raw)
        if address.version == 6 and (address.is_link_local or address.is_multicast):
            continue
        found.append(str(address))
    return tuple(dict.fromkeys(found))


def _dump_addresses() -> list[tuple[int, int, dict[int, bytes]]]:
    """Every (interface index, family, attributes) the kernel lists in one RTM_GETADDR dump."""
    request = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    header = _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(request), _RTM_GETADDR,
                                _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
    rows: list[tuple[int, int, dict[int, bytes]]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.sendall(header + request)
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSG_HEADER.size <= len(data):
                length, kind = _NLMSG_HEADER.unpack_from(data, offset)[:2]
                if kind == _NLMSG_DONE:
                    return rows
                if kind == _NLMSG_ERROR:
                    raise OSError("the kernel refused to list the interface addresses")
                if kind == _RTM_NEWADDR:
                    family, _, _, _, index = _IFADDRMSG.unpack_from(data, offset + _NLMSG_HEADER.size)
                    rows.append((index, family, _attributes(data, offset + _NLMSG_HEADER.size + _IFADDRMSG.size,
                                                            offset + length)))
                offset += _align(length)


def _attributes(data: bytes, start: int, end: int) -> dict[int, bytes]:
    attributes: dict[int, bytes] = {}
    while start + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, start)
        if length < _RTATTR.size:
            break
        attributes.setdefault(kind, data[start + _RTATTR.size:start + length])
        start += _align(length)
    return attributes


# --- the directive ---

def setup(found: Sequence[Directive], context: SetupContext) -> tuple[str, ...]:
    plugin = Reader("bind")
    addresses: list[str] = []
    for directive in found:
        if not directive.args:
            raise plugin.error(directive.name, "at least one address or interface name is expected")
        excepted: list[str] = []
        for option in plugin.options(directive):
            if option.name.text != "except":
                raise plugin.error(option.name, f'invalid option "{option.name.text}"')
            if not option.args:
                raise plugin.error(option.name, "at least one address or interface must be given to except subdirective")
            excepted.extend(_bind_addresses(plugin, option.args, context))
        addresses.extend(a for a in _bind_addresses(plugin, directive.args, context) if a not in excepted)
    if not addresses:  # CoreDNS would start the block with no listener at all
        raise plugin.error(found[0].name, "no address left to listen on")
    return tuple(dict.fromkeys(addresses))


def _bind_addresses(plugin: Reader, tokens: Sequence[Token], context: SetupContext) -> list[str]:
    """Interface names first (as CoreDNS looks them up), then IP addresses."""
    addresses: list[str] = []
    for token in tokens:
        of_interface = context.interface_addresses(token.text)
        if of_interface:
            addresses.extend(of_interface)
            continue
        try:
            addresses.append(canonical_address(token.text))
        except ValueError:
            raise plugin.error(token, f'not a valid IP address or interface name: "{token.text}"') from None
    return addresses


PLUGIN = PluginSpec("bind", setup)
