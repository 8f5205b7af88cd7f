"""The `forward` directive and its settings, as CoreDNS 1.14's forward plugin reads them.

`client_subnet` (ours, no arguments): each question goes upstream with the client's whole address in
an EDNS Client Subnet option, for a cluster server that trusts this one (`trust_client_subnet`) to
answer as that client; replies scoped to the client are never cached (outbound.py).

DNS over TLS (`tls://` TOs, RFC 7858): the `tls` and `tls_servername` options apply to the
`tls://` TOs of their directive only.  The `tls` files are read here, at start, into the client
context every connection of the directive uses: an unreadable or unusable file refuses the start.
"""

from __future__ import annotations

import enum
import logging
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from dns_server.config.model import DEFAULT_PORT, format_address
from dns_server.config.setup import (
    DNS_SCHEME,
    Reader,
    SetupContext,
    last,
    split_host_port,
)
from dns_server.config.syntax import Directive, Token, normalize_zones
from dns_server.protocol.names import (
    canonical_address,
    in_zone,
    valid_domain,
    zone_text,
)

log = logging.getLogger(__name__)

UNSUPPORTED = ("max_connect_attempts", "max_age", "max_idle_conns", "read_timeout",
               "doh_method", "next_on_nodata", "failover", "resolver", "source_address")  # CoreDNS options this server refuses by name
MAX_UPSTREAMS = 15  # forward: at most 15 upstreams
DEFAULT_MAX_FAILS = 2  # forward `max_fails`
DEFAULT_EXPIRE = 10.0  # forward `expire`: cached upstream connections
DEFAULT_HEALTH_CHECK = 0.5  # forward `health_check`
DEFAULT_RESOLV_CONF_PORT = 53  # miekg/dns ClientConfigFromFile: nameservers listen on 53
DEFAULT_TLS_PORT = 853  # plugin/pkg/transport TLSPort (RFC 7858)
MAX_TLS_ARGS = 3  # `tls [CERT KEY] [CA]`
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5, "YXDOMAIN": 6,
          "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10, "DSOTYPENI": 11, "BADSIG": 16, "BADKEY": 17,
          "BADTIME": 18, "BADMODE": 19, "BADNAME": 20, "BADALG": 21, "BADTRUNC": 22, "BADCOOKIE": 23}
UPSTREAM_SCHEMES = ("dns", "tls", "quic", "grpc", "https", "https3", "unix")  # plugin/pkg/parse Transport
TLS_SCHEME = "tls"


class Policy(enum.Enum):
    """forward `policy`: the order upstreams are tried in."""

    RANDOM = "random"
    ROUND_ROBIN = "round_robin"
    SEQUENTIAL = "sequential"


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int = DEFAULT_PORT
    tls_name: str | None = None  # a tls:// TO: the name its certificate must carry (sent as SNI); None: plain DNS

    def __str__(self) -> str:
        address = format_address(self.host, self.port)
        return address if self.tls_name is None else f"{TLS_SCHEME}://{address}"


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
    tls_context: ssl.SSLContext | None = None  # the tls:// TOs' client side (None when there are none)
    client_subnet: bool = False  # ours: pass the client's address upstream (EDNS Client Subnet, RFC 7871)
    location: str = ""  # `Corefile:12`, for messages about this forward

    def handles(self, name: str) -> bool:
        """Whether a name is this forward's to send (FROM matches, no `except` zone does)."""
        return in_zone(name, self.from_zone) and not any(in_zone(name, z) for z in self.except_zones)


# miekg/dns StringToRcode: the names `forward { next RCODE }` accepts


def setup(found: Sequence[Directive], context: SetupContext) -> tuple[ForwardSettings, ...]:
    plugin = Reader("forward", UNSUPPORTED)
    return tuple(_forward_stanza(plugin, directive, context) for directive in found)


def _forward_stanza(plugin: Reader, directive: Directive, context: SetupContext) -> ForwardSettings:
    if len(directive.args) < 2:
        raise plugin.arg_error(last(directive))
    origin = directive.args[0]
    zones = normalize_zones(origin)
    if len(zones) > 1:
        log.warning("plugin/forward: Unsupported CIDR notation: '%s' expands to multiple zones. Using only '%s'.",
                    origin.text, zone_text(zones[0]))
    upstreams: list[tuple[Token, Upstream]] = []
    for token in directive.args[1:]:
        upstreams.extend((token, upstream) for upstream in _upstreams(plugin, token, context))
    if not upstreams:
        raise plugin.error(directive.name, "no nameservers found")
    if len(upstreams) > MAX_UPSTREAMS:
        raise plugin.error(directive.name, f"more than {MAX_UPSTREAMS} TOs configured: {len(upstreams)}")
    values: dict[str, object] = {"from_zone": zones[0], "location": directive.name.location}
    tls_options: dict[str, tuple[Directive, object]] = {}
    for option in plugin.options(directive):
        if option.name.text in ("tls", "tls_servername"):
            tls_options[option.name.text] = (option, _tls_option(plugin, option))
        else:
            values.update(_forward_option(plugin, option))
    values["to"] = tuple(_with_tls(plugin, upstreams, tls_options, values))
    return ForwardSettings(**values)  # type: ignore[arg-type]


def _tls_option(plugin: Reader, option: Directive) -> object:
    """`tls [CERT KEY] [CA]` -> the client context; `tls_servername NAME` -> the name."""
    if option.name.text == "tls_servername":
        return _server_name(plugin, plugin.one_arg(option), "tls_servername")
    if len(option.args) > MAX_TLS_ARGS:
        raise plugin.arg_error(last(option))
    return tls_client_context(plugin, option.args)


def _with_tls(plugin: Reader, upstreams: list[tuple[Token, Upstream]], tls_options: dict[str, tuple[Directive, object]],
              values: dict[str, object]) -> list[Upstream]:
    """The TOs with their TLS server names, and the directive's TLS context in `values` (CoreDNS's parseStanza)."""
    if not any(upstream.tls_name is not None for _, upstream in upstreams):
        for option, _ in tls_options.values():  # CoreDNS keeps it and never uses it
            raise plugin.error(option.name, f"option '{option.name.text}' applies to tls:// TOs, and this forward "
                                            "has none")
        return [upstream for _, upstream in upstreams]
    option_name = tls_options.get("tls_servername")
    forward_name = str(option_name[1]) if option_name else ""
    found: list[Upstream] = []
    for token, upstream in upstreams:
        if upstream.tls_name is not None:
            if upstream.tls_name and forward_name:
                raise plugin.error(token, f"both forward ('{forward_name}') and proxy level ('{upstream.tls_name}') "
                                          f"TLS servernames are set for upstream proxy '{upstream}'")
            upstream = replace(upstream, tls_name=upstream.tls_name or forward_name or upstream.host)
        found.append(upstream)
    values["tls_context"] = tls_options["tls"][1] if "tls" in tls_options else tls_client_context(plugin, ())
    return found


def tls_client_context(plugin: Reader, args: Sequence[Token]) -> ssl.SSLContext:
    """The client side of `tls [CERT KEY] [CA]` (plugin/pkg/tls NewTLSConfigFromArgs), its files read now.

    The server's certificate is always verified: against CA when given, else against the system's
    trust store (OpenSSL's default paths, SSL_CERT_FILE and SSL_CERT_DIR honoured); its name is
    checked; TLS 1.2 at least.  CERT and KEY: a client certificate, for servers that ask for one.
    """
    paths = [Path(token.text) for token in args]
    for token, path in zip(args, paths):
        try:
            path.read_bytes()
        except OSError as error:
            reason = f"open {path}: {_go_errno_text(error)}"
            raise plugin.error(token, f"error reading {path}: {reason}" if len(args) in (1, 3) and token is args[-1]
                               else f"could not load TLS cert: {reason}") from None
    ca = paths[0] if len(paths) == 1 else paths[2] if len(paths) == 3 else None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=None if ca is None else str(ca))
    except ssl.SSLError:
        raise plugin.error(args[-1], f"could not read root certs: no PEM certificate in {ca}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if len(paths) >= 2:
        try:
            context.load_cert_chain(str(paths[0]), str(paths[1]), password="")  # "": never a password prompt
        except ssl.SSLError:
            raise plugin.error(args[0], f"could not load TLS cert: {paths[0]} and {paths[1]} are not a PEM "
                                        "certificate and its unencrypted private key") from None
    return context


def _go_errno_text(error: OSError) -> str:
    """An OSError as Go words it: `no such file or directory`."""
    text = error.strerror or str(error)
    return text[:1].lower() + text[1:]


def _server_name(plugin: Reader, token: Token, what: str, text: str | None = None) -> str:
    """A TLS server name: a domain name (trailing dot dropped, as Go's crypto/tls does) or an IP address."""
    name = (token.text if text is None else text).rstrip(".")
    try:
        return canonical_address(name)
    except ValueError:
        pass
    if not name or not valid_domain(name.lower()) or not name.isascii():
        raise plugin.error(token, f"{what}: invalid TLS server name '{name}'")
    return name


def _forward_option(plugin: Reader, option: Directive) -> dict[str, object]:
    name, args = option.name.text, option.args
    if name == "except":
        if not args:
            raise plugin.arg_error(option.name)
        return {"except_zones": plugin.zones(args)}
    if name in ("force_tcp", "prefer_udp", "failfast_all_unhealthy_upstreams", "client_subnet"):
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


def _health_check(plugin: Reader, option: Directive) -> dict[str, object]:
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


def _upstreams(plugin: Reader, token: Token, context: SetupContext) -> list[Upstream]:
    """One TO: `IP`, `[V6]`, `IP:PORT`, `[V6]:PORT`, `dns://...`, `tls://...`, or a resolv.conf file
    (plugin/pkg/parse)."""
    scheme, separator, rest = token.text.partition("://")
    if separator and scheme in UPSTREAM_SCHEMES:
        if scheme == TLS_SCHEME:
            return [_tls_upstream(plugin, token, rest)]
        if scheme != DNS_SCHEME:
            raise plugin.error(token, f"'{scheme}' is not supported as a destination protocol in forward: "
                                      f"{token.text} (this server forwards over plain DNS and DNS over TLS)")
        text = rest
    else:
        text = token.text
    if not text:
        raise plugin.error(token, f'invalid address: "{token.text}"')
    host, port = split_host_port(text)
    if host is None:  # no port: an address (brackets trimmed, as CoreDNS does: `[::1]`), else a file
        host, port = text.strip("[]"), str(DEFAULT_RESOLV_CONF_PORT)
    try:
        address = canonical_address(host)
    except ValueError:
        return _resolv_conf(plugin, token, text, context)
    if not port.isdigit() or int(port) > 65535:
        raise plugin.error(token, f'not an IP address or file: "{text}"')
    return [Upstream(address, int(port))]


def _tls_upstream(plugin: Reader, token: Token, text: str) -> Upstream:
    """`tls://IP[:PORT]` (port 853), or `tls://IP%NAME[:PORT]`: NAME is this TO's TLS server name.

    Its `tls_name` is the `%NAME` here, "" when none was written (the directive's name or the IP, later).
    """
    name = ""
    before, percent, after = text.rpartition("%")
    if percent:  # CoreDNS's splitZone: `1.2.3.4%NAME:853`, `[::1%NAME]:853`
        name, colon, port = after.rpartition(":") if ":" in after else (after, "", "")
        text = before + ("]" if before.startswith("[") else "") + colon + port
        name = _server_name(plugin, token, "tls", name.removesuffix("]"))
    if not text:
        raise plugin.error(token, f'invalid address: "{token.text}"')
    host, port = split_host_port(text)
    if host is None:
        host, port = text.removeprefix("[").removesuffix("]"), str(DEFAULT_TLS_PORT)
    try:
        address = canonical_address(host)
    except ValueError:  # CoreDNS would read a resolv.conf's nameservers, and ask them over plain DNS on port 53
        raise plugin.error(token, f'not an IP address: "{text}" (a tls:// TO is an IP address here)') from None
    if not port.isdigit() or int(port) > 65535:
        raise plugin.error(token, f'not an IP address or file: "{text}"')
    return Upstream(address, int(port), name)


def _resolv_conf(plugin: Reader, token: Token, text: str, context: SetupContext) -> list[Upstream]:
    """The `nameserver` lines of a resolv.conf (miekg/dns ClientConfigFromFile): one not an address is an error."""
    try:
        content = context.resolv_conf(Path(text))
    except OSError:
        raise plugin.error(token, f'not an IP address or file: "{text}"') from None
    found, bad = resolv_conf_nameservers(content)
    if bad:
        raise plugin.error(token, f'{text}: nameserver "{bad[0].split()[1]}" is not an IP address')
    return [Upstream(host, DEFAULT_RESOLV_CONF_PORT) for host in found]


def resolv_conf_nameservers(text: str) -> tuple[list[str], list[str]]:
    """The nameserver addresses of a resolv.conf, and the lines that name no usable address.

    The one reader of resolv.conf: the `forward` setup refuses a bad line, the flags warn about it.
    """
    found: list[str] = []
    bad: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            found.append(canonical_address(fields[1]))
        except ValueError:
            bad.append(line.strip())
    return found, bad
