"""chaos and whoami in the real server process, asked by dig (the client operators use for both) and by
dnspython from a source port the test picks, over UDP and TCP."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.integration.server import ServerProcess

COREFILE = """. {
    chaos Ours-1.0 alice bob
    whoami
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("chaos")
    with ServerProcess.from_corefile(directory, COREFILE, ready_name="example.org", ready_type="A") as running:
        yield running


def dig(server: ServerProcess, *args: str) -> str:
    result = subprocess.run(["dig", f"@{server.host}", "-p", str(server.port), "+time=5", "+tries=1", *args],
                            capture_output=True, text=True, timeout=30, check=True)
    return result.stdout


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_reads_version_authors_and_host_name_in_class_ch(server: ServerProcess, transport: str) -> None:
    assert dig(server, transport, "+short", "CH", "TXT", "version.bind").split() == ['"Ours-1.0"']
    assert sorted(dig(server, transport, "+short", "CH", "TXT", "authors.bind").split()) == ['"alice"', '"bob"']
    assert dig(server, transport, "+short", "CH", "TXT", "hostname.bind").split() == [f'"{socket.gethostname()}"']
    full = dig(server, transport, "CH", "TXT", "id.server")
    assert "status: NOERROR" in full and " aa" not in full.split("flags:")[1].split(";")[0]
    assert f'id.server.\t\t0\tCH\tTXT\t"{socket.gethostname()}"' in full


@pytest.mark.parametrize("via_tcp", [False, True])
def test_whoami_tells_each_client_its_own_port(server: ServerProcess, via_tcp: bool) -> None:
    for source_port in (free_port(via_tcp), free_port(via_tcp)):
        query = dns.message.make_query("Who.Example.", "A")
        exchange = dns.query.tcp if via_tcp else dns.query.udp
        reply = exchange(query, server.host, port=server.port, timeout=5, source=server.host, source_port=source_port)
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA and not reply.answer
        address, srv = reply.additional
        assert (address.name.to_text(), address.rdtype, address[0].address) == ("Who.Example.", dns.rdatatype.A,
                                                                                 "127.0.0.1")
        assert srv.name.to_text() == ("_tcp" if via_tcp else "_udp") + ".Who.Example."
        assert srv[0].port == source_port


def free_port(tcp: bool) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
