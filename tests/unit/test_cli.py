"""The flags: a one-block Corefile, read by the same plugin setups, with errors located at the flag."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dns_server.cli import build_parser, config_from_args, load
from dns_server.config.corefile import parse_text
from dns_server.errors import ConfigError
from dns_server.plugins import build_config


def from_flags(*flags: str, tmp_path: Path) -> object:
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("nameserver 192.0.2.7\n")
    return config_from_args(build_parser().parse_args(["--resolv-conf", str(resolv_conf), *flags]))


def test_flags_build_the_block_their_corefile_builds(tmp_path: Path) -> None:
    """Flags and the Corefile they stand for give one and the same server block (but its location)."""
    flags = from_flags("--fixtures", "zones", "--listen", "127.0.0.1:5353", "--cluster-domain", "k8s.test", "--ttl", "30",
                       "--pods", "verified", "--namespaces", "a,b", "--upstream", "192.0.2.1", "--upstream",
                       "[2001:db8::1]:5300", "--prefetch", "--serve-stale", "1h", "--health", ":8080",
                       "--lameduck", "5", "--metrics", ":9153", "--log-queries", tmp_path=tmp_path)
    corefile = parse_text(
        ".:5353 {\n bind 127.0.0.1\n"
        " kubernetes k8s.test in-addr.arpa ip6.arpa {\n  fixtures zones\n  namespaces a b\n  pods verified\n"
        "  ttl 30\n  fallthrough in-addr.arpa ip6.arpa\n  startup_timeout 0s\n  dns_service kube-system/kube-dns\n }\n"
        " forward . 192.0.2.1 [2001:db8::1]:5300 {\n  policy random\n  max_concurrent 1000\n }\n"
        " cache {\n  success 9984\n  denial 9984\n  prefetch 2\n  serve_stale 1h verify\n }\n"
        " errors\n log\n health :8080 {\n  lameduck 5s\n }\n prometheus :9153\n}\n")
    expected = build_config(corefile, source="Corefile").blocks[0]
    block = flags.blocks[0]
    assert block.keys == expected.keys
    assert [name for name, _ in block.plugins] == [name for name, _ in expected.plugins]
    for name, settings in expected.plugins:
        if name == "forward":
            settings = tuple(dataclasses.replace(forward, location="--upstream") for forward in settings)
        assert block.setting(name) == settings, name


def test_upstreams_default_to_resolv_conf(tmp_path: Path) -> None:
    block = from_flags("--fixtures", "zones", "--listen", "127.0.0.1:5353", tmp_path=tmp_path).blocks[0]
    assert [str(upstream) for upstream in block.setting("forward")[0].to] == ["192.0.2.7:53"]
    assert block.setting("cache") is not None


def test_an_upstream_that_is_our_own_address_is_dropped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    block = from_flags("--fixtures", "zones", "--listen", "127.0.0.1:5353", "--upstream", "127.0.0.1:5353",
                       tmp_path=tmp_path).blocks[0]
    assert block.setting("forward") is None and block.setting("cache") is None
    assert "not forwarding to 127.0.0.1:5353: it is one of our own listen addresses" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--ttl", "99999"], "plugin/kubernetes: --ttl - Error during parsing: ttl must be in range [0, 3600]: 99999"),
    (["--dns-service", "kube-dns"], "--dns-service - Error during parsing: dns_service must be NAMESPACE/NAME"),
    (["--cluster-domain", "a..b"], "--cluster-domain - zone is not a valid domain name: a..b"),
    (["--cluster-domain", "."], "--cluster-domain cannot be the root zone"),
    (["--upstream", "not-an-address"], "plugin/forward: --upstream - Error during parsing"),
    (["--health", "nope"], "plugin/health: --health - Error during parsing: address nope: missing port in address"),
    (["--serve-stale=-1s"], "plugin/cache: --serve-stale - Error during parsing: invalid negative duration"),
    (["--listen", "nonsense:53"], "--listen 'nonsense:53': 'nonsense' is not an IP address"),
    (["--listen", "127.0.0.1:99999"], "'99999' is not a port number"),
    (["--cache-size", "-1"], "--cache-size cannot be negative"),
])
def test_a_bad_flag_is_refused_by_the_setup_that_reads_it(flags: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        from_flags("--fixtures", "zones", *flags, tmp_path=tmp_path)
    assert message in str(raised.value)


@pytest.mark.parametrize("text, expected", [("10.0.0.1", ("10.0.0.1", 53)), ("10.0.0.1:5353", ("10.0.0.1", 5353)),
                                            ("[::1]:53", ("::1", 53)), ("[fd00::1]", ("fd00::1", 53)),
                                            ("::1", ("::1", 53))])
def test_listen_takes_an_address_and_a_port(text: str, expected: tuple[str, int], tmp_path: Path) -> None:
    block = from_flags("--fixtures", "zones", "--listen", text, "--upstream", "192.0.2.1", tmp_path=tmp_path).blocks[0]
    assert (block.bind, block.keys[0].port) == ((expected[0],), expected[1])


def test_explain_http_takes_a_port_with_flags_or_a_corefile(tmp_path: Path) -> None:
    corefile = Path(__file__).resolve().parents[2] / "Corefile.local"
    parser = build_parser()
    for flags in (["-conf", str(corefile)], ["--fixtures", "zones", "--upstream", "192.0.2.1"]):
        assert load(parser.parse_args([*flags, "--explain-http", "8089"]), set()).explain_port == 8089
        assert load(parser.parse_args(flags), set()).explain_port == 0
        with pytest.raises(ConfigError, match="--explain-http 70000: not a port number"):
            load(parser.parse_args([*flags, "--explain-http", "70000"]), set())
