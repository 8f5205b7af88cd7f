"""`dns-server check`: does a cluster DNS server answer what the Kubernetes DNS specification says?

    dns-server check --server HOST:PORT (--fixtures DIR | --kubeconfig FILE | -conf Corefile)
                     [--domain cluster.local] [--pods MODE] [--ttl LOW-HIGH] [--skip KIND] [--junit FILE]
                     [--timeout S] [--window N]

Any server: CoreDNS, kube-dns, ours, a managed one.  The cluster's objects are read once (manifests
with the fixture parser, one list from the API, or what a Corefile's kubernetes block names); the
questions and the answers they must get come from `expectations` (the specification read on its
own); each question is asked over UDP and TCP, many at a time (`Asker`), and `compare` names every
difference.  Output: one line per difference with the section it cites, a summary line, and with
`--junit FILE` one JUnit testcase per check.  Exit status: 0 without differences, 1 with any, 2
when the check could not run (bad input, the server unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import struct
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import dns.flags
import dns.rdataclass
import dns.rdatatype

from dns_server.cluster.records import MalformedObject, Namespace, Record, convert
from dns_server.cluster.sources.fixtures import FixtureError, manifest_paths, parse_manifest
from dns_server.cluster.sources.settings import SourceSettings
from dns_server.config.setup import split_host_port
from dns_server.errors import DnsServerError
from dns_server.protocol.names import is_reverse_zone
from dns_server.tools.compare import (
    TCP,
    UDP,
    Difference,
    Reply,
    TtlRange,
    Unreadable,
    compare,
    mixed_case,
    read_reply,
)
from dns_server.tools.expectations import KIND_NAMES, POD_MODES, Check, expected_checks
from dns_server.tools.junit import write_junit

DEFAULT_TIMEOUT = 2.0  # seconds a reply may take
UDP_TRIES = 3  # a datagram or its reply may be lost under load
DEFAULT_WINDOW = 50  # questions in flight: more only lost UDP replies here (2 cores shared)
TCP_CONNECTIONS = 8  # the TCP queries are pipelined over these


class CheckError(DnsServerError):
    """The check cannot run: the message says why (exit status 2)."""


@dataclass(frozen=True, slots=True)
class Target:
    """What to check, with what, against which server."""

    host: str
    port: int
    records: tuple[Record, ...]
    zone: str
    pods: str
    ttl: TtlRange
    skip: frozenset[str]


@dataclass(frozen=True, slots=True)
class Outcome:
    check: Check
    differences: tuple[Difference, ...]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dns-server check",
        description="Check a cluster DNS server against the Kubernetes DNS-Based Service Discovery "
                    "specification (schema 1.1.0), for the cluster's objects.")
    parser.add_argument("--server", required=True, metavar="HOST:PORT", help="the DNS server to check")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--fixtures", metavar="DIR", type=Path, help="the cluster's manifests")
    data.add_argument("--kubeconfig", metavar="FILE", type=Path, help="list the cluster from its API, once")
    data.add_argument("-conf", "--conf", metavar="FILE", type=Path,
                      help="a Corefile: its kubernetes block gives the data, the zone, pods and ttl")
    parser.add_argument("--context", help="the kubeconfig context (default: its current one)")
    parser.add_argument("--domain", help="the cluster domain (default cluster.local, or the Corefile's zone)")
    parser.add_argument("--pods", choices=POD_MODES, help="how the server answers pod names (default disabled: "
                        "not checked, or the Corefile's mode)")
    parser.add_argument("--ttl", metavar="LOW-HIGH", type=_ttl_range,
                        help="the TTLs allowed (default 0-3600, or 0 to the Corefile's ttl)")
    parser.add_argument("--skip", action="append", default=[], choices=KIND_NAMES, metavar="KIND",
                        help=f"leave out a kind of check (repeatable): {', '.join(KIND_NAMES)}")
    parser.add_argument("--junit", metavar="FILE", type=Path, help="also write the checks as JUnit XML")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for a reply")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, help=f"questions in flight (default {DEFAULT_WINDOW})")
    return parser


def main(argv: Sequence[str]) -> int:
    """`dns-server check ARGS`; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        target = _target(args)
        checks = [check for check in expected_checks(target.records, target.zone, target.pods)
                  if check.kind not in target.skip]
        started = time.monotonic()
        outcomes = run_checks(target, checks, args.timeout, max(1, args.window))
        seconds = time.monotonic() - started
        if args.junit is not None:
            write_junit(args.junit, outcomes, seconds)
    except (DnsServerError, OSError) as error:  # bad input, an unreadable Corefile, no server
        print(f"dns-server check: {error}", file=sys.stderr)
        return 2
    differences = [difference for outcome in outcomes for difference in outcome.differences]
    sys.stdout.write(report(differences, len(checks), f"{target.host}:{target.port}", seconds))
    return 1 if differences else 0


def _ttl_range(text: str) -> TtlRange:
    low, dash, high = text.partition("-")
    if not (dash and low.isdigit() and high.isdigit() and int(low) <= int(high)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a range LOW-HIGH of seconds")
    return TtlRange(int(low), int(high))


def _target(args: argparse.Namespace) -> Target:
    host, port = split_host_port(args.server)
    if host is None or not port.isdigit() or not 0 < int(port) < 65536:
        raise CheckError(f"--server {args.server}: give HOST:PORT" + ("" if host is None else f" ({port!r} is not a port)"))
    target = Target(host or "127.0.0.1", int(port), (), "cluster.local", "disabled", TtlRange(), frozenset(args.skip))
    if args.conf is not None:
        target = _from_corefile(args.conf, target)
    elif args.fixtures is not None:
        target = replace(target, records=read_fixtures(args.fixtures))
    else:
        settings = SourceSettings(None, None, args.kubeconfig, args.context, None, None, (), None, None,
                                  watch_pods=args.pods not in (None, "disabled"), endpoint_pod_names=False,
                                  noendpoints=False)
        target = replace(target, records=list_cluster(settings))
    return replace(target, zone=args.domain or target.zone, pods=args.pods or target.pods, ttl=args.ttl or target.ttl)


def _from_corefile(path: Path, target: Target) -> Target:
    """The first kubernetes block's data, zone, pods mode and TTL; what `check` does not model is refused."""
    from dns_server.plugins import load_config  # reads the Corefile as the server does; answers nothing

    config = load_config(path)
    settings = next((block.setting("kubernetes") for block in config.blocks
                     if block.setting("kubernetes") is not None), None)
    if settings is None:
        raise CheckError(f"-conf {path}: no server block has a kubernetes directive")
    unmodelled = [option for option, value in (("endpoint", settings.endpoint), ("labels", settings.labels),
                                               ("namespace_labels", settings.namespace_labels),
                                               ("noendpoints", settings.noendpoints),
                                               ("ignore empty_service", settings.ignore_empty_service),
                                               ("watch_file", settings.watch_file)) if value]
    if unmodelled:
        raise CheckError(f"-conf {path}: check does not model the kubernetes option {unmodelled[0]}")
    records: Iterable[Record]
    if settings.fixtures is not None:
        records = read_fixtures(settings.fixtures)
    else:
        records = list_cluster(settings.source)
    if settings.namespaces:
        records = [record for record in records if _namespace_of(record) in settings.namespaces]
    skip = target.skip
    if not any(is_reverse_zone(zone) for zone in settings.zones):
        skip |= {"service-ptr", "endpoint-ptr"}
    return replace(target, records=tuple(records), zone=settings.primary_zone, pods=settings.pods.value,
                   ttl=TtlRange(0, settings.ttl), skip=skip)


def _namespace_of(record: Record) -> str:
    """The namespace an object lies in; a Namespace's own name."""
    return record.name if isinstance(record, Namespace) else record.namespace


def read_fixtures(directory: Path) -> tuple[Record, ...]:
    """The objects of every manifest under `directory`, as the server's fixture source reads them."""
    if not directory.is_dir():
        raise CheckError(f"--fixtures {directory}: not a readable directory")
    records: dict[tuple[str, str, str], Record] = {}
    for path in manifest_paths(directory):
        try:
            objects = parse_manifest(path)
        except FixtureError as error:
            raise CheckError(f"{path}: {error}") from None
        for obj in objects:
            try:
                record = convert(obj) if isinstance(obj, dict) else None
            except MalformedObject as error:
                print(f"dns-server check: {path}: skipped an object the server skips too: {error}", file=sys.stderr)
                continue
            if record is not None:
                records[record.key] = record
    return tuple(records.values())


def list_cluster(settings: SourceSettings) -> tuple[Record, ...]:
    """One list of each resource from the Kubernetes API (no watch); objects the server skips are skipped."""
    from dns_server.cluster.sources.kube import list_everything  # the client is heavy

    try:
        objects = list_everything(settings)
    except DnsServerError as error:
        raise CheckError(str(error)) from None
    except Exception as error:  # the client raises urllib3 and API errors
        raise CheckError(f"listing the cluster failed: {' '.join(str(error).split())}") from None
    records = []
    for obj in objects:
        try:
            record = convert(obj)
        except MalformedObject:
            continue
        if record is not None:
            records.append(record)
    return tuple(records)


class Asker:
    """Asks questions over UDP and TCP with many in flight: one event loop, replies matched by message ID.

    `window` questions are out at a time, each with an ID of its own that both its UDP and its TCP
    query carry; the TCP queries are pipelined over `connections` connections.  A server that
    answers thousands of questions a second is then asked at its pace, not at one round trip each.
    """

    def __init__(self, host: str, port: int, timeout: float, window: int = DEFAULT_WINDOW,
                 connections: int = TCP_CONNECTIONS) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.window, self.connections = window, connections

    def ask_all(self, questions: Sequence[tuple[str, str]]) -> list[tuple[Reply | None, Reply | None]]:
        """The UDP and TCP reply to each (name, type), None where none came."""
        wires = asyncio.run(self._ask_all(questions))
        return [_replies(udp, tcp) for udp, tcp in wires]

    async def _ask_all(self, questions: Sequence[tuple[str, str]]) -> list[tuple[bytes | None, bytes | None]]:
        loop = asyncio.get_running_loop()
        self._udp_pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = {}
        self._free_ids = collections.deque(range(1, 65536))  # first in, first out: an ID comes back last
        self._slots = asyncio.Semaphore(min(self.window, len(self._free_ids)))
        self._streams: list[_Stream | None] = [None] * self.connections
        self._opening = [asyncio.Lock() for _ in range(self.connections)]
        transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self._udp_pending),
                                                           remote_addr=(self.host, self.port))
        self._datagrams = transport
        try:
            return await asyncio.gather(*(self._ask(name, qtype) for name, qtype in questions))
        finally:
            transport.close()
            for stream in self._streams:
                if stream is not None:
                    stream.close()

    async def _ask(self, name: str, qtype: str) -> tuple[bytes | None, bytes | None]:
        async with self._slots:
            query_id = self._free_ids.popleft()
            try:
                wire = query_wire(query_id, name, qtype)
                return await self._udp(query_id, wire), await self._tcp(query_id, wire)
            finally:
                self._free_ids.append(query_id)

    async def _udp(self, query_id: int, wire: bytes) -> bytes | None:
        for _ in range(UDP_TRIES):
            future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            self._udp_pending[query_id] = (_question(wire), future)
            self._datagrams.sendto(wire)
            try:
                return await asyncio.wait_for(future, self.timeout)
            except TimeoutError:
                continue
            finally:
                self._udp_pending.pop(query_id, None)
        return None

    async def _tcp(self, query_id: int, wire: bytes) -> bytes | None:
        slot = query_id % self.connections
        for _ in range(2):  # a connection the server closed (idle timeout, a limit) is opened again once
            stream = await self._stream(slot)
            if stream is None:
                return None
            try:
                reply = await asyncio.wait_for(stream.ask(query_id, wire), self.timeout)
            except TimeoutError:
                return None
            if reply is not None:
                return reply
            self._streams[slot] = None
        return None

    async def _stream(self, slot: int) -> _Stream | None:
        async with self._opening[slot]:
            stream = self._streams[slot]
            if stream is None or stream.closed:
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                            self.timeout)
                except (OSError, TimeoutError):
                    return None
                stream = self._streams[slot] = _Stream(reader, writer)
            return stream


def query_wire(query_id: int, name: str, qtype: str) -> bytes:
    """A query as a stub resolver sends it (RD, no EDNS), written directly: dnspython's builder costs more
    than the exchange."""
    labels = b"".join(bytes((len(label),)) + label for label in name.rstrip(".").encode("ascii").split(b"."))
    header = struct.pack("!HHHHHH", query_id, dns.flags.RD, 1, 0, 0, 0)
    return header + labels + b"\0" + struct.pack("!HH", dns.rdatatype.from_text(qtype), dns.rdataclass.IN)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, pending: dict[int, tuple[bytes, asyncio.Future[bytes]]]) -> None:
        self.pending = pending

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        settle(self.pending, data)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error (nothing listens): the questions wait out their timeout."""


class _Stream:
    """One TCP connection with queries pipelined over it; a reader task hands each reply to its query."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.pending: dict[int, tuple[bytes, asyncio.Future[bytes | None]]] = {}
        self.closed = False
        self._reading = asyncio.ensure_future(self._read(reader))

    async def ask(self, query_id: int, wire: bytes) -> bytes | None:
        """The reply, or None when the connection closed first."""
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self.pending[query_id] = (_question(wire), future)
        self.writer.write(len(wire).to_bytes(2, "big") + wire)
        try:
            return await future
        finally:
            self.pending.pop(query_id, None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                settle(self.pending, await reader.readexactly(size))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed = True
            for _, future in self.pending.values():
                if not future.done():
                    future.set_result(None)

    def close(self) -> None:
        self._reading.cancel()
        self.writer.close()


def _question(query: bytes) -> bytes:
    """The question section of a query written by `query_wire`, in lower case."""
    return query[12:].lower()


def settle(pending: Mapping[int, tuple[bytes, asyncio.Future[Any]]], reply: bytes) -> None:
    """Hands a reply to the query it answers: the same ID and the same question (in any case), or none.

    The question guards against a late reply to an earlier query that had the same ID.
    """
    asked = pending.get(int.from_bytes(reply[:2], "big")) if len(reply) >= 12 else None
    if asked is None:
        return
    question, future = asked
    if (reply[4:6] == b"\0\0" or reply[12:12 + len(question)].lower() == question) and not future.done():
        future.set_result(reply)


def _replies(udp: bytes | None, tcp: bytes | None) -> tuple[Reply | None, Reply | None]:
    """Both replies read; when they are the same bytes (most are), read once."""
    udp_reply = _read(udp, UDP)
    if udp_reply is not None and tcp == udp:
        return udp_reply, replace(udp_reply, transport=TCP)
    return udp_reply, _read(tcp, TCP)


def _read(wire: bytes | None, transport: str) -> Reply | None:
    if wire is None:
        return None
    try:
        return read_reply(wire, transport)
    except Unreadable:
        return None  # a reply that cannot be read is as good as none


def run_checks(target: Target, checks: list[Check], timeout: float, window: int) -> list[Outcome]:
    """Ask every check's question; CheckError when the server answers nothing at all."""
    asker = Asker(target.host, target.port, timeout, window)
    if checks and asker.ask_all([(mixed_case(checks[0].name), checks[0].qtype)]) == [(None, None)]:
        raise CheckError(f"no reply from {target.host}:{target.port} over UDP or TCP within {timeout} s")
    replies = asker.ask_all([(mixed_case(check.name), check.qtype) for check in checks])
    return [Outcome(check, tuple(compare(check, target.zone, target.ttl, udp, tcp)))
            for check, (udp, tcp) in zip(checks, replies)]


def report(differences: list[Difference], checks: int, server: str, seconds: float) -> str:
    """The table for people: one line per difference, then the summary line."""
    header = ("SECTION", "QUESTION", "OVER")
    rows = [(d.cites, d.check.title, d.transport, str(d)) for d in differences]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3]
             for row in [(*header, "DIFFERENCE"), *rows]] if rows else []
    counts: dict[str, int] = {}
    for difference in differences:
        counts[difference.what] = counts.get(difference.what, 0) + 1
    found = (f"{len(differences)} difference{'' if len(differences) == 1 else 's'} ("
             + ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) + ")") if differences else "no differences"
    lines.append(f"check: {checks} checks against {server} over UDP and TCP in {seconds:.1f} s: {found}")
    return "\n".join(lines) + "\n"
