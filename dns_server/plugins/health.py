"""The `health` plugin's directive: where `/health` is served and the lameduck period (dns_server.serving.http).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from dns_server.chain.plugin import PluginSpec
from dns_server.config.model import ServerBlock
from dns_server.config.setup import Reader, SetupContext, last
from dns_server.config.syntax import Directive

DEFAULT_HEALTH_ADDRESS = ("", 8080)  # health: ":8080", every interface


@dataclass(frozen=True, slots=True)
class HealthSettings:
    address: tuple[str, int] = DEFAULT_HEALTH_ADDRESS  # host "" is every interface
    lameduck: float = 0.0


def setup(found: Sequence[Directive], context: SetupContext) -> HealthSettings:
    plugin = Reader("health")
    directive = plugin.once(found)  # CoreDNS keeps the last of several; one is all it serves
    if len(directive.args) > 1:
        raise plugin.arg_error(directive.args[1])
    address = plugin.listen_address(directive.args[0]) if directive.args else DEFAULT_HEALTH_ADDRESS
    lameduck = 0.0
    for option in plugin.options(directive):
        if option.name.text != "lameduck":
            raise plugin.arg_error(option.name)  # CoreDNS's text for an unknown health option
        if len(option.args) != 1:
            raise plugin.arg_error(last(option))
        lameduck = plugin.duration(option.args[0], f'unable to parse lameduck duration value: "{option.args[0].text}": ')
    return HealthSettings(address, lameduck)


PLUGIN = PluginSpec("health", setup)


def lameduck_of(blocks: Iterable[ServerBlock]) -> float:
    """How long SIGTERM keeps the server answering: the longest `lameduck` of the blocks' `health`."""
    return max((block.setting("health").lameduck for block in blocks if block.setting("health") is not None),
               default=0.0)
