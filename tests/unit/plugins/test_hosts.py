"""hosts.py: hosts-file lines into entries, and the table the `hosts` plugin answers from."""

from __future__ import annotations

import pytest

from dns_server.plugins.hosts import (
    BadLine,
    HostsEntry,
    HostsTable,
    parse_entry,
    parse_hosts,
)
from dns_server.protocol.names import canonical_address

HOSTS = """\
# The following lines are desirable for IPv4 capable hosts
127.0.0.1       localhost
192.168.1.10    Example.COM.   example   # a comment after the names
192.168.1.11    example.com
192.168.1.10    alias.example.com

# The following lines are desirable for IPv6 capable hosts
::1                     localhost ip6-localhost ip6-loopback
fdfc:a744:27b5:3b0e::1  example.com example
fe80::1%eth0\tlink.local
::ffff:10.0.0.7         mapped.example.com
"""


@pytest.mark.parametrize(("line", "entry"), [
    ("10.0.0.1 a", HostsEntry("10.0.0.1", ("a",))),
    ("10.0.0.1 A.Example.ORG. b", HostsEntry("10.0.0.1", ("a.example.org", "b"))),
    ("10.0.0.1 a a A", HostsEntry("10.0.0.1", ("a",))),
    ("2001:DB8:0::1 v6", HostsEntry("2001:db8::1", ("v6",))),
    ("fe80::1%eth0 zoned", HostsEntry("fe80::1", ("zoned",))),
    ("::ffff:10.0.0.7 mapped", HostsEntry("10.0.0.7", ("mapped",))),
])
def test_a_line_gives_an_entry(line: str, entry: HostsEntry) -> None:
    assert parse_entry(line.split()) == entry


@pytest.mark.parametrize(("line", "reason"), [
    ("10.0.0.1", "no name for 10.0.0.1"),
    ("10.0.0.256 host", "'10.0.0.256' is not an IP address"),
    ("010.0.0.1 host", "'010.0.0.1' is not an IP address"),
    ("host 10.0.0.1", "'host' is not an IP address"),
    ("10.0.0.1 a..b", "'a..b' is not a domain name"),
    ("10.0.0.1 " + "x" * 64, f"'{'x' * 64}' is not a domain name"),
    ("10.0.0.1 .", "'.' is not a domain name"),
])
def test_a_bad_line_says_why(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{reason}$"):
        parse_entry(line.split())


def test_a_file_skips_comments_and_blanks_and_reports_bad_lines() -> None:
    parsed = parse_hosts(HOSTS + "10.0.0.300 broken\n10.0.0.9\n")
    assert parsed.entries == (
        HostsEntry("127.0.0.1", ("localhost",)),
        HostsEntry("192.168.1.10", ("example.com", "example")),
        HostsEntry("192.168.1.11", ("example.com",)),
        HostsEntry("192.168.1.10", ("alias.example.com",)),
        HostsEntry("::1", ("localhost", "ip6-localhost", "ip6-loopback")),
        HostsEntry("fdfc:a744:27b5:3b0e::1", ("example.com", "example")),
        HostsEntry("fe80::1", ("link.local",)),
        HostsEntry("10.0.0.7", ("mapped.example.com",)),
    )
    assert parsed.bad_lines == (BadLine(12, "10.0.0.300 broken", "'10.0.0.300' is not an IP address"),
                                BadLine(13, "10.0.0.9", "no name for 10.0.0.9"))


def test_a_comment_inside_a_word_ends_the_line() -> None:
    assert parse_hosts("10.0.0.1 a#b c\n").entries == (HostsEntry("10.0.0.1", ("a",)),)


def test_the_table_answers_by_family_in_file_order_then_inline() -> None:
    inline = (HostsEntry("10.9.9.9", ("example.com",)), HostsEntry("192.168.1.10", ("example.com",)))
    table = HostsTable.build(parse_hosts(HOSTS).entries, inline)
    assert table.addresses("example.com", 4) == ("192.168.1.10", "192.168.1.11", "10.9.9.9")
    assert table.addresses("example.com", 6) == ("fdfc:a744:27b5:3b0e::1",)
    assert table.addresses("mapped.example.com", 4) == ("10.0.0.7",)
    assert table.addresses("mapped.example.com", 6) == ()
    assert table.addresses("nowhere.example.com", 4) == ()


@pytest.mark.parametrize(("address", "names"), [
    ("192.168.1.10", ("example.com", "example", "alias.example.com")),
    ("::1", ("localhost", "ip6-localhost", "ip6-loopback")),
    ("0:0:0:0:0:0:0:1", ("localhost", "ip6-localhost", "ip6-loopback")),
    ("::ffff:10.0.0.7", ("mapped.example.com",)),
    ("10.1.1.1", ()),
    ("not-an-address", ()),
])
def test_the_table_names_an_address_for_ptr(address: str, names: tuple[str, ...]) -> None:
    assert HostsTable.build(parse_hosts(HOSTS).entries).names(address) == names


def test_no_reverse_leaves_addresses_without_names() -> None:
    table = HostsTable.build(parse_hosts(HOSTS).entries, reverse=False)
    assert table.names("192.168.1.10") == ()
    assert table.addresses("example.com", 4) == ("192.168.1.10", "192.168.1.11")


def test_names_outside_the_zones_are_left_out() -> None:
    table = HostsTable.build(parse_hosts(HOSTS).entries, zones=("example.com",))
    assert table.addresses("example.com", 4) == ("192.168.1.10", "192.168.1.11")
    assert table.addresses("localhost", 4) == ()
    assert table.names("192.168.1.10") == ("example.com", "alias.example.com")


@pytest.mark.parametrize(("name", "exists"), [
    ("example.com", True), ("ip6-loopback", True), ("mapped.example.com", True), ("example.org", False),
])
def test_has_is_true_for_a_name_with_an_address_of_either_family(name: str, exists: bool) -> None:
    assert HostsTable.build(parse_hosts(HOSTS).entries).has(name) is exists


def test_canonical_address_rejects_text_that_is_no_address() -> None:
    assert canonical_address("2001:0DB8::0001") == "2001:db8::1"
    with pytest.raises(ValueError):
        canonical_address("example.com")
