"""interfaces.py: the addresses `bind IFACE` resolves to, read from this machine's kernel (rtnetlink)."""

from __future__ import annotations

import ipaddress
import socket

from dns_server.plugins.bind import interface_addresses


def test_loopback_has_its_ipv4_address_and_only_loopback_addresses() -> None:
    addresses = interface_addresses("lo")
    assert "127.0.0.1" in addresses
    assert all(ipaddress.ip_address(address).is_loopback for address in addresses)


def test_every_interface_lists_addresses_without_ipv6_link_local_ones() -> None:
    for _, name in socket.if_nameindex():
        for text in interface_addresses(name):
            address = ipaddress.ip_address(text)
            assert str(address) == text
            assert not (address.version == 6 and address.is_link_local)


def test_an_unknown_interface_has_no_addresses() -> None:
    assert interface_addresses("no-such-if0") == ()
