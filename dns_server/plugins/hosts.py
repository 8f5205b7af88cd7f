"""Hosts-file entries and the table the `hosts` plugin answers from (CoreDNS `plugin/hosts`).

Rules kept here (pure: text in, values out; the caller reads the file and logs what is reported):
- A line is `ADDRESS NAME...`; `#` starts a comment anywhere on a line; fields are split on
  whitespace.  A line with an address and no name, or an address that does not parse, is skipped
  and reported as a `BadLine`, never silently (CoreDNS skips both without a word).
- An IPv6 zone (`fe80::1%eth0`) is dropped; an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is the
  IPv4 address, as Go's `net.IP.To4` makes it in CoreDNS.  Addresses are kept in their canonical text.
- Names are lower case without the trailing dot (config.model's convention).  Only names inside the
  plugin's zones enter the table; others are dropped, as CoreDNS drops names outside its origins.
- A name's addresses come from the file first, then from the Corefile's inline lines; the same for
  an address's names (PTR).  Repeats are kept once.  With `reverse=False` (`no_reverse`) no
  address has names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Literal, Sequence

from dnslib import QTYPE

from dns_server.chain.plugin import Handler, Next, PluginSpec, Request
from dns_server.cluster.snapshot import HOSTS
from dns_server.config.model import (
    NO_FALLTHROUGH,
    Fallthrough,
    ServerBlock,
    parse_duration,
)
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive
from dns_server.errors import ConfigError
from dns_server.plugins.kubernetes.qname import parse_qname
from dns_server.protocol.answer import RR, Answer, Outcome
from dns_server.protocol.names import (
    REVERSE_ZONES,
    canonical_address,
    in_zone,
    valid_domain,
)

NAME = "hosts"
A, AAAA, PTR = QTYPE.A, QTYPE.AAAA, QTYPE.PTR
DEPENDS = frozenset({HOSTS})

DEFAULT_HOSTS_FILE = Path("/etc/hosts")
DEFAULT_HOSTS_TTL = 3600  # hosts `ttl`
DEFAULT_HOSTS_RELOAD = 5.0  # hosts `reload`
MAX_HOSTS_TTL = 65535  # plugin/hosts `ttl`

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


# --- the directive ---

@dataclass(frozen=True, slots=True)
class HostsSettings:
    """The `hosts` plugin: a hosts file and inline entries."""

    path: Path | None = DEFAULT_HOSTS_FILE
    zones: tuple[str, ...] = ()  # (): the block's zones
    inline: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (address, names) from lines in the block
    ttl: int = DEFAULT_HOSTS_TTL
    reload: float = DEFAULT_HOSTS_RELOAD  # 0: never re-read
    fallthrough: Fallthrough = NO_FALLTHROUGH
    no_reverse: bool = False


def setup(found: Sequence[Directive], context: SetupContext) -> HostsSettings:
    plugin = Reader("hosts")
    directive = plugin.once(found)
    path = Path(directive.args[0].text) if directive.args else DEFAULT_HOSTS_FILE
    settings = HostsSettings(path=path, zones=plugin.zones(directive.args[1:]))
    inline: list[tuple[str, tuple[str, ...]]] = []
    for option in plugin.options(directive):
        name, args = option.name.text, option.args
        if name == "fallthrough":
            settings = replace(settings, fallthrough=plugin.fallthrough(option))
        elif name == "no_reverse":
            plugin.no_args(option)
            settings = replace(settings, no_reverse=True)
        elif name == "ttl":
            if not args:
                raise plugin.error(option.name, "ttl needs a time in second")
            if len(args) > 1:
                raise plugin.arg_error(args[1])
            if not re.fullmatch(r"[+-]?[0-9]+", args[0].text):
                raise plugin.error(args[0], "ttl needs a number of second")
            if not 0 < int(args[0].text) <= MAX_HOSTS_TTL:
                raise plugin.error(args[0], "ttl provided is invalid")
            settings = replace(settings, ttl=int(args[0].text))
        elif name == "reload":
            if len(args) != 1:
                raise plugin.error(option.name, "reload needs a duration (zero seconds to disable)")
            try:
                reload = parse_duration(args[0].text, bare_seconds=False)
            except ConfigError:
                raise plugin.error(args[0], f"invalid duration for reload '{args[0].text}'") from None
            if reload < 0:
                raise plugin.error(args[0], f"invalid negative duration for reload '{args[0].text}'")
            settings = replace(settings, reload=reload)
        elif settings.fallthrough.zones is None:  # before `fallthrough`, other lines are hosts entries
            try:
                entry = parse_entry([name, *(token.text for token in args)])
            except ValueError as error:
                raise plugin.error(option.name, f"invalid hosts entry: {error}") from None
            inline.append((entry.address, entry.names))
        else:
            raise plugin.unknown(option)
    return replace(settings, inline=tuple(inline))


# --- its place in the chain ---

class Hosts(Handler):
    """Names and addresses of the hosts table; the runtime swaps `table` when the file is read again.

    CoreDNS plugin/hosts: a name it has no entry for goes on when `fallthrough` covers it, else
    SERVFAIL; an address without entries always goes on.  Answers depend on `HOSTS`, which a new
    table invalidates.
    """

    def __init__(self, settings: HostsSettings, block: ServerBlock) -> None:
        self.settings = settings
        self.zones = settings.zones or block.zones
        self.table = HostsTable.build((), (), self.zones)

    def serve(self, request: Request, next: Next) -> Answer:
        answer = self._answer(request.name, request.qtype)
        if answer is None:
            request.reads.deps.add(HOSTS)  # passed on: the next table may have the name
            return next(request)
        return answer

    def _answer(self, name: str, qtype: int) -> Answer | None:
        settings, hosts = self.settings, self.table
        ttl = settings.ttl
        if qtype == PTR:
            address = _reverse_address(name)
            found = hosts.names(address) if address and not settings.no_reverse else ()
            if not found:
                return None
            return Answer(Outcome.ANSWER, tuple(RR(name, PTR, ttl, n) for n in found), plugin=NAME,
                          depends=DEPENDS)
        if not any(in_zone(name, zone) for zone in self.zones):
            return None
        records: tuple[RR, ...] = ()
        if qtype in (A, AAAA):
            records = tuple(RR(name, qtype, ttl, a) for a in hosts.addresses(name, 4 if qtype == A else 6))
        if records:
            return Answer(Outcome.ANSWER, records, plugin=NAME, depends=DEPENDS)
        if hosts.has(name):
            return Answer(Outcome.NODATA, plugin=NAME, depends=DEPENDS)  # no SOA: hosts has none
        if settings.fallthrough.covers(name):
            return None
        # CoreDNS's hosts answers SERVFAIL here without an error: the errors plugin has nothing to log
        return Answer(Outcome.SERVFAIL, plugin=NAME, depends=DEPENDS)


def _reverse_address(name: str) -> str:
    for zone in REVERSE_ZONES:
        if in_zone(name, zone):
            return parse_qname(name, zone).address
    return ""


PLUGIN = PluginSpec(NAME, setup, Hosts, in_chain=True)
