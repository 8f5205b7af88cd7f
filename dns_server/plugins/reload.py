"""The `reload` plugin's directive: how often the Corefile (and what it imports) is checked for changes.

The reload itself is the composition root's (dns_server.app): it validates the new Corefile and swaps it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dns_server.chain.plugin import PluginSpec
from dns_server.config.setup import Reader, SetupContext, last
from dns_server.config.syntax import Directive

MIN_RELOAD_INTERVAL, MIN_RELOAD_JITTER = 2.0, 1.0  # plugin/reload minInterval, minJitter
DEFAULT_RELOAD_INTERVAL = 30.0  # reload plugin
DEFAULT_RELOAD_JITTER = 15.0


@dataclass(frozen=True, slots=True)
class ReloadSettings:
    interval: float = DEFAULT_RELOAD_INTERVAL
    jitter: float = DEFAULT_RELOAD_JITTER


def setup(found: Sequence[Directive], context: SetupContext) -> ReloadSettings:
    plugin = Reader("reload")
    directive = plugin.once(found)
    plugin.no_options(directive)
    if len(directive.args) > 2:
        raise plugin.arg_error(directive.args[2])
    interval = plugin.duration(directive.args[0]) if directive.args else DEFAULT_RELOAD_INTERVAL
    if interval < MIN_RELOAD_INTERVAL:
        raise plugin.error(last(directive), f"interval value must be greater or equal to {MIN_RELOAD_INTERVAL:g}s")
    jitter = plugin.duration(directive.args[1]) if len(directive.args) > 1 else DEFAULT_RELOAD_JITTER
    if jitter < MIN_RELOAD_JITTER:
        raise plugin.error(last(directive), f"jitter value must be greater or equal to {MIN_RELOAD_JITTER:g}s")
    return ReloadSettings(interval, min(jitter, interval / 2))  # CoreDNS caps the jitter at half the interval


PLUGIN = PluginSpec("reload", setup)
