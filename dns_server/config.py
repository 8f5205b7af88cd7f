"""The one validated configuration, built before anything binds a socket.

Flags (cli.py) and, later, a Corefile produce the same frozen `Config`; everything downstream
reads only this.  Defaults carry the precedent they come from.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CLUSTER_DOMAIN = "cluster.local"  # kubelet --cluster-domain default
DEFAULT_TTL = 5  # CoreDNS kubernetes plugin default
MAX_TTL = 3600  # CoreDNS kubernetes plugin upper bound for `ttl`
DEFAULT_LISTEN = ("0.0.0.0", 53)
DEFAULT_TCP_IDLE_TIMEOUT = 8.0  # miekg/dns (CoreDNS's library) idle timeout for TCP
DEFAULT_MAX_TCP_CONNECTIONS = 1000
DEFAULT_MAX_UDP_PAYLOAD = 1232  # DNS flag day 2020 recommendation; CoreDNS's bufsize default
DEFAULT_DNS_SERVICE = ("kube-system", "kube-dns")  # the Service kubeadm creates for cluster DNS
DEFAULT_MAX_CONCURRENT = 1000  # CoreDNS forward plugin max_concurrent in the default Corefile
DEFAULT_CACHE_SIZE = 10_000  # CoreDNS cache: 9984 entries by default
DEFAULT_RESOLV_CONF = Path("/etc/resolv.conf")
MAX_UPSTREAMS = 15  # CoreDNS forward: at most 15 upstreams
UPSTREAM_POLICIES = ("random", "round_robin", "sequential")  # CoreDNS forward plugin policies
POD_MODES = ("disabled", "insecure", "verified")


class ConfigError(ValueError):
    """A configuration a person must fix; the message is shown as is."""


@dataclass(frozen=True, slots=True)
class Config:
    listen: tuple[tuple[str, int], ...] = (DEFAULT_LISTEN,)
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
    ttl: int = DEFAULT_TTL
    pods: str = "insecure"
    endpoint_pod_names: bool = False
    dns_service: tuple[str, str] = DEFAULT_DNS_SERVICE
    reverse_fallthrough: bool = True  # unknown reverse names go upstream, as in the default Corefile
    # sources
    fixtures: Path | None = None
    kubeconfig: Path | None = None
    kube_context: str | None = None
    namespaces: tuple[str, ...] = ()
    labels: str | None = None
    namespace_labels: str | None = None
    watch_file: Path | None = None
    # transport
    tcp_idle_timeout: float = DEFAULT_TCP_IDLE_TIMEOUT
    max_tcp_connections: int = DEFAULT_MAX_TCP_CONNECTIONS
    max_udp_payload: int = DEFAULT_MAX_UDP_PAYLOAD
    # forwarding
    upstreams: tuple[tuple[str, int], ...] = ()  # empty: the nameservers of `resolv_conf`, read at start
    resolv_conf: Path = DEFAULT_RESOLV_CONF
    upstream_policy: str = "random"
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    cache_size: int = DEFAULT_CACHE_SIZE
    prefetch: bool = False
    serve_stale: float = 0.0  # seconds; 0 disables

    def __post_init__(self) -> None:
        if not self.listen:
            raise ConfigError("at least one --listen address is needed")
        if not 0 <= self.ttl <= MAX_TTL:
            raise ConfigError(f"--ttl must be between 0 and {MAX_TTL}, not {self.ttl}")
        if self.pods not in POD_MODES:
            raise ConfigError(f"--pods must be one of {', '.join(POD_MODES)}, not {self.pods!r}")
        if self.upstream_policy not in UPSTREAM_POLICIES:
            raise ConfigError(f"--upstream-policy must be one of {', '.join(UPSTREAM_POLICIES)}")
        if not valid_domain(self.cluster_domain):
            raise ConfigError(f"--cluster-domain {self.cluster_domain!r} is not a domain name")
        if self.namespaces and self.namespace_labels:
            raise ConfigError("--namespaces and --namespace-labels cannot be used together")
        if self.fixtures is not None and self.kubeconfig is not None:
            raise ConfigError("--fixtures and --kubeconfig are alternatives: choose one source")
        if self.kube_context and self.kubeconfig is None:
            raise ConfigError("--context names a context of the --kubeconfig file: give --kubeconfig too")
        if self.fixtures is not None and (self.labels or self.namespace_labels):
            raise ConfigError("--labels and --namespace-labels are selectors the Kubernetes API applies: "
                              "they need the API source, not --fixtures")
        if self.watch_file is not None and self.fixtures is None:
            raise ConfigError("--watch-file replays events on top of --fixtures DIR (an empty directory will do)")
        if self.max_udp_payload < 512 or self.max_udp_payload > 65535:
            raise ConfigError("the maximum UDP payload must be between 512 and 65535")
        if self.max_concurrent < 1 or self.max_tcp_connections < 1 or self.cache_size < 0:
            raise ConfigError("limits must be positive")
        if len(self.upstreams) > MAX_UPSTREAMS:
            raise ConfigError(f"at most {MAX_UPSTREAMS} --upstream servers, not {len(self.upstreams)}")
        if self.serve_stale < 0:
            raise ConfigError("--serve-stale cannot be negative")


def valid_domain(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return bool(name) and len(name) <= 253 and all(0 < len(label) <= 63 for label in labels)


def parse_hostport(text: str, default_port: int) -> tuple[str, int]:
    """`HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` -> (host, port); raises ConfigError."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{text!r}: missing ']' in an IPv6 address")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{text!r}: {host!r} is not an IP address") from None
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{text!r}: {port_text!r} is not a port number")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    """The inverse of `parse_hostport`: `1.2.3.4:53` or `[::1]:53`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
