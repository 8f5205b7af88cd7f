"""The command line -> one validated Config.  `dns-server --help` lists the flags.

Two ways to configure the server, as CoreDNS's own command line and as ours:
- `-conf FILE` (or `--conf`): a Corefile.  Without it and without any data flag, a `Corefile` in
  the working directory is read when there is one, as CoreDNS does.  `-dns.port N` is the port of
  keys that name none.
- flags (`--fixtures DIR`, `--kubeconfig FILE`, `--listen`, `--upstream`, ...): one server block
  for the root zone, equivalent to
      .:PORT { bind HOST...; kubernetes DOMAIN in-addr.arpa ip6.arpa { ... }; forward . UPSTREAMS; cache; errors }
  and, with none of them in a pod, the same with its service account.
`-version` and `-plugins` print what CoreDNS's do, for this server.  `dns-server explain ...` is
the tool in dns_server/tools/explain.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import platform
import re
import socket
import sys
from pathlib import Path
from typing import Iterator, Sequence

from dns_server import __version__
from dns_server.config.model import (
    DEFAULT_MAX_TCP_CONNECTIONS,
    DEFAULT_TCP_IDLE_TIMEOUT,
    Config,
    ServerBlock,
    format_address,
)
from dns_server.config.setup import split_host_port
from dns_server.config.syntax import CorefileSyntax, Directive, ServerBlockSyntax, Token
from dns_server.errors import ConfigError
from dns_server.observability.logs import setup_logging
from dns_server.plugins import build_config, load_config
from dns_server.plugins.cache import DEFAULT_CACHE_CAPACITY
from dns_server.plugins.forward.setup import (
    MAX_UPSTREAMS,
    ForwardSettings,
    Policy,
    resolv_conf_nameservers,
)
from dns_server.plugins.forward.upstreams import loops_back
from dns_server.plugins.kubernetes.setup import (
    DEFAULT_CLUSTER_DOMAIN,
    DEFAULT_DNS_SERVICE,
    DEFAULT_TTL,
    MAX_TTL,
    PodMode,
)
from dns_server.plugins.multisocket import MultisocketSettings
from dns_server.protocol.names import REVERSE_ZONES
from dns_server.serving.cpus import default_workers

DEFAULT_LISTEN = "0.0.0.0:53"
DEFAULT_RESOLV_CONF = Path("/etc/resolv.conf")
DEFAULT_MAX_CONCURRENT = 1000  # the kubeadm Corefile's forward max_concurrent
FLAG_PREFETCH_AMOUNT = 2  # --prefetch: popular after 2 hits (the cache plugin's prefetch default is 1 of `prefetch 1`)
DATA_FLAGS = ("fixtures", "kubeconfig", "context", "namespaces", "labels", "namespace_labels", "watch_file")
BLOCK_FLAGS = DATA_FLAGS + ("listen", "cluster_domain", "ttl", "pods", "endpoint_pod_names", "dns_service",
                            "no_reverse_fallthrough", "upstream", "resolv_conf", "upstream_policy", "max_concurrent",
                            "cache_size", "prefetch", "serve_stale", "health", "ready", "metrics", "lameduck",
                            "log_queries")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dns-server",
        description="Cluster DNS for Kubernetes, configured by a Corefile as CoreDNS is, or by flags.")
    core = parser.add_argument_group("CoreDNS's command line")
    core.add_argument("-conf", "--conf", metavar="FILE", type=Path,
                      help="the Corefile to load (default: ./Corefile when present and no data flag is given)")
    core.add_argument("-dns.port", "--dns-port", dest="dns_port", metavar="N", type=int, default=53,
                      help="the port of server blocks whose keys give none (default 53)")
    core.add_argument("-version", "--version", action="store_true", help="print the version and exit")
    core.add_argument("-plugins", "--plugins", action="store_true", help="print the plugins this server has and exit")

    data = parser.add_argument_group("cluster data, without a Corefile (choose one source)")
    data.add_argument("--fixtures", metavar="DIR", type=Path,
                      help="serve the Kubernetes objects in the YAML/JSON manifests under DIR (reloaded on change)")
    data.add_argument("--kubeconfig", metavar="FILE", type=Path,
                      help="list and watch the cluster through this kubeconfig (default in a pod: its service account)")
    data.add_argument("--context", metavar="NAME", help="the kubeconfig context to use")
    data.add_argument("--namespaces", metavar="A,B", help="serve only these namespaces")
    data.add_argument("--labels", metavar="SELECTOR",
                      help="serve only services, endpoint slices and pods matching this label selector (API source)")
    data.add_argument("--namespace-labels", metavar="SELECTOR",
                      help="serve only namespaces matching this label selector (API source)")
    data.add_argument("--watch-file", metavar="FILE", type=Path,
                      help="replay a recorded stream of watch events (newline-delimited JSON) on top of --fixtures")

    dns = parser.add_argument_group("answers, without a Corefile")
    dns.add_argument("--cluster-domain", default=DEFAULT_CLUSTER_DOMAIN, metavar="D",
                     help=f"the cluster zone (default {DEFAULT_CLUSTER_DOMAIN})")
    dns.add_argument("--ttl", type=int, default=DEFAULT_TTL, metavar="N",
                     help=f"TTL of cluster records, 0..{MAX_TTL} (default {DEFAULT_TTL})")
    dns.add_argument("--pods", choices=[m.value for m in PodMode], default=PodMode.INSECURE.value,
                     help="pod records (default insecure)")
    dns.add_argument("--endpoint-pod-names", action="store_true",
                     help="name endpoints without a hostname after their pod")
    dns.add_argument("--dns-service", default="/".join(DEFAULT_DNS_SERVICE), metavar="NS/NAME",
                     help="the Service whose cluster IPs answer ns.dns.<zone> (default kube-system/kube-dns)")
    dns.add_argument("--no-reverse-fallthrough", action="store_true",
                     help="answer NXDOMAIN for unknown reverse names instead of forwarding them")

    net = parser.add_argument_group("network")
    net.add_argument("--listen", action="append", metavar="HOST:PORT",
                     help=f"UDP and TCP address, repeatable; IPv6 as [::1]:5353 (default {DEFAULT_LISTEN})")
    net.add_argument("--tcp-idle-timeout", type=float, default=DEFAULT_TCP_IDLE_TIMEOUT, metavar="S",
                     help=f"close idle TCP connections after S seconds (default {DEFAULT_TCP_IDLE_TIMEOUT:g})")
    net.add_argument("--workers", type=int, metavar="N",
                     help="worker processes answering on every listen address (SO_REUSEPORT); default: the "
                          "Corefile's `multisocket N`, else the CPUs this container may use (GOMAXPROCS, the "
                          "cgroup CPU limit, the affinity mask)")
    net.add_argument("--max-tcp-connections", type=int, default=DEFAULT_MAX_TCP_CONNECTIONS, metavar="N",
                     help=f"open TCP connections at most (default {DEFAULT_MAX_TCP_CONNECTIONS})")

    fwd = parser.add_argument_group("forwarding, without a Corefile")
    fwd.add_argument("--upstream", action="append", metavar="HOST[:PORT]",
                     help=f"upstream resolver, repeatable up to {MAX_UPSTREAMS} times; IPv6 as [::1]:53 "
                          "(default: the nameservers of --resolv-conf)")
    fwd.add_argument("--resolv-conf", metavar="FILE", type=Path, default=DEFAULT_RESOLV_CONF,
                     help=f"read the upstreams from the nameserver lines of FILE when no --upstream is given "
                          f"(default {DEFAULT_RESOLV_CONF}; an empty file: names outside the cluster fail)")
    fwd.add_argument("--upstream-policy", choices=[p.value for p in Policy], default=Policy.RANDOM.value,
                     help="how an upstream is chosen (default random)")
    fwd.add_argument("--max-concurrent", type=int, default=DEFAULT_MAX_CONCURRENT, metavar="N",
                     help=f"forwarded queries in flight at most; more get REFUSED (default {DEFAULT_MAX_CONCURRENT})")
    fwd.add_argument("--cache-size", type=int, default=DEFAULT_CACHE_CAPACITY, metavar="N",
                     help=f"forwarded answers kept at most, of each kind (success, denial), least recently used "
                          f"evicted first; 0 disables the cache (default {DEFAULT_CACHE_CAPACITY})")
    fwd.add_argument("--prefetch", action="store_true",
                     help="refresh popular cached answers in the background shortly before they expire")
    fwd.add_argument("--serve-stale", metavar="DURATION",
                     help="serve expired answers, for up to DURATION past their expiry, when the upstreams "
                          "do not answer (e.g. 1h; default off)")

    ops = parser.add_argument_group("operations, without a Corefile")
    ops.add_argument("--health", metavar="HOST:PORT", help="serve /health there (as `health`; e.g. :8080)")
    ops.add_argument("--lameduck", metavar="DURATION",
                     help="on SIGTERM, keep answering for DURATION before exiting (with --health)")
    ops.add_argument("--ready", metavar="HOST:PORT", help="serve /ready there (as `ready`; e.g. :8181)")
    ops.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus /metrics there (as `prometheus`)")
    ops.add_argument("--log-queries", action="store_true", help="log every query (as `log`)")
    ops.add_argument("--explain-http", metavar="PORT", type=int, default=0,
                     help="serve /explain?name=...&type=...&from=... on 127.0.0.1:PORT (default off: it shows "
                          "the cluster's objects to whoever can reach it)")

    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--log-format", default="text", choices=("text", "json"),
                        help="the server's own log lines: text, or one JSON object per line")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """The flags as a one-block Corefile, read by the plugins' setups as a Corefile's blocks are.

    Every value is checked by the code that checks it in a Corefile, and an error names the flag
    (its tokens are located at the flag).  Raises ConfigError with a message for the user.
    """
    _check_combinations(args)
    listen = [_listen_address(text) for text in (args.listen or [DEFAULT_LISTEN])]
    ports = dict.fromkeys(port for _, port in listen)
    syntax = ServerBlockSyntax(tuple(_word("--listen", f".:{port}") for port in ports),
                               tuple(_directives(args, listen)), "flags")
    config = build_config(CorefileSyntax((syntax,), (), ""), source="flags")
    block = _without_own_addresses(config.blocks[0], listen)
    return dataclasses.replace(config, blocks=(block,), tcp_idle_timeout=args.tcp_idle_timeout,
                               max_tcp_connections=args.max_tcp_connections, log_level=args.log_level,
                               log_format=args.log_format, explain_port=args.explain_http)


def _check_combinations(args: argparse.Namespace) -> None:
    """What no one plugin's setup can see: flags that exclude or need each other."""
    if args.fixtures is not None and args.kubeconfig is not None:
        raise ConfigError("--fixtures and --kubeconfig are alternatives: choose one source")
    if args.context and args.kubeconfig is None:
        raise ConfigError("--context names a context of the --kubeconfig file: give --kubeconfig too")
    if args.fixtures is not None and (args.labels or args.namespace_labels):
        raise ConfigError("--labels and --namespace-labels are selectors the Kubernetes API applies: "
                          "they need the API source, not --fixtures")
    if args.watch_file is not None and args.fixtures is None:
        raise ConfigError("--watch-file replays events on top of --fixtures DIR (an empty directory will do)")
    if not args.cluster_domain.strip("."):
        raise ConfigError("--cluster-domain cannot be the root zone")
    if args.cache_size < 0:
        raise ConfigError("--cache-size cannot be negative")


def _directives(args: argparse.Namespace, listen: list[tuple[str, int]]) -> Iterator[Directive]:
    """The block the flags describe:
    `bind; kubernetes DOMAIN in-addr.arpa ip6.arpa {...}; forward . UPSTREAMS {...}; cache {...}; errors`,
    and `log`, `health`, `ready`, `prometheus` when asked for."""
    yield _line("--listen", "bind", *dict.fromkeys(host for host, _ in listen))
    kubernetes = [
        _line("--fixtures", "fixtures", str(args.fixtures)) if args.fixtures is not None else None,
        _line("--watch-file", "watch_file", str(args.watch_file)) if args.watch_file is not None else None,
        _line("--kubeconfig", "kubeconfig", str(args.kubeconfig), *([args.context] if args.context else []))
        if args.kubeconfig is not None else None,
        _line("--namespaces", "namespaces", *[ns.strip() for ns in args.namespaces.split(",") if ns.strip()])
        if args.namespaces else None,
        _line("--labels", "labels", args.labels) if args.labels else None,
        _line("--namespace-labels", "namespace_labels", args.namespace_labels) if args.namespace_labels else None,
        _line("--pods", "pods", args.pods),
        _line("--endpoint-pod-names", "endpoint_pod_names") if args.endpoint_pod_names else None,
        _line("--ttl", "ttl", str(args.ttl)),
        None if args.no_reverse_fallthrough else _line("--no-reverse-fallthrough", "fallthrough", *REVERSE_ZONES),
        _line("flags", "startup_timeout", "0s"),  # answer at once: cluster names are SERVFAIL until the first sync
        _line("--dns-service", "dns_service", args.dns_service),
    ]
    yield _line("--cluster-domain", "kubernetes", args.cluster_domain, *REVERSE_ZONES,
                block=[option for option in kubernetes if option is not None])
    upstreams = flag_upstreams(args)
    if upstreams:
        flag = "--upstream" if args.upstream else "--resolv-conf"
        yield _line(flag, "forward", ".", *upstreams, block=[_line("--upstream-policy", "policy", args.upstream_policy),
                                                            _line("--max-concurrent", "max_concurrent",
                                                                  str(args.max_concurrent))])
        if args.cache_size:
            cache = [_line("--cache-size", kind, str(args.cache_size)) for kind in ("success", "denial")]
            if args.prefetch:
                cache.append(_line("--prefetch", "prefetch", str(FLAG_PREFETCH_AMOUNT)))
            if args.serve_stale is not None:
                cache.append(_line("--serve-stale", "serve_stale", _duration(args.serve_stale), "verify"))
            yield _line("--cache-size", "cache", block=cache)
    yield _line("flags", "errors")
    if args.log_queries:
        yield _line("--log-queries", "log")
    if args.health:
        yield _line("--health", "health", args.health,
                    block=[_line("--lameduck", "lameduck", _duration(args.lameduck))] if args.lameduck else None)
    if args.ready:
        yield _line("--ready", "ready", args.ready)
    if args.metrics:
        yield _line("--metrics", "prometheus", args.metrics)


def _word(flag: str, text: str) -> Token:
    return Token(text, flag, 0, False)


def _line(flag: str, name: str, *args: str, block: list[Directive] | None = None) -> Directive:
    """A Corefile line made from a flag: its tokens are located at the flag, for error messages."""
    return Directive(_word(flag, name), tuple(_word(flag, arg) for arg in args),
                     tuple(block) if block is not None else None)


def _duration(text: str) -> str:
    """A flag's duration as the Corefile writes it: a bare number is seconds."""
    return f"{text}s" if re.fullmatch(r"\d+(?:\.\d+)?", text.strip()) else text


def _listen_address(text: str) -> tuple[str, int]:
    """--listen `HOST:PORT`, `[V6]:PORT`, or `HOST` (port 53): an address to bind, never an interface name."""
    host, port = split_host_port(text)
    if host is None:
        host, port = text.strip("[]"), "53"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"--listen {text!r}: {host!r} is not an IP address") from None
    if not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen {text!r}: {port!r} is not a port number")
    return host, int(port)


def flag_upstreams(args: argparse.Namespace) -> tuple[str, ...]:
    """--upstream, else the nameservers of --resolv-conf, which a missing file or a bad line only warns about."""
    if args.upstream:
        return tuple(args.upstream)
    warnings: list[str] = []
    try:
        text = args.resolv_conf.read_text(errors="replace")
    except OSError as error:
        warnings.append(f"cannot read {args.resolv_conf}: {error.strerror or error}")
        text = ""
    found, bad = resolv_conf_nameservers(text)
    warnings += [f"{args.resolv_conf}: ignoring {line!r}: not an IP address" for line in bad]
    if len(found) > MAX_UPSTREAMS:
        warnings.append(f"{args.resolv_conf} lists {len(found)} nameservers: using the first {MAX_UPSTREAMS}")
    if not found:
        warnings.append("no upstream resolvers: names outside the cluster zones will fail (SERVFAIL)")
    _warn(warnings)
    return tuple(found[:MAX_UPSTREAMS])


def _without_own_addresses(block: ServerBlock, listen: list[tuple[str, int]]) -> ServerBlock:
    """Never forward to one of our own listen addresses (queries would loop): such an upstream is dropped."""
    forwards: tuple[ForwardSettings, ...] | None = block.setting("forward")
    if not forwards:
        return block
    kept = tuple(upstream for upstream in forwards[0].to
                 if not loops_back((upstream.host, upstream.port), listen, is_local_address))
    _warn([f"not forwarding to {format_address(upstream.host, upstream.port)}: it is one of our own listen "
           "addresses (queries would loop)" for upstream in forwards[0].to if upstream not in kept])
    if kept:
        return block.with_setting("forward", (dataclasses.replace(forwards[0], to=kept),))
    _warn(["no upstream resolvers: names outside the cluster zones will fail (SERVFAIL)"])
    return block.with_setting("forward", None).with_setting("cache", None)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"[WARNING] plugin/forward: {warning}", file=sys.stderr)


def is_local_address(host: str) -> bool:
    """Whether `host` is an address of this machine (only those can be bound)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, 0))
        except OSError:
            return False
    return True


def version_text() -> str:
    """What `-version` prints, in CoreDNS's layout (name-version, then platform, runtime, revision)."""
    return (f"dns-server-{__version__}\n"
            f"{platform.system().lower()}/{platform.machine()}, python{platform.python_version()}, "
            f"{os.environ.get('DNS_SERVER_REVISION', '')}".rstrip(", ") + "\n")


def load(args: argparse.Namespace, given: set[str]) -> Config:
    """The Config the command line asks for: a Corefile, or the flags."""
    if not 0 <= args.explain_http <= 65535:
        raise ConfigError(f"--explain-http {args.explain_http}: not a port number")
    corefile: Path | None = args.conf
    if corefile is None and not given & set(DATA_FLAGS) and Path("Corefile").is_file():
        corefile = Path("Corefile")
    if corefile is None:
        config = config_from_args(args)
        if (config.blocks[0].setting("kubernetes") is not None and args.fixtures is None and args.kubeconfig is None
                and "KUBERNETES_SERVICE_HOST" not in os.environ):
            raise ConfigError("no cluster data: give -conf COREFILE, --fixtures DIR or --kubeconfig FILE "
                              "(or run inside a pod)")
        return _with_workers(config, args.workers)
    mixed = sorted(given & set(BLOCK_FLAGS))
    if mixed:
        raise ConfigError(f"{', '.join('--' + m.replace('_', '-') for m in mixed)}: the Corefile configures that; "
                          "these flags are for running without one")
    config = load_config(corefile, dns_port=args.dns_port)
    return _with_workers(Config(config.blocks, config.files, config.corefile_hash, args.tcp_idle_timeout,
                                args.max_tcp_connections, args.log_level, args.log_format, config.source,
                                explain_port=args.explain_http), args.workers)


def _with_workers(config: Config, flag: int | None) -> Config:
    """The number of worker processes: `--workers`, else the Corefile's `multisocket`, else the CPUs'."""
    asked: list[MultisocketSettings] = [b.setting("multisocket") for b in config.blocks if b.setting("multisocket")]
    if flag is not None and asked:
        raise ConfigError(f"--workers and multisocket ({asked[0].location}) both set the number of workers: "
                          "choose one")
    if flag is not None and flag < 1:
        raise ConfigError(f"--workers {flag}: at least one worker answers")
    different = [settings for settings in asked if settings.workers != asked[0].workers]
    if different:
        raise ConfigError(f"plugin/multisocket: {different[0].location} asks for a number of workers other than "
                          f"{asked[0].location}: this server runs one set of worker processes for every listen "
                          "address, so every server block must ask for the same")
    workers = flag or (asked[0].workers if asked else None) or default_workers(os.environ)
    return dataclasses.replace(config, workers=workers)


def given_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> set[str]:
    """The flags the command line set to something other than their default."""
    return {action.dest for action in parser._actions
            if action.dest != "help" and getattr(args, action.dest, None) != action.default}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `dns-server` and `python -m dns_server`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["check"]:
        from dns_server.tools.check import main as check

        return check(argv[1:])
    parser = build_parser()
    if argv[:1] == ["explain"]:
        from dns_server.tools import explain

        return explain.main(parser, argv[1:], lambda args: load(args, given_flags(parser, args)))
    args = parser.parse_args(argv)
    if args.version:
        sys.stdout.write(version_text())
        return 0
    if args.plugins:
        from dns_server.plugins import plugins_text

        sys.stdout.write(plugins_text())
        return 0
    setup_logging(args.log_level, args.log_format)  # reading the Corefile may warn (an import glob matching nothing)
    try:
        config = load(args, given_flags(parser, args))
    except ConfigError as error:
        print(f"dns-server: error: {error}", file=sys.stderr)
        return 1  # as CoreDNS exits on a bad Corefile (argparse's usage errors stay 2)
    from dns_server.app import Server, run  # imported late: --help and usage errors stay fast
    from dns_server.supervisor import Supervisor

    given = given_flags(parser, args)
    return run(config, (lambda: load(args, given)) if config.files else None,
               Supervisor if config.workers > 1 else Server)


if __name__ == "__main__":
    sys.exit(main())
