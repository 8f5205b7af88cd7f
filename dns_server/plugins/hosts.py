"""Hosts-file entries and the table the `hosts` plugin answers from (CoreDNS `plugin/hosts`).

Rules kept here (pure: text in, values out; the caller reads the file and logs what is reported):
- A line is `ADDRESS NAME...`; `#` starts a comment anywhere on a line; fields are split on
  whitespace.  A line with an address and no name, or an address that does not parse, is skipped
  and reported as a `BadLine`, never silently (CoreDNS skips both without a word).
- An IPv6 zone (`fe80::1%eth0`) is dropped; an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is the
  IPv4 address, as Go's `net.IP.To4` makes it in CoreDNS.  Addresses are kept in their canonical text.
- Names are lower case without the trailing dot (config.py's convention).  Only names inside the
  plugin's zones enter the table; others are dropped, as CoreDNS drops names outside its origins.
- A name's addresses come from the file first, then from the Corefile's inline lines; the same for
  an address's names (PTR).  Repeats are kept once.  With `reverse=False` (`no_reverse`) no
  address has names.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

from dns_server.protocol.names import in_zone, valid_domain

Family = Literal[4, 6]


@dataclass(frozen=True, slots=True)
class HostsEntry:
    """One usable line: an address and the names it gives."""

    address: str  # canonical text: `10.0.0.1`, `2001:db8::1`
    names: tuple[str, ...]  # lower case, no trailing dot

    @property
    def family(self) -> Family:
        return 6 if ":" in self.address else 4


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that was skipped, and why (for a warning naming the file and line)."""

    line: int
    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class HostsFile:
    entries: tuple[HostsEntry, ...]
    bad_lines: tuple[BadLine, ...] = ()


def canonical_address(text: str) -> str:
    """`fe80::1%eth0` -> `fe80::1`, `::ffff:10.0.0.1` -> `10.0.0.1`; raises ValueError if not an address."""
    address = ipaddress.ip_address(text.partition("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def parse_entry(fields: Sequence[str]) -> HostsEntry:
    """`ADDRESS NAME...` (already split into fields) -> an entry; raises ValueError with the reason."""
    if not fields:
        raise ValueError("empty line")
    try:
        address = canonical_address(fields[0])
    except ValueError:
        raise ValueError(f"{fields[0]!r} is not an IP address") from None
    if len(fields) < 2:
        raise ValueError(f"no name for {fields[0]}")
    names = [text.lower().rstrip(".") for text in fields[1:]]
    for name, text in zip(names, fields[1:]):
        if not name or not valid_domain(name):
            raise ValueError(f"{text!r} is not a domain name")
    return HostsEntry(address, tuple(dict.fromkeys(names)))


def parse_hosts(text: str) -> HostsFile:
    """Parse the text of a hosts file; unusable lines are skipped and listed in `bad_lines`."""
    entries: list[HostsEntry] = []
    bad: list[BadLine] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.partition("#")[0].split()
        if not fields:
            continue
        try:
            entries.append(parse_entry(fields))
        except ValueError as error:
            bad.append(BadLine(number, line, str(error)))
    return HostsFile(tuple(entries), tuple(bad))


@dataclass(frozen=True, slots=True)
class HostsTable:
    """The lookups the resolver asks: addresses of a name (A/AAAA), names of an address (PTR)."""

    by_name: dict[tuple[str, Family], tuple[str, ...]] = field(default_factory=dict)
    by_address: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, file_entries: Iterable[HostsEntry], inline: Iterable[HostsEntry] = (),
              zones: Sequence[str] = ("",), reverse: bool = True) -> HostsTable:
        """The table of the file's entries then the inline ones, keeping only names inside `zones`."""
        by_name: dict[tuple[str, Family], dict[str, None]] = {}
        by_address: dict[str, dict[str, None]] = {}
        for entry in (*file_entries, *inline):
            for name in entry.names:
                if not any(in_zone(name, zone) for zone in zones):
                    continue
                by_name.setdefault((name, entry.family), {})[entry.address] = None
                if reverse:
                    by_address.setdefault(entry.address, {})[name] = None
        return cls({key: tuple(value) for key, value in by_name.items()},
                   {key: tuple(value) for key, value in by_address.items()})

    @property
    def size(self) -> int:
        """Name-address pairs in the table (coredns_hosts_entries)."""
        return sum(len(addresses) for addresses in self.by_name.values())

    def addresses(self, name: str, family: Family) -> tuple[str, ...]:
        """The IPv4 (family 4) or IPv6 (family 6) addresses of `name` (lower case, no trailing dot)."""
        return self.by_name.get((name, family), ())

    def names(self, address: str) -> tuple[str, ...]:
        """The names of `address`, for PTR answers; () for text that is no address."""
        try:
            return self.by_address.get(canonical_address(address), ())
        except ValueError:
            return ()

    def has(self, name: str) -> bool:
        """Whether `name` has an address of either family: NODATA rather than NXDOMAIN for other types."""
        return (name, 4) in self.by_name or (name, 6) in self.by_name
