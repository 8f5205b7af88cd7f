"""Command-line flags -> one validated Config.  `dns-server --help` lists them."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from dns_server.config import (
    DEFAULT_CACHE_SIZE, DEFAULT_CLUSTER_DOMAIN, DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_TCP_CONNECTIONS,
    DEFAULT_RESOLV_CONF, DEFAULT_TCP_IDLE_TIMEOUT, DEFAULT_TTL, MAX_UPSTREAMS, POD_MODES, UPSTREAM_POLICIES, Config,
    ConfigError, parse_hostport,
)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dns-server",
        description="Authoritative DNS for a Kubernetes cluster domain, forwarding everything else upstream.")
    data = parser.add_argument_group("cluster data (choose one source)")
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

    dns = parser.add_argument_group("answers")
    dns.add_argument("--cluster-domain", default=DEFAULT_CLUSTER_DOMAIN, metavar="D",
                     help=f"the cluster zone (default {DEFAULT_CLUSTER_DOMAIN})")
    dns.add_argument("--ttl", type=int, default=DEFAULT_TTL, metavar="N",
                     help=f"TTL of cluster records, 0..3600 (default {DEFAULT_TTL})")
    dns.add_argument("--pods", choices=POD_MODES, default="insecure", help="pod records (default insecure)")
    dns.add_argument("--endpoint-pod-names", action="store_true",
                     help="name endpoints without a hostname after their pod")
    dns.add_argument("--dns-service", default="kube-system/kube-dns", metavar="NS/NAME",
                     help="the Service whose cluster IPs answer ns.dns.<zone> (default kube-system/kube-dns)")
    dns.add_argument("--no-reverse-fallthrough", action="store_true",
                     help="answer NXDOMAIN for unknown reverse names instead of forwarding them")

    net = parser.add_argument_group("network")
    net.add_argument("--listen", action="append", metavar="HOST:PORT",
                     help="UDP and TCP address, repeatable; IPv6 as [::1]:5353 (default 0.0.0.0:53)")
    net.add_argument("--tcp-idle-timeout", type=float, default=DEFAULT_TCP_IDLE_TIMEOUT, metavar="S",
                     help=f"close idle TCP connections after S seconds (default {DEFAULT_TCP_IDLE_TIMEOUT:g})")
    net.add_argument("--max-tcp-connections", type=int, default=DEFAULT_MAX_TCP_CONNECTIONS, metavar="N",
                     help=f"open TCP connections at most (default {DEFAULT_MAX_TCP_CONNECTIONS})")

    fwd = parser.add_argument_group("forwarding")
    fwd.add_argument("--upstream", action="append", metavar="HOST[:PORT]",
                     help=f"upstream resolver, repeatable up to {MAX_UPSTREAMS} times; IPv6 as [::1]:53 "
                          "(default: the nameservers of --resolv-conf)")
    fwd.add_argument("--resolv-conf", metavar="FILE", type=Path, default=DEFAULT_RESOLV_CONF,
                     help=f"read the upstreams from the nameserver lines of FILE when no --upstream is given "
                          f"(default {DEFAULT_RESOLV_CONF}; an empty file: names outside the cluster are refused)")
    fwd.add_argument("--upstream-policy", choices=UPSTREAM_POLICIES, default="random",
                     help="how an upstream is chosen (default random)")
    fwd.add_argument("--max-concurrent", type=int, default=DEFAULT_MAX_CONCURRENT, metavar="N",
                     help=f"forwarded queries in flight at most; more get REFUSED (default {DEFAULT_MAX_CONCURRENT})")
    fwd.add_argument("--cache-size", type=int, default=DEFAULT_CACHE_SIZE, metavar="N",
                     help=f"forwarded answers kept at most, least recently used evicted first; 0 disables "
                          f"the cache (default {DEFAULT_CACHE_SIZE})")
    fwd.add_argument("--prefetch", action="store_true",
                     help="refresh popular cached answers in the background shortly before they expire")
    fwd.add_argument("--serve-stale", default="0", metavar="DURATION",
                     help="serve expired answers, for up to DURATION past their expiry, when the upstreams "
                          "do not answer (e.g. 1h; default off)")

    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


def parse_duration(text: str) -> float:
    """`30s`, `5m`, `1h`, `250ms` or plain seconds -> seconds; raises ConfigError."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ConfigError(f"{text!r} is not a duration (use e.g. 30s, 5m, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def config_from_args(args: argparse.Namespace) -> Config:
    """Turn parsed flags into a Config; raises ConfigError with a message for the user."""
    namespace, _, name = args.dns_service.partition("/")
    if not namespace or not name:
        raise ConfigError(f"--dns-service {args.dns_service!r} must be NAMESPACE/NAME")
    return Config(
        listen=tuple(parse_hostport(text, 53) for text in (args.listen or ["0.0.0.0:53"])),
        cluster_domain=args.cluster_domain.strip().rstrip(".").lower(),
        ttl=args.ttl,
        pods=args.pods,
        endpoint_pod_names=args.endpoint_pod_names,
        dns_service=(namespace.lower(), name.lower()),
        reverse_fallthrough=not args.no_reverse_fallthrough,
        fixtures=args.fixtures,
        kubeconfig=args.kubeconfig,
        kube_context=args.context,
        namespaces=tuple(ns.strip().lower() for ns in (args.namespaces or "").split(",") if ns.strip()),
        labels=args.labels,
        namespace_labels=args.namespace_labels,
        watch_file=args.watch_file,
        tcp_idle_timeout=args.tcp_idle_timeout,
        max_tcp_connections=args.max_tcp_connections,
        upstreams=tuple(parse_hostport(text, 53) for text in (args.upstream or [])),
        resolv_conf=args.resolv_conf,
        upstream_policy=args.upstream_policy,
        max_concurrent=args.max_concurrent,
        cache_size=args.cache_size,
        prefetch=args.prefetch,
        serve_stale=parse_duration(args.serve_stale),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `dns-server` and `python -m dns_server`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        if config.fixtures is None and config.kubeconfig is None and "KUBERNETES_SERVICE_HOST" not in os.environ:
            raise ConfigError("no cluster data: give --fixtures DIR or --kubeconfig FILE (or run inside a pod)")
    except ConfigError as error:
        parser.error(str(error))
    from dns_server.app import run  # imported late: --help and usage errors stay fast

    return run(config, log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
