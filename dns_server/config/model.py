"""The one validated configuration: server blocks, the zones they serve and their plugin settings.

A Corefile (`corefile.py` reads its syntax, `directives.py` turns it into settings) and the
command-line flags (`cli.py`, a flag-started server is one server block) both produce a frozen
`Config`; everything downstream reads only this.  Pure: no I/O happens here.

Names and zones are written the way the resolver reads them: lower case, no trailing dot, the
root zone as "".  `zone_text()` gives the spelling CoreDNS prints (`cluster.local.`, `.`).
Defaults carry the precedent they come from; CoreDNS 1.14 is the precedent unless one is named.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from dns_server.cluster.sources.settings import SourceSettings
from dns_server.errors import ConfigError
from dns_server.protocol.names import in_zone, is_reverse_zone, zone_text

DEFAULT_PORT = 53
DEFAULT_CLUSTER_DOMAIN = "cluster.local"  # kubelet --cluster-domain default
DEFAULT_TTL = 5  # kubernetes plugin `ttl`
MAX_TTL = 3600  # kubernetes plugin upper bound for `ttl`
DEFAULT_STARTUP_TIMEOUT = 5.0  # kubernetes plugin `startup_timeout`
DEFAULT_DNS_SERVICE = ("kube-system", "kube-dns")  # the Service kubeadm creates for cluster DNS
DEFAULT_BUFSIZE = 1232  # bufsize plugin default; DNS flag day 2020
MIN_BUFSIZE, MAX_BUFSIZE = 512, 4096  # bufsize plugin bounds
DEFAULT_TCP_IDLE_TIMEOUT = 8.0  # miekg/dns (CoreDNS's library) idle timeout for TCP
DEFAULT_MAX_TCP_CONNECTIONS = 1000
MAX_UPSTREAMS = 15  # forward: at most 15 upstreams
DEFAULT_MAX_FAILS = 2  # forward `max_fails`
DEFAULT_EXPIRE = 10.0  # forward `expire`: cached upstream connections
DEFAULT_HEALTH_CHECK = 0.5  # forward `health_check`
DEFAULT_CACHE_CAPACITY = 9984  # cache: 256 shards of 39 entries
MIN_CACHE_CAPACITY = 1024  # cache: the smallest capacity it accepts
MAX_SUCCESS_TTL = 3600  # cache: success TTL cap
MAX_DENIAL_TTL = 1800  # cache: denial TTL cap
DEFAULT_MIN_TTL = 5  # cache: MINTTL of success and denial
DEFAULT_SERVFAIL_TTL = 5.0  # cache `servfail`
MAX_SERVFAIL_TTL = 300.0  # cache: `servfail` at most 5 minutes
DEFAULT_PREFETCH_DURATION = 60.0  # cache `prefetch AMOUNT [DURATION]`
DEFAULT_PREFETCH_PERCENTAGE = 10  # cache `prefetch ... [PERCENTAGE%]`
DEFAULT_SERVE_STALE = 3600.0  # cache `serve_stale [DURATION]`
DEFAULT_HOSTS_FILE = Path("/etc/hosts")
DEFAULT_HOSTS_TTL = 3600  # hosts `ttl`
DEFAULT_HOSTS_RELOAD = 5.0  # hosts `reload`
DEFAULT_HEALTH_ADDRESS = ("", 8080)  # health: ":8080", every interface
DEFAULT_READY_ADDRESS = ("", 8181)  # ready: ":8181"
DEFAULT_METRICS_ADDRESS = ("localhost", 9153)  # prometheus: loopback only unless an address is given
DEFAULT_RELOAD_INTERVAL = 30.0  # reload plugin
DEFAULT_RELOAD_JITTER = 15.0
# plugin.cfg: the order of the plugins with a place in the query chain (`ServerBlock.handlers`)
CHAIN_ORDER = ("prometheus", "errors", "log", "loadbalance", "cache", "hosts", "kubernetes", "loop", "forward")
DEFAULT_LOG_FORMAT = ('{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" '
                      '{rcode} {>rflags} {rsize} {duration}')  # log plugin: {common}


class PodMode(enum.Enum):
    """kubernetes `pods`: which `<a-b-c-d>.<ns>.pod.<zone>` names exist."""

    DISABLED = "disabled"  # none (CoreDNS's default)
    INSECURE = "insecure"  # any address, in a namespace that exists (kubeadm's Corefile)
    VERIFIED = "verified"  # only the addresses of running pods in that namespace


class Policy(enum.Enum):
    """forward `policy`: the order upstreams are tried in."""

    RANDOM = "random"
    ROUND_ROBIN = "round_robin"
    SEQUENTIAL = "sequential"


@dataclass(frozen=True, slots=True)
class Fallthrough:
    """`fallthrough [ZONES...]`: names a plugin passes on when it has no answer for them."""

    zones: tuple[str, ...] | None = None  # None: off; (): every zone

    def covers(self, name: str) -> bool:
        if self.zones is None:
            return False
        return not self.zones or any(in_zone(name, zone) for zone in self.zones)


NO_FALLTHROUGH = Fallthrough()
FALLTHROUGH_ALL = Fallthrough(())


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    """The `kubernetes` plugin: which zones it answers from the cluster, and how it reads the cluster."""

    zones: tuple[str, ...]
    # where the cluster data comes from (one of these, or in-cluster credentials when all are unset)
    endpoint: str | None = None
    tls: tuple[str, str, str] | None = None  # CERT KEY CACERT, with `endpoint`
    kubeconfig: Path | None = None
    context: str | None = None
    fixtures: Path | None = None  # our extension: manifests on disk instead of the API
    watch_file: Path | None = None  # a recorded watch stream replayed on top of `fixtures`
    # what is read
    namespaces: tuple[str, ...] = ()
    labels: str | None = None
    namespace_labels: str | None = None
    # how it answers
    pods: PodMode = PodMode.DISABLED
    endpoint_pod_names: bool = False
    ttl: int = DEFAULT_TTL
    noendpoints: bool = False
    fallthrough: Fallthrough = NO_FALLTHROUGH
    ignore_empty_service: bool = False
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    dns_service: tuple[str, str] = DEFAULT_DNS_SERVICE  # answers `ns.dns.<zone>`

    @property
    def primary_zone(self) -> str:
        """The zone names are built in (PTR and SRV targets): the first that is not a reverse zone."""
        for zone in self.zones:
            if not is_reverse_zone(zone):
                return zone
        return self.zones[0]

    @property
    def source(self) -> SourceSettings:
        """What decides the watches and the records kept: blocks that agree on it share one registry."""
        return SourceSettings(self.endpoint, self.tls, self.kubeconfig, self.context, self.fixtures,
                              self.watch_file, self.namespaces, self.labels, self.namespace_labels,
                              self.pods is PodMode.VERIFIED, self.endpoint_pod_names, self.noendpoints)


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return format_address(self.host, self.port)


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    """One `forward FROM TO...` directive (a block may have several, tried in Corefile order)."""

    from_zone: str
    to: tuple[Upstream, ...]
    except_zones: tuple[str, ...] = ()
    force_tcp: bool = False
    prefer_udp: bool = False
    max_fails: int = DEFAULT_MAX_FAILS  # 0: never marked down, never probed
    expire: float = DEFAULT_EXPIRE
    policy: Policy = Policy.RANDOM
    health_check: float = DEFAULT_HEALTH_CHECK
    health_check_rd: bool = True  # `health_check DURATION no_rec` clears it
    health_check_domain: str = ""  # the probe asks `<domain> IN NS`; "" is the root
    max_concurrent: int = 0  # 0: unlimited
    next_rcodes: frozenset[int] = frozenset()  # `next RCODE...`: these pass the query to the next forward
    failfast_all_unhealthy: bool = False
    location: str = ""  # `Corefile:12`, for messages about this forward

    def handles(self, name: str) -> bool:
        """Whether a name is this forward's to send (FROM matches, no `except` zone does)."""
        return in_zone(name, self.from_zone) and not any(in_zone(name, z) for z in self.except_zones)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The `cache` plugin.  Cluster answers are always the current snapshot's; this caches forwarded ones."""

    zones: tuple[str, ...] = ()  # (): the block's zones
    success_capacity: int = DEFAULT_CACHE_CAPACITY
    success_ttl: int = MAX_SUCCESS_TTL
    success_min_ttl: int = DEFAULT_MIN_TTL
    denial_capacity: int = DEFAULT_CACHE_CAPACITY
    denial_ttl: int = MAX_DENIAL_TTL
    denial_min_ttl: int = DEFAULT_MIN_TTL
    prefetch_amount: int = 0  # 0: no prefetch
    prefetch_duration: float = DEFAULT_PREFETCH_DURATION
    prefetch_percentage: int = DEFAULT_PREFETCH_PERCENTAGE
    serve_stale: float = 0.0  # seconds past expiry; 0: off
    serve_stale_verify: bool = False  # REFRESH_MODE `verify` (else `immediate`)
    servfail_ttl: float = DEFAULT_SERVFAIL_TTL
    disable_success: tuple[str, ...] | None = None  # `disable success [ZONES]`; (): every zone
    disable_denial: tuple[str, ...] | None = None
    keepttl: bool = False


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


@dataclass(frozen=True, slots=True)
class ConsolidateRule:
    """errors `consolidate DURATION REGEXP [LEVEL] [show_first]`."""

    duration: float
    pattern: str
    level: str = "error"  # warning | error | info | debug
    show_first: bool = False


@dataclass(frozen=True, slots=True)
class ErrorsSettings:
    consolidate: tuple[ConsolidateRule, ...] = ()
    stacktrace: bool = False


@dataclass(frozen=True, slots=True)
class LogRule:
    """One `log [NAMES...] [FORMAT] { class ... }` directive."""

    names: tuple[str, ...] = ("",)  # zones whose queries are logged; the root by default
    format: str = DEFAULT_LOG_FORMAT
    classes: frozenset[str] = frozenset({"all"})  # success | denial | error | all


@dataclass(frozen=True, slots=True)
class HealthSettings:
    address: tuple[str, int] = DEFAULT_HEALTH_ADDRESS  # host "" is every interface
    lameduck: float = 0.0


@dataclass(frozen=True, slots=True)
class ReloadSettings:
    interval: float = DEFAULT_RELOAD_INTERVAL
    jitter: float = DEFAULT_RELOAD_JITTER


@dataclass(frozen=True, slots=True)
class ZoneKey:
    """One key of a server block: a zone on a port."""

    zone: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"{zone_text(self.zone)}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerBlock:
    """One server block: its zones and ports, where it listens, and its plugins."""

    keys: tuple[ZoneKey, ...]
    bind: tuple[str, ...] = ()  # addresses to listen on; (): every address
    bufsize: int = DEFAULT_BUFSIZE  # the largest UDP reply we send, and the size our OPT announces
    kubernetes: KubernetesSettings | None = None
    hosts: HostsSettings | None = None
    forward: tuple[ForwardSettings, ...] = ()
    cache: CacheSettings | None = None
    loadbalance: bool = False
    errors: ErrorsSettings | None = None
    log: tuple[LogRule, ...] = ()
    health: HealthSettings | None = None
    ready: tuple[str, int] | None = None
    prometheus: tuple[str, int] | None = None
    reload: ReloadSettings | None = None
    loop: bool = False
    location: str = ""  # `Corefile:3`, or `flags`

    @property
    def zones(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(key.zone for key in self.keys))

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(key.port for key in self.keys))

    def zones_on(self, port: int) -> tuple[str, ...]:
        return tuple(key.zone for key in self.keys if key.port == port)

    @property
    def handlers(self) -> tuple[str, ...]:
        """The plugins in this block's query chain, sorted (what `coredns_plugin_enabled` lists)."""
        present = {"kubernetes": self.kubernetes, "hosts": self.hosts, "forward": self.forward,
                   "cache": self.cache, "loadbalance": self.loadbalance, "errors": self.errors,
                   "log": self.log, "prometheus": self.prometheus, "loop": self.loop}
        return tuple(sorted(name for name, value in present.items() if value))

    @property
    def chain_end(self) -> str:
        """The last plugin of the query chain ("" if none): the one whose "no next plugin found" CoreDNS reports."""
        handlers = self.handlers
        return next((name for name in reversed(CHAIN_ORDER) if name in handlers), "")


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the server runs with."""

    blocks: tuple[ServerBlock, ...]
    files: tuple[Path, ...] = ()  # the Corefile and every file it imports (what `reload` watches)
    corefile_hash: str = ""  # SHA512 of the Corefile's text, as the reload plugin reports it
    tcp_idle_timeout: float = DEFAULT_TCP_IDLE_TIMEOUT
    max_tcp_connections: int = DEFAULT_MAX_TCP_CONNECTIONS
    log_level: str = "info"
    log_format: str = "text"  # text | json: the server's own lines (start-up, sync, reload, shutdown)
    source: str = "flags"  # where it came from, for messages: a Corefile path or "flags"

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ConfigError(f"{self.source}: no server blocks")
        if self.tcp_idle_timeout <= 0 or self.max_tcp_connections < 1:
            raise ConfigError("the TCP idle timeout and connection limit must be positive")


def parse_hostport(text: str, default_port: int) -> tuple[str, int]:
    """`HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` -> (host, port); raises ConfigError."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{text!r}: missing ']' in an IPv6 address")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{text!r}: {host!r} is not an IP address") from None
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{text!r}: {port_text!r} is not a port number")
    return host, int(port_text)


_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, bare_seconds: bool = True) -> float:
    """Go's time.ParseDuration in seconds (`1h30m`, `-5s`, `.5ms`: what CoreDNS reads); raises ConfigError.

    The messages are Go's.  With `bare_seconds`, a plain number is seconds (as our flags take it).
    """
    if bare_seconds and re.fullmatch(r"\d+(?:\.\d+)?", text.strip()):
        return float(text)
    sign, body = (text[0], text[1:]) if text[:1] in ("+", "-") else ("", text)
    if body == "0":
        return 0.0
    if not body:
        raise ConfigError(f'time: invalid duration "{text}"')
    total, position = 0.0, 0
    while position < len(body):
        part = _DURATION_PART.match(body, position)
        assert part is not None  # every group of the pattern may be empty
        whole, fraction, unit = part.groups()
        if not whole and not fraction:
            raise ConfigError(f'time: invalid duration "{text}"')
        if not unit:
            raise ConfigError(f'time: missing unit in duration "{text}"')
        if unit not in _DURATION_UNITS:
            raise ConfigError(f'time: unknown unit "{unit}" in duration "{text}"')
        total += float(f"{whole or 0}.{fraction or 0}") * _DURATION_UNITS[unit]
        position = part.end()
    return -total if sign == "-" else total


def format_duration(seconds: float) -> str:
    """Go's `time.Duration.String()`, how CoreDNS prints a duration: `30s`, `5m0s`, `1h0m0s`, `1.5s`, `250ms`."""
    nanoseconds = round(seconds * 1e9)
    if nanoseconds <= 0:
        return "0s"
    if nanoseconds < 1_000:
        return f"{nanoseconds}ns"
    if nanoseconds < 1_000_000:
        return _decimal(nanoseconds, 3) + "µs"
    if nanoseconds < 1_000_000_000:
        return _decimal(nanoseconds, 6) + "ms"
    whole_seconds = nanoseconds // 1_000_000_000
    text = _decimal(nanoseconds % 60_000_000_000, 9) + "s"
    if whole_seconds >= 60:
        text = f"{whole_seconds // 60 % 60}m{text}"
    if whole_seconds >= 3600:
        text = f"{whole_seconds // 3600}h{text}"
    return text


def _decimal(value: int, digits: int) -> str:
    """`value` / 10**digits, without trailing zeros after the point (Go's fmtFrac and fmtInt)."""
    whole, part = divmod(value, 10 ** digits)
    fraction = f"{part:0{digits}d}".rstrip("0")
    return f"{whole}.{fraction}" if fraction else str(whole)


def format_address(host: str, port: int) -> str:
    """The inverse of `parse_hostport`: `1.2.3.4:53` or `[::1]:53` (`:53` for every interface)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

