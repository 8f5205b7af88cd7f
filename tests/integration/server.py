"""Start the real server process for integration tests and wait, with a deadline, until it answers;
the waiting and comparing helpers the integration tests share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

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
    """`python -m dns_server ARGS --listen 127.0.0.1:PORT`, its log kept in a temp file."""

    def __init__(self, *args: str, port: int | None = None, ready_name: str = "dns-version.cluster.local",
                 ready_type: str = "TXT", env: dict[str, str] | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.args = [sys.executable, "-m", "dns_server", *args, "--listen", f"{self.host}:{self.port}"]
        self.ready_name = ready_name
        self.ready_type = ready_type
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_file = tempfile.NamedTemporaryFile(prefix="dns-server-", suffix=".log", delete=False)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        self.process = subprocess.Popen(self.args, cwd=REPO, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        env=self.env)
        wait_for(self._answers, STARTUP_DEADLINE, f"the server to answer ({self.log()})")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"server exited with {self.process.returncode}: {self.log()}")
        try:
            self.udp(dns.message.make_query(self.ready_name, self.ready_type), timeout=0.2)
        except (dns.exception.Timeout, ConnectionError, OSError):
            return False
        return True

    def udp(self, message: dns.message.Message, timeout: float = QUERY_TIMEOUT) -> dns.message.Message:
        return dns.query.udp(message, self.host, port=self.port, timeout=timeout, ignore_trailing=False)

    def tcp(self, message: dns.message.Message, timeout: float = QUERY_TIMEOUT) -> dns.message.Message:
        return dns.query.tcp(message, self.host, port=self.port, timeout=timeout)

    def log(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        os.unlink(self.log_file.name)
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
