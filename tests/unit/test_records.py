"""records.normalize_ip: canonical text of any address, IPv4's common case on a fast path."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dns_server.records import normalize_ip


@pytest.mark.parametrize("text, canonical", [("10.244.1.7", "10.244.1.7"), ("0.0.0.0", "0.0.0.0"),
                                             ("255.255.255.255", "255.255.255.255"), (" 10.0.0.1 ", "10.0.0.1"),
                                             ("fd00:0::1", "fd00::1"), ("FD00::A30", "fd00::a30")])
def test_addresses_come_out_canonical(text: str, canonical: str) -> None:
    assert normalize_ip(text) == canonical


@pytest.mark.parametrize("text", ["010.1.1.1", "256.1.1.1", "1.2.3", "1.2.3.4.5", "a.b.c.d", "", "10.0.0.-1"])
def test_what_is_no_address_is_an_error(text: str) -> None:
    with pytest.raises(ValueError):
        normalize_ip(text)


@given(st.ip_addresses())
def test_the_fast_path_agrees_with_ipaddress(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert normalize_ip(str(address)) == str(address)
    assert normalize_ip(address.exploded) == str(address)
