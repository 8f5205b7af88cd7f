"""The plugins this server has, one module (or package) each, named as its CoreDNS directive.

`PLUGINS` is our plugin.cfg: the one list of plugins.  A server block's chain is the handlers of
its directives in CoreDNS's order (config.model.PLUGIN_ORDER), whatever the Corefile's order.
Adding a plugin is adding its module and one line here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from dns_server.chain.chain import Chain
from dns_server.chain.plugin import PluginSpec
from dns_server.config import build
from dns_server.config.corefile import parse_corefile
from dns_server.config.model import DEFAULT_PORT, PLUGIN_ORDER, Config, ServerBlock
from dns_server.config.syntax import CorefileSyntax
from dns_server.plugins import (
    autopath,
    bind,
    bufsize,
    cache,
    chaos,
    errors,
    forward,
    health,
    hosts,
    k8s_external,
    kubernetes,
    loadbalance,
    log,
    loop,
    multisocket,
    nsid,
    prometheus,
    ready,
    reload,
    rewrite,
    template,
    trust_client_subnet,
    whoami,
)

PLUGINS: tuple[PluginSpec, ...] = (
    trust_client_subnet.PLUGIN, multisocket.PLUGIN, reload.PLUGIN, nsid.PLUGIN, bufsize.PLUGIN, bind.PLUGIN,
    ready.PLUGIN, health.PLUGIN, prometheus.PLUGIN, errors.PLUGIN, log.PLUGIN, chaos.PLUGIN, loadbalance.PLUGIN,
    rewrite.PLUGIN, autopath.PLUGIN, cache.PLUGIN, template.PLUGIN, hosts.PLUGIN, k8s_external.PLUGIN,
    kubernetes.PLUGIN, loop.PLUGIN, forward.PLUGIN, whoami.PLUGIN,
)


def registry(plugins: tuple[PluginSpec, ...] = PLUGINS) -> dict[str, PluginSpec]:
    return {spec.name: spec for spec in plugins}


def build_config(syntax: CorefileSyntax, *, plugins: tuple[PluginSpec, ...] = PLUGINS, **options: Any) -> Config:
    """The Config a parsed Corefile describes, read by these plugins' setups (config.build.build_config)."""
    options.setdefault("interface_addresses", bind.interface_addresses)
    return build.build_config(syntax, {spec.name: spec.setup for spec in plugins}, **options)


def load_config(path: Path, *, dns_port: int = DEFAULT_PORT, env: Mapping[str, str] = os.environ) -> Config:
    """Read, parse and build the Corefile at `path` (what `-conf` names)."""
    return build_config(parse_corefile(path, env), dns_port=dns_port, source=str(path))


def chain_for(block: ServerBlock, plugins: tuple[PluginSpec, ...] = PLUGINS) -> Chain:
    """The block's query chain: the handlers of its directives, in plugin order."""
    known = registry(plugins)
    handlers = []
    for name, settings in block.plugins:
        spec = known[name]
        if spec.handler is not None:
            handlers.append((name, spec.handler(settings, block)))
    other_classes = any(known[name].other_classes for name, _ in block.plugins)
    return Chain(handlers, last=chain_end(block, plugins), other_classes=other_classes)


def enabled(block: ServerBlock, plugins: tuple[PluginSpec, ...] = PLUGINS) -> tuple[str, ...]:
    """The block's plugins that CoreDNS has in its query chain, sorted (what `coredns_plugin_enabled` lists)."""
    known = registry(plugins)
    return tuple(sorted(name for name in block.directives if known[name].in_chain))


def chain_end(block: ServerBlock, plugins: tuple[PluginSpec, ...] = PLUGINS) -> str:
    """The last plugin of the query chain ("" if none): the one whose "no next plugin found" CoreDNS reports."""
    present = enabled(block, plugins)
    return next((name for name in reversed(PLUGIN_ORDER) if name in present), "")


def plugins_text() -> str:
    """What `-plugins` prints: the plugins this server has, one a line, sorted (caddy's DescribePlugins)."""
    return "".join(f"{spec.name}\n" for spec in sorted(PLUGINS, key=lambda spec: spec.name))
