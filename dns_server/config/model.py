"""The one validated configuration: server blocks, the zones they serve and their plugin settings.

A Corefile (`corefile.py` reads its syntax, `build.py` runs each directive's setup, which its
plugin module registers) and the command-line flags (`dns_server.cli`, a flag-started server is one
server block) both produce a frozen `Config`; everything downstream reads only this.  Pure: no I/O
happens here.  The configuration knows no plugin: a block holds each plugin's settings by name.

Names and zones are written the way the resolver reads them: lower case, no trailing dot, the
root zone as "".  `zone_text()` gives the spelling CoreDNS prints (`cluster.local.`, `.`).
Defaults carry the precedent they come from; CoreDNS 1.14 is the precedent unless one is named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dns_server.errors import ConfigError
from dns_server.protocol.names import in_zone, zone_text

DEFAULT_PORT = 53
DEFAULT_TCP_IDLE_TIMEOUT = 8.0  # miekg/dns (CoreDNS's library) idle timeout for TCP
DEFAULT_MAX_TCP_CONNECTIONS = 1000
# coredns/coredns plugin.cfg (1.14): every directive CoreDNS knows, in the order of its plugin chain
# (whatever the Corefile's order), and ours (`trust_client_subnet`, beside proxyproto, which also says who
# the client is).  A name not listed is CoreDNS's `Unknown directive`.
PLUGIN_ORDER: tuple[str, ...] = (
    "root", "metadata", "geoip", "cancel", "proxyproto", "trust_client_subnet", "quic", "grpc_server", "https",
    "https3", "timeouts", "multisocket", "reload", "nsid", "bufsize", "bind", "debug", "trace", "ready", "health",
    "pprof", "shed", "prometheus", "errors", "log", "dnstap", "local", "dns64", "any", "chaos", "loadbalance", "tsig",
    "rewrite", "autopath", "acl", "cache", "header", "dnssec", "tls", "minimal", "template", "transfer", "hosts",
    "route53", "azure", "clouddns", "k8s_external", "kubernetes", "file", "auto", "secondary", "etcd", "loop",
    "forward", "grpc", "erratic", "whoami", "on", "sign", "view", "nomad",
)


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
class ZoneKey:
    """One key of a server block: a zone on a port."""

    zone: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"{zone_text(self.zone)}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerBlock:
    """One server block: its zones and ports, and the settings of each of its plugins.

    The configuration knows no plugin: `plugins` pairs each directive present with the settings its
    plugin's setup read (dns_server.plugins.<directive>), in `PLUGIN_ORDER`.
    """

    keys: tuple[ZoneKey, ...]
    plugins: tuple[tuple[str, Any], ...] = ()
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
    def directives(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.plugins)

    def setting(self, directive: str) -> Any:
        """The settings of a directive's plugin in this block, or None when the block has no such directive."""
        for name, settings in self.plugins:
            if name == directive:
                return settings
        return None

    @property
    def bind(self) -> tuple[str, ...]:
        """The addresses the block listens on (`bind`); (): every address."""
        return self.setting("bind") or ()

    def with_setting(self, directive: str, settings: Any) -> ServerBlock:
        """This block with a directive's settings replaced, added (in plugin order) or, with None, removed."""
        plugins = dict(self.plugins)
        plugins.pop(directive, None)
        if settings is not None:
            plugins[directive] = settings
        ordered = sorted(plugins.items(), key=lambda item: PLUGIN_ORDER.index(item[0]))
        return replace(self, plugins=tuple(ordered))


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
    workers: int = 1  # processes answering on every listen address (dns_server.supervisor when more than one)
    explain_port: int = 0  # --explain-http: /explain on 127.0.0.1 at this port (0: off)

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ConfigError(f"{self.source}: no server blocks")
        if self.tcp_idle_timeout <= 0 or self.max_tcp_connections < 1:
            raise ConfigError("the TCP idle timeout and connection limit must be positive")
        if self.workers < 1:
            raise ConfigError("the number of workers must be at least 1")


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
    """An address as messages write it: `1.2.3.4:53` or `[::1]:53` (`:53` for every interface)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

