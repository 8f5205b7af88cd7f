"""The command line -> one validated Config.  `dns-server --help` lists the flags.

Two ways to configure the server, as CoreDNS's own command line and as ours:
- `-conf FILE` (or `--conf`): a Corefile.  Without it and without any data flag, a `Corefile` in
  the working directory is read when there is one, as CoreDNS does.  `-dns.port N` is the port of
  keys that name none.
- flags (`--fixtures DIR`, `--kubeconfig FILE`, `--listen`, `--upstream`, ...): one server block
  for the root zone, equivalent to
      .:PORT { bind HOST...; kubernetes DOMAIN in-addr.arpa ip6.arpa { ... }; forward . UPSTREAMS; cache; errors }
  and, with none of them in a pod, the same with its service account.
`-version` and `-plugins` print what CoreDNS's do, for this server.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Sequence

from dns_server import __version__
from dns_server.config.model import (
    DEFAULT_MAX_TCP_CONNECTIONS,
    DEFAULT_TCP_IDLE_TIMEOUT,
    Config,
    Fallthrough,
    ServerBlock,
    ZoneKey,
    format_address,
    parse_duration,
    parse_hostport,
)
from dns_server.errors import ConfigError
from dns_server.observability.logs import setup_logging
from dns_server.plugins import load_config
from dns_server.plugins.cache import DEFAULT_CACHE_CAPACITY, CacheSettings
from dns_server.plugins.errors import ErrorsSettings
from dns_server.plugins.forward.setup import MAX_UPSTREAMS, ForwardSettings, Policy, Upstream
from dns_server.plugins.forward.upstreams import loops_back, resolv_conf_nameservers
from dns_server.plugins.health import HealthSettings
from dns_server.plugins.kubernetes.setup import (
    DEFAULT_CLUSTER_DOMAIN,
    DEFAULT_DNS_SERVICE,
    DEFAULT_TTL,
    MAX_TTL,
    KubernetesSettings,
    PodMode,
)
from dns_server.plugins.log import LogRule
from dns_server.protocol.names import REVERSE_ZONES, normalize_zone

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
    fwd.add_argument("--serve-stale", default="0", metavar="DURATION",
                     help="serve expired answers, for up to DURATION past their expiry, when the upstreams "
                          "do not answer (e.g. 1h; default off)")

    ops = parser.add_argument_group("operations, without a Corefile")
    ops.add_argument("--health", metavar="HOST:PORT", help="serve /health there (as `health`; e.g. :8080)")
    ops.add_argument("--lameduck", metavar="DURATION", default="0",
                     help="on SIGTERM, keep answering for DURATION before exiting (with --health)")
    ops.add_argument("--ready", metavar="HOST:PORT", help="serve /ready there (as `ready`; e.g. :8181)")
    ops.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus /metrics there (as `prometheus`)")
    ops.add_argument("--log-queries", action="store_true", help="log every query (as `log`)")

    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--log-format", default="text", choices=("text", "json"),
                        help="the server's own log lines: text, or one JSON object per line")
    return parser


def http_address(text: str, flag: str) -> tuple[str, int]:
    """`:8080`, `HOST:PORT` or `[V6]:PORT` -> (host, port) with host "" for every interface."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"{flag} {text!r}: expected HOST:PORT, e.g. :8080")
    return host, int(port)


def config_from_args(args: argparse.Namespace) -> Config:
    """Turn parsed flags into a one-block Config; raises ConfigError with a message for the user."""
    namespace, _, name = args.dns_service.partition("/")
    if not namespace or not name:
        raise ConfigError(f"--dns-service {args.dns_service!r} must be NAMESPACE/NAME")
    if not 0 <= args.ttl <= MAX_TTL:
        raise ConfigError(f"--ttl must be between 0 and {MAX_TTL}, not {args.ttl}")
    if args.max_concurrent < 1 or args.cache_size < 0:
        raise ConfigError("--max-concurrent must be positive and --cache-size not negative")
    if args.namespaces and args.namespace_labels:
        raise ConfigError("--namespaces and --namespace-labels cannot be used together")
    if args.fixtures is not None and args.kubeconfig is not None:
        raise ConfigError("--fixtures and --kubeconfig are alternatives: choose one source")
    if args.context and args.kubeconfig is None:
        raise ConfigError("--context names a context of the --kubeconfig file: give --kubeconfig too")
    if args.fixtures is not None and (args.labels or args.namespace_labels):
        raise ConfigError("--labels and --namespace-labels are selectors the Kubernetes API applies: "
                          "they need the API source, not --fixtures")
    if args.watch_file is not None and args.fixtures is None:
        raise ConfigError("--watch-file replays events on top of --fixtures DIR (an empty directory will do)")
    listen = [parse_hostport(text, 53) for text in (args.listen or [DEFAULT_LISTEN])]
    try:
        domain = normalize_zone(args.cluster_domain)
    except ConfigError:
        raise ConfigError(f"--cluster-domain {args.cluster_domain!r} is not a domain name") from None
    if not domain:
        raise ConfigError("--cluster-domain cannot be the root zone")
    kubernetes = KubernetesSettings(
        zones=(domain, *REVERSE_ZONES),
        kubeconfig=args.kubeconfig, context=args.context, fixtures=args.fixtures, watch_file=args.watch_file,
        namespaces=tuple(ns.strip().lower() for ns in (args.namespaces or "").split(",") if ns.strip()),
        labels=args.labels, namespace_labels=args.namespace_labels,
        pods=PodMode(args.pods), endpoint_pod_names=args.endpoint_pod_names, ttl=args.ttl,
        fallthrough=Fallthrough() if args.no_reverse_fallthrough else Fallthrough(REVERSE_ZONES),
        startup_timeout=0.0,  # answer at once; cluster names are SERVFAIL until the first sync
        dns_service=(namespace.lower(), name.lower()),
    )
    upstreams = flag_upstreams(args, listen)
    serve_stale = parse_duration(args.serve_stale)
    if serve_stale < 0:
        raise ConfigError("--serve-stale cannot be negative")
    forward = (ForwardSettings("", upstreams, policy=Policy(args.upstream_policy), max_concurrent=args.max_concurrent,
                               location="--upstream"),) if upstreams else ()
    cache = CacheSettings(success_capacity=args.cache_size, denial_capacity=args.cache_size,
                          prefetch_amount=FLAG_PREFETCH_AMOUNT if args.prefetch else 0,
                          serve_stale=serve_stale, serve_stale_verify=True) if args.cache_size and forward else None
    lameduck = parse_duration(args.lameduck)
    settings = {
        "bind": tuple(dict.fromkeys(host for host, _ in listen)),
        "kubernetes": kubernetes, "forward": forward or None, "cache": cache, "errors": ErrorsSettings(),
        "log": (LogRule(),) if args.log_queries else None,
        "health": HealthSettings(http_address(args.health, "--health"), lameduck) if args.health else None,
        "ready": http_address(args.ready, "--ready") if args.ready else None,
        "prometheus": http_address(args.metrics, "--metrics") if args.metrics else None,
    }
    block = ServerBlock(keys=tuple(ZoneKey("", port) for port in dict.fromkeys(port for _, port in listen)),
                        location="flags")
    for directive, value in settings.items():
        block = block.with_setting(directive, value)
    return Config((block,), tcp_idle_timeout=args.tcp_idle_timeout, max_tcp_connections=args.max_tcp_connections,
                  log_level=args.log_level, log_format=args.log_format)


def flag_upstreams(args: argparse.Namespace, listen: list[tuple[str, int]]) -> tuple[Upstream, ...]:
    """--upstream, else resolv.conf's nameservers; never our own listen addresses (queries would loop)."""
    warnings: list[str] = []
    if args.upstream:
        if len(args.upstream) > MAX_UPSTREAMS:
            raise ConfigError(f"at most {MAX_UPSTREAMS} --upstream servers, not {len(args.upstream)}")
        candidates = [parse_hostport(text, 53) for text in args.upstream]
    else:
        try:
            text = args.resolv_conf.read_text(errors="replace")
        except OSError as error:
            warnings.append(f"cannot read {args.resolv_conf}: {error.strerror or error}")
            text = ""
        found, bad = resolv_conf_nameservers(text)
        warnings += [f"{args.resolv_conf}: ignoring {line!r}: not an IP address" for line in bad]
        if len(found) > MAX_UPSTREAMS:
            warnings.append(f"{args.resolv_conf} lists {len(found)} nameservers: using the first {MAX_UPSTREAMS}")
        candidates = [(host, 53) for host in found[:MAX_UPSTREAMS]]
    chosen = []
    for upstream in candidates:
        if loops_back(upstream, listen, is_local_address):
            warnings.append(f"not forwarding to {format_address(*upstream)}: it is one of our own listen addresses "
                            "(queries would loop)")
        else:
            chosen.append(Upstream(*upstream))
    if not chosen:
        warnings.append("no upstream resolvers: names outside the cluster zones will fail (SERVFAIL)")
    for warning in warnings:
        print(f"[WARNING] plugin/forward: {warning}", file=sys.stderr)
    return tuple(chosen)


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
    corefile: Path | None = args.conf
    if corefile is None and not given & set(DATA_FLAGS) and Path("Corefile").is_file():
        corefile = Path("Corefile")
    if corefile is None:
        config = config_from_args(args)
        if (config.blocks[0].setting("kubernetes") is not None and args.fixtures is None and args.kubeconfig is None
                and "KUBERNETES_SERVICE_HOST" not in os.environ):
            raise ConfigError("no cluster data: give -conf COREFILE, --fixtures DIR or --kubeconfig FILE "
                              "(or run inside a pod)")
        return config
    mixed = sorted(given & set(BLOCK_FLAGS))
    if mixed:
        raise ConfigError(f"{', '.join('--' + m.replace('_', '-') for m in mixed)}: the Corefile configures that; "
                          "these flags are for running without one")
    config = load_config(corefile, dns_port=args.dns_port)
    return Config(config.blocks, config.files, config.corefile_hash, args.tcp_idle_timeout, args.max_tcp_connections,
                  args.log_level, args.log_format, config.source)


def given_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> set[str]:
    """The flags the command line set to something other than their default."""
    return {action.dest for action in parser._actions
            if action.dest != "help" and getattr(args, action.dest, None) != action.default}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `dns-server` and `python -m dns_server`."""
    parser = build_parser()
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
        return 2
    from dns_server.app import run  # imported late: --help and usage errors stay fast

    given = given_flags(parser, args)
    return run(config, (lambda: load(args, given)) if config.files else None)


if __name__ == "__main__":
    sys.exit(main())
