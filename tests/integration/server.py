"""Start the real server process for integration tests and wait, with a deadline, until it answers;
the waiting and comparing helpers the integration tests share."""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import dns.rrset

REPO = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE = 20.0
QUERY_TIMEOUT = 10.0  # a client's patience: generous, a loaded machine is slow, not the server wrong


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (as free as it can be known)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return int(port)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `condition` until it holds; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def read_framed(sock: socket.socket) -> bytes | None:
    """One length-prefixed DNS message from a TCP stream (RFC 1035 4.2.2), or None once it is closed."""
    header = _receive_exactly(sock, 2)
    return _receive_exactly(sock, int.from_bytes(header, "big")) if header is not None else None


def _receive_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        try:
            chunk = sock.recv(count - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def texts(section: list[dns.rrset.RRset]) -> set[str]:
    """A message section as `owner TYPE rdata` lines (owner lower case), for comparing answers."""
    return {f"{rrset.name.to_text().lower()} {dns.rdatatype.to_text(rrset.rdtype)} {rr.to_text()}"
            for rrset in section for rr in rrset}


class ServerProcess:
    """`python -m dns_server ARGS --listen HOST:PORT` (127.0.0.1 by default), its log kept in a temp file.

    `from_corefile` starts it from a Corefile instead (no `--listen`: the Corefile says where).
    """

    def __init__(self, *args: str, host: str = "127.0.0.1", port: int | None = None,
                 ready_name: str = "dns-version.cluster.local", ready_type: str = "TXT",
                 env: dict[str, str] | None = None, listen: bool = True, log_path: Path | None = None,
                 prefix: Sequence[str] = ()) -> None:
        self.host = host
        self.port = port or free_port()
        listen_args = ["--listen", f"{self.host}:{self.port}"] if listen else []
        self.args = [*prefix, sys.executable, "-m", "dns_server", *args, *listen_args]
        self.ready_name = ready_name
        self.ready_type = ready_type
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.keep_log = log_path is not None
        self.log_file = (open(log_path, "wb") if log_path is not None
                         else tempfile.NamedTemporaryFile(prefix="dns-server-", suffix=".log", delete=False))
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_corefile(cls, directory: Path, corefile: str, *, port: int | None = None, host: str = "127.0.0.1",
                      ready_name: str = "dns-version.cluster.local", ready_type: str = "TXT",
                      env: dict[str, str] | None = None, prefix: Sequence[str] = ()) -> ServerProcess:
        """`python -m dns_server -conf DIRECTORY/Corefile -dns.port PORT`, the Corefile's text written first.

        Keys without a port listen on PORT (a free one unless given); `{$VAR}` in the text takes `env`.
        The log is kept in DIRECTORY/server.log.  Not started: `start()` it, or use it as a context manager.
        """
        port = port or free_port()
        path = directory / "Corefile"
        path.write_text(corefile)
        return cls("-conf", str(path), "-dns.port", str(port), port=port, host=host, ready_name=ready_name,
                   ready_type=ready_type, env=env, listen=False, log_path=directory / "server.log", prefix=prefix)

    def start(self) -> ServerProcess:
        self.launch()
        try:
            wait_for(self._answers, STARTUP_DEADLINE, f"the server to answer ({self.log()})")
        except BaseException:
            self.stop()  # `with` calls no __exit__ when __enter__ fails: the process would outlive the test
            raise
        return self

    def launch(self) -> ServerProcess:
        """Start the process without waiting for it to answer."""
        self.process = subprocess.Popen(self.args, cwd=REPO, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        env=self.env)
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"server exited with {self.process.returncode}: {self.log()}")
        try:  # ignore_errors: a late reply to an earlier poll, on a reused source port, is skipped, not an error
            dns.query.udp(dns.message.make_query(self.ready_name, self.ready_type), self.host, port=self.port,
                          timeout=0.2, ignore_errors=True)
        except (dns.exception.Timeout, ConnectionError, OSError):
            return False
        return True

    def udp(self, message: dns.message.Message, timeout: float = QUERY_TIMEOUT) -> dns.message.Message:
        return dns.query.udp(message, self.host, port=self.port, timeout=timeout, ignore_trailing=False)

    def tcp(self, message: dns.message.Message, timeout: float = QUERY_TIMEOUT) -> dns.message.Message:
        return dns.query.tcp(message, self.host, port=self.port, timeout=timeout)

    def ask(self, name: str, qtype: str = "A", transport: str = "udp", timeout: float = 5.0,
            **query_options: Any) -> dns.message.Message:
        """The reply to one query over `transport` ("udp" or "tcp"); `query_options` go to make_query."""
        message = dns.message.make_query(name, qtype, **query_options)
        return self.udp(message, timeout) if transport == "udp" else self.tcp(message, timeout)

    def at(self, host: str | None = None, port: int | None = None) -> ServerProcess:
        """The same process, asked at another of its addresses (stopping either stops it)."""
        other = copy.copy(self)
        other.host, other.port = host or self.host, port or self.port
        return other

    def log(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")

    def log_lines(self, prefix: str = "") -> list[str]:
        """The log's lines that start with `prefix`."""
        return [line for line in self.log().splitlines() if line.startswith(prefix)]

    def send_signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """The exit status, once the process has exited; fails the test after `timeout` seconds."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server still runs after {timeout:g} s: {self.log()}") from None

    def refused_start(self, timeout: float) -> int:
        """Launch a server expected to refuse its configuration: its exit status (stopped if it still runs)."""
        self.launch()
        try:
            return self.wait(timeout)
        finally:
            self.stop()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        if not self.keep_log:
            os.unlink(self.log_file.name)
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
