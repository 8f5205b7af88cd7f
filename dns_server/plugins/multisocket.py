"""The `multisocket` directive: how many worker processes answer on every listen address.

CoreDNS opens NUM_SOCKETS sockets per address (SO_REUSEPORT) in its one process; this server
opens one per worker process, and `multisocket N` asks for N workers (dns_server.supervisor).
Without a number, or without the directive, the count is what the CPUs allow
(dns_server.serving.cpus): CoreDNS's default is GOMAXPROCS.  The workers serve every listen
address, so the count is the whole server's: `cli.py` refuses blocks that ask for different ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from dns_server.chain.plugin import PluginSpec
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive

NAME = "multisocket"
MAX_SOCKETS = 1024  # plugin/multisocket maxNumSockets


@dataclass(frozen=True, slots=True)
class MultisocketSettings:
    workers: int | None  # None: as many as the CPUs allow
    location: str  # where it was asked for, for the message refusing a disagreement


def setup(found: Sequence[Directive], context: SetupContext) -> MultisocketSettings:
    plugin = Reader(NAME)
    directive = plugin.once(found)
    plugin.no_options(directive)
    if not directive.args:
        return MultisocketSettings(None, directive.name.location)
    token = plugin.one_arg(directive)
    if not re.fullmatch(r"[+-]?[0-9]+", token.text):
        raise plugin.error(token, f'invalid num sockets: strconv.Atoi: parsing "{token.text}": invalid syntax')
    count = int(token.text)
    if count < 1:
        raise plugin.error(token, f"num sockets can not be zero or negative: {count}")
    if count > MAX_SOCKETS:
        raise plugin.error(token, f"num sockets exceeds maximum ({MAX_SOCKETS}): {count}")
    return MultisocketSettings(count, directive.name.location)


PLUGIN = PluginSpec(NAME, setup)
