"""What every plugin's setup uses: its context in the server block, and a reader of its directives.

A plugin module's `setup(directives, context) -> settings` (CoreDNS's `setup.go`) reads every
directive of its name in one server block.  Rules every setup keeps:
- Every argument and option is either read into settings or refused at start with one line naming
  the file, the line and the token.  Nothing is ignored: an option CoreDNS has that this server does
  not implement is "not supported" (`Reader(name, unsupported=...)`), any other is
  `unknown property`.
- Error texts are CoreDNS's (`plugin/cache: Corefile:5 - Error during parsing: ...`, Go's
  `strconv` and `time` texts inside them).  Where CoreDNS's error carries no location, ours does.
- Where CoreDNS silently drops what was written (a repeated `health`, extra arguments, a block
  after a plugin that reads none), this is an error here.
- Pure apart from the readers in `SetupContext` (a resolv.conf, an interface's addresses) and the
  certificate files of `forward { tls }`, which `ssl` loads by path at start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from dns_server.config.model import FALLTHROUGH_ALL, Fallthrough, parse_duration
from dns_server.config.syntax import CorefileError, Directive, Token, normalize_zones
from dns_server.errors import ConfigError
from dns_server.protocol.names import valid_domain

MAX_UINT32 = 2 ** 32 - 1

DNS_SCHEME = "dns"  # the only scheme this server serves (forward also asks `tls://` upstreams)


@dataclass(frozen=True, slots=True)
class SetupContext:
    """What a plugin reads besides its own directives."""

    zones: tuple[str, ...]  # the block's zones, CIDR keys expanded
    directory: Path  # the Corefile's directory, for our relative `fixtures DIR`
    resolv_conf: Callable[[Path], str]
    interface_addresses: Callable[[str], tuple[str, ...]]
    directives: tuple[Directive, ...] = ()  # the whole block's, for a plugin that needs another (autopath, k8s_external)


Setup = Callable[[Sequence[Directive], SetupContext], object]  # a plugin's directives in one block -> its settings


class Reader:
    """Error texts and argument readers of one plugin (CoreDNS's `plugin.Error` + caddy's Dispenser)."""

    def __init__(self, name: str, unsupported: tuple[str, ...] = ()) -> None:
        self.name = name
        self.unsupported = unsupported  # options CoreDNS has that this server refuses by name

    def error(self, token: Token, message: str) -> CorefileError:
        return CorefileError(f"plugin/{self.name}: {token.location} - Error during parsing: {message}")

    def arg_error(self, token: Token) -> CorefileError:
        return self.error(token, f"Wrong argument count or unexpected line ending after '{token.text}'")

    def unknown(self, option: Directive) -> CorefileError:
        if option.name.text in self.unsupported:
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
                raise self.error(last(option), "Unexpected token '{', expecting argument")
            yield option

    def no_options(self, directive: Directive) -> None:
        for option in self.options(directive):
            raise self.unknown(option)

    def no_args(self, directive: Directive) -> None:
        if directive.args:
            raise self.arg_error(directive.args[0])

    def one_arg(self, directive: Directive) -> Token:
        if len(directive.args) != 1:
            raise self.arg_error(last(directive) if not directive.args else directive.args[1])
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

    def domain_name(self, token: Token) -> str:
        """A name argument (not a zone: no CIDR), lower case without the trailing dot."""
        name = token.text.lower().rstrip(".")
        if not valid_domain(name):
            raise self.error(token, f"not a valid domain name: {token.text}")
        return name

    def listen_address(self, token: Token) -> tuple[str, int]:
        """`HOST:PORT`, `:PORT` or `[V6]:PORT` (Go's net.SplitHostPort, and a port number)."""
        host, port = split_host_port(token.text)
        if host is None:
            raise self.error(token, port)
        if not port.isdigit() or int(port) > 65535:
            raise self.error(token, f"address {token.text}: invalid port")
        return host, int(port)


def last(directive: Directive) -> Token:
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


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")
