"""A parsed Corefile -> one validated `Config`: server keys, each directive read by its plugin's setup.

`corefile.py` gives the syntax (server blocks of directives with their locations); each plugin
module's PluginSpec holds the setup that reads its directive (dns_server.plugins.PLUGINS, passed
here as `setups`).  This module knows no plugin: it checks the names against CoreDNS's list, reads
the keys, runs the setups in plugin order, and checks the blocks against each other.  Rules kept here:
- A directive CoreDNS has that this server does not implement is "not supported", a name CoreDNS
  does not have is its `Unknown directive`, both at start with the file and line.
- Server keys: `dns://` only, the port from the key else `dns_port` (`-dns.port`); two blocks may
  serve one zone on one port only when all bind different addresses (CoreDNS's overlap check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

from dns_server.config.model import (
    DEFAULT_PORT,
    PLUGIN_ORDER,
    Config,
    ServerBlock,
    ZoneKey,
)
from dns_server.config.setup import DNS_SCHEME, Setup, SetupContext, read_text
from dns_server.config.syntax import (
    CorefileError,
    CorefileSyntax,
    Directive,
    ServerBlockSyntax,
    parse_address,
)


def _check_names(blocks: Sequence[ServerBlockSyntax], setups: Mapping[str, Setup]) -> None:
    """Unknown and unsupported directive names, in Corefile order (caddy checks them while parsing)."""
    for block in blocks:
        for directive in block.directives:
            name = directive.name
            if name.text not in PLUGIN_ORDER:
                raise CorefileError(f"{name.location} - Error during parsing: Unknown directive '{name.text}'")
            if name.text not in setups:
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


def _server_block(block: ServerBlockSyntax, keys: tuple[ZoneKey, ...], context: SetupContext,
                  setups: Mapping[str, Setup]) -> ServerBlock:
    by_plugin: dict[str, list[Directive]] = {}
    for directive in block.directives:
        by_plugin.setdefault(directive.name.text, []).append(directive)
    plugins = tuple((name, setups[name](by_plugin[name], context))
                    for name in PLUGIN_ORDER if name in by_plugin)  # plugin order, as caddy runs the setups
    return ServerBlock(keys=keys, plugins=plugins, location=block.location)


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


def no_interfaces(name: str) -> tuple[str, ...]:
    """An interface reader that knows no interface (the bind plugin's setup is given the machine's)."""
    return ()


def build_config(syntax: CorefileSyntax, setups: Mapping[str, Setup], *, dns_port: int = DEFAULT_PORT,
                 source: str = "Corefile", resolv_conf: Callable[[Path], str] = read_text,
                 interface_addresses: Callable[[str], tuple[str, ...]] = no_interfaces) -> Config:
    """The Config a parsed Corefile describes, each directive read by its plugin's setup in `setups`.

    Raises CorefileError (one line, with the location).
    """
    _check_names(syntax.blocks, setups)
    blocks: list[ServerBlock] = []
    for block in syntax.blocks:
        keys = _keys(block, dns_port)
        context = SetupContext(tuple(dict.fromkeys(key.zone for key in keys)), Path(source).parent, resolv_conf,
                               interface_addresses, tuple(block.directives))
        blocks.append(_server_block(block, keys, context, setups))
    _check_overlaps(blocks)
    return Config(blocks=tuple(blocks), files=syntax.files, corefile_hash=syntax.sha512, source=source)
