"""The `chaos` plugin: who and what this server is, as TXT records in class CH (CoreDNS 1.14's chaos).

`chaos [VERSION] [AUTHORS...]` answers `CH TXT` for `version.bind` and `version.server` (VERSION,
default `dns-server-<version>` as `-version` prints it), `authors.bind` (one record per distinct
author, sorted; the default names none) and `hostname.bind` and `id.server` (the machine's host
name, read when the chain is built).  Each text is cut to 255 bytes, as CoreDNS does, except a
VERSION given with AUTHORS, which CoreDNS leaves whole.  The reply has no AA and TTL 0; every other
question goes to the next plugin.  With chaos, the listener takes classes other than IN at all
(CoreDNS's EnableChaos); without chaos or forward they are REFUSED before any plugin runs.
"""

from __future__ import annotations

import socket
from typing import NamedTuple, Sequence

from dns_server import __version__
from dns_server.chain.plugin import Handler, Next, PluginSpec, Request
from dns_server.config.model import ServerBlock
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive
from dns_server.protocol.answer import RR, Answer, Outcome
from dns_server.protocol.codes import CLASS_CH, TXT

NAME = "chaos"
DEFAULT_VERSION = f"dns-server-{__version__}"  # CoreDNS: AppName-AppVersion
DEFAULT_AUTHORS: tuple[str, ...] = ()  # CoreDNS lists its OWNERS files' handles; this server names no one
MAX_TEXT = 255  # bytes: one TXT character-string
VERSION_NAMES = ("version.bind", "version.server")
AUTHORS_NAME = "authors.bind"
HOSTNAME_NAMES = ("hostname.bind", "id.server")


class ChaosSettings(NamedTuple):
    version: str
    authors: tuple[str, ...]


def setup(found: Sequence[Directive], context: SetupContext) -> ChaosSettings:
    plugin = Reader(NAME)
    directive = plugin.once(found)
    for option in directive.block or ():
        raise plugin.error(option.name, f"unknown property '{option.name.text}'")
    args = [token.text for token in directive.args]
    if not args:
        return ChaosSettings(_trim(DEFAULT_VERSION), DEFAULT_AUTHORS)
    if len(args) == 1:
        return ChaosSettings(_trim(args[0]), DEFAULT_AUTHORS)
    return ChaosSettings(args[0], tuple(sorted({_trim(author) for author in args[1:]})))


class Chaos(Handler):
    def __init__(self, settings: ChaosSettings, block: ServerBlock) -> None:
        hostname = _trim(socket.gethostname() or "localhost")
        self.texts: dict[str, tuple[str, ...]] = {
            **{name: (settings.version,) for name in VERSION_NAMES},
            AUTHORS_NAME: settings.authors,
            **{name: (hostname,) for name in HOSTNAME_NAMES},
        }

    def serve(self, request: Request, next: Next) -> Answer:
        texts = self.texts.get(request.name) if request.qclass == CLASS_CH and request.qtype == TXT else None
        if texts is None:
            return next(request)
        records = tuple(RR(request.name, TXT, 0, text) for text in texts)
        return request.reads.answer(Outcome.NOT_AUTHORITATIVE, records, plugin=NAME)._replace(record_class=CLASS_CH)


def _trim(text: str) -> str:
    """At most 255 bytes (a TXT character-string), cut at a character boundary."""
    return text.encode()[:MAX_TEXT].decode(errors="ignore")


PLUGIN = PluginSpec(NAME, setup, Chaos, in_chain=True, other_classes=True)
