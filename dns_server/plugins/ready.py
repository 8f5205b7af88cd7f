"""The `ready` plugin's directive: where `/ready` is served (dns_server.serving.http serves it).
"""

from __future__ import annotations

from typing import Sequence

from dns_server.chain.plugin import PluginSpec
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive

DEFAULT_READY_ADDRESS = ("", 8181)  # ready: ":8181"


def setup(found: Sequence[Directive], context: SetupContext) -> tuple[str, int]:
    plugin = Reader("ready")
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


PLUGIN = PluginSpec("ready", setup)
