"""The `log` plugin: one line per query, in CoreDNS's format, written off the event loop.

Rules this module keeps:
- The event loop only hands over what the transport saw (`QueryRecord`: addresses, the query and
  reply bytes, the time taken) with `QueryLogWriter.submit`, which never blocks: a bounded queue,
  and when it is full the record is dropped and counted.  Parsing, formatting and writing happen
  on the writer's own thread; one warning about drops is logged at most every few seconds.
- The line is CoreDNS 1.14's (`plugin/log`, `plugin/pkg/replacer`): placeholders are replaced
  where they are known; `{/label}` (metadata, which we have none of) becomes `-`; anything else in
  braces is kept as written.  Lines are `[INFO] <line>` (CoreDNS's `clog.Infof`), or a JSON
  object in the `json` log format.
- A server block's rules are tried in order and the first whose NAMES cover the query name decides
  alone: its `class` filter (`response.Classify` of the reply: success, denial, error, or all)
  says whether the query gets a line, in that rule's format.
- A query whose header or question cannot be read gets no line: CoreDNS's server answers those
  before any plugin sees them.
"""

from __future__ import annotations

import collections
import logging
import struct
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Iterable, Sequence, Union

import dns.rdataclass
import dns.rdatatype

from dns_server.chain.plugin import PluginSpec
from dns_server.config.setup import Reader, SetupContext
from dns_server.config.syntax import Directive
from dns_server.observability.logs import STDOUT, Output, json_line
from dns_server.protocol.codes import (
    AA,
    AD,
    AXFR,
    CD,
    IXFR,
    MAX_TCP_MESSAGE,
    NOERROR,
    NXDOMAIN,
    OPCODE_NOTIFY,
    OPCODE_UPDATE,
    OPT,
    QR,
    RA,
    RCODE_NAMES,
    RD,
    SOA,
    TC,
    Z,
)
from dns_server.protocol.names import in_zone
from dns_server.protocol.wire import (
    HEADER_LEN,
    Drop,
    FormErr,
    Query,
    decode_query,
    skip_name,
)

DEFAULT_LOG_FORMAT = ('{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" '
                      '{rcode} {>rflags} {rsize} {duration}')  # log plugin: {common}
COMBINED_LOG_FORMAT = DEFAULT_LOG_FORMAT + ' "{>opcode}"'  # log plugin: {combined}
NAMED_FORMATS = {"{common}": DEFAULT_LOG_FORMAT, "{combined}": COMBINED_LOG_FORMAT}  # a whole FORMAT argument
EMPTY = "-"  # replacer.EmptyValue
DEFAULT_CAPACITY = 10_000  # queued records; a burst longer than this while stdout is slow is dropped
DROP_REPORT_INTERVAL = 5.0  # seconds between two warnings about dropped lines
BATCH = 256  # records formatted, then written with one write and one flush

# {>rflags}: the header bits CoreDNS lists, in its order (miekg/dns MsgHdr).
FLAG_BITS = (("qr", QR << 8), ("aa", AA << 8), ("tc", TC << 8), ("rd", RD << 8), ("ra", RA), ("z", Z), ("ad", AD),
             ("cd", CD))
_SPECIAL = frozenset(b".'@;()\" \\")  # miekg/dns escapes these in names with a backslash
_COUNTS = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH
LOG_CLASSES = ("all", "success", "denial", "error")  # plugin/pkg/response classes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """What the transport saw of one query: the line is made from this alone."""

    remote: str  # the client's address
    port: int  # the client's port
    local: str  # our address the query came to
    proto: str  # "udp" or "tcp"
    query: bytes
    reply: bytes  # b"" when no reply was sent
    duration: float  # seconds from receiving the query to sending the reply


@dataclass(frozen=True, slots=True)
class Reply:
    """What a line and the class filter read from a reply."""

    flags: int  # the header's two flag bytes
    rcode: int  # with the OPT record's upper bits (RFC 6891 6.1.3)
    kind: str  # success | denial | error


def read_reply(reply: bytes) -> Reply | None:
    """The flags, rcode and class of a reply; None when there is none (too short for a header).

    The class follows CoreDNS's `response.Typify` and `Classify`: UPDATE, NOTIFY and zone
    transfers are errors; NOERROR with answers, or without answers and without an SOA (a referral
    or an empty reply), is success; NOERROR with an SOA (NODATA) and NXDOMAIN with an SOA are
    denial; everything else (SERVFAIL, REFUSED, NXDOMAIN without an SOA, ...) is error.  A reply
    cut short keeps what could be read.  CoreDNS also calls a DNSSEC reply with an expired
    signature an error; we never check signatures.
    """
    if len(reply) < HEADER_LEN:
        return None
    _, flags, questions, answers, authority, additional = _COUNTS.unpack_from(reply)
    qtype, soa, upper_rcode = None, False, 0
    try:
        i = HEADER_LEN
        for _ in range(questions):
            i = skip_name(reply, i) + 4
            if qtype is None and i <= len(reply):
                qtype = struct.unpack_from("!H", reply, i - 4)[0]
        for _ in range(answers):
            i, _ = _skip_record(reply, i)
        for _ in range(authority):
            i, (rtype, _, _, _) = _skip_record(reply, i)
            soa = soa or rtype == SOA
        for _ in range(additional):
            i, (rtype, _, ttl, _) = _skip_record(reply, i)
            if rtype == OPT:
                upper_rcode = ttl >> 24
    except (FormErr, struct.error):
        pass
    rcode = upper_rcode << 4 | flags & 0xF
    opcode = flags >> 11 & 0xF
    if opcode in (OPCODE_UPDATE, OPCODE_NOTIFY) or qtype in (AXFR, IXFR):
        kind = "error"
    elif rcode == NOERROR:
        kind = "denial" if soa and not answers else "success"
    elif rcode == NXDOMAIN and soa:
        kind = "denial"
    else:
        kind = "error"
    return Reply(flags, rcode, kind)


def _skip_record(data: bytes, i: int) -> tuple[int, tuple[int, int, int, int]]:
    i = skip_name(data, i)
    fields = _RR.unpack_from(data, i)
    end = i + _RR.size + fields[3]
    if end > len(data):
        raise FormErr("record data runs past the end of the reply")
    return end, fields


def name_text(wire_name: bytes) -> str:
    """A question name as CoreDNS prints it: lower case, fully qualified, escaped as miekg/dns does."""
    labels = []
    i = 0
    while wire_name[i]:
        length = wire_name[i]
        label = []
        for byte in wire_name[i + 1:i + 1 + length].lower():
            if byte in _SPECIAL:
                label.append("\\" + chr(byte))
            elif byte < 0x20 or byte > 0x7E:
                label.append(f"\\{byte:03d}")
            else:
                label.append(chr(byte))
        labels.append("".join(label))
        i += length + 1
    return ".".join(labels) + "." if labels else "."


def go_seconds(duration: float) -> str:
    """`{duration}`: Go's `strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"` of a nanosecond duration."""
    nanoseconds = max(0, round(duration * 1e9))
    seconds = nanoseconds // 1_000_000_000 + nanoseconds % 1_000_000_000 / 1e9  # time.Duration.Seconds()
    return format(Decimal(repr(seconds)).normalize(), "f") + "s"  # repr is the shortest exact form, as -1 asks


def type_text(qtype: int) -> str:
    """A type's mnemonic, `TYPE<n>` when it has none (as miekg/dns prints it)."""
    return dns.rdatatype.RdataType.to_text(qtype)


def flags_text(flags: int) -> str:
    """`{>rflags}`: the set bits, `qr,aa,tc,rd,ra,z,ad,cd` order, comma-separated."""
    return ",".join(name for name, bit in FLAG_BITS if flags & bit)


def address_text(address: str) -> str:
    """An IP address as CoreDNS prints it: IPv6 in brackets (RFC 3986)."""
    return f"[{address}]" if ":" in address else address


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One query and its reply, read once, for the placeholders of one line."""

    record: QueryRecord
    query: Query
    reply: Reply | None


Field = Callable[[_Exchange], str]
# replacer.go's labels: the request's, the header's ({>...}, case-sensitive) and the recorded reply's.
LABELS: dict[str, Field] = {
    "{type}": lambda e: type_text(e.query.qtype),
    "{name}": lambda e: name_text(e.query.question[:-4]),
    "{class}": lambda e: dns.rdataclass.RdataClass.to_text(e.query.qclass),
    "{proto}": lambda e: e.record.proto,
    "{size}": lambda e: str(len(e.record.query)),
    "{remote}": lambda e: address_text(e.record.remote),
    "{port}": lambda e: str(e.record.port),
    "{local}": lambda e: address_text(e.record.local),
    "{>id}": lambda e: str(e.query.id),
    "{>opcode}": lambda e: str(e.query.opcode),
    "{>do}": lambda e: "true" if e.query.do else "false",
    "{>bufsize}": lambda e: str(MAX_TCP_MESSAGE if e.record.proto == "tcp" else e.query.payload),  # request.Size()
    "{rcode}": lambda e: RCODE_NAMES.get(e.reply.rcode, str(e.reply.rcode)) if e.reply else EMPTY,
    "{rsize}": lambda e: str(len(e.record.reply)),
    "{duration}": lambda e: go_seconds(e.record.duration),
    "{>rflags}": lambda e: flags_text(e.reply.flags) if e.reply else EMPTY,
}
Segment = Union[str, Field]


def expand_format(text: str) -> str:
    """A FORMAT argument as the log plugin takes it: `{common}` and `{combined}` name whole formats."""
    return NAMED_FORMATS.get(text, text)


def compile_format(text: str) -> tuple[Segment, ...]:
    """A format as literal text and placeholders, split as CoreDNS's `parseFormat` splits it.

    Each `}` closes the nearest `{` before it; a known label becomes its value, `{/...}` becomes
    `-`, and any other braced text stays literal (`{{remote}}` is `{`, the address, `}`).
    """
    segments: list[Segment] = []

    def literal(piece: str) -> None:
        if segments and isinstance(segments[-1], str):
            segments[-1] += piece
        elif piece:
            segments.append(piece)

    rest = expand_format(text)
    while (close := rest.find("}")) >= 0:
        open_ = rest.rfind("{", 0, close)
        label = rest[open_:close + 1]
        if open_ >= 0 and label in LABELS:
            literal(rest[:open_])
            segments.append(LABELS[label])
        elif open_ >= 0 and label.startswith("{/"):
            literal(rest[:open_] + EMPTY)
        else:
            literal(rest[:close + 1])
        rest = rest[close + 1:]
    literal(rest)
    return tuple(segments)


@dataclass(frozen=True, slots=True)
class _Rule:
    names: tuple[str, ...]
    segments: tuple[Segment, ...]
    classes: frozenset[str]


class QueryLog:
    """The `log` directives of one server block: which queries get a line, and the line."""

    def __init__(self, rules: Iterable[LogRule]) -> None:
        self._rules = tuple(_Rule(rule.names, compile_format(rule.format), rule.classes) for rule in rules)

    def line(self, record: QueryRecord) -> str | None:
        """The line for a query (without the `[INFO] ` prefix), or None when it gets none."""
        try:
            query = decode_query(record.query)
        except (Drop, FormErr):
            return None
        for rule in self._rules:
            if any(in_zone(query.name, zone) for zone in rule.names):
                exchange = _Exchange(record, query, read_reply(record.reply))
                if "all" not in rule.classes:
                    kind = exchange.reply.kind if exchange.reply else "error"  # no reply: Typify(nil)
                    if kind not in rule.classes:
                        return None
                return "".join(part if isinstance(part, str) else part(exchange) for part in rule.segments)
        return None


class QueryLogWriter:
    """Writes query lines on a thread of its own; the event loop only enqueues.

    `submit` must be called from one thread (the event loop's): the queue's bound is kept by
    checking its length before appending, which only the submitting thread does.  `close` writes
    what is queued and stops the thread; nothing submitted after it is written.
    """

    def __init__(self, output: Output = STDOUT, *, log_format: str = "text", capacity: int = DEFAULT_CAPACITY,
                 report_interval: float = DROP_REPORT_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self._output = output
        self._clock = clock
        self._json = log_format == "json"
        self._capacity = capacity
        self._report_interval = report_interval
        self._queue: collections.deque[tuple[QueryLog, QueryRecord]] = collections.deque()
        self._wake = threading.Event()
        self._closing = False
        self._dropped = 0  # written by the submitting thread only
        self._reported = 0
        self._last_report: float | None = None
        self._thread = threading.Thread(target=self._run, name="query-log", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Records dropped so far because the queue was full."""
        return self._dropped

    def submit(self, query_log: QueryLog, record: QueryRecord) -> None:
        """Queue a query for its line; never blocks (a full queue drops it and counts the drop)."""
        if len(self._queue) >= self._capacity:
            self._dropped += 1
            return
        self._queue.append((query_log, record))
        if not self._wake.is_set():  # an Event.set() per query would take a lock each time
            self._wake.set()

    def close(self) -> None:
        """Write every queued line, report drops not yet reported, and stop the thread."""
        self._closing = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._report_interval)
            self._wake.clear()
            closing = self._closing  # read before draining: everything submitted before close is drained
            try:
                self._drain()
                self._report_drops(self._clock(), closing)
            except Exception:  # a bug must not silence the query log for good
                log.exception("cannot write the query log")
            if closing:
                return

    def _drain(self) -> None:
        while self._queue:
            lines = []
            for _ in range(min(BATCH, len(self._queue))):
                query_log, record = self._queue.popleft()
                line = query_log.line(record)
                if line is not None:
                    lines.append(self._render(line))
            if lines:
                self._output.write("".join(lines))

    def _render(self, line: str) -> str:
        if self._json:
            return json_line("INFO", __name__, line, time.time()) + "\n"
        return f"[INFO] {line}\n"

    def _report_drops(self, now: float, final: bool) -> None:
        dropped = self._dropped
        due = final or self._last_report is None or now - self._last_report >= self._report_interval
        if dropped > self._reported and due:
            log.warning("%d queries not logged: standard output is not keeping up", dropped - self._reported)
            self._reported = dropped
            self._last_report = now


# --- the directive ---

@dataclass(frozen=True, slots=True)
class LogRule:
    """One `log [NAMES...] [FORMAT] { class ... }` directive."""

    names: tuple[str, ...] = ("",)  # zones whose queries are logged; the root by default
    format: str = DEFAULT_LOG_FORMAT
    classes: frozenset[str] = frozenset({"all"})  # success | denial | error | all


def setup(found: Sequence[Directive], context: SetupContext) -> tuple[LogRule, ...]:
    plugin = Reader("log")
    rules: list[LogRule] = []
    for directive in found:
        texts = [token.text for token in directive.args]
        log_format = DEFAULT_LOG_FORMAT
        if len(texts) > 1 and "{" in texts[-1]:  # with one argument it is always a name (plugin/log setup.go)
            log_format = texts.pop().replace("{common}", DEFAULT_LOG_FORMAT).replace("{combined}", COMBINED_LOG_FORMAT)
        names = tuple(plugin.domain_name(token) for token in directive.args[:len(texts)]) or ("",)
        classes: set[str] = set()
        for option in plugin.options(directive):
            if option.name.text != "class" or not option.args:
                raise plugin.arg_error(option.name)  # CoreDNS's text for an unknown option too
            for token in option.args:
                if token.text not in LOG_CLASSES:
                    raise plugin.error(token, f"invalid Class: {token.text}")
                classes.add(token.text)
        rules.append(LogRule(names, log_format, frozenset(classes or {"all"})))
    return tuple(rules)


PLUGIN = PluginSpec("log", setup, in_chain=True)
