"""The `prometheus` plugin's directive: where `/metrics` is served (dns_server.observability.metrics counts,
dns_server.serving.http serves).
"""

from __future__ import annotations

from typing import Sequence

from dns_server.chain.plugin import PluginSpec
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive

UNSUPPORTED = ("tls", "runtime_metrics")  # CoreDNS options this server refuses by name
DEFAULT_METRICS_ADDRESS = ("localhost", 9153)  # prometheus: loopback only unless an address is given


def setup(found: Sequence[Directive], context: SetupContext) -> tuple[str, int]:
    plugin = Reader("prometheus", UNSUPPORTED)
    directive = plugin.once(found)
    if len(directive.args) > 1:
        raise plugin.arg_error(directive.args[1])
    for option in directive.block or ():
        if option.name.text in UNSUPPORTED:
            raise plugin.unknown(option)
        raise plugin.error(option.name, f"unknown option: {option.name.text}")
    return plugin.listen_address(directive.args[0]) if directive.args else DEFAULT_METRICS_ADDRESS


PLUGIN = PluginSpec("prometheus", setup, in_chain=True)
