"""Corefile directives into the Config (config.build and the plugins' setups), with CoreDNS 1.14's defaults and
error texts.

Most tests build the syntax by hand (`d()` and `server()` lay the directives out one a line, as a
Corefile would, so locations are predictable); the last ones go from Corefile text and files:
the real-world Corefiles in tests/data/corefiles, Corefile.example and Corefile.local.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dns_server.config.corefile import parse_corefile, parse_text
from dns_server.config.model import (
    FALLTHROUGH_ALL,
    PLUGIN_ORDER,
    Fallthrough,
    ServerBlock,
    ZoneKey,
    parse_duration,
)
from dns_server.config.setup import split_host_port
from dns_server.config.syntax import CorefileSyntax, Directive, ServerBlockSyntax, Token
from dns_server.errors import ConfigError
from dns_server.plugins import PLUGINS, build_config, load_config, plugins_text
from dns_server.plugins.bufsize import bufsize_of
from dns_server.plugins.cache import CacheSettings
from dns_server.plugins.errors import ConsolidateRule, ErrorsSettings
from dns_server.plugins.forward.setup import ForwardSettings, Policy, Upstream
from dns_server.plugins.health import HealthSettings
from dns_server.plugins.hosts import HostsSettings
from dns_server.plugins.kubernetes.setup import KubernetesSettings, PodMode
from dns_server.plugins.log import COMBINED_LOG_FORMAT, DEFAULT_LOG_FORMAT, LogRule
from dns_server.plugins.reload import ReloadSettings
from tests.certificates import make_certificates
from tests.doubles import server_block

FILE = "Corefile"
REPO = Path(__file__).resolve().parents[3]
COREFILES = REPO / "tests" / "data" / "corefiles"
RESOLV_CONF = {
    Path("/etc/resolv.conf"): "# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver fd00::53%eth0\n"
                              "options ndots:5\n",
    Path("/etc/empty.conf"): "search example.com\n",
    Path("/etc/sixteen.conf"): "".join(f"nameserver 10.0.1.{i}\n" for i in range(16)),
    Path("/etc/bad.conf"): "nameserver dns.example.com\n",
}
INTERFACES = {"eth0": ("192.0.2.2", "fd00::2"), "lo": ("127.0.0.1", "::1")}


def read_resolv_conf(path: Path) -> str:
    try:
        return RESOLV_CONF[path]
    except KeyError:
        raise FileNotFoundError(path) from None


def d(line: str, *block: Directive, opens: bool = False) -> Directive:
    """One Corefile line `name args...`, with a `{ }` block when it has lines or `opens` is set."""
    words = line.split(" ")
    return Directive(Token(words[0], FILE, 0, False), tuple(Token(w, FILE, 0, False) for w in words[1:]),
                     tuple(block) if block or opens else None)


def _numbered(directive: Directive, line: int) -> tuple[Directive, int]:
    """Give the directive the line numbers it would have in a file: one line each, `}` on its own."""
    def at(token: Token) -> Token:
        return Token(token.text, token.file, line, token.quoted)

    if directive.block is None:
        return Directive(at(directive.name), tuple(map(at, directive.args)), None), line + 1
    inner, following = [], line + 1
    for child in directive.block:
        numbered, following = _numbered(child, following)
        inner.append(numbered)
    return Directive(at(directive.name), tuple(map(at, directive.args)), tuple(inner)), following + 1


def server(keys: str, *directives: Directive) -> list[Directive | str]:
    return [keys, *directives]


def corefile(*servers: list[Directive | str]) -> CorefileSyntax:
    blocks, line = [], 1
    for keys, *directives in servers:
        assert isinstance(keys, str)
        first, numbered = line, []
        line += 1
        for directive in directives:
            assert isinstance(directive, Directive)
            placed, line = _numbered(directive, line)
            numbered.append(placed)
        line += 1
        blocks.append(ServerBlockSyntax(tuple(Token(k, FILE, first, False) for k in keys.split()), tuple(numbered),
                                        f"{FILE}:{first}"))
    return CorefileSyntax(tuple(blocks), (Path(FILE),), "ab" * 64)


def build(*servers: list[Directive | str], dns_port: int = 53) -> tuple[ServerBlock, ...]:
    return build_config(corefile(*servers), dns_port=dns_port, resolv_conf=read_resolv_conf,
                        interface_addresses=lambda name: INTERFACES.get(name, ())).blocks


def block_of(*directives: Directive, keys: str = ".") -> ServerBlock:
    (block,) = build(server(keys, *directives))
    return block


def error_of(*servers: list[Directive | str]) -> str:
    with pytest.raises(ConfigError) as raised:
        build(*servers)
    return str(raised.value)


def in_root(directive: Directive) -> list[Directive | str]:
    return server(".", directive)


# --- plugin order and the plugin list ---

def test_plugin_order_is_coredns_plugin_cfg() -> None:
    assert len(PLUGIN_ORDER) == 61 == len(set(PLUGIN_ORDER))  # CoreDNS's 60, and our trust_client_subnet
    assert PLUGIN_ORDER[:3] == ("root", "metadata", "geoip") and PLUGIN_ORDER[-3:] == ("sign", "view", "nomad")
    kubeadm_chain = ["prometheus", "errors", "loadbalance", "cache", "hosts", "kubernetes", "loop", "forward"]
    assert sorted(kubeadm_chain, key=PLUGIN_ORDER.index) == kubeadm_chain


def test_our_plugins_are_listed_in_plugin_order_each_once() -> None:
    names = [spec.name for spec in PLUGINS]
    assert names == sorted(names, key=PLUGIN_ORDER.index) and len(set(names)) == len(names)


def test_plugins_text_lists_the_supported_plugins_sorted_one_a_line() -> None:
    assert plugins_text() == ("autopath\nbind\nbufsize\ncache\nchaos\nerrors\nforward\nhealth\nhosts\nk8s_external\n"
                              "kubernetes\nloadbalance\nlog\nloop\nmultisocket\nnsid\nprometheus\nready\nreload\nrewrite\n"
                              "template\ntrust_client_subnet\nwhoami\n")


# --- directive names ---

@pytest.mark.parametrize(("directive", "message"), [
    (d("proxy . 8.8.8.8"), "Corefile:2 - Error during parsing: Unknown directive 'proxy'"),
    (d("Cache"), "Corefile:2 - Error during parsing: Unknown directive 'Cache'"),
    (d("dnstap /tmp/dnstap.sock"), "Corefile:2 - Error during parsing: plugin 'dnstap' is not supported by this "
                                   "server"),
    (d("route53 example.org.:Z1234"), "Corefile:2 - Error during parsing: plugin 'route53' is not supported by "
                                       "this server"),
    (d("acl"), "Corefile:2 - Error during parsing: plugin 'acl' is not supported by this server"),
])
def test_unknown_and_unsupported_directives_stop_the_start(directive: Directive, message: str) -> None:
    assert error_of(server(".", d("errors"), directive)).replace("Corefile:3", "Corefile:2") == message


def test_the_first_bad_name_in_the_file_is_the_one_reported() -> None:
    message = error_of(server(".", d("cache", d("bogus"))), server("example.org", d("acl")))
    assert message == "Corefile:7 - Error during parsing: plugin 'acl' is not supported by this server"


# --- server keys ---

@pytest.mark.parametrize(("keys", "dns_port", "expected"), [
    (".", 53, (ZoneKey("", 53),)),
    (".:1053", 53, (ZoneKey("", 1053),)),
    (".", 5353, (ZoneKey("", 5353),)),
    (".:53", 5353, (ZoneKey("", 53),)),
    ("dns://Cluster.Local.:53 example.org:5353", 53, (ZoneKey("cluster.local", 53), ZoneKey("example.org", 5353))),
])
def test_keys_give_zones_and_ports_and_dns_port_fills_in(keys: str, dns_port: int,
                                                         expected: tuple[ZoneKey, ...]) -> None:
    (block,) = build(server(keys), dns_port=dns_port)
    assert block.keys == expected
    assert block.location == "Corefile:1"


def test_a_scheme_other_than_dns_is_refused() -> None:
    assert error_of(server("tls://.:853")) == ("Corefile:1 - Error during parsing: 'tls://.:853': tls:// servers are "
                                               "not supported by this server (only dns://)")


@pytest.mark.parametrize(("servers", "message"), [
    ([server(".", d("errors")), server(".:53")], "Corefile:4 - cannot serve dns://.:53 - it is already defined"),
    ([server(". .:53")], "Corefile:1 - cannot serve dns://.:53 - it is already defined"),
    ([server("example.org:53"), server("Example.ORG.")],
     "Corefile:3 - cannot serve dns://example.org.:53 - it is already defined"),
    ([server(".:1054", d("bind 127.0.0.1")), server(".:1054", d("bind 127.0.0.1"))],
     "Corefile:4 - cannot serve dns://.:1054 on 127.0.0.1 - it is already defined"),
    ([server(".:1054"), server(".:1054", d("bind 127.0.0.1"))],
     "Corefile:3 - cannot serve dns://.:1054 on 127.0.0.1 - zone overlap listener capacity with dns://.:1054"),
    ([server(".:1054", d("bind 127.0.0.1")), server(".:1054")],
     "Corefile:4 - cannot serve dns://.:1054 - zone overlap listener capacity with dns://.:1054 on 127.0.0.1"),
])
def test_one_zone_on_one_port_twice_is_refused(servers: list[list[Directive | str]], message: str) -> None:
    assert error_of(*servers) == message


@pytest.mark.parametrize("servers", [
    [server(".:1054", d("bind 127.0.0.1")), server(".:1054", d("bind 127.0.0.2"))],
    [server("."), server(".:1053")],
    [server("."), server("example.org")],
    [server(".:53", d("bind lo")), server(".:53", d("bind eth0"))],
])
def test_the_same_zone_is_allowed_on_other_ports_and_other_bound_addresses(
        servers: list[list[Directive | str]]) -> None:
    assert len(build(*servers)) == 2


def test_the_config_carries_the_syntax_files_hash_and_source() -> None:
    config = build_config(corefile(server(".")), source="/etc/coredns/Corefile")
    assert (config.files, config.corefile_hash, config.source) == ((Path(FILE),), "ab" * 64, "/etc/coredns/Corefile")


def test_a_block_without_plugins_has_none() -> None:
    assert block_of() == server_block(keys=(ZoneKey(""),), location="Corefile:1")


# --- parse_duration and split_host_port (Go's time.ParseDuration and net.SplitHostPort) ---

@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("-0", 0.0), ("5s", 5.0), ("1h30m", 5400.0), ("250ms", 0.25), (".5s", 0.5), ("1.5m", 90.0),
    ("-5s", -5.0), ("+2m", 120.0), ("5.s", 5.0), ("1.5h2.5m", 5550.0), ("10us", 1e-5), ("10µs", 1e-5), ("10μs", 1e-5), ("3ns", 3e-9),
])
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, bare_seconds=False) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "message"), [
    ("5", 'time: missing unit in duration "5"'), ("00", 'time: missing unit in duration "00"'),
    ("5x", 'time: unknown unit "x" in duration "5x"'), ("", 'time: invalid duration ""'),
    ("abc", 'time: invalid duration "abc"'), ("5s5x", 'time: unknown unit "x" in duration "5s5x"'),
    (".s", 'time: invalid duration ".s"'), ("5s.", 'time: invalid duration "5s."'), ("1h5", 'time: missing unit in duration "1h5"'), ("-", 'time: invalid duration "-"'), ("s", 'time: invalid duration "s"'),
])
def test_bad_go_durations(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}$"):
        parse_duration(text, bare_seconds=False)


@pytest.mark.parametrize(("text", "split"), [
    (":8080", ("", "8080")), ("127.0.0.1:9153", ("127.0.0.1", "9153")), ("[::1]:53", ("::1", "53")),
    ("localhost:9153", ("localhost", "9153")),
    ("8080", (None, "address 8080: missing port in address")),
    ("::1", (None, "address ::1: too many colons in address")),
    ("[::1", (None, "address [::1: missing ']' in address")),
    ("[::1]", (None, "address [::1]: missing port in address")),
])
def test_split_host_port(text: str, split: tuple[str | None, str]) -> None:
    assert split_host_port(text) == split


# --- reload ---

@pytest.mark.parametrize(("directive", "expected"), [
    (d("reload"), ReloadSettings(30.0, 15.0)),
    (d("reload 10s"), ReloadSettings(10.0, 5.0)),  # the jitter is at most half the interval
    (d("reload 2m 20s"), ReloadSettings(120.0, 20.0)),
    (d("reload 2s 1s"), ReloadSettings(2.0, 1.0)),
])
def test_reload(directive: Directive, expected: ReloadSettings) -> None:
    assert block_of(directive).setting("reload") == expected


# --- bufsize, bind ---

@pytest.mark.parametrize(("directive", "expected"), [
    (d("bufsize"), 1232), (d("bufsize 512"), 512), (d("bufsize 4096"), 4096), (d("bufsize 1400"), 1400),
])
def test_bufsize(directive: Directive, expected: int) -> None:
    assert bufsize_of(block_of(directive)) == expected


def test_bufsize_defaults_without_the_directive() -> None:
    assert bufsize_of(block_of()) == 1232


@pytest.mark.parametrize(("directives", "expected"), [
    ([d("bind 127.0.0.1")], ("127.0.0.1",)),
    ([d("bind 127.0.0.1 ::1")], ("127.0.0.1", "::1")),
    ([d("bind 127.0.0.1"), d("bind 0:0::1")], ("127.0.0.1", "::1")),
    ([d("bind eth0")], ("192.0.2.2", "fd00::2")),
    ([d("bind eth0 lo", d("except fd00::2 127.0.0.1"))], ("192.0.2.2", "::1")),
])
def test_bind(directives: list[Directive], expected: tuple[str, ...]) -> None:
    assert block_of(*directives).bind == expected


# --- ready, health, prometheus ---

@pytest.mark.parametrize(("directive", "expected"), [
    (d("ready"), ("", 8181)), (d("ready :8282"), ("", 8282)), (d("ready 127.0.0.1:8181"), ("127.0.0.1", 8181)),
    (d("ready [::1]:8181"), ("::1", 8181)), (d("ready", d("monitor until-ready")), ("", 8181)),
])
def test_ready(directive: Directive, expected: tuple[str, int]) -> None:
    assert block_of(directive).setting("ready") == expected


@pytest.mark.parametrize(("directive", "expected"), [
    (d("health"), HealthSettings(("", 8080), 0.0)),
    (d("health :8081"), HealthSettings(("", 8081), 0.0)),
    (d("health", d("lameduck 5s")), HealthSettings(("", 8080), 5.0)),
    (d("health 169.254.20.10:8080", d("lameduck 1m")), HealthSettings(("169.254.20.10", 8080), 60.0)),
    (d("health", opens=True), HealthSettings(("", 8080), 0.0)),
])
def test_health(directive: Directive, expected: HealthSettings) -> None:
    assert block_of(directive).setting("health") == expected


@pytest.mark.parametrize(("directive", "expected"), [
    (d("prometheus"), ("localhost", 9153)), (d("prometheus :9153"), ("", 9153)),
    (d("prometheus 0.0.0.0:9253"), ("0.0.0.0", 9253)),
])
def test_prometheus(directive: Directive, expected: tuple[str, int]) -> None:
    assert block_of(directive).setting("prometheus") == expected


def test_plugins_absent_are_off() -> None:
    block = block_of(d("errors"))
    assert (block.setting("ready"), block.setting("health"), block.setting("prometheus"), block.setting("reload"), block.setting("cache"), block.setting("kubernetes")) == (None,) * 6
    assert (block.setting("loop"), block.setting("loadbalance"), block.setting("log"), block.setting("forward"), block.bind) == (None,) * 4 + ((),)


# --- errors, log ---

@pytest.mark.parametrize(("directive", "expected"), [
    (d("errors"), ErrorsSettings()),
    (d("errors stdout"), ErrorsSettings()),
    (d("errors", d("stacktrace")), ErrorsSettings(stacktrace=True)),
    (d("errors", d("consolidate 5m .*_timeout$")), ErrorsSettings((ConsolidateRule(300.0, ".*_timeout$"),))),
    (d("errors", d("consolidate 30s ^read warning show_first"), d("consolidate 1m x info")),
     ErrorsSettings((ConsolidateRule(30.0, "^read", "warning", True), ConsolidateRule(60.0, "x", "info")))),
    (d("errors", d("consolidate 30s x show_first")), ErrorsSettings((ConsolidateRule(30.0, "x", "error", True),))),
])
def test_errors(directive: Directive, expected: ErrorsSettings) -> None:
    assert block_of(directive).setting("errors") == expected


@pytest.mark.parametrize(("directives", "expected"), [
    ([d("log")], (LogRule(),)),
    ([d("log example.org")], (LogRule(("example.org",)),)),
    ([d("log {common}")], (LogRule(("{common}",)),)),  # one argument is always a name (plugin/log)
    ([d("log . example.org.")], (LogRule(("", "example.org")),)),
    ([d("log . {proto}_{name}")], (LogRule(("",), "{proto}_{name}"),)),
    ([d("log . {common}")], (LogRule(("",), DEFAULT_LOG_FORMAT),)),
    ([d("log . {combined}")], (LogRule(("",), COMBINED_LOG_FORMAT),)),
    ([d("log", d("class denial error"))], (LogRule(classes=frozenset({"denial", "error"})),)),
    ([d("log", d("class success"), d("class all"))], (LogRule(classes=frozenset({"success", "all"})),)),
    ([d("log a.org"), d("log b.org", d("class error"))],
     (LogRule(("a.org",)), LogRule(("b.org",), classes=frozenset({"error"})))),
])
def test_log(directives: list[Directive], expected: tuple[LogRule, ...]) -> None:
    assert block_of(*directives).setting("log") == expected


def test_combined_is_common_with_the_opcode() -> None:
    assert COMBINED_LOG_FORMAT == DEFAULT_LOG_FORMAT + ' "{>opcode}"'


# --- loadbalance, loop ---

@pytest.mark.parametrize("directives", [[d("loadbalance")], [d("loadbalance round_robin")],
                                        [d("loadbalance"), d("loadbalance round_robin")]])
def test_loadbalance(directives: list[Directive]) -> None:
    assert block_of(*directives).setting("loadbalance") is True


def test_loop() -> None:
    assert block_of(d("loop")).setting("loop") is True


# --- cache ---

@pytest.mark.parametrize(("directive", "expected"), [
    (d("cache"), CacheSettings()),
    (d("cache 30"), CacheSettings(success_ttl=30, denial_ttl=30)),
    (d("cache +30"), CacheSettings(success_ttl=30, denial_ttl=30)),
    (d("cache example.org Example.NET."), CacheSettings(zones=("example.org", "example.net"))),
    (d("cache 300 example.org"), CacheSettings(zones=("example.org",), success_ttl=300, denial_ttl=300)),
    (d("cache", d("success 5000")), CacheSettings(success_capacity=4864)),  # whole shards of 256
    (d("cache", d("success 10")), CacheSettings(success_capacity=1024)),  # never under 1024
    (d("cache", d("success -5")), CacheSettings(success_capacity=1024)),
    (d("cache", d("success 20000 1800 30")), CacheSettings(success_capacity=19968, success_ttl=1800,
                                                           success_min_ttl=30)),
    (d("cache 25", d("denial 2560 15 0")), CacheSettings(success_ttl=25, denial_capacity=2560, denial_ttl=15,
                                                         denial_min_ttl=0)),
    (d("cache", d("prefetch 10")), CacheSettings(prefetch_amount=10)),
    (d("cache", d("prefetch 0 2m")), CacheSettings(prefetch_amount=0, prefetch_duration=120.0)),
    (d("cache", d("prefetch 5 30s 50%")), CacheSettings(prefetch_amount=5, prefetch_duration=30.0,
                                                        prefetch_percentage=50)),
    (d("cache", d("serve_stale")), CacheSettings(serve_stale=3600.0)),
    (d("cache", d("serve_stale 10m")), CacheSettings(serve_stale=600.0)),
    (d("cache", d("serve_stale 1h VERIFY")), CacheSettings(serve_stale=3600.0, serve_stale_verify=True)),
    (d("cache", d("serve_stale 1h immediate")), CacheSettings(serve_stale=3600.0)),
    (d("cache", d("servfail 0")), CacheSettings(servfail_ttl=0.0)),
    (d("cache", d("servfail 5m")), CacheSettings(servfail_ttl=300.0)),
    (d("cache 30", d("disable success cluster.local"), d("disable denial Cluster.Local. example.org")),
     CacheSettings(success_ttl=30, denial_ttl=30, disable_success=("cluster.local",),
                   disable_denial=("cluster.local", "example.org"))),
    (d("cache", d("disable denial")), CacheSettings(disable_denial=())),
    (d("cache", d("keepttl")), CacheSettings(keepttl=True)),
    (d("cache", opens=True), CacheSettings()),
])
def test_cache(directive: Directive, expected: CacheSettings) -> None:
    assert block_of(directive).setting("cache") == expected


# --- hosts ---

@pytest.mark.parametrize(("directive", "expected"), [
    (d("hosts"), HostsSettings()),
    (d("hosts /etc/coredns/NodeHosts"), HostsSettings(path=Path("/etc/coredns/NodeHosts"))),
    (d("hosts example.hosts example.org 10.0.0.0/24"),
     HostsSettings(path=Path("example.hosts"), zones=("example.org", "0.0.10.in-addr.arpa"))),
    (d("hosts", d("fallthrough")), HostsSettings(fallthrough=FALLTHROUGH_ALL)),
    (d("hosts", d("fallthrough in-addr.arpa ip6.arpa")),
     HostsSettings(fallthrough=Fallthrough(("in-addr.arpa", "ip6.arpa")))),
    (d("hosts", d("10.0.0.1 Example.ORG. www.example.org"), d("::1 six"), d("fallthrough")),
     HostsSettings(inline=(("10.0.0.1", ("example.org", "www.example.org")), ("::1", ("six",))),
                   fallthrough=FALLTHROUGH_ALL)),
    (d("hosts", d("ttl 60"), d("reload 0"), d("no_reverse")), HostsSettings(ttl=60, reload=0.0, no_reverse=True)),
    (d("hosts", d("reload 1m"), d("ttl 65535")), HostsSettings(reload=60.0, ttl=65535)),
])
def test_hosts(directive: Directive, expected: HostsSettings) -> None:
    assert block_of(directive).setting("hosts") == expected


# --- kubernetes ---

def k8s(*options: Directive, args: str = "") -> KubernetesSettings | None:
    return block_of(d(f"kubernetes {args}".strip(), *options), keys="cluster.local in-addr.arpa").setting("kubernetes")


def test_kubernetes_zones_default_to_the_blocks() -> None:
    assert k8s() == KubernetesSettings(zones=("cluster.local", "in-addr.arpa"))


@pytest.mark.parametrize(("options", "args", "expected"), [
    ((), "Cluster.Local. in-addr.arpa ip6.arpa", KubernetesSettings(zones=("cluster.local", "in-addr.arpa",
                                                                            "ip6.arpa"))),
    ((), "cluster.local 10.0.0.0/24", KubernetesSettings(zones=("cluster.local", "0.0.10.in-addr.arpa"))),
    ((d("endpoint https://10.0.0.1:6443"),), "", KubernetesSettings(zones=(), endpoint="https://10.0.0.1:6443")),
    ((d("endpoint https://a:6443 https://b:6443"),), "", KubernetesSettings(zones=(), endpoint="https://a:6443")),
    ((d("endpoint https://a"), d("tls cert.pem key.pem ca.pem")), "",
     KubernetesSettings(zones=(), endpoint="https://a", tls=("cert.pem", "key.pem", "ca.pem"))),
    ((d("kubeconfig /etc/kube.conf"),), "", KubernetesSettings(zones=(), kubeconfig=Path("/etc/kube.conf"))),
    ((d("kubeconfig /etc/kube.conf prod"),), "",
     KubernetesSettings(zones=(), kubeconfig=Path("/etc/kube.conf"), context="prod")),
    ((d("namespaces shop data shop"),), "", KubernetesSettings(zones=(), namespaces=("shop", "data"))),
    ((d("labels app=web,tier in (a, b)"),), "", KubernetesSettings(zones=(), labels="app=web,tier in (a, b)")),
    ((d("labels app=="),), "", KubernetesSettings(zones=(), labels="app==")),  # an empty value is a value
    ((d("labels !canary,env!=prod"),), "", KubernetesSettings(zones=(), labels="!canary,env!=prod")),
    ((d("namespace_labels team==dns"),), "", KubernetesSettings(zones=(), namespace_labels="team==dns")),
    ((d("pods insecure"),), "", KubernetesSettings(zones=(), pods=PodMode.INSECURE)),
    ((d("pods verified"),), "", KubernetesSettings(zones=(), pods=PodMode.VERIFIED)),
    ((d("pods disabled"),), "", KubernetesSettings(zones=(), pods=PodMode.DISABLED)),
    ((d("endpoint_pod_names"), d("noendpoints")), "",
     KubernetesSettings(zones=(), endpoint_pod_names=True, noendpoints=True)),
    ((d("ttl 0"),), "", KubernetesSettings(zones=(), ttl=0)),
    ((d("ttl 3600"),), "", KubernetesSettings(zones=(), ttl=3600)),
    ((d("fallthrough"),), "", KubernetesSettings(zones=(), fallthrough=FALLTHROUGH_ALL)),
    ((d("fallthrough in-addr.arpa ip6.arpa"),), "",
     KubernetesSettings(zones=(), fallthrough=Fallthrough(("in-addr.arpa", "ip6.arpa")))),
    ((d("ignore empty_service"),), "", KubernetesSettings(zones=(), ignore_empty_service=True)),
    ((d("startup_timeout 30s"),), "", KubernetesSettings(zones=(), startup_timeout=30.0)),
    ((d("fixtures zones"),), "", KubernetesSettings(zones=(), fixtures=Path("zones"))),
    ((d("fixtures /srv/manifests"),), "", KubernetesSettings(zones=(), fixtures=Path("/srv/manifests"))),
])
def test_kubernetes_options(options: tuple[Directive, ...], args: str, expected: KubernetesSettings) -> None:
    settings = k8s(*options, args=args)
    if not expected.zones:
        expected = KubernetesSettings(**{**{f: getattr(expected, f) for f in expected.__dataclass_fields__},
                                         "zones": ("cluster.local", "in-addr.arpa")})
    assert settings == expected


def test_fixtures_are_relative_to_the_corefile() -> None:
    syntax = corefile(server("cluster.local", d("kubernetes", d("fixtures zones"))))
    settings = build_config(syntax, source="/srv/dns/Corefile").blocks[0].setting("kubernetes")
    assert settings is not None and settings.fixtures == Path("/srv/dns/zones")


# --- forward ---

def fwd(line: str, *options: Directive) -> tuple[ForwardSettings, ...]:
    return block_of(d(line, *options)).setting("forward")


@pytest.mark.parametrize(("line", "from_zone", "to"), [
    ("forward . 8.8.8.8", "", (Upstream("8.8.8.8"),)),
    ("forward . 8.8.8.8:5353 [2001:db8::1]:53 ::1 dns://1.1.1.1 dns://9.9.9.9:9953", "",
     (Upstream("8.8.8.8", 5353), Upstream("2001:db8::1"), Upstream("::1"), Upstream("1.1.1.1"),
      Upstream("9.9.9.9", 9953))),
    ("forward Example.ORG. 10.0.0.1", "example.org", (Upstream("10.0.0.1"),)),
    ("forward . [2001:db8::2] dns://[::1]", "", (Upstream("2001:db8::2"), Upstream("::1"))),  # brackets, no port
    ("forward . /etc/resolv.conf", "", (Upstream("10.0.0.2"), Upstream("fd00::53"))),
    ("forward . /etc/empty.conf 10.9.9.9", "", (Upstream("10.9.9.9"),)),
    ("forward 10.0.0.0/24 10.0.0.1", "0.0.10.in-addr.arpa", (Upstream("10.0.0.1"),)),
])
def test_forward_from_and_to(line: str, from_zone: str, to: tuple[Upstream, ...]) -> None:
    assert fwd(line) == (ForwardSettings(from_zone, to, location="Corefile:2"),)


@pytest.mark.parametrize(("options", "expected"), [
    ((d("except example.org Internal.Example.COM."),), {"except_zones": ("example.org", "internal.example.com")}),
    ((d("force_tcp"),), {"force_tcp": True}),
    ((d("prefer_udp"),), {"prefer_udp": True}),
    ((d("max_fails 0"),), {"max_fails": 0}),
    ((d("max_fails 5"),), {"max_fails": 5}),
    ((d("expire 20s"),), {"expire": 20.0}),
    ((d("policy round_robin"),), {"policy": Policy.ROUND_ROBIN}),
    ((d("policy sequential"),), {"policy": Policy.SEQUENTIAL}),
    ((d("policy random"),), {"policy": Policy.RANDOM}),
    ((d("health_check 5s"),), {"health_check": 5.0}),
    ((d("health_check 1s no_rec"),), {"health_check": 1.0, "health_check_rd": False}),
    ((d("health_check 1s domain Example.ORG. no_rec"),),
     {"health_check": 1.0, "health_check_domain": "example.org", "health_check_rd": False}),
    ((d("max_concurrent 1000"),), {"max_concurrent": 1000}),
    ((d("next NXDOMAIN servfail"),), {"next_rcodes": frozenset({3, 2})}),
    ((d("failfast_all_unhealthy_upstreams"),), {"failfast_all_unhealthy": True}),
])
def test_forward_options(options: tuple[Directive, ...], expected: dict[str, object]) -> None:
    assert fwd("forward . 10.0.0.1", *options) == (
        ForwardSettings("", (Upstream("10.0.0.1"),), location="Corefile:2", **expected),)  # type: ignore[arg-type]


def test_several_forwards_keep_corefile_order() -> None:
    block = block_of(d("forward example.org 10.0.0.1"), d("forward . 10.0.0.2", d("policy sequential")))
    assert [(f.from_zone, f.to, f.policy, f.location) for f in block.setting("forward")] == [
        ("example.org", (Upstream("10.0.0.1"),), Policy.RANDOM, "Corefile:2"),
        ("", (Upstream("10.0.0.2"),), Policy.SEQUENTIAL, "Corefile:3")]


def test_a_cidr_from_uses_its_first_zone_with_coredns_warning(caplog: pytest.LogCaptureFixture) -> None:
    (forward,) = fwd("forward 10.0.0.0/23 10.0.0.1")
    assert forward.from_zone == "0.0.10.in-addr.arpa"
    assert "Unsupported CIDR notation: '10.0.0.0/23' expands to multiple zones. Using only " \
           "'0.0.10.in-addr.arpa.'." in caplog.text


def test_fifteen_upstreams_are_the_most() -> None:
    assert len(fwd("forward . " + " ".join(f"10.0.0.{i}" for i in range(15)))[0].to) == 15


# --- every error, with its text and location ---

ERRORS: list[tuple[Directive, str]] = [
    # reload
    (d("reload 1s"), "plugin/reload: Corefile:2 - Error during parsing: interval value must be greater or equal to 2s"),
    (d("reload 10s 500ms"),
     "plugin/reload: Corefile:2 - Error during parsing: jitter value must be greater or equal to 1s"),
    (d("reload 10"), 'plugin/reload: Corefile:2 - Error during parsing: time: missing unit in duration "10"'),
    (d("reload 1m 5s 5s"),
     "plugin/reload: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after '5s'"),
    (d("reload", d("every 5s")), "plugin/reload: Corefile:3 - Error during parsing: unknown property 'every'"),
    # bufsize
    (d("bufsize 511"),
     "plugin/bufsize: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after '511'"),
    (d("bufsize 4097"),
     "plugin/bufsize: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'4097'"),
    (d("bufsize big"),
     "plugin/bufsize: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'big'"),
    (d("bufsize 1232 512"),
     "plugin/bufsize: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after '512'"),
    # bind
    (d("bind"), "plugin/bind: Corefile:2 - Error during parsing: at least one address or interface name is expected"),
    (d("bind wlan9"),
     'plugin/bind: Corefile:2 - Error during parsing: not a valid IP address or interface name: "wlan9"'),
    (d("bind 127.0.0.1", d("except")),
     "plugin/bind: Corefile:3 - Error during parsing: at least one address or interface must be given to except "
     "subdirective"),
    (d("bind 127.0.0.1", d("only ::1")), 'plugin/bind: Corefile:3 - Error during parsing: invalid option "only"'),
    (d("bind lo", d("except lo")), "plugin/bind: Corefile:2 - Error during parsing: no address left to listen on"),
    # ready
    (d("ready 8181"), "plugin/ready: Corefile:2 - Error during parsing: address 8181: missing port in address"),
    (d("ready :x"), "plugin/ready: Corefile:2 - Error during parsing: address :x: invalid port"),
    (d("ready :8181 :8282"),
     "plugin/ready: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after ':8282'"),
    (d("ready", d("monitor continuously")),
     "plugin/ready: Corefile:3 - Error during parsing: monitor type 'continuously' is not supported by this server"),
    (d("ready", d("monitor sometimes")),
     "plugin/ready: Corefile:3 - Error during parsing: monitor type 'sometimes' not supported"),
    (d("ready", d("listen :1")), "plugin/ready: Corefile:3 - Error during parsing: unknown property 'listen'"),
    # health
    (d("health :8080 :8081"),
     "plugin/health: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after ':8081'"),
    (d("health localhost"),
     "plugin/health: Corefile:2 - Error during parsing: address localhost: missing port in address"),
    (d("health", d("lameduck")),
     "plugin/health: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'lameduck'"),
    (d("health", d("lameduck 5")),
     'plugin/health: Corefile:3 - Error during parsing: unable to parse lameduck duration value: "5": time: missing '
     'unit in duration "5"'),
    (d("health", d("grace 5s")),
     "plugin/health: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'grace'"),
    (d("health", d("lameduck 5s 10s")),
     "plugin/health: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after '10s'"),
    # prometheus
    (d("prometheus 9153"),
     "plugin/prometheus: Corefile:2 - Error during parsing: address 9153: missing port in address"),
    (d("prometheus", d("tls cert.pem key.pem")),
     "plugin/prometheus: Corefile:3 - Error during parsing: option 'tls' is not supported by this server"),
    (d("prometheus", d("path /m")), "plugin/prometheus: Corefile:3 - Error during parsing: unknown option: path"),
    # errors
    (d("errors stderr"), "plugin/errors: Corefile:2 - Error during parsing: invalid log file: stderr"),
    (d("errors stdout x"),
     "plugin/errors: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'x'"),
    (d("errors", d("stacktrace on")),
     "plugin/errors: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'on'"),
    (d("errors", d("verbose")),
     "plugin/errors: Corefile:3 - Syntax error: Unexpected token 'verbose', expecting 'Unknown field verbose'"),
    (d("errors", d("consolidate 5m")),
     "plugin/errors: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after '5m'"),
    (d("errors", d("consolidate 5m x error show_first extra")),
     "plugin/errors: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'extra'"),
    (d("errors", d("consolidate five x")),
     'plugin/errors: Corefile:3 - Error during parsing: time: invalid duration "five"'),
    (d("errors", d("consolidate 5m (x")),
     "plugin/errors: Corefile:3 - Error during parsing: error parsing regexp: missing ), unterminated subpattern at "
     "position 0: `(x`"),
    (d("errors", d("consolidate 5m x error warning")),
     "plugin/errors: Corefile:3 - Error during parsing: multiple log levels specified in consolidate"),
    (d("errors", d("consolidate 5m x show_first error")),
     "plugin/errors: Corefile:3 - Error during parsing: log level must come before show_first in consolidate"),
    (d("errors", d("consolidate 5m x loud")),
     "plugin/errors: Corefile:3 - Error during parsing: unknown option in consolidate: loud"),
    # log
    (d("log", d("class denial bogus")), "plugin/log: Corefile:3 - Error during parsing: invalid Class: bogus"),
    (d("log", d("class")),
     "plugin/log: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'class'"),
    (d("log a..b"), "plugin/log: Corefile:2 - Error during parsing: not a valid domain name: a..b"),
    (d("log", d("format x")),
     "plugin/log: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'format'"),
    # loadbalance
    (d("loadbalance weighted /etc/weights"),
     "plugin/loadbalance: Corefile:2 - Error during parsing: policy 'weighted' is not supported by this server"),
    (d("loadbalance random"), "plugin/loadbalance: Corefile:2 - Error during parsing: unknown policy: random"),
    (d("loadbalance round_robin x"),
     "plugin/loadbalance: Corefile:2 - Error during parsing: unknown property for round_robin"),
    (d("loadbalance", d("prefer 10.0.0.0/8")),
     "plugin/loadbalance: Corefile:3 - Error during parsing: option 'prefer' is not supported by this server"),
    # cache
    (d("cache 0"), "plugin/cache: Corefile:2 - Error during parsing: cache TTL can not be zero or negative: 0"),
    (d("cache -1 example.org"),
     "plugin/cache: Corefile:2 - Error during parsing: cache TTL can not be zero or negative: -1"),
    (d("cache", d("success")),
     "plugin/cache: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'success'"),
    (d("cache", d("success many")),
     'plugin/cache: Corefile:3 - Error during parsing: strconv.Atoi: parsing "many": invalid syntax'),
    (d("cache", d("denial 1024 0")),
     "plugin/cache: Corefile:3 - Error during parsing: cache TTL can not be zero or negative: 0"),
    (d("cache", d("denial 1024 60 -1")),
     "plugin/cache: Corefile:3 - Error during parsing: cache min TTL can not be negative: -1"),
    (d("cache", d("success 1024 60 5 5")),
     "plugin/cache: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after '5'"),
    (d("cache", d("prefetch")),
     "plugin/cache: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'prefetch'"),
    (d("cache", d("prefetch -1")),
     "plugin/cache: Corefile:3 - Error during parsing: prefetch amount should be positive: -1"),
    (d("cache", d("prefetch 1 1m 50")),
     "plugin/cache: Corefile:3 - Error during parsing: last character of percentage should be `%`, but is: '0'"),
    (d("cache", d("prefetch 1 1m 95%")),
     "plugin/cache: Corefile:3 - Error during parsing: percentage should fall in range [10, 90]: 95"),
    (d("cache", d("prefetch 1 1m 9%")),
     "plugin/cache: Corefile:3 - Error during parsing: percentage should fall in range [10, 90]: 9"),
    (d("cache", d("prefetch 1 50%")),
     'plugin/cache: Corefile:3 - Error during parsing: time: unknown unit "%" in duration "50%"'),
    (d("cache", d("serve_stale -1s")),
     "plugin/cache: Corefile:3 - Error during parsing: invalid negative duration for serve_stale"),
    (d("cache", d("serve_stale 1h later")),
     "plugin/cache: Corefile:3 - Error during parsing: invalid value for serve_stale refresh mode: later"),
    (d("cache", d("serve_stale 1h verify 2s")),
     "plugin/cache: Corefile:3 - Error during parsing: a serve_stale verify timeout is not supported by this server"),
    (d("cache", d("servfail")),
     "plugin/cache: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'servfail'"),
    (d("cache", d("servfail -1s")), "plugin/cache: Corefile:3 - Error during parsing: invalid negative ttl for servfail"),
    (d("cache", d("servfail 301s")),
     "plugin/cache: Corefile:3 - Error during parsing: caching SERVFAIL responses over 5 minutes is not permitted"),
    (d("cache", d("disable")),
     "plugin/cache: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'disable'"),
    (d("cache", d("disable errors")),
     'plugin/cache: Corefile:3 - Error during parsing: cache type for disable must be "success" or "denial"'),
    (d("cache", d("keepttl 5")),
     "plugin/cache: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after '5'"),
    (d("cache", d("positive 15")),
     "plugin/cache: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'positive'"),
    (d("cache", d("success 1024", d("x"))),
     "plugin/cache: Corefile:3 - Error during parsing: Unexpected token '{', expecting argument"),
    # hosts
    (d("hosts", d("ttl")), "plugin/hosts: Corefile:3 - Error during parsing: ttl needs a time in second"),
    (d("hosts", d("ttl 1m")), "plugin/hosts: Corefile:3 - Error during parsing: ttl needs a number of second"),
    (d("hosts", d("ttl 0")), "plugin/hosts: Corefile:3 - Error during parsing: ttl provided is invalid"),
    (d("hosts", d("ttl 65536")), "plugin/hosts: Corefile:3 - Error during parsing: ttl provided is invalid"),
    (d("hosts", d("reload")),
     "plugin/hosts: Corefile:3 - Error during parsing: reload needs a duration (zero seconds to disable)"),
    (d("hosts", d("reload soon")),
     "plugin/hosts: Corefile:3 - Error during parsing: invalid duration for reload 'soon'"),
    (d("hosts", d("reload -5s")),
     "plugin/hosts: Corefile:3 - Error during parsing: invalid negative duration for reload '-5s'"),
    (d("hosts", d("no_reverse yes")),
     "plugin/hosts: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'yes'"),
    (d("hosts", d("10.0.0.1")), "plugin/hosts: Corefile:3 - Error during parsing: invalid hosts entry: no name for "
                                "10.0.0.1"),
    (d("hosts", d("example.org 10.0.0.1")),
     "plugin/hosts: Corefile:3 - Error during parsing: invalid hosts entry: 'example.org' is not an IP address"),
    (d("hosts", d("fallthrough"), d("10.0.0.1 late.example.org")),
     "plugin/hosts: Corefile:4 - Error during parsing: unknown property '10.0.0.1'"),
    # loop
    (d("loop x"),
     "plugin/loop: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'x'"),
    # forward
    (d("forward"),
     "plugin/forward: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'forward'"),
    (d("forward ."),
     "plugin/forward: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after '.'"),
    (d("forward . dns.google"),
     'plugin/forward: Corefile:2 - Error during parsing: not an IP address or file: "dns.google"'),
    (d("forward . 10.0.0.1:99999"),
     'plugin/forward: Corefile:2 - Error during parsing: not an IP address or file: "10.0.0.1:99999"'),
    (d("forward . /etc/empty.conf"), "plugin/forward: Corefile:2 - Error during parsing: no nameservers found"),
    (d("forward . /etc/bad.conf"),
     'plugin/forward: Corefile:2 - Error during parsing: /etc/bad.conf: nameserver "dns.example.com" is not an IP '
     'address'),
    (d("forward . /etc/sixteen.conf"),
     "plugin/forward: Corefile:2 - Error during parsing: more than 15 TOs configured: 16"),
    (d("forward . tls://dns.google"),
     'plugin/forward: Corefile:2 - Error during parsing: not an IP address: "dns.google" (a tls:// TO is an IP '
     'address here)'),
    (d("forward . tls:///etc/resolv.conf"),
     'plugin/forward: Corefile:2 - Error during parsing: not an IP address: "/etc/resolv.conf" (a tls:// TO is an IP '
     'address here)'),
    (d("forward . tls://9.9.9.9:99999"),
     'plugin/forward: Corefile:2 - Error during parsing: not an IP address or file: "9.9.9.9:99999"'),
    (d("forward . tls://"), 'plugin/forward: Corefile:2 - Error during parsing: invalid address: "tls://"'),
    (d("forward . tls://9.9.9.9%"),
     "plugin/forward: Corefile:2 - Error during parsing: tls: invalid TLS server name ''"),
    (d("forward . tls://9.9.9.9%dns..quad9.net"),
     "plugin/forward: Corefile:2 - Error during parsing: tls: invalid TLS server name 'dns..quad9.net'"),
    (d("forward . tls://9.9.9.9%dns.quad9.net", d("tls_servername dns.quad9.net")),
     "plugin/forward: Corefile:2 - Error during parsing: both forward ('dns.quad9.net') and proxy level "
     "('dns.quad9.net') TLS servernames are set for upstream proxy 'tls://9.9.9.9:853'"),
    (d("forward . https://dns.google"),
     "plugin/forward: Corefile:2 - Error during parsing: 'https' is not supported as a destination protocol in "
     "forward: https://dns.google (this server forwards over plain DNS and DNS over TLS)"),
    (d("forward . dns://"), 'plugin/forward: Corefile:2 - Error during parsing: invalid address: "dns://"'),
    (d("forward . 10.0.0.1", d("tls_servername dns.quad9.net")),
     "plugin/forward: Corefile:3 - Error during parsing: option 'tls_servername' applies to tls:// TOs, and this "
     "forward has none"),
    (d("forward . 10.0.0.1", d("tls")),
     "plugin/forward: Corefile:3 - Error during parsing: option 'tls' applies to tls:// TOs, and this forward has "
     "none"),
    (d("forward . tls://9.9.9.9", d("tls_servername")),
     "plugin/forward: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'tls_servername'"),
    (d("forward . tls://9.9.9.9", d("tls_servername dns.quad9.net extra")),
     "plugin/forward: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'extra'"),
    (d("forward . tls://9.9.9.9", d("tls_servername bad..name")),
     "plugin/forward: Corefile:3 - Error during parsing: tls_servername: invalid TLS server name 'bad..name'"),
    (d("forward . tls://9.9.9.9", d("tls a.pem b.pem c.pem d.pem")),
     "plugin/forward: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'d.pem'"),
    (d("forward . 10.0.0.1", d("max_age 10s")),
     "plugin/forward: Corefile:3 - Error during parsing: option 'max_age' is not supported by this server"),
    (d("forward . 10.0.0.1", d("upstream")),
     "plugin/forward: Corefile:3 - Error during parsing: unknown property 'upstream'"),
    (d("forward . 10.0.0.1", d("except")),
     "plugin/forward: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'except'"),
    (d("forward . 10.0.0.1", d("force_tcp yes")),
     "plugin/forward: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'yes'"),
    (d("forward . 10.0.0.1", d("max_fails -1")),
     'plugin/forward: Corefile:3 - Error during parsing: strconv.ParseUint: parsing "-1": invalid syntax'),
    (d("forward . 10.0.0.1", d("max_fails 4294967296")),
     'plugin/forward: Corefile:3 - Error during parsing: strconv.ParseUint: parsing "4294967296": value out of '
     'range'),
    (d("forward . 10.0.0.1", d("max_fails")),
     "plugin/forward: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'max_fails'"),
    (d("forward . 10.0.0.1", d("expire -1s")),
     "plugin/forward: Corefile:3 - Error during parsing: expire can't be negative: -1s"),
    (d("forward . 10.0.0.1", d("policy fastest")),
     "plugin/forward: Corefile:3 - Error during parsing: unknown policy 'fastest'"),
    (d("forward . 10.0.0.1", d("health_check")),
     "plugin/forward: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'health_check'"),
    (d("forward . 10.0.0.1", d("health_check -1s")),
     "plugin/forward: Corefile:3 - Error during parsing: health_check can't be negative: -1000000000"),
    (d("forward . 10.0.0.1", d("health_check 1s domain")),
     "plugin/forward: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'domain'"),
    (d("forward . 10.0.0.1", d("health_check 1s domain a..b")),
     "plugin/forward: Corefile:3 - Error during parsing: health_check: invalid domain name a..b"),
    (d("forward . 10.0.0.1", d("health_check 1s tcp")),
     "plugin/forward: Corefile:3 - Error during parsing: health_check: unknown option tcp"),
    (d("forward . 10.0.0.1", d("max_concurrent -5")),
     "plugin/forward: Corefile:3 - Error during parsing: max_concurrent can't be negative: -5"),
    (d("forward . 10.0.0.1", d("max_concurrent lots")),
     'plugin/forward: Corefile:3 - Error during parsing: strconv.Atoi: parsing "lots": invalid syntax'),
    (d("forward . 10.0.0.1", d("next")),
     "plugin/forward: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'next'"),
    (d("forward . 10.0.0.1", d("next NXDOMAIN NOPE")),
     "plugin/forward: Corefile:3 - Error during parsing: NOPE is not a valid rcode"),
]

KUBERNETES_ERRORS: list[tuple[Directive, str]] = [
    (d("kubernetes in-addr.arpa"),
     "plugin/kubernetes: Corefile:2 - Error during parsing: non-reverse zone name must be used"),
    (d("kubernetes", d("upstream")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: unknown property 'upstream'"),
    (d("kubernetes", d("resyncperiod 10s")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: unknown property 'resyncperiod'"),
    (d("kubernetes", d("apiserver_qps 50")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: option 'apiserver_qps' is not supported by this server"),
    (d("kubernetes", d("multicluster clusterset.local")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: is not authoritative for the multicluster zone "
     "clusterset.local. (authoritative zones: [cluster.local.])"),
    (d("kubernetes", d("pods")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'pods'"),
    (d("kubernetes", d("pods all")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: wrong value for pods: all,  must be one of: disabled, "
     "verified, insecure"),
    (d("kubernetes", d("namespaces")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'namespaces'"),
    (d("kubernetes", d("endpoint")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'endpoint'"),
    (d("kubernetes", d("tls cert.pem key.pem")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'key.pem'"),
    (d("kubernetes", d("labels app=web,=web")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: unable to parse label selector value: 'app=web,=web': "
     "invalid requirement '=web'"),
    (d("kubernetes", d("labels app>1")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: unable to parse label selector value: 'app>1': invalid "
     "requirement 'app>1'"),
    (d("kubernetes", d("namespace_labels tier in ()")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: unable to parse namespace_label selector value: "
     "'tier in ()': invalid requirement 'tier in ()'"),
    (d("kubernetes", d("labels")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'labels'"),
    (d("kubernetes", d("ttl")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'ttl'"),
    (d("kubernetes", d("ttl 30s")),
     'plugin/kubernetes: Corefile:3 - Error during parsing: strconv.Atoi: parsing "30s": invalid syntax'),
    (d("kubernetes", d("ttl 3601")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: ttl must be in range [0, 3600]: 3601"),
    (d("kubernetes", d("ttl -1")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: ttl must be in range [0, 3600]: -1"),
    (d("kubernetes", d("noendpoints please")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'please'"),
    (d("kubernetes", d("endpoint_pod_names yes")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'yes'"),
    (d("kubernetes", d("ignore")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'ignore'"),
    (d("kubernetes", d("ignore headless")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: unable to parse ignore value: 'headless'"),
    (d("kubernetes", d("kubeconfig")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'kubeconfig'"),
    (d("kubernetes", d("kubeconfig a b c")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'c'"),
    (d("kubernetes", d("startup_timeout 5")),
     'plugin/kubernetes: Corefile:3 - Error during parsing: failed to parse startup_timeout: 5, time: missing unit '
     'in duration "5"'),
    (d("kubernetes", d("fixtures")),
     "plugin/kubernetes: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after "
     "'fixtures'"),
    (d("kubernetes", d("namespaces a"), d("namespace_labels team=x")),
     "plugin/kubernetes: Corefile:2 - Error during parsing: namespaces and namespace_labels cannot both be set"),
    (d("kubernetes", d("fixtures zones"), d("kubeconfig /k")),
     "plugin/kubernetes: Corefile:2 - Error during parsing: fixtures and endpoint/kubeconfig/tls cannot both be set"),
    (d("kubernetes", d("endpoint https://a"), d("fixtures zones")),
     "plugin/kubernetes: Corefile:2 - Error during parsing: fixtures and endpoint/kubeconfig/tls cannot both be set"),
    (d("kubernetes", d("fixtures zones"), d("labels app=web")),
     "plugin/kubernetes: Corefile:2 - Error during parsing: labels and namespace_labels are selectors the Kubernetes "
     "API applies: they need the API source, not fixtures"),
    (d("kubernetes", d("namespace_labels team=a"), d("fixtures zones")),
     "plugin/kubernetes: Corefile:2 - Error during parsing: labels and namespace_labels are selectors the Kubernetes "
     "API applies: they need the API source, not fixtures"),
]


@pytest.mark.parametrize(("directive", "message"), ERRORS + KUBERNETES_ERRORS)
def test_each_invalid_use_names_the_plugin_location_and_problem(directive: Directive, message: str) -> None:
    assert error_of(server("cluster.local", directive)) == message


ONCE = ["reload", "bufsize", "ready", "health", "prometheus", "errors", "cache", "hosts", "kubernetes", "loop"]


@pytest.mark.parametrize("name", ONCE)
def test_plugins_allowed_once_per_block_refuse_a_second(name: str) -> None:
    assert error_of(server("cluster.local", d(name), d("errors" if name != "errors" else "log"), d(name))) == (
        f"plugin/{name}: Corefile:4 - Error during parsing: this plugin can only be used once per Server Block")


def test_each_block_has_its_own_plugins() -> None:
    first, second = build(server("example.org", d("cache 10"), d("log")), server(".", d("cache 20")))
    assert first.setting("cache") == CacheSettings(success_ttl=10, denial_ttl=10) and first.setting("log") == (LogRule(),)
    assert second.setting("cache") == CacheSettings(success_ttl=20, denial_ttl=20) and second.setting("log") is None


# --- from Corefile text and files ---

def from_file(path: Path, dns_port: int = 53) -> tuple[ServerBlock, ...]:
    return build_config(parse_corefile(path, env={}), dns_port=dns_port, source=str(path),
                        resolv_conf=read_resolv_conf, interface_addresses=lambda name: ()).blocks


def kubeadm_block(path: Path, port: int = 53, fixtures: Path | None = None) -> ServerBlock:
    """kubeadm's Corefile as settings (cluster domain cluster.local, upstreams from /etc/resolv.conf)."""
    at = str(path)
    return server_block(
        keys=(ZoneKey("", port),),
        errors=ErrorsSettings(),
        health=HealthSettings(("", 8080), 5.0),
        ready=("", 8181),
        kubernetes=KubernetesSettings(zones=("cluster.local", "in-addr.arpa", "ip6.arpa"), fixtures=fixtures,
                                      pods=PodMode.INSECURE, fallthrough=Fallthrough(("in-addr.arpa", "ip6.arpa")),
                                      ttl=30),
        prometheus=("", 9153),
        forward=(ForwardSettings("", (Upstream("10.0.0.2"), Upstream("fd00::53")), max_concurrent=1000,
                                 location=f"{at}:{13 + (fixtures is not None) * 2}"),),
        cache=CacheSettings(success_ttl=30, denial_ttl=30, disable_success=("cluster.local",),
                            disable_denial=("cluster.local",)),
        loop=True,
        reload=ReloadSettings(30.0, 15.0),
        loadbalance=True,
        location=f"{at}:{1 + (fixtures is not None)}",
    )


def test_kubeadm_corefile() -> None:
    path = COREFILES / "kubeadm.Corefile"
    assert from_file(path) == (kubeadm_block(path),)


def test_corefile_example_is_kubeadms_byte_for_byte() -> None:
    assert (REPO / "Corefile.example").read_bytes() == (COREFILES / "kubeadm.Corefile").read_bytes()
    assert from_file(REPO / "Corefile.example") == (kubeadm_block(REPO / "Corefile.example"),)


def test_corefile_local_is_kubeadms_on_5353_with_the_repo_fixtures() -> None:
    path = REPO / "Corefile.local"
    assert path.read_text().startswith("# ")
    assert from_file(path) == (kubeadm_block(path, 5353, fixtures=REPO / "zones"),)
    assert (REPO / "zones").is_dir()


def test_kubeadm_corefile_before_cache_disable() -> None:
    (block,) = from_file(COREFILES / "kubeadm-before-cache-disable.Corefile")
    assert block.setting("cache") == CacheSettings(success_ttl=30, denial_ttl=30)


def test_minikube_corefile_adds_hosts_and_log() -> None:
    path = COREFILES / "minikube.Corefile"
    (block,) = from_file(path)
    assert block.setting("hosts") == HostsSettings(inline=(("192.168.49.1", ("host.minikube.internal",)),),
                                        fallthrough=FALLTHROUGH_ALL)
    assert block.setting("log") == (LogRule(),)
    assert block.setting("cache") == CacheSettings(success_ttl=30, denial_ttl=30)


def test_k3s_corefile_with_nodehosts_and_empty_imports() -> None:
    (block,) = from_file(COREFILES / "k3s.Corefile")
    assert block.setting("hosts") == HostsSettings(path=Path("/etc/coredns/NodeHosts"), ttl=60, reload=15.0,
                                        fallthrough=FALLTHROUGH_ALL)
    assert block.setting("kubernetes") == KubernetesSettings(zones=("cluster.local", "in-addr.arpa", "ip6.arpa"),
                                                  pods=PodMode.INSECURE,
                                                  fallthrough=Fallthrough(("in-addr.arpa", "ip6.arpa")))
    assert block.setting("health") == HealthSettings() and block.setting("forward")[0].max_concurrent == 0


def test_nodelocaldns_corefile_binds_four_blocks_to_the_same_addresses() -> None:
    blocks = from_file(COREFILES / "nodelocaldns.Corefile")
    assert [block.keys for block in blocks] == [(ZoneKey("cluster.local"),), (ZoneKey("in-addr.arpa"),),
                                                (ZoneKey("ip6.arpa"),), (ZoneKey(""),)]
    assert {block.bind for block in blocks} == {("169.254.20.10", "10.96.0.10")}
    assert {block.setting("prometheus") for block in blocks} == {("", 9253)}
    cluster, reverse4, _, root = blocks
    assert cluster.setting("cache") == CacheSettings(success_capacity=9984, success_ttl=30, denial_capacity=9984, denial_ttl=5)
    assert cluster.setting("health") == HealthSettings(("169.254.20.10", 8080))
    assert (cluster.setting("forward")[0].to, cluster.setting("forward")[0].force_tcp) == ((Upstream("10.96.143.7"),), True)
    assert reverse4.setting("health") is None and reverse4.setting("cache") == CacheSettings(success_ttl=30, denial_ttl=30)
    assert root.setting("forward")[0].to == (Upstream("10.0.0.2"), Upstream("fd00::53"))


def test_aks_corefile_imports_custom_server_and_override_files() -> None:
    root, puglife, _ = from_file(COREFILES / "aks" / "Corefile")  # and test.server: below
    assert root.setting("log") == (LogRule(),)  # custom/log.override
    assert puglife.keys == (ZoneKey("puglife.local"),)
    assert puglife.setting("forward")[0].to == (Upstream("192.11.0.1"),)
    assert puglife.location.endswith("custom/puglife.server:1")


def test_aks_rewrite_server_block_from_the_custom_configmap() -> None:
    *_, contoso = from_file(COREFILES / "aks" / "Corefile")
    assert contoso.keys == (ZoneKey("contoso.com"),) and contoso.location.endswith("custom/test.server:1")
    (rule,) = contoso.setting("rewrite").rules
    assert (rule.mode, rule.match.kind, rule.match.pattern.pattern, rule.to) == (
        "stop", "regex", r"(.*)\.contoso\.com", "{1}.default.svc.cluster.local.")
    (answer,) = rule.answers
    assert (answer.rewriter.pattern.pattern, answer.rewriter.replacement) == (
        r"(.*)\.default\.svc\.cluster\.local", "{1}.contoso.com.")
    assert contoso.setting("log") == (LogRule(),) and contoso.setting("errors") == ErrorsSettings()


def test_gardener_corefile_rewrites_search_path_expansions() -> None:
    (block,) = from_file(COREFILES / "gardener" / "Corefile")
    assert block.keys == (ZoneKey("", 8053),)
    rules = block.setting("rewrite").rules
    assert [(r.mode, r.match.kind, r.match.pattern.pattern, r.to) for r in rules] == [
        ("stop", "regex", r"(^(?:[^\.]+\.)+)svc\.cluster\.local\.svc\.cluster\.local", "{1}svc.cluster.local."),
        ("stop", "regex", r"(.*)\.example\.com\.svc\.cluster\.local", "{1}.example.com.")]
    assert [[(type(a).__name__, a.rewriter.replacement) for a in r.answers] for r in rules] == [
        [("OwnerRule", "{1}svc.cluster.local.svc.cluster.local."),
         ("ValueRule", "{1}svc.cluster.local.svc.cluster.local.")],
        [("OwnerRule", "{1}.example.com.svc.cluster.local."), ("ValueRule", "{1}.example.com.svc.cluster.local.")]]
    assert block.setting("health") == HealthSettings(("", 8080), 15.0)
    assert block.setting("log") == (LogRule(classes=frozenset({"error"})),)
    assert block.setting("loadbalance") and block.setting("loop")
    assert block.setting("kubernetes").ttl == 30


OPENSHIFT_CA = "/etc/pki/dns.bar.com-ca-cacerts-2/ca-bundle.crt"


def test_openshift_corefile_needs_its_mounted_ca_bundle() -> None:
    """As CoreDNS: `tls CA` reads the file at start; the operator mounts it from the `cacerts` ConfigMap."""
    path = COREFILES / "openshift" / "Corefile"
    with pytest.raises(ConfigError) as raised:
        from_file(path)
    assert str(raised.value) == (f"plugin/forward: {path}:23 - Error during parsing: error reading {OPENSHIFT_CA}: "
                                 f"open {OPENSHIFT_CA}: no such file or directory")


def test_openshift_corefile_forwards_over_tls_and_answers_hostname_bind(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    path = tmp_path / "Corefile"
    path.write_text((COREFILES / "openshift" / "Corefile").read_text().replace(OPENSHIFT_CA, str(certificates.ca)))
    foo, bar, root, chaos = from_file(path)
    assert [b.keys for b in (foo, bar, root, chaos)] == [(ZoneKey("foo.com", 5353),), (ZoneKey("bar.com", 5353),),
                                                          (ZoneKey("", 5353),), (ZoneKey("hostname.bind", 5353),)]
    for block, name in ((foo, "dns.foo.com"), (bar, "dns.bar.com")):
        (forward,) = block.setting("forward")
        assert forward.to == (Upstream("1.1.1.1", 853, name), Upstream("2.2.2.2", 5353, name))
        assert forward.policy == Policy.ROUND_ROBIN and forward.tls_context is not None
        assert bufsize_of(block) == 1232 and block.setting("prometheus") == ("127.0.0.1", 9153)
        assert block.setting("cache") == CacheSettings(success_ttl=900, denial_capacity=9984, denial_ttl=30)
    (forward,) = root.setting("forward")
    assert forward.policy == Policy.SEQUENTIAL and forward.tls_context is None
    assert root.setting("health") == HealthSettings(("", 8080), 20.0)
    assert chaos.setting("chaos") is not None and chaos.setting("forward") is None


def test_aks_localdns_corefile_builds_every_directive() -> None:
    """AKS LocalDNS's Corefile, unchanged: every block builds, its four `nsid` lines and the two `template`
    rules included."""
    health, vnet, cluster, stub, kube = from_file(COREFILES / "aks-localdns" / "localdns.corefile")
    assert [block.setting("nsid") for block in (vnet, cluster, stub, kube)] == [b"localdns"] * 3 + [b"localdns-pod"]
    assert health.setting("whoami") is not None and health.bind == ("169.254.10.10", "169.254.10.11")
    for block in (vnet, kube):
        internal, reddog = block.setting("template").rules
        assert (internal.zones, internal.rcode, [r.pattern for r in internal.regexes]) == (
            ("internal.cloudapp.net",), 3, [r"^(?:[^.]+\.){4,}internal\.cloudapp\.net\.$"])
        assert internal.fall == Fallthrough(())
        assert (reddog.zones, reddog.rcode, reddog.fall) == (("reddog.microsoft.com",), 3, Fallthrough(None))
    assert cluster.setting("template") is None and stub.setting("template") is None
    assert cluster.setting("forward")[0].force_tcp and vnet.setting("forward")[0].prefer_udp


def test_dns_port_applies_to_keys_without_a_port() -> None:
    syntax = parse_text(".:1053 {\n    errors\n}\nexample.org {\n    errors\n}\n", env={})
    assert [b.keys for b in build_config(syntax, dns_port=5300).blocks] == [(ZoneKey("", 1053),),
                                                                           (ZoneKey("example.org", 5300),)]


def test_an_error_in_an_imported_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "extra.conf").write_text("errors\ndnstap /tmp/dnstap.sock\n")
    (tmp_path / "Corefile").write_text(". {\n    import extra.conf\n}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path / "Corefile", env={})
    assert str(raised.value) == (f"{tmp_path / 'extra.conf'}:2 - Error during parsing: plugin 'dnstap' is not "
                                 "supported by this server")


def test_load_config_reads_the_corefile_with_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "Corefile"
    path.write_text(".:{$PORT} {\n    forward . {$UPSTREAM}\n    kubernetes {\n        fixtures zones\n    }\n}\n")
    config = load_config(path, env={"PORT": "1053", "UPSTREAM": "10.1.1.1:5353"})
    (block,) = config.blocks
    assert block.keys == (ZoneKey("", 1053),)
    assert block.setting("forward")[0].to == (Upstream("10.1.1.1", 5353),)
    assert block.setting("kubernetes") is not None and block.setting("kubernetes").fixtures == tmp_path / "zones"
    assert (config.source, config.files) == (str(path), (path,))
    assert len(config.corefile_hash) == 128


def test_a_corefile_without_server_blocks_is_refused() -> None:
    with pytest.raises(ConfigError, match="^Corefile: no server blocks$"):
        build_config(parse_text("# nothing\n", env={}))


def test_load_config_applies_dns_port(tmp_path: Path) -> None:
    (tmp_path / "Corefile").write_text(". {\n    errors\n}\n")
    assert load_config(tmp_path / "Corefile", dns_port=5300, env={}).blocks[0].keys == (ZoneKey("", 5300),)
