"""The server's life from a Corefile: reload (timed and by signal), a broken Corefile, SIGTERM with
lameduck, SIGINT, and the loop plugin catching a forwarder that points back at the server.

Real parts: the server runs as its own process (`python -m dns_server -conf FILE -dns.port PORT`)
and gets real signals; dnspython clients keep asking over UDP and over one TCP connection while
the Corefile changes; everything is read from what the process answers, its log and its exit
status.  Every wait polls with a deadline; nothing asserts how fast anything happened.  Expected
behaviour and log lines: CoreDNS 1.14 (../shared/COREDNS-REFERENCE.md, "Startup / reload lines",
"/health and lame duck").
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest

from dns_server.config.corefile import parse_corefile
from tests.integration.replies import outcome, values
from tests.integration.server import ServerProcess, free_port, wait_for

DEADLINE = 20.0  # reload 2s (plus up to 1 s of jitter), on a loaded machine
NAME = "www.reload.test"


def hosts_corefile(address: str, extra: str = "    reload 2s 1s\n") -> str:
    return f"reload.test {{\n{extra}    hosts {{\n        {address} {NAME}\n    }}\n}}\n"


@dataclass
class Asker:
    """A thread that asks NAME again and again until stopped, over UDP or over one TCP connection."""

    server: ServerProcess
    transport: str
    answers: list[str] = field(default_factory=list)  # each reply's outcome, in order
    failures: list[str] = field(default_factory=list)  # queries that got no reply
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"asker-{self.transport}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        connection = None
        if self.transport == "tcp":
            connection = socket.create_connection((self.server.host, self.server.port), timeout=10)
        try:
            while not self.stopping.is_set():
                query = dns.message.make_query(NAME, "A")
                try:
                    if connection is None:
                        reply = dns.query.udp(query, self.server.host, port=self.server.port, timeout=5)
                    else:
                        reply = dns.query.tcp(query, self.server.host, port=self.server.port, timeout=5,
                                              sock=connection)
                except (dns.exception.DNSException, OSError) as error:
                    self.failures.append(repr(error))
                    if connection is not None:
                        return  # the connection is gone: every later query would fail too
                    continue
                self.answers.append(",".join(outcome(reply)))
                time.sleep(0.01)  # a steady stream, not a flood: the machine is shared
        finally:
            if connection is not None:
                connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.mark.parametrize("flag", ["-conf", "--conf"])
def test_the_command_line_names_the_corefile_and_the_port(tmp_path: Path, flag: str) -> None:
    """`-conf FILE` (or `--conf`), and `-dns.port N` for the keys that name no port; a key's own port wins."""
    port, own = free_port(), free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(hosts_corefile("10.11.0.1", extra="") + """\
own.test:OWN {
    hosts {
        10.11.0.9 www.own.test
    }
}
""".replace("OWN", str(own)))
    with ServerProcess(flag, str(corefile), "-dns.port", str(port), port=port, listen=False, ready_name=NAME,
                       ready_type="A") as server:
        assert values(server.ask(NAME)) == ["10.11.0.1"]
        assert values(server.at(port=own).ask("www.own.test")) == ["10.11.0.9"]
        assert outcome(server.ask("www.own.test")) == ["REFUSED"]


def test_reload_while_queries_flow_loses_none(tmp_path: Path) -> None:
    """`reload 2s`: the Corefile changes under a UDP and a TCP client asking all along; every query is
    answered, the answers switch from the old entry to the new one once and for good, and the log
    has CoreDNS's reload lines with the new configuration's SHA512 (caddy's digest of the parsed file)."""
    with ServerProcess.from_corefile(tmp_path, hosts_corefile("10.11.0.1"), ready_name=NAME, ready_type="A") as server:
        askers = [Asker(server, "udp"), Asker(server, "tcp")]
        wait_for(lambda: all(len(asker.answers) >= 5 for asker in askers), DEADLINE, "answers before the change")
        changed = hosts_corefile("10.11.0.2")
        (tmp_path / "Corefile").write_text(changed)
        wait_for(lambda: all("10.11.0.2" in asker.answers for asker in askers), DEADLINE, "the new configuration")
        settled = [len(asker.answers) for asker in askers]
        wait_for(lambda: all(len(a.answers) >= n + 5 for a, n in zip(askers, settled)), DEADLINE, "answers after it")
        for asker in askers:
            asker.stop()
        log = server.log()
    for asker in askers:
        assert asker.failures == [], asker.transport
        switch = asker.answers.index("10.11.0.2")
        assert set(asker.answers[:switch]) == {"10.11.0.1"} and set(asker.answers[switch:]) == {"10.11.0.2"}
    running = [line.rpartition(" = ")[2] for line in log.splitlines()
               if line.startswith("[INFO] plugin/reload: Running configuration SHA512 = ")]
    assert running == [running[0], parse_corefile(tmp_path / "Corefile", {}).sha512] and running[0] != running[1]
    assert "[INFO] Reloading complete" in log.splitlines()


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR1], ids=["SIGHUP", "SIGUSR1"])
def test_a_signal_reloads_the_corefile(tmp_path: Path, signum: int) -> None:
    """Without the reload plugin, a changed Corefile is read again on a signal."""
    with ServerProcess.from_corefile(tmp_path, hosts_corefile("10.11.0.1", extra=""), ready_name=NAME,
                                     ready_type="A") as server:
        (tmp_path / "Corefile").write_text(hosts_corefile("10.11.0.3", extra=""))
        assert values(server.ask(NAME)) == ["10.11.0.1"]  # no reload plugin: nothing happens by itself
        server.send_signal(signum)
        wait_for(lambda: values(server.ask(NAME)) == ["10.11.0.3"], DEADLINE, "the Corefile read again")


def test_a_broken_corefile_keeps_the_old_configuration(tmp_path: Path) -> None:
    """A Corefile that does not parse: CoreDNS's error line, and the running configuration keeps answering;
    once the file is fixed, it is loaded."""
    with ServerProcess.from_corefile(tmp_path, hosts_corefile("10.11.0.1"), ready_name=NAME, ready_type="A") as server:
        (tmp_path / "Corefile").write_text(hosts_corefile("10.11.0.4").replace("hosts {", "hostz {"))
        failed = "[ERROR] plugin/reload: Corefile changed but reload failed: "
        wait_for(lambda: bool(server.log_lines(failed)), DEADLINE, "the reload to fail")
        assert "Unknown directive 'hostz'" in server.log_lines(failed)[0]
        for transport in ("udp", "tcp"):
            assert values(server.ask(NAME, transport=transport)) == ["10.11.0.1"]
        (tmp_path / "Corefile").write_text(hosts_corefile("10.11.0.5"))
        wait_for(lambda: values(server.ask(NAME)) == ["10.11.0.5"], DEADLINE, "the fixed Corefile")


def test_a_server_block_left_open_is_refused_at_start(tmp_path: Path) -> None:
    """The Corefile's last `}` missing after a directive's block: one line naming the file and the line, and
    the process exits with status 1 (as CoreDNS) without serving."""
    server = ServerProcess.from_corefile(tmp_path, hosts_corefile("10.11.0.1").removesuffix("}\n"))
    status = server.refused_start(DEADLINE)
    assert status == 1
    assert server.log().splitlines() == [
        f"dns-server: error: {tmp_path}/Corefile:5 - Error during parsing: Unexpected EOF"]


def test_sigterm_with_lameduck_answers_until_the_deadline_then_exits_0(tmp_path: Path) -> None:
    """`health { lameduck 2s }`: after SIGTERM the server says it goes into lameduck mode, queries are still
    answered, and then it exits with status 0 by itself."""
    corefile = hosts_corefile("10.11.0.1", extra="    health 127.0.0.1:{$HEALTH} {\n        lameduck 2s\n    }\n")
    server = ServerProcess.from_corefile(tmp_path, corefile, ready_name=NAME, ready_type="A",
                                         env={"HEALTH": str(free_port())})
    with server:
        assert server.process is not None
        server.send_signal(signal.SIGTERM)
        wait_for(lambda: bool(server.log_lines("[INFO] plugin/health: Going into lameduck mode for 2s")), DEADLINE,
                 "the lameduck line")
        answered = 0
        while server.process.poll() is None:
            try:
                if values(server.ask(NAME, timeout=1)) == ["10.11.0.1"]:
                    answered += 1
            except (dns.exception.Timeout, OSError):
                pass  # the listeners close at the end of the lameduck
        assert answered >= 1
        assert server.wait(DEADLINE) == 0
        assert "[INFO] SIGTERM: Shutting down servers then terminating" in server.log().splitlines()


def test_sigint_exits_at_once_without_lameduck(tmp_path: Path) -> None:
    """SIGINT does not wait for a lameduck of 60 s."""
    corefile = hosts_corefile("10.11.0.1", extra="    health 127.0.0.1:{$HEALTH} {\n        lameduck 60s\n    }\n")
    with ServerProcess.from_corefile(tmp_path, corefile, ready_name=NAME, ready_type="A",
                                     env={"HEALTH": str(free_port())}) as server:
        server.send_signal(signal.SIGINT)
        assert server.wait(DEADLINE) == 0
        assert "lameduck" not in server.log()


def test_loop_detection_stops_a_server_that_forwards_to_itself(tmp_path: Path) -> None:
    """`loop` with `forward . 127.0.0.1:<our own port>`: the probe comes back; CoreDNS's fatal line, exit 1."""
    port = free_port()
    corefile = """\
. {
    loop
    forward . 127.0.0.1:{$PORT}
}
"""
    server = ServerProcess.from_corefile(tmp_path, corefile, port=port, env={"PORT": str(port)})
    server.launch()
    try:
        status = server.wait(30.0)
    finally:
        server.stop()
    assert status == 1
    fatal = [line for line in server.log().splitlines() if line.startswith("[FATAL] plugin/loop: ")]
    assert len(fatal) == 1, server.log()
    assert re.fullmatch(rf'\[FATAL\] plugin/loop: Loop \(127\.0\.0\.1:\d+ -> :{port}\) detected for zone "\.", '
                        r'see https://coredns\.io/plugins/loop#troubleshooting\. Query: "HINFO \d+\.\d+\."', fatal[0])
