"""Real upstream resolvers for the forwarding tests: unbound from Debian, on a loopback port.

`Unbound` runs the real unbound daemon (package `unbound`, installed by scripts/test) as the
current user in a temporary directory, serving test zones from zone files (`auth-zone`), with a
query log (`log-queries`) and counters (`unbound-control stats_noreset` over a local socket).
`max-udp-size: 512` makes it truncate every UDP reply over 512 bytes, whatever the client's EDNS
buffer, so a forwarder must retry over TCP to get a large answer.  Given a certificate and its key,
it also serves DNS over TLS (RFC 7858) on `tls_port` (`tls-service-pem`, `tls-service-key`).

`Blackhole` is a UDP socket that receives queries and never answers: a dead upstream.
`Recorder` answers every A question itself and keeps each query as it came: what a forwarder sends.
`SlowRelay` passes TCP queries on to a real upstream and holds each one for a while: a slow upstream.
`StreamRelay` passes TCP connections through to an upstream byte for byte (TLS inside untouched),
counting the connections and closing them when told: the upstream side of connection reuse.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from typing import TypeVar
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import dns.rrset

from tests.integration.server import free_port, read_framed, wait_for

STARTUP_DEADLINE = 10.0

# TTLs are written on every record: they are what the cache tests read back.
EXAMPLE_COM = """\
$ORIGIN example.com.
@            3600 IN SOA  ns.example.com. hostmaster.example.com. 1 7200 1800 86400 6
@            3600 IN NS   ns.example.com.
ns            300 IN A    192.0.2.1
www           300 IN A    192.0.2.10
www           300 IN AAAA 2001:db8::10
www           300 IN MX   10 mail.example.com.
www           300 IN TXT  "v=spf1 -all"
mail          300 IN A    192.0.2.25
long        86400 IN A    192.0.2.11
api.payments  300 IN A    192.0.2.20
*.wild        300 IN A    192.0.2.99
*.wild        300 IN AAAA 2001:db8::99
*.wild        300 IN TXT  "wildcard"
*.short        10 IN A    192.0.2.30
""" + "".join(f'*.big         300 IN TXT  "{chr(97 + i) * 100}"\n' for i in range(8))  # ~900 bytes

EXAMPLE_NET = """\
$ORIGIN example.net.
@           86400 IN SOA  ns.example.net. hostmaster.example.net. 1 7200 1800 86400 86400
@           86400 IN NS   ns.example.net.
ns            300 IN A    192.0.2.2
"""

REVERSE = """\
$ORIGIN 2.0.192.in-addr.arpa.
@            3600 IN SOA  ns.example.com. hostmaster.example.com. 1 7200 1800 86400 60
@            3600 IN NS   ns.example.com.
10            300 IN PTR  www.example.com.
"""

ZONES = {"example.com": EXAMPLE_COM, "example.net": EXAMPLE_NET, "2.0.192.in-addr.arpa": REVERSE}


APPARMOR = Path("/sys/module/apparmor/parameters/enabled")


def _program(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        raise AssertionError(f"{name} is not installed: scripts/test installs it (apt-get install unbound)")
    return path


def _unbound_binary(directory: Path) -> str:
    """The unbound program to run: where AppArmor is on, a copy of it.

    Debian's AppArmor profile for /usr/sbin/unbound confines it to /etc/unbound and /var/lib/unbound,
    so it could not read a configuration in a temporary directory; the same binary under another
    path is not attached to that profile.
    """
    program = _program("unbound")
    if APPARMOR.exists() and APPARMOR.read_text().strip() == "Y":
        copy = directory / "unbound"
        shutil.copy2(program, copy)
        return str(copy)
    return program


class Unbound:
    """The unbound daemon serving `zones` (default ZONES) on 127.0.0.1:<port>, with a query log and counters."""

    def __init__(self, directory: Path, port: int | None = None, zones: dict[str, str] | None = None,
                 host: str = "127.0.0.1", tls: tuple[Path, Path] | None = None) -> None:
        self.directory = directory
        self.host = host
        self.port = port or free_port()
        self.address = f"{host}:{self.port}"
        self.tls = tls  # (certificate, key): serve DNS over TLS on tls_port too
        self.tls_port = free_port() if tls is not None else 0
        self.zones = ZONES if zones is None else zones
        self.config = directory / "unbound.conf"
        self.log_file = directory / "unbound.log"
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        zones = []
        for name, text in self.zones.items():
            (self.directory / f"{name}.zone").write_text(text)
            zones.append(f'auth-zone:\n  name: "{name}."\n  zonefile: "{self.directory}/{name}.zone"\n'
                         "  for-downstream: yes\n  for-upstream: no\n  fallback-enabled: no\n")
        tls = "" if self.tls is None else (f"  interface: {self.host}@{self.tls_port}\n  tls-port: {self.tls_port}\n"
                                           f'  tls-service-pem: "{self.tls[0]}"\n  tls-service-key: "{self.tls[1]}"\n'
                                           # idle connections stay open 30 s while most TCP buffers are free
                                           "  incoming-num-tcp: 100\n")
        self.config.write_text(f"""\
server:
  interface: {self.host}
  port: {self.port}
{tls}  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{self.directory}"
  pidfile: "{self.directory}/unbound.pid"
  logfile: "{self.log_file}"
  use-syslog: no
  log-queries: yes
  verbosity: 1
  num-threads: 1
  do-ip6: no
  max-udp-size: 512
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  extended-statistics: yes
  # unbound answers the documentation ranges' reverse zones itself unless told not to
  local-zone: "2.0.192.in-addr.arpa." nodefault
  # a root NS of its own, so the health probe ('. NS') is answered without the Internet
  local-zone: "." transparent
  local-data: ". 86400 IN NS ns.example.com."
{"".join(zones)}
remote-control:
  control-enable: yes
  control-interface: "{self.directory}/control.sock"
  control-use-cert: no
""")

    def start(self) -> Unbound:
        self.write_config()
        self.process = subprocess.Popen([_unbound_binary(self.directory), "-d", "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(self._answers, STARTUP_DEADLINE, f"unbound to answer for its zones on {self.address}")
        except BaseException:
            self.stop()  # `with` calls no __exit__ when __enter__ fails
            raise
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            assert self.process.stderr is not None
            raise AssertionError(f"unbound exited with {self.process.returncode}: "
                                 f"{self.process.stderr.read().decode(errors='replace')} {self.log()}")
        try:
            reply = dns.query.udp(dns.message.make_query(next(iter(self.zones)), "SOA"), self.host, port=self.port,
                                  timeout=0.2, ignore_errors=True)  # skip a late reply to an earlier poll
        except (dns.exception.Timeout, OSError):
            return False
        return bool(reply.answer)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def queries(self) -> list[str]:
        """Every query unbound has received, as 'name. TYPE' (lower case), in order."""
        found = []
        for line in self.log().splitlines():
            # [1795484207] unbound[6186:0] info: 127.0.0.1 www.example.com. MX IN
            fields = line.split()
            if len(fields) == 7 and fields[2] == "info:" and fields[6] == "IN":
                found.append(f"{fields[4].lower()} {fields[5]}")
        return found

    def count(self, name: str, qtype: str) -> int:
        return self.queries().count(f"{name.lower().rstrip('.')}. {qtype}")

    def has_seen(self, name: str, qtype: str) -> bool:
        return self.count(name, qtype) > 0

    def stats(self) -> dict[str, float]:
        """unbound's counters (`unbound-control stats_noreset`)."""
        result = subprocess.run([_program("unbound-control"), "-c", str(self.config), "stats_noreset"],
                                capture_output=True, text=True, timeout=10, check=True)
        return {key: float(value) for key, _, value in
                (line.partition("=") for line in result.stdout.splitlines()) if value}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Unbound:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Blackhole:
    """A UDP socket on 127.0.0.1 that takes queries and never answers: a dead upstream."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        self.address = f"127.0.0.1:{self.port}"
        self.received: list[str] = []

    def questions(self) -> list[str]:
        """Every question received so far, as 'name. TYPE' (lower case)."""
        while True:
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return self.received
            try:
                question = dns.message.from_wire(data).question[0]
            except (dns.exception.DNSException, IndexError):
                continue
            self.received.append(f"{question.name.to_text().lower()} {dns.rdatatype.to_text(question.rdtype)}")

    def close(self) -> None:
        self.sock.close()


def settle(unbound: Unbound, deadline: float = 15.0) -> None:
    """Wait until unbound has logged every query sent to it so far.

    A barrier: ask unbound directly for a fresh name and wait until that query shows in its log.
    A query our server forwarded was logged before unbound answered it, so once our server has
    answered and the barrier is logged, the log holds everything our server sent.
    """
    marker = f"barrier-{time.monotonic_ns()}.wild.example.com"
    dns.query.udp(dns.message.make_query(marker, "A"), unbound.host, port=unbound.port, timeout=deadline)
    wait_for(lambda: unbound.has_seen(marker, "A"), deadline, f"{marker} in unbound's query log")


class Relay:
    """A TCP listener on loopback whose accepting thread a close wakes; a context manager."""

    listener: socket.socket

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (Linux)
        except OSError:
            pass
        self.listener.close()

    def __enter__(self: RelayT) -> RelayT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


RelayT = TypeVar("RelayT", bound=Relay)


class SlowRelay(Relay):
    """A TCP listener on 127.0.0.1 that relays each query to a real upstream after holding it `delay` s.

    Only TCP: the forwarder asks upstream over TCP when its client came over TCP (RFC 7766).
    `relayed` counts the queries passed on.
    """

    def __init__(self, upstream: Unbound, delay: float) -> None:
        self.upstream = upstream
        self.delay = delay
        self.relayed = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client:
            try:
                while (query := read_framed(client)) is not None:
                    time.sleep(self.delay)  # the point of this upstream: it is slow
                    with socket.create_connection((self.upstream.host, self.upstream.port), timeout=10) as upstream:
                        upstream.sendall(len(query).to_bytes(2, "big") + query)
                        reply = read_framed(upstream)
                    if reply is None:
                        return
                    self.relayed += 1
                    client.sendall(len(reply).to_bytes(2, "big") + reply)
            except OSError:
                return



class StreamRelay(Relay):
    """A TCP listener on 127.0.0.1 that passes each connection through to `target` byte for byte.

    What goes through is not read (TLS stays end to end).  `accepted` counts the connections,
    `closed` those that have ended, whichever side ended them.  After `close_on_next_data()`, the next bytes a
    client sends on a connection already open close that connection instead of passing on: an
    upstream that closed an idle connection just as the client used it again.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.accepted = 0
        self.closed = 0
        self._close_next = False
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def close_on_next_data(self) -> None:
        with self._lock:
            self._close_next = True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                self.accepted += 1
                self._close_next = False  # only connections open before the call
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            ended = threading.Event()  # set by the side that ends first
            threading.Thread(target=self._pipe, args=(client, upstream, True, ended), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False, ended), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, from_client: bool, ended: threading.Event) -> None:
        try:
            while data := source.recv(65536):
                if from_client:
                    with self._lock:
                        close, self._close_next = self._close_next, False
                    if close:
                        break
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            if not ended.is_set():
                self.closed += 1
            ended.set()
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()



class Recorder:
    """An upstream on 127.0.0.1 (UDP and TCP, one port) that answers every A question with 192.0.2.10 and
    keeps each query it gets as dnspython parsed it: what a forwarder put on the wire, EDNS options included."""

    ADDRESS = "192.0.2.10"

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = int(self.udp.getsockname()[1])
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen()
        self.address = f"127.0.0.1:{self.port}"
        self.queries: list[dns.message.Message] = []
        self._lock = threading.Lock()
        for serve in (self._serve_udp, self._serve_tcp):
            threading.Thread(target=serve, daemon=True).start()

    def received(self, name: str) -> list[dns.message.Message]:
        """The queries for `name` (lower case, with the trailing dot) received so far."""
        with self._lock:
            return [query for query in self.queries if query.question[0].name.to_text().lower() == name]

    def _reply(self, data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        with self._lock:
            self.queries.append(query)
        reply = dns.message.make_response(query)
        question = query.question[0]
        if question.rdtype == dns.rdatatype.A:
            reply.answer.append(dns.rrset.from_text(question.name, 300, "IN", "A", self.ADDRESS))
        return reply.to_wire()

    def _serve_udp(self) -> None:
        while True:
            try:
                data, peer = self.udp.recvfrom(65535)
                self.udp.sendto(self._reply(data), peer)
            except OSError:
                return
            except dns.exception.DNSException:
                continue

    def _serve_tcp(self) -> None:
        while True:
            try:
                client, _ = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_connection, args=(client,), daemon=True).start()

    def _serve_connection(self, client: socket.socket) -> None:
        with client:
            while (data := read_framed(client)) is not None:
                try:
                    reply = self._reply(data)
                except dns.exception.DNSException:
                    return
                client.sendall(len(reply).to_bytes(2, "big") + reply)

    def close(self) -> None:
        self.udp.close()
        self.tcp.shutdown(socket.SHUT_RDWR)
        self.tcp.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
