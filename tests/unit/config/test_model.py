"""The configuration's pure helpers: durations, zones, fallthrough, addresses (table tests)."""

from __future__ import annotations

import pytest

from dns_server.config.model import Fallthrough, parse_duration
from dns_server.errors import ConfigError
from dns_server.protocol.names import in_zone, longest_zone, normalize_zone, zone_text

DURATIONS = [("1h", 3600.0), ("30s", 30.0), ("5m", 300.0), ("250ms", 0.25), ("1h30m", 5400.0), ("1.5s", 1.5),
             ("2m30s", 150.0), ("500us", 0.0005), ("10", 10.0), ("0", 0.0), ("0.5", 0.5)]


@pytest.mark.parametrize("text, seconds", DURATIONS)
def test_durations_read_as_go_reads_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, message", [("", 'time: invalid duration ""'), ("h", 'time: invalid duration "h"'),
                                           ("1x", 'time: unknown unit "x" in duration "1x"'),
                                           ("5 m", 'time: unknown unit " m" in duration "5 m"'),
                                           ("1h-", 'time: unknown unit "h-" in duration "1h-"'), ("s1", 'time: invalid duration "s1"')])
def test_a_bad_duration_is_an_error_in_gos_words(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_duration(text)
    assert str(raised.value) == message


def test_a_negative_duration_reads_as_go_reads_it() -> None:
    assert parse_duration("-1.5s") == -1.5  # callers refuse it where it makes no sense


def test_bare_seconds_only_where_allowed() -> None:
    with pytest.raises(ConfigError):
        parse_duration("10", bare_seconds=False)
    assert parse_duration("0", bare_seconds=False) == 0.0  # Go's ParseDuration takes a bare 0


@pytest.mark.parametrize("text, zone", [("Example.ORG.", "example.org"), (".", ""), ("cluster.local", "cluster.local"),
                                        ("10.in-addr.arpa.", "10.in-addr.arpa")])
def test_zones_are_lower_case_without_the_trailing_dot(text: str, zone: str) -> None:
    assert normalize_zone(text) == zone
    assert zone_text(zone) == (zone + "." if zone else ".")


def test_a_zone_that_is_no_name_is_an_error() -> None:
    with pytest.raises(ConfigError, match="zone is not a valid domain name"):
        normalize_zone("a..b")


@pytest.mark.parametrize("name, zone, inside", [
    ("a.cluster.local", "cluster.local", True), ("cluster.local", "cluster.local", True),
    ("xcluster.local", "cluster.local", False), ("anything", "", True), ("local", "cluster.local", False),
])
def test_in_zone_matches_whole_labels(name: str, zone: str, inside: bool) -> None:
    assert in_zone(name, zone) is inside


def test_the_longest_zone_wins() -> None:
    zones = ("", "cluster.local", "svc.cluster.local", "in-addr.arpa")
    assert longest_zone("a.b.svc.cluster.local", zones) == "svc.cluster.local"
    assert longest_zone("example.com", zones) == ""
    assert longest_zone("example.com", ("cluster.local",)) is None


def test_fallthrough_covers_its_zones_or_everything_or_nothing() -> None:
    assert not Fallthrough().covers("1.0.0.10.in-addr.arpa")
    assert Fallthrough(()).covers("anything.example")
    reverse = Fallthrough(("in-addr.arpa", "ip6.arpa"))
    assert reverse.covers("1.0.0.10.in-addr.arpa") and not reverse.covers("a.cluster.local")
