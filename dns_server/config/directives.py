"""Corefile directives -> one validated `Config`, as CoreDNS 1.14's plugins read them.

`corefile.py` gives the syntax (server blocks of directives with their locations); this module is
what CoreDNS's `setup.go` files are: each supported plugin's arguments, options, defaults and
error texts.  Rules kept here:
- Every directive and every option is either read into config.py's settings or refused at start
  with one line naming the file, the line and the token.  Nothing is ignored: a directive CoreDNS
  has that this server does not implement is "not supported", a name CoreDNS does not have is its
  `Unknown directive`, an option is `unknown property` or "not supported".
- Error texts are CoreDNS's (`plugin/cache: Corefile:5 - Error during parsing: ...`, Go's
  `strconv` and `time` texts inside them).  Where CoreDNS's error carries no location, ours does.
- Where CoreDNS silently drops what was written (a repeated `health` or `reload`, extra arguments,
  an empty `ignore`, a block after a plugin that reads none), this is an error here.
- Server keys: `dns://` only, the port from the key else `dns_port` (`-dns.port`); two blocks may
  serve one zone on one port only when all bind different addresses (CoreDNS's overlap check).
- Pure apart from its injectable readers: `resolv_conf` (forward's resolv.conf upstreams) and
  `interface_addresses` (bind's interface names); `load_config` reads the Corefile.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from dns_server.config.corefile import (
    CorefileError,
    CorefileSyntax,
    Directive,
    ServerBlockSyntax,
    Token,
    normalize_zones,
    parse_address,
    parse_corefile,
)
from dns_server.config.model import (
    DEFAULT_BUFSIZE,
    DEFAULT_HEALTH_ADDRESS,
    DEFAULT_HOSTS_FILE,
    DEFAULT_LOG_FORMAT,
    DEFAULT_METRICS_ADDRESS,
    DEFAULT_READY_ADDRESS,
    DEFAULT_RELOAD_INTERVAL,
    DEFAULT_RELOAD_JITTER,
    FALLTHROUGH_ALL,
    MAX_BUFSIZE,
    MAX_TTL,
    MAX_UPSTREAMS,
    MIN_BUFSIZE,
    MIN_CACHE_CAPACITY,
    CacheSettings,
    Config,
    ConsolidateRule,
    ErrorsSettings,
    Fallthrough,
    ForwardSettings,
    HealthSettings,
    HostsSettings,
    KubernetesSettings,
    LogRule,
    PodMode,
    Policy,
    ReloadSettings,
    ServerBlock,
    Upstream,
    ZoneKey,
    parse_duration,
)
from dns_server.errors import ConfigError
from dns_server.plugins.bind import interface_addresses as machine_interface_addresses
from dns_server.plugins.hosts import canonical_address, parse_entry
from dns_server.protocol.names import is_reverse_zone, valid_domain, zone_text

log = logging.getLogger(__name__)

# coredns/coredns plugin.cfg (1.14): the order of the plugin chain, whatever the Corefile's order.
PLUGIN_ORDER: tuple[str, ...] = (
    "root", "metadata", "geoip", "cancel", "proxyproto", "quic", "grpc_server", "https", "https3", "timeouts",
    "multisocket", "reload", "nsid", "bufsize", "bind", "debug", "trace", "ready", "health", "pprof", "shed",
    "prometheus", "errors", "log", "dnstap", "local", "dns64", "any", "chaos", "loadbalance", "tsig", "rewrite",
    "autopath", "acl", "cache", "header", "dnssec", "tls", "minimal", "template", "transfer", "hosts", "route53",
    "azure", "clouddns", "k8s_external", "kubernetes", "file", "auto", "secondary", "etcd", "loop", "forward",
    "grpc", "erratic", "whoami", "on", "sign", "view", "nomad",
)
SUPPORTED: tuple[str, ...] = (
    "reload", "bufsize", "bind", "ready", "health", "prometheus", "errors", "log", "loadbalance", "cache", "hosts",
    "kubernetes", "loop", "forward",
)

DNS_SCHEME = "dns"
DEFAULT_RESOLV_CONF_PORT = 53  # miekg/dns ClientConfigFromFile: nameservers listen on 53
CACHE_SHARDS = 256  # plugin/pkg/cache: a capacity is rounded down to whole shards
MIN_RELOAD_INTERVAL, MIN_RELOAD_JITTER = 2.0, 1.0  # plugin/reload minInterval, minJitter
MIN_PREFETCH_PERCENTAGE, MAX_PREFETCH_PERCENTAGE = 10, 90  # plugin/cache prefetch
MAX_SERVFAIL_TTL = 300.0  # plugin/cache: RFC 2308 7.1, SERVFAIL cached 5 minutes at most
MAX_HOSTS_TTL = 65535  # plugin/hosts `ttl`
MAX_UINT32 = 2 ** 32 - 1
LOG_CLASSES = ("all", "success", "denial", "error")  # plugin/pkg/response classes
LOG_LEVELS = ("warning", "error", "info", "debug")  # errors `consolidate ... [LEVEL]`
COMBINED_LOG_FORMAT = DEFAULT_LOG_FORMAT + ' "{>opcode}"'  # log plugin {combined}
# miekg/dns StringToRcode: the names `forward { next RCODE }` accepts
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5, "YXDOMAIN": 6,
          "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10, "DSOTYPENI": 11, "BADSIG": 16, "BADKEY": 17,
          "BADTIME": 18, "BADMODE": 19, "BADNAME": 20, "BADALG": 21, "BADTRUNC": 22, "BADCOOKIE": 23}
UPSTREAM_SCHEMES = ("dns", "tls", "quic", "grpc", "https", "https3", "unix")  # plugin/pkg/parse Transport

# Options CoreDNS 1.14 has that this server refuses by name (anything else is `unknown property`).
UNSUPPORTED_OPTIONS = {
    "kubernetes": ("multicluster", "apiserver_qps", "apiserver_burst", "apiserver_max_inflight"),
    "forward": ("tls", "tls_servername", "max_connect_attempts", "max_age", "max_idle_conns", "read_timeout",
                "doh_method", "next_on_nodata", "failover", "resolver", "source_address"),
    "prometheus": ("tls", "runtime_metrics"),
    "loadbalance": ("prefer",),
}


@dataclass(frozen=True, slots=True)
class _Context:
    """What a plugin reads besides its own directives."""

    zones: tuple[str, ...]  # the block's zones, CIDR keys expanded
    directory: Path  # the Corefile's directory, for our relative `fixtures DIR`
    resolv_conf: Callable[[Path], str]
    interface_addresses: Callable[[str], tuple[str, ...]]


class _Plugin:
    """Error texts and argument readers of one plugin (CoreDNS's `plugin.Error` + caddy's Dispenser)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def error(self, token: Token, message: str) -> CorefileError:
        return CorefileError(f"plugin/{self.name}: {token.location} - Error during parsing: {message}")

    def arg_error(self, token: Token) -> CorefileError:
        return self.error(token, f"Wrong argument count or unexpected line ending after '{token.text}'")

    def unknown(self, option: Directive) -> CorefileError:
        if option.name.text in UNSUPPORTED_OPTIONS.get(self.name, ()):
            return self.error(option.name, f"option '{option.name.text}' is not supported by this server")
        return self.error(option.name, f"unknown property '{option.name.text}'")

    def once(self, found: Sequence[Directive]) -> Directive:
        """The one directive of a plugin CoreDNS allows once per server block."""
        if len(found) > 1:
            raise self.error(found[1].name, "this plugin can only be used once per Server Block")
        return found[0]

    def options(self, directive: Directive) -> Iterator[Directive]:
        """The lines of the directive's `{ }` block; a line may not open a block of its own."""
        for option in directive.block or ():
            if option.block is not None:
                raise self.error(_last(option), "Unexpected token '{', expecting argument")
            yield option

    def no_options(self, directive: Directive) -> None:
        for option in self.options(directive):
            raise self.unknown(option)

    def no_args(self, directive: Directive) -> None:
        if directive.args:
            raise self.arg_error(directive.args[0])

    def one_arg(self, directive: Directive) -> Token:
        if len(directive.args) != 1:
            raise self.arg_error(_last(directive) if not directive.args else directive.args[1])
        return directive.args[0]

    def atoi(self, token: Token) -> int:
        """Go's strconv.Atoi."""
        if not re.fullmatch(r"[+-]?[0-9]+", token.text):
            raise self.error(token, f'strconv.Atoi: parsing "{token.text}": invalid syntax')
        return int(token.text)

    def uint32(self, token: Token) -> int:
        """Go's strconv.ParseUint(text, 10, 32)."""
        if not re.fullmatch(r"[0-9]+", token.text):
            raise self.error(token, f'strconv.ParseUint: parsing "{token.text}": invalid syntax')
        if int(token.text) > MAX_UINT32:
            raise self.error(token, f'strconv.ParseUint: parsing "{token.text}": value out of range')
        return int(token.text)

    def duration(self, token: Token, prefix: str = "") -> float:
        """Go's time.ParseDuration, in seconds (negative durations parse; callers check)."""
        try:
            return parse_duration(token.text, bare_seconds=False)
        except ConfigError as error:
            raise self.error(token, f"{prefix}{error}") from None

    def zones(self, tokens: Sequence[Token]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(zone for token in tokens for zone in normalize_zones(token)))

    def fallthrough(self, option: Directive) -> Fallthrough:
        """`fallthrough [ZONES...]`: no zones is every zone (plugin/pkg/fall)."""
        return Fallthrough(self.zones(option.args)) if option.args else FALLTHROUGH_ALL

    def listen_address(self, token: Token) -> tuple[str, int]:
        """`HOST:PORT`, `:PORT` or `[V6]:PORT` (Go's net.SplitHostPort, and a port number)."""
        host, port = split_host_port(token.text)
        if host is None:
            raise self.error(token, port)
        if not port.isdigit() or int(port) > 65535:
            raise self.error(token, f"address {token.text}: invalid port")
        return host, int(port)


def _last(directive: Directive) -> Token:
    return directive.args[-1] if directive.args else directive.name


def split_host_port(text: str) -> tuple[str | None, str]:
    """Go's net.SplitHostPort: (host, port), or (None, Go's error text)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None, f"address {text}: missing ']' in address"
        if end + 1 == len(text) or text[end + 1] != ":":
            return None, f"address {text}: missing port in address"
        host, port = text[1:end], text[end + 2:]
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            return None, f"address {text}: missing port in address"
        if ":" in host:
            return None, f"address {text}: too many colons in address"
    if "[" in port or "]" in port or "[" in host or "]" in host:
        return None, f"address {text}: unexpected '[' or ']' in address"
    return host, port


# --- the plugins, in PLUGIN_ORDER ---

def _reload(found: Sequence[Directive], context: _Context) -> ReloadSettings:
    plugin = _Plugin("reload")
    directive = plugin.once(found)
    plugin.no_options(directive)
    if len(directive.args) > 2:
        raise plugin.arg_error(directive.args[2])
    interval = plugin.duration(directive.args[0]) if directive.args else DEFAULT_RELOAD_INTERVAL
    if interval < MIN_RELOAD_INTERVAL:
        raise plugin.error(_last(directive), f"interval value must be greater or equal to {MIN_RELOAD_INTERVAL:g}s")
    jitter = plugin.duration(directive.args[1]) if len(directive.args) > 1 else DEFAULT_RELOAD_JITTER
    if jitter < MIN_RELOAD_JITTER:
        raise plugin.error(_last(directive), f"jitter value must be greater or equal to {MIN_RELOAD_JITTER:g}s")
    return ReloadSettings(interval, min(jitter, interval / 2))  # CoreDNS caps the jitter at half the interval


def _bufsize(found: Sequence[Directive], context: _Context) -> int:
    plugin = _Plugin("bufsize")
    directive = plugin.once(found)
    plugin.no_options(directive)
    if not directive.args:
        return DEFAULT_BUFSIZE
    token = plugin.one_arg(directive)
    if not re.fullmatch(r"[+-]?[0-9]+", token.text) or not MIN_BUFSIZE <= int(token.text) <= MAX_BUFSIZE:
        raise plugin.arg_error(token)  # RFC 6891: 512..4096
    return int(token.text)


def _bind(found: Sequence[Directive], context: _Context) -> tuple[str, ...]:
    plugin = _Plugin("bind")
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


def _bind_addresses(plugin: _Plugin, tokens: Sequence[Token], context: _Context) -> list[str]:
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


def _ready(found: Sequence[Directive], context: _Context) -> tuple[str, int]:
    plugin = _Plugin("ready")
    directive = plugin.once(found)
    if len(directive.args) > 1:
        raise plugin.arg_error(directive.args[1])
    address = plugin.listen_address(directive.args[0]) if directive.args else DEFAULT_READY_ADDRESS
    for option in plugin.options(directive):
        if option.name.text != "monitor":
            raise plugin.unknown(option)
        mode = plugin.one_arg(option)
        if mode.text == "continuously":
            raise plugin.error(mode, "monitor type 'continuously' is not supported by this server")
        if mode.text != "until-ready":
            raise plugin.error(mode, f"monitor type '{mode.text}' not supported")
    return address


def _health(found: Sequence[Directive], context: _Context) -> HealthSettings:
    plugin = _Plugin("health")
    directive = plugin.once(found)  # CoreDNS keeps the last of several; one is all it serves
    if len(directive.args) > 1:
        raise plugin.arg_error(directive.args[1])
    address = plugin.listen_address(directive.args[0]) if directive.args else DEFAULT_HEALTH_ADDRESS
    lameduck = 0.0
    for option in plugin.options(directive):
        if option.name.text != "lameduck":
            raise plugin.arg_error(option.name)  # CoreDNS's text for an unknown health option
        if len(option.args) != 1:
            raise plugin.arg_error(_last(option))
        lameduck = plugin.duration(option.args[0], f'unable to parse lameduck duration value: "{option.args[0].text}": ')
    return HealthSettings(address, lameduck)


def _prometheus(found: Sequence[Directive], context: _Context) -> tuple[str, int]:
    plugin = _Plugin("prometheus")
    directive = plugin.once(found)
    if len(directive.args) > 1:
        raise plugin.arg_error(directive.args[1])
    for option in directive.block or ():
        if option.name.text in UNSUPPORTED_OPTIONS["prometheus"]:
            raise plugin.unknown(option)
        raise plugin.error(option.name, f"unknown option: {option.name.text}")
    return plugin.listen_address(directive.args[0]) if directive.args else DEFAULT_METRICS_ADDRESS


def _errors(found: Sequence[Directive], context: _Context) -> ErrorsSettings:
    plugin = _Plugin("errors")
    directive = plugin.once(found)
    if len(directive.args) > 1:
        raise plugin.arg_error(directive.args[1])
    if directive.args and directive.args[0].text != "stdout":
        raise plugin.error(directive.args[0], f"invalid log file: {directive.args[0].text}")
    rules: list[ConsolidateRule] = []
    stacktrace = False
    for option in plugin.options(directive):
        if option.name.text == "stacktrace":
            plugin.no_args(option)
            stacktrace = True
        elif option.name.text == "consolidate":
            rules.append(_consolidate(plugin, option))
        else:
            raise CorefileError(f"plugin/errors: {option.name.location} - Syntax error: Unexpected token "
                                f"'{option.name.text}', expecting 'Unknown field {option.name.text}'")
    return ErrorsSettings(tuple(rules), stacktrace)


def _consolidate(plugin: _Plugin, option: Directive) -> ConsolidateRule:
    """`consolidate DURATION REGEXP [LEVEL] [show_first]`."""
    if not 2 <= len(option.args) <= 4:
        raise plugin.arg_error(_last(option))
    duration = plugin.duration(option.args[0])
    pattern = option.args[1].text
    try:
        re.compile(pattern)
    except re.error as error:
        raise plugin.error(option.args[1], f"error parsing regexp: {error}: `{pattern}`") from None
    level: str | None = None
    show_first = False
    for token in option.args[2:]:
        if token.text in LOG_LEVELS:
            if level is not None:
                raise plugin.error(token, "multiple log levels specified in consolidate")
            if show_first:
                raise plugin.error(token, "log level must come before show_first in consolidate")
            level = token.text
        elif token.text == "show_first":
            show_first = True
        else:
            raise plugin.error(token, f"unknown option in consolidate: {token.text}")
    return ConsolidateRule(duration, pattern, level or "error", show_first)


def _log(found: Sequence[Directive], context: _Context) -> tuple[LogRule, ...]:
    plugin = _Plugin("log")
    rules: list[LogRule] = []
    for directive in found:
        texts = [token.text for token in directive.args]
        log_format = DEFAULT_LOG_FORMAT
        if len(texts) > 1 and "{" in texts[-1]:  # with one argument it is always a name (plugin/log setup.go)
            log_format = texts.pop().replace("{common}", DEFAULT_LOG_FORMAT).replace("{combined}", COMBINED_LOG_FORMAT)
        names = tuple(_name(plugin, token) for token in directive.args[:len(texts)]) or ("",)
        classes: set[str] = set()
        for option in plugin.options(directive):
            if option.name.text != "class" or not option.args:
                raise plugin.arg_error(option.name)  # CoreDNS's text for an unknown option too
            for token in option.args:
                if token.text not in LOG_CLASSES:
                    raise plugin.error(token, f"invalid Class: {token.text}")
                classes.add(token.text)
        rules.append(LogRule(names, log_format, frozenset(classes or {"all"})))
    return tuple(rules)


def _name(plugin: _Plugin, token: Token) -> str:
    """A name argument (not a zone: no CIDR), lower case without the trailing dot."""
    name = token.text.lower().rstrip(".")
    if not valid_domain(name):
        raise plugin.error(token, f"not a valid domain name: {token.text}")
    return name


def _loadbalance(found: Sequence[Directive], context: _Context) -> bool:
    plugin = _Plugin("loadbalance")
    for directive in found:
        if directive.args:
            policy = directive.args[0]
            if policy.text == "weighted":
                raise plugin.error(policy, "policy 'weighted' is not supported by this server")
            if policy.text != "round_robin":
                raise plugin.error(policy, f"unknown policy: {policy.text}")
            if len(directive.args) > 1:
                raise plugin.error(directive.args[1], f"unknown property for {policy.text}")
        plugin.no_options(directive)
    return True


def _cache(found: Sequence[Directive], context: _Context) -> CacheSettings:
    plugin = _Plugin("cache")
    directive = plugin.once(found)
    args = list(directive.args)
    values: dict[str, object] = {}
    if args and re.fullmatch(r"[+-]?[0-9]+", args[0].text):  # a number first is the TTL, else a zone
        ttl = plugin.atoi(args.pop(0))
        if ttl <= 0:
            raise plugin.error(directive.args[0], f"cache TTL can not be zero or negative: {ttl}")
        values.update(success_ttl=ttl, denial_ttl=ttl)
    values["zones"] = plugin.zones(args)
    for option in plugin.options(directive):
        name = option.name.text
        if name in ("success", "denial"):
            values.update(_cache_kind(plugin, option))
        elif name == "prefetch":
            values.update(_prefetch(plugin, option))
        elif name == "serve_stale":
            values.update(_serve_stale(plugin, option))
        elif name == "servfail":
            duration = plugin.duration(plugin.one_arg(option))
            if duration < 0:
                raise plugin.error(option.args[0], "invalid negative ttl for servfail")
            if duration > MAX_SERVFAIL_TTL:
                raise plugin.error(option.args[0], "caching SERVFAIL responses over 5 minutes is not permitted")
            values["servfail_ttl"] = duration
        elif name == "disable":
            if not option.args:
                raise plugin.arg_error(option.name)
            kind = option.args[0].text
            if kind not in ("success", "denial"):
                raise plugin.error(option.args[0], 'cache type for disable must be "success" or "denial"')
            values[f"disable_{kind}"] = tuple(_name(plugin, token) for token in option.args[1:])
        elif name == "keepttl":
            plugin.no_args(option)
            values["keepttl"] = True
        else:
            raise plugin.arg_error(option.name)  # CoreDNS's text for an unknown cache option
    return CacheSettings(**values)  # type: ignore[arg-type]


def _cache_kind(plugin: _Plugin, option: Directive) -> dict[str, object]:
    """`success|denial CAPACITY [TTL [MINTTL]]`."""
    kind = option.name.text
    if not 1 <= len(option.args) <= 3:
        raise plugin.arg_error(_last(option))
    capacity = plugin.atoi(option.args[0])
    # plugin/pkg/cache: whole shards only, and never fewer than 4 entries a shard
    changes: dict[str, object] = {f"{kind}_capacity": max(MIN_CACHE_CAPACITY, capacity - capacity % CACHE_SHARDS)}
    if len(option.args) > 1:
        ttl = plugin.atoi(option.args[1])
        if ttl <= 0:
            raise plugin.error(option.args[1], f"cache TTL can not be zero or negative: {ttl}")
        changes[f"{kind}_ttl"] = ttl
    if len(option.args) > 2:
        min_ttl = plugin.atoi(option.args[2])
        if min_ttl < 0:
            raise plugin.error(option.args[2], f"cache min TTL can not be negative: {min_ttl}")
        changes[f"{kind}_min_ttl"] = min_ttl
    return changes


def _prefetch(plugin: _Plugin, option: Directive) -> dict[str, object]:
    """`prefetch AMOUNT [[DURATION] [PERCENTAGE%]]`."""
    if not 1 <= len(option.args) <= 3:
        raise plugin.arg_error(_last(option))
    amount = plugin.atoi(option.args[0])
    if amount < 0:
        raise plugin.error(option.args[0], f"prefetch amount should be positive: {amount}")
    changes: dict[str, object] = {"prefetch_amount": amount}
    if len(option.args) > 1:
        changes["prefetch_duration"] = plugin.duration(option.args[1])
    if len(option.args) > 2:
        token = option.args[2]
        if not token.text.endswith("%"):
            raise plugin.error(token, f"last character of percentage should be `%`, but is: '{token.text[-1:]}'")
        percentage = plugin.atoi(Token(token.text[:-1], token.file, token.line, token.quoted))
        if not MIN_PREFETCH_PERCENTAGE <= percentage <= MAX_PREFETCH_PERCENTAGE:
            raise plugin.error(token, f"percentage should fall in range [10, 90]: {percentage}")
        changes["prefetch_percentage"] = percentage
    return changes


def _serve_stale(plugin: _Plugin, option: Directive) -> dict[str, object]:
    """`serve_stale [DURATION [immediate|verify]]`."""
    if len(option.args) > 2:
        raise plugin.error(option.args[2], "a serve_stale verify timeout is not supported by this server")
    duration = plugin.duration(option.args[0]) if option.args else 3600.0
    if duration < 0:
        raise plugin.error(option.args[0], "invalid negative duration for serve_stale")
    verify = False
    if len(option.args) > 1:
        mode = option.args[1].text.lower()
        if mode not in ("immediate", "verify"):
            raise plugin.error(option.args[1], f"invalid value for serve_stale refresh mode: {mode}")
        verify = mode == "verify"
    return {"serve_stale": duration, "serve_stale_verify": verify}


def _hosts(found: Sequence[Directive], context: _Context) -> HostsSettings:
    plugin = _Plugin("hosts")
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


def _kubernetes(found: Sequence[Directive], context: _Context) -> KubernetesSettings:
    plugin = _Plugin("kubernetes")
    directive = plugin.once(found)
    zones = plugin.zones(directive.args) or context.zones
    if all(is_reverse_zone(zone) for zone in zones):
        raise plugin.error(directive.name, "non-reverse zone name must be used")
    values: dict[str, object] = {"zones": zones}
    for option in plugin.options(directive):
        name, args = option.name.text, option.args
        if name in ("endpoint_pod_names", "noendpoints"):
            plugin.no_args(option)
            values[name] = True
        elif name == "pods":
            mode = plugin.one_arg(option)
            if mode.text not in {m.value for m in PodMode}:
                raise plugin.error(mode, f"wrong value for pods: {mode.text},  must be one of: disabled, verified, "
                                         "insecure")
            values["pods"] = PodMode(mode.text)
        elif name == "namespaces":
            if not args:
                raise plugin.arg_error(option.name)
            values["namespaces"] = tuple(dict.fromkeys(token.text for token in args))
        elif name == "endpoint":
            if not args:
                raise plugin.arg_error(option.name)
            if len(args) > 1:
                log.warning("plugin/kubernetes: Multiple endpoints have been deprecated, only the first specified "
                            "endpoint '%s' is used", args[0].text)
            values["endpoint"] = args[0].text
        elif name == "tls":
            if len(args) != 3:
                raise plugin.arg_error(_last(option))
            values["tls"] = (args[0].text, args[1].text, args[2].text)
        elif name in ("labels", "namespace_labels"):
            if not args:
                raise plugin.arg_error(option.name)
            values[name] = _label_selector(plugin, option, "label" if name == "labels" else "namespace_label")
        elif name == "fallthrough":
            values["fallthrough"] = plugin.fallthrough(option)
        elif name == "ttl":
            ttl = plugin.atoi(plugin.one_arg(option))
            if not 0 <= ttl <= MAX_TTL:
                raise plugin.error(args[0], f"ttl must be in range [0, {MAX_TTL}]: {ttl}")
            values["ttl"] = ttl
        elif name == "ignore":
            if plugin.one_arg(option).text != "empty_service":
                raise plugin.error(args[0], f"unable to parse ignore value: '{args[0].text}'")
            values["ignore_empty_service"] = True
        elif name == "kubeconfig":
            if len(args) not in (1, 2):
                raise plugin.arg_error(_last(option))
            values["kubeconfig"] = Path(args[0].text)
            values["context"] = args[1].text if len(args) == 2 else None
        elif name == "startup_timeout":
            token = plugin.one_arg(option)
            values["startup_timeout"] = plugin.duration(token, f"failed to parse startup_timeout: {token.text}, ")
        elif name == "fixtures":  # our extension: manifests on disk instead of the API
            values["fixtures"] = context.directory / plugin.one_arg(option).text
        else:
            raise plugin.unknown(option)
    if "namespaces" in values and "namespace_labels" in values:
        raise plugin.error(directive.name, "namespaces and namespace_labels cannot both be set")
    if "fixtures" in values and {"endpoint", "kubeconfig", "tls"} & values.keys():
        raise plugin.error(directive.name, "fixtures and endpoint/kubeconfig/tls cannot both be set")
    return KubernetesSettings(**values)  # type: ignore[arg-type]


_LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = rf"(?:[a-z0-9](?:[-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}"
_LABEL_VALUE = rf"(?:{_LABEL_NAME})?"
_REQUIREMENT = re.compile(
    rf"\s*(?:!?\s*{_LABEL_KEY}|{_LABEL_KEY}\s*(?:==?|!=)\s*{_LABEL_VALUE}"
    rf"|{_LABEL_KEY}\s+(?:in|notin)\s*\(\s*{_LABEL_NAME}(?:\s*,\s*{_LABEL_VALUE})*\s*\))\s*")


def _label_selector(plugin: _Plugin, option: Directive, what: str) -> str:
    """The arguments joined by spaces, checked against Kubernetes' label selector grammar."""
    selector = " ".join(token.text for token in option.args)
    requirements = re.split(r",(?![^(]*\))", selector)
    for requirement in requirements:
        if not _REQUIREMENT.fullmatch(requirement):
            raise plugin.error(option.name, f"unable to parse {what} selector value: '{selector}': "
                                            f"invalid requirement '{requirement.strip()}'")
    return selector


def _loop(found: Sequence[Directive], context: _Context) -> bool:
    plugin = _Plugin("loop")
    directive = plugin.once(found)
    plugin.no_args(directive)
    plugin.no_options(directive)
    return True


def _forward(found: Sequence[Directive], context: _Context) -> tuple[ForwardSettings, ...]:
    plugin = _Plugin("forward")
    return tuple(_forward_stanza(plugin, directive, context) for directive in found)


def _forward_stanza(plugin: _Plugin, directive: Directive, context: _Context) -> ForwardSettings:
    if len(directive.args) < 2:
        raise plugin.arg_error(_last(directive))
    origin = directive.args[0]
    zones = normalize_zones(origin)
    if len(zones) > 1:
        log.warning("plugin/forward: Unsupported CIDR notation: '%s' expands to multiple zones. Using only '%s'.",
                    origin.text, zone_text(zones[0]))
    upstreams: list[Upstream] = []
    for token in directive.args[1:]:
        upstreams.extend(_upstreams(plugin, token, context))
    if not upstreams:
        raise plugin.error(directive.name, "no nameservers found")
    if len(upstreams) > MAX_UPSTREAMS:
        raise plugin.error(directive.name, f"more than {MAX_UPSTREAMS} TOs configured: {len(upstreams)}")
    values: dict[str, object] = {"from_zone": zones[0], "to": tuple(upstreams), "location": directive.name.location}
    for option in plugin.options(directive):
        values.update(_forward_option(plugin, option))
    return ForwardSettings(**values)  # type: ignore[arg-type]


def _forward_option(plugin: _Plugin, option: Directive) -> dict[str, object]:
    name, args = option.name.text, option.args
    if name == "except":
        if not args:
            raise plugin.arg_error(option.name)
        return {"except_zones": plugin.zones(args)}
    if name in ("force_tcp", "prefer_udp", "failfast_all_unhealthy_upstreams"):
        plugin.no_args(option)
        return {"failfast_all_unhealthy" if name.startswith("failfast") else name: True}
    if name == "max_fails":
        return {"max_fails": plugin.uint32(plugin.one_arg(option))}
    if name == "expire":
        expire = plugin.duration(plugin.one_arg(option))
        if expire < 0:
            raise plugin.error(args[0], f"expire can't be negative: {args[0].text}")
        return {"expire": expire}
    if name == "policy":
        policy = plugin.one_arg(option)
        if policy.text not in {p.value for p in Policy}:
            raise plugin.error(policy, f"unknown policy '{policy.text}'")
        return {"policy": Policy(policy.text)}
    if name == "health_check":
        return _health_check(plugin, option)
    if name == "max_concurrent":
        limit = plugin.atoi(plugin.one_arg(option))
        if limit < 0:
            raise plugin.error(args[0], f"max_concurrent can't be negative: {limit}")
        return {"max_concurrent": limit}
    if name == "next":
        if not args:
            raise plugin.arg_error(option.name)
        for token in args:
            if token.text.upper() not in RCODES:
                raise plugin.error(token, f"{token.text} is not a valid rcode")
        return {"next_rcodes": frozenset(RCODES[token.text.upper()] for token in args)}
    raise plugin.unknown(option)


def _health_check(plugin: _Plugin, option: Directive) -> dict[str, object]:
    """`health_check DURATION [no_rec] [domain FQDN]`."""
    if not option.args:
        raise plugin.arg_error(option.name)
    interval = plugin.duration(option.args[0])
    if interval < 0:
        raise plugin.error(option.args[0], f"health_check can't be negative: {round(interval * 1e9)}")
    values: dict[str, object] = {"health_check": interval, "health_check_domain": ""}
    rest = iter(option.args[1:])
    for token in rest:
        if token.text == "no_rec":
            values["health_check_rd"] = False
        elif token.text == "domain":
            domain = next(rest, None)
            if domain is None:
                raise plugin.arg_error(token)
            name = domain.text.lower().rstrip(".")
            if not domain.text or not valid_domain(name):
                raise plugin.error(domain, f"health_check: invalid domain name {domain.text}")
            values["health_check_domain"] = name
        else:
            raise plugin.error(token, f"health_check: unknown option {token.text}")
    return values


def _upstreams(plugin: _Plugin, token: Token, context: _Context) -> list[Upstream]:
    """One TO: `IP`, `IP:PORT`, `[V6]:PORT`, `dns://...`, or a resolv.conf file (plugin/pkg/parse)."""
    scheme, separator, rest = token.text.partition("://")
    if separator and scheme in UPSTREAM_SCHEMES:
        if scheme != DNS_SCHEME:
            raise plugin.error(token, f"'{scheme}' is not supported as a destination protocol in forward: "
                                      f"{token.text} (this server forwards over plain DNS only)")
        text = rest
    else:
        text = token.text
    if not text:
        raise plugin.error(token, f'invalid address: "{token.text}"')
    host, port = split_host_port(text)
    if host is None:
        host, port = text, str(DEFAULT_RESOLV_CONF_PORT)
    try:
        address = canonical_address(host)
    except ValueError:
        return _resolv_conf(plugin, token, text, context)
    if not port.isdigit() or int(port) > 65535:
        raise plugin.error(token, f'not an IP address or file: "{text}"')
    return [Upstream(address, int(port))]


def _resolv_conf(plugin: _Plugin, token: Token, text: str, context: _Context) -> list[Upstream]:
    """The `nameserver` lines of a resolv.conf (miekg/dns ClientConfigFromFile)."""
    try:
        content = context.resolv_conf(Path(text))
    except OSError:
        raise plugin.error(token, f'not an IP address or file: "{text}"') from None
    upstreams: list[Upstream] = []
    for line in content.splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[0] == "nameserver":
            try:
                upstreams.append(Upstream(canonical_address(fields[1]), DEFAULT_RESOLV_CONF_PORT))
            except ValueError:
                raise plugin.error(token, f'{text}: nameserver "{fields[1]}" is not an IP address') from None
    return upstreams


_BUILDERS: dict[str, Callable[[Sequence[Directive], _Context], object]] = {
    "reload": _reload, "bufsize": _bufsize, "bind": _bind, "ready": _ready, "health": _health,
    "prometheus": _prometheus, "errors": _errors, "log": _log, "loadbalance": _loadbalance, "cache": _cache,
    "hosts": _hosts, "kubernetes": _kubernetes, "loop": _loop, "forward": _forward,
}


# --- server blocks ---

def _check_names(blocks: Sequence[ServerBlockSyntax]) -> None:
    """Unknown and unsupported directive names, in Corefile order (caddy checks them while parsing)."""
    for block in blocks:
        for directive in block.directives:
            name = directive.name
            if name.text not in PLUGIN_ORDER:
                raise CorefileError(f"{name.location} - Error during parsing: Unknown directive '{name.text}'")
            if name.text not in SUPPORTED:
                raise CorefileError(f"{name.location} - Error during parsing: plugin '{name.text}' is not "
                                    "supported by this server")


def _keys(block: ServerBlockSyntax, dns_port: int) -> tuple[ZoneKey, ...]:
    keys: list[ZoneKey] = []
    for token in block.keys:
        address = parse_address(token)
        if address.scheme != DNS_SCHEME:
            raise CorefileError(f"{token.location} - Error during parsing: '{token.text}': {address.scheme}:// "
                                "servers are not supported by this server (only dns://)")
        port = dns_port if address.port is None else address.port
        keys.extend(ZoneKey(zone, port) for zone in address.zones)
    return tuple(keys)


def _server_block(block: ServerBlockSyntax, keys: tuple[ZoneKey, ...], context: _Context) -> ServerBlock:
    by_plugin: dict[str, list[Directive]] = {}
    for directive in block.directives:
        by_plugin.setdefault(directive.name.text, []).append(directive)
    settings: dict[str, object] = {}
    for name in SUPPORTED:  # plugin order, as caddy runs the setups
        if name in by_plugin:
            settings[name] = _BUILDERS[name](by_plugin[name], context)
    return ServerBlock(keys=keys, location=block.location, **settings)  # type: ignore[arg-type]


def _check_overlaps(blocks: Sequence[ServerBlock]) -> None:
    """CoreDNS's zoneOverlap: one zone on one port once, unless every block serving it binds other addresses."""
    registered: set[tuple[str, int, str]] = set()
    unbound: dict[tuple[str, int], tuple[str, int, str]] = {}
    for block in blocks:
        for key in block.keys:
            for address in block.bind or ("",):
                this = (key.zone, key.port, address)
                if this in registered:
                    raise CorefileError(f"{block.location} - cannot serve {_listener(this)} - it is already defined")
                already = unbound.get((key.zone, key.port))
                if already is not None and (not address or (key.zone, key.port, "") in registered):
                    other = already if not address else (key.zone, key.port, "")
                    raise CorefileError(f"{block.location} - cannot serve {_listener(this)} - zone overlap listener "
                                        f"capacity with {_listener(other)}")
                registered.add(this)
                unbound[(key.zone, key.port)] = this


def _listener(listener: tuple[str, int, str]) -> str:
    zone, port, address = listener
    text = f"{DNS_SCHEME}://{ZoneKey(zone, port)}"
    return f"{text} on {address}" if address else text


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def build_config(syntax: CorefileSyntax, *, dns_port: int = 53, source: str = "Corefile",
                 resolv_conf: Callable[[Path], str] = read_text,
                 interface_addresses: Callable[[str], tuple[str, ...]] = machine_interface_addresses) -> Config:
    """The Config a parsed Corefile describes; raises CorefileError (one line, with the location)."""
    _check_names(syntax.blocks)
    blocks: list[ServerBlock] = []
    for block in syntax.blocks:
        keys = _keys(block, dns_port)
        context = _Context(tuple(dict.fromkeys(key.zone for key in keys)), Path(source).parent, resolv_conf,
                           interface_addresses)
        blocks.append(_server_block(block, keys, context))
    _check_overlaps(blocks)
    return Config(blocks=tuple(blocks), files=syntax.files, corefile_hash=syntax.sha512, source=source)


def load_config(path: Path, *, dns_port: int = 53, env: Mapping[str, str] = os.environ) -> Config:
    """Read, parse and build the Corefile at `path` (what `-conf` names)."""
    return build_config(parse_corefile(path, env), dns_port=dns_port, source=str(path))


def plugins_text() -> str:
    """What `-plugins` prints: the plugins this server has, one a line, sorted (caddy's DescribePlugins)."""
    return "".join(f"{name}\n" for name in sorted(SUPPORTED))
