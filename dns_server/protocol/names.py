"""Domain names (and addresses) as the server reads them: lower case, dotted, without the trailing dot; the root is "".

Every zone test of the server is one of these functions.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from dns_server.errors import ConfigError
from dns_server.protocol.codes import MAX_LABEL, MAX_NAME_LEN

REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")  # RFC 1035 3.5, RFC 3596 2.5
MAX_NAME_TEXT = MAX_NAME_LEN - 2  # a name's text, no trailing dot: the wire form less the first length byte and the root


def in_zone(name: str, zone: str) -> bool:
    """Whether `name` is `zone` or below it (both lower case, no trailing dot; root is "")."""
    return not zone or name == zone or name.endswith("." + zone)


def zone_text(zone: str) -> str:
    """The zone as CoreDNS prints it: fully qualified, `.` for the root."""
    return zone + "." if zone else "."


def longest_zone(name: str, zones: tuple[str, ...]) -> str | None:
    """The longest of `zones` that `name` lies in, or None."""
    best: str | None = None
    for zone in zones:
        if in_zone(name, zone) and (best is None or len(zone) > len(best)):
            best = zone
    return best


def is_reverse_zone(zone: str) -> bool:
    return any(in_zone(zone, reverse) for reverse in REVERSE_ZONES)


def valid_domain(name: str) -> bool:
    """Whether a lower-case name without trailing dot is a domain name (the root "" is one)."""
    if not name:
        return True
    labels = name.split(".")
    return len(name) <= MAX_NAME_TEXT and all(0 < len(label) <= MAX_LABEL for label in labels)


def normalize_zone(text: str) -> str:
    """`Example.ORG.` -> `example.org`; `.` -> "".  Raises ConfigError for a name that is none."""
    zone = text.strip().lower().rstrip(".")
    if text.strip() in (".", "") or text.strip().strip(".") == "":
        return ""
    if not valid_domain(zone):
        raise ConfigError(f"zone is not a valid domain name: {text}")
    return zone


@lru_cache(maxsize=4096)  # the router reads each query's client (autopath): the same few addresses, often
def canonical_address(text: str) -> str:
    """`fe80::1%eth0` -> `fe80::1`, `::ffff:10.0.0.1` -> `10.0.0.1`; raises ValueError if not an address."""
    address = ipaddress.ip_address(text.partition("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
