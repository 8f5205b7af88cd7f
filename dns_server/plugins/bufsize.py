"""The `bufsize` plugin: the largest UDP reply the block sends, and the size its OPT record announces.
"""

from __future__ import annotations

import re
from typing import Sequence

from dns_server.chain.plugin import PluginSpec
from dns_server.config.model import ServerBlock
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive

NAME = "bufsize"
MIN_BUFSIZE, MAX_BUFSIZE = 512, 4096  # bufsize plugin bounds
DEFAULT_BUFSIZE = 1232  # bufsize plugin default; DNS flag day 2020


def setup(found: Sequence[Directive], context: SetupContext) -> int:
    plugin = Reader("bufsize")
    directive = plugin.once(found)
    plugin.no_options(directive)
    if not directive.args:
        return DEFAULT_BUFSIZE
    token = plugin.one_arg(directive)
    if not re.fullmatch(r"[+-]?[0-9]+", token.text) or not MIN_BUFSIZE <= int(token.text) <= MAX_BUFSIZE:
        raise plugin.arg_error(token)  # RFC 6891: 512..4096
    return int(token.text)


PLUGIN = PluginSpec(NAME, setup)


def bufsize_of(block: ServerBlock) -> int:
    """The block's largest UDP reply: its `bufsize`, else the default."""
    size: int = block.setting(NAME) or DEFAULT_BUFSIZE
    return size
