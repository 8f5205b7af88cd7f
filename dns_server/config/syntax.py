"""The Corefile's words and keys: tokens with their location, directives, and how a server-block
key or a plugin's zone argument reads (`core/dnsserver/register.go`, `plugin/normalize.go`,
`plugin/pkg/cidr`).

Pure: plugins' setups read these without reaching the files the parser (`corefile.py`) opens.

  * `[SCHEME://]ZONE[:PORT]`: the port is whatever follows the last `:` when it is a number; the
    zone must be a domain name as miekg/dns checks one; a CIDR becomes the reverse zones that cover
    it, its mask rounded up to an octet (IPv4) or nibble (IPv6) boundary and split.
  * Zones come out as the configuration spells them: lower case, no trailing dot, the root as "".
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from dns_server.errors import ConfigError
from dns_server.protocol.codes import MAX_LABEL

SCHEMES = ("tls", "dns", "quic", "grpc", "https3", "https", "unix")  # plugin/pkg/parse: tried in this order
SERVER_SCHEMES = frozenset(SCHEMES) - {"unix"}  # unix:// is a forward target, never a listener
MAX_ZONE_LENGTH = 255  # plugin.SplitHostPort
MAX_WIRE_NAME = 256  # miekg/dns IsDomainName: the name with its length octets

_ATOI = re.compile(r"[+-]?[0-9]+", re.ASCII)
_GO_SHORT_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}

_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class CorefileError(ConfigError):
    """A Corefile that cannot be read; the message is `FILE:LINE - ` and, where it has one, CoreDNS's text."""


@dataclass(frozen=True, slots=True)
class Token:
    """One word of the Corefile and where it was written."""

    text: str  # after environment substitution; quotes removed
    file: str  # the path as given (or "Corefile" for text); an imported file's absolute path; or a flag
    line: int  # 0 for a flag
    quoted: bool

    @property
    def location(self) -> str:
        """`FILE:LINE`; a token made from a command-line flag (line 0) is located at the flag."""
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True, slots=True)
class Directive:
    """One line of a server block, or of a directive's block, with the block it opens."""

    name: Token  # e.g. `forward`, or a subdirective such as `except` inside a block
    args: tuple[Token, ...]  # the rest of the line
    block: tuple[Directive, ...] | None  # the `{ ... }` opened on the same line, as lines; None if none


@dataclass(frozen=True, slots=True)
class ServerBlockSyntax:
    """A server block as written: its keys (see `parse_address`) and its directives."""

    keys: tuple[Token, ...]  # as written (e.g. `.:53`, `cluster.local`, `10.0.0.0/17`)
    directives: tuple[Directive, ...]  # in Corefile order, imports and snippets spliced in
    location: str  # where the block starts


@dataclass(frozen=True, slots=True)
class CorefileSyntax:
    """A parsed Corefile: its server blocks (snippets are not among them), the files it was read
    from, and the digest a reload compares."""

    blocks: tuple[ServerBlockSyntax, ...]  # none for an empty Corefile: CoreDNS then runs its default
    files: tuple[Path, ...]  # the Corefile and every file imported
    sha512: str  # hex; the reload plugin's "Running configuration SHA512"


@dataclass(frozen=True, slots=True)
class Address:
    """One server-block key, normalised."""

    scheme: str  # dns, tls, quic, grpc, https or https3
    zones: tuple[str, ...]  # lower case, no trailing dot, root ""; a CIDR gives several
    port: int | None  # None when the key gives none (the caller applies -dns.port or the scheme's default)


def parse_address(token: Token) -> Address:
    """A server-block key: `[SCHEME://]ZONE[:PORT]`, a CIDR zone expanded into its reverse zones."""
    scheme, rest = _split_scheme(token.text)
    if scheme not in SERVER_SCHEMES:
        raise CorefileError(f"{token.location} - {scheme}:// cannot serve a server block: {token.text}")
    try:
        hosts, port = _split_host_port(rest)
        for host in hosts:  # as CoreDNS does: the fully qualified name must pass too
            _split_host_port(_fqdn(host))
    except _ZoneError as error:
        raise CorefileError(f"{token.location} - error inspecting server blocks: {error}") from None
    if port is not None and not 0 <= port <= 65535:  # CoreDNS would fail later, binding the listener
        raise CorefileError(f"{token.location} - invalid port {port} in {token.text}")
    # Lower-cased: CoreDNS keeps a key's case and so never routes a (lower-cased) query to `Example.ORG`.
    return Address(scheme, tuple(_zone(host) for host in hosts), port)


def normalize_zones(token: Token) -> tuple[str, ...]:
    """A zone argument of a plugin (`kubernetes cluster.local 10.0.0.0/8`): lower-cased, CIDR expanded.

    CoreDNS (`plugin.Host.NormalizeExact`) drops a scheme and a port here, and silently skips an
    argument that is no zone; we name it instead.
    """
    _, rest = _split_scheme(token.text)
    try:
        hosts, _ = _split_host_port(rest)
    except _ZoneError as error:
        raise CorefileError(f"{token.location} - {error}") from None
    return tuple(_zone(host) for host in hosts)


def reverse_zones(cidr: str) -> tuple[str, ...]:
    """The reverse zones covering a CIDR (`plugin/pkg/cidr`): the mask rounded up to an octet (IPv4)
    or nibble (IPv6) boundary, one zone per subnet.  `10.0.0.0/15` -> `0.10.in-addr.arpa`,
    `1.10.in-addr.arpa`.  Raises ValueError for text that is not a CIDR."""
    network = _parse_cidr(cidr)
    if network is None:
        raise ValueError(f"invalid CIDR {cidr}")
    return _reverse(network)


# Keys and zones

class _ZoneError(Exception):
    pass


def _split_scheme(text: str) -> tuple[str, str]:
    for scheme in SCHEMES:
        if text.startswith(scheme + "://"):
            return scheme, text[len(scheme) + 3:]
    return "dns", text


def _split_host_port(text: str) -> tuple[list[str], int | None]:
    """plugin.SplitHostPort: the hosts (a CIDR gives its reverse zones) and the port, if any."""
    colon = text.rfind(":")
    if colon == len(text) - 1:
        raise _ZoneError(f"expecting data after last colon: {_go_quote(text)}")
    port = None
    if colon != -1:
        port = _atoi(text[colon + 1:])
        if port is not None:
            text = text[:colon]
    if len(text.encode()) > MAX_ZONE_LENGTH:
        raise _ZoneError(f"specified zone is too long: {len(text.encode())} > {MAX_ZONE_LENGTH}")
    if not _is_domain_name(text):
        raise _ZoneError(f"zone is not a valid domain name: {text}")
    network = _parse_cidr(text)
    if network is None:
        return [text], port
    if text[0] == ":" or (text[0] == "0" and ":" in text):  # CoreDNS refuses IPv4-mapped prefixes
        raise _ZoneError(f"invalid CIDR {text}")
    return [zone + "." for zone in _reverse(network)], port


def _atoi(text: str) -> int | None:
    """strconv.Atoi: a signed decimal that fits 64 bits, else None."""
    if not _ATOI.fullmatch(text):
        return None
    value = int(text)
    return value if -2**63 <= value < 2**63 else None


def _is_fqdn(name: str) -> bool:
    """miekg/dns IsFqdn: a final dot that no backslash escapes."""
    if not name.endswith("."):
        return False
    body = name[:-1]
    return (len(body) - len(body.rstrip("\\"))) % 2 == 0


def _fqdn(name: str) -> str:
    return name if _is_fqdn(name) else name + "."


def _is_domain_name(name: str) -> bool:
    """miekg/dns IsDomainName: labels of at most 63 octets, at most 256 on the wire, no empty label."""
    if not name:
        return False
    data = _fqdn(name).encode()
    offset = begin = i = 0
    was_dot = False
    while i < len(data):
        if data[i] == ord("\\"):
            if offset + 1 > MAX_WIRE_NAME:
                return False
            step = 3 if data[i + 1:i + 4].isdigit() and len(data[i + 1:i + 4]) == 3 else 1  # \DDD or \X
            i += step
            begin += step
            was_dot = False
        elif data[i] == ord("."):
            if (i == 0 and len(data) > 1) or was_dot:
                return False
            was_dot = True
            if i - begin > MAX_LABEL:
                return False
            offset += 1 + i - begin
            if offset > MAX_WIRE_NAME:
                return False
            begin = i + 1
        else:
            was_dot = False
        i += 1
    return True


def _parse_cidr(text: str) -> _Network | None:
    """net.ParseCIDR: a whole address (no zone) and a decimal mask that fits it, else None."""
    address, slash, mask = text.partition("/")
    if not slash or not mask.isascii() or not mask.isdigit() or "%" in address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if int(mask) > ip.max_prefixlen:
        return None
    return ipaddress.ip_network(f"{ip}/{int(mask)}", strict=False)


def _reverse(network: _Network) -> tuple[str, ...]:
    step = 8 if network.version == 4 else 4  # the bits one reverse label holds
    boundary = -(-network.prefixlen // step) * step
    return tuple(_reverse_zone(subnet) for subnet in network.subnets(new_prefix=boundary))


def _reverse_zone(network: _Network) -> str:
    if network.version == 4:
        labels = [str(octet) for octet in network.network_address.packed[:network.prefixlen // 8]]
        return ".".join([*reversed(labels), "in-addr.arpa"])
    nibbles = network.network_address.exploded.replace(":", "")[:network.prefixlen // 4]
    return ".".join([*reversed(nibbles), "ip6.arpa"])


def _zone(host: str) -> str:
    """A host as the configuration spells zones: lower case, no trailing dot, the root as ""."""
    name = _fqdn(host).lower()
    return "" if name == "." else name[:-1]


def _go_quote(text: str) -> str:
    """Go's %q (strconv.Quote), for CoreDNS's messages that use it."""
    quoted = []
    for ch in text:
        if ch in '"\\':
            quoted.append("\\" + ch)
        elif ch.isprintable():
            quoted.append(ch)
        elif ch in _GO_SHORT_ESCAPES:
            quoted.append(_GO_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            quoted.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            quoted.append(f"\\u{ord(ch):04x}")
        else:
            quoted.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(quoted) + '"'
