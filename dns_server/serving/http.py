"""The HTTP endpoints of the health, ready and prometheus plugins: /health, /ready and /metrics.

They run on threads of their own, never on the DNS event loop: a probe or a scrape costs the DNS
side only the interpreter time it takes.  Blocks and plugins may name the same address; one HTTP
server per distinct (host, port) serves every path configured on it (CoreDNS shares one listener
per address among `prometheus` blocks, and among `ready` blocks, the same way).

Rules this module keeps (CoreDNS 1.14 plugin/health, plugin/ready, plugin/metrics):
- /health answers 200 `OK` as long as the process runs, lameduck included: there is no unhealthy
  state.  Once a second the process asks its own /health (3 s timeout); the time it took feeds
  `coredns_health_request_duration_seconds`, a failure `coredns_health_request_failures_total`.
- /ready answers 200 `OK` when every readiness check holds, else 503 and the sorted,
  comma-separated names of those that do not.  A check that held once is not asked again
  (`monitor until-ready`); a `current` check (ours: the supervisor's "every worker has
  acknowledged the data it was sent") is asked at every request.  After `begin_shutdown()` it
  answers 503 `Shutting down`.
- /metrics answers the registry in the Prometheus text format 0.0.4.
- /explain (our extension, `--explain-http PORT`, off by default) answers `dns-server explain` for
  its query string, on 127.0.0.1 only: it shows the cluster's objects to whoever can reach it.
- Any method is served; any other path gets Go's 404 `404 page not found`.
- Read, write and idle timeouts are 5 s; one request per connection, so a stopped endpoint leaves
  no kept-alive connection answering.
- Host "" listens on every interface (IPv6 and IPv4 where the system has both), "localhost" on
  127.0.0.1 (Go's net.Listen picks that one address).  An address that cannot be bound is an
  `EndpointError` from `start()`.
"""

from __future__ import annotations

import functools
import http.client
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

import dns_server
from dns_server.config.model import Config, format_address, format_duration
from dns_server.observability.metrics import Metrics
from dns_server.plugins.health import HealthSettings

HEALTH_PATH, READY_PATH, METRICS_PATH = "/health", "/ready", "/metrics"  # fixed in CoreDNS
EXPLAIN_PATH, EXPLAIN_HOST = "/explain", "127.0.0.1"
TIMEOUT = 5.0  # ReadTimeout, WriteTimeout and IdleTimeout of CoreDNS's HTTP servers
SELF_CHECK_INTERVAL = 1.0  # health: the local /health request runs once a second
SELF_CHECK_TIMEOUT = 3.0  # health: its client timeout
SELF_CHECK_SLOW = 1.0  # health: warn when it took longer than this
POLL_INTERVAL = 0.5  # how long `stop()` may wait for a server's accept loop to notice
TEXT = "text/plain; charset=utf-8"  # what Go's content sniffing gives a plain-text body
NOT_FOUND = b"404 page not found\n"  # net/http NotFound

Page = tuple[int, str, bytes]  # status, content type, body
Readiness = tuple[str, Callable[[], bool]]  # a plugin's name and whether it is ready
Explain = Callable[[str], Page]  # the /explain page for a query string

log = logging.getLogger(__name__)
health_log = logging.getLogger("dns_server.plugins.health")
ready_log = logging.getLogger("dns_server.plugins.ready")


class EndpointError(Exception):
    """An HTTP endpoint that cannot listen; the message names the address, the paths and why."""


class HttpEndpoints:
    """The /health, /ready and /metrics servers of a configuration.

    `start()` binds and serves; on shutdown the owner calls `begin_shutdown()`, keeps serving DNS
    for `lameduck` seconds, then calls `stop()`.
    """

    def __init__(self, metrics: Metrics, *, health: Sequence[HealthSettings] = (),
                 ready: Sequence[tuple[str, int]] = (), prometheus: Sequence[tuple[str, int]] = (),
                 readiness: Sequence[Readiness] = (), current: Sequence[Readiness] = (),
                 scraped: CollectorRegistry | None = None, explain: tuple[int, Explain] | None = None) -> None:
        self._metrics = metrics
        self._scraped = scraped or metrics.registry  # what /metrics serves
        self._routes: dict[tuple[str, int], dict[str, Callable[[], Page]]] = {}
        self._queries: dict[tuple[str, int], dict[str, Explain]] = {}
        if explain is not None:
            self._queries[(EXPLAIN_HOST, explain[0])] = {EXPLAIN_PATH: explain[1]}
            self._routes.setdefault((EXPLAIN_HOST, explain[0]), {})
        for settings in health:
            self._routes.setdefault(settings.address, {})[HEALTH_PATH] = self._health
        for address in ready:
            self._routes.setdefault(address, {})[READY_PATH] = self._ready
        for address in prometheus:
            self._routes.setdefault(address, {})[METRICS_PATH] = self._scrape
        self._health_addresses = list(dict.fromkeys(settings.address for settings in health))
        self.lameduck = max((settings.lameduck for settings in health), default=0.0)
        self._not_ready = list(readiness)  # the checks not yet seen to hold
        self._current = list(current)  # the checks asked every time
        self._ready_lock = threading.Lock()
        self._shutting_down = False
        self._servers: dict[tuple[str, int], _Server] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @classmethod
    def for_config(cls, config: Config, metrics: Metrics, readiness: Sequence[Readiness] = (),
                   current: Sequence[Readiness] = (), scraped: CollectorRegistry | None = None,
                   explain: Explain | None = None) -> HttpEndpoints:
        """The endpoints every block of `config` asks for, and /explain when the command line turned it on;
        /metrics serves `scraped` (default: `metrics`)."""
        return cls(metrics, health=[b.setting("health") for b in config.blocks if b.setting("health") is not None],
                   ready=[b.setting("ready") for b in config.blocks if b.setting("ready") is not None],
                   prometheus=[b.setting("prometheus") for b in config.blocks if b.setting("prometheus") is not None],
                   readiness=readiness, current=current, scraped=scraped,
                   explain=(config.explain_port, explain) if config.explain_port and explain is not None else None)

    def start(self) -> None:
        """Bind every address, then serve; raises EndpointError (and binds nothing) if one cannot be bound."""
        for (host, port), routes in self._routes.items():
            queries = self._queries.get((host, port), {})
            try:
                self._servers[(host, port)] = _Server(_listen_host(host), port, routes, queries)
            except OSError as error:
                self._close_servers()
                raise EndpointError(f"cannot listen on {format_address(host, port)} for "
                                    f"{', '.join(sorted([*routes, *queries]))}: {error.strerror or error}") from None
        for address, server in self._servers.items():
            self._spawn(f"http {format_address(*address)}", server.serve_forever, POLL_INTERVAL)
        for address in self._health_addresses:
            self._spawn(f"health check {format_address(*address)}", self._check_health, address)

    def begin_shutdown(self) -> None:
        """From now on /ready answers 503; /health and /metrics answer until `stop()`."""
        with self._ready_lock:
            already, self._shutting_down = self._shutting_down, True
        if self.lameduck > 0 and not already:
            health_log.info("Going into lameduck mode for %s", format_duration(self.lameduck))

    def stop(self) -> None:
        """Stop the health check and every server; requests under way finish."""
        self._stopping.set()
        for server in self._servers.values():
            server.shutdown()
        for thread in self._threads:
            thread.join()
        self._close_servers()

    def _spawn(self, name: str, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _close_servers(self) -> None:
        for server in self._servers.values():
            server.server_close()
        self._servers.clear()

    def _health(self) -> Page:
        return 200, TEXT, b"OK"

    def _ready(self) -> Page:
        with self._ready_lock:
            if self._shutting_down:
                return 503, TEXT, b"Shutting down"
            self._not_ready = [(name, ready) for name, ready in self._not_ready if not ready()]
            failing = {name for name, _ in self._not_ready} | {name for name, ready in self._current if not ready()}
            names = ",".join(sorted(failing))
        if not names:
            return 200, TEXT, b"OK"
        ready_log.info('Plugins not ready: "%s"', names)
        return 503, TEXT, names.encode()

    def _scrape(self) -> Page:
        return 200, CONTENT_TYPE_PLAIN_0_0_4, generate_latest(self._scraped)

    def _check_health(self, address: tuple[str, int]) -> None:
        """Ask our own /health once a second: how long it takes shows how loaded the process is."""
        host = address[0] or "localhost"
        port = self._servers[address].server_address[1]
        url = f"http://{format_address(host, port)}{HEALTH_PATH}"
        while not self._stopping.wait(SELF_CHECK_INTERVAL):
            start = time.monotonic()
            try:
                connection = http.client.HTTPConnection(_listen_host(host), port, timeout=SELF_CHECK_TIMEOUT)
                try:
                    connection.request("GET", HEALTH_PATH)
                    connection.getresponse().read()
                finally:
                    connection.close()
            except (OSError, http.client.HTTPException) as error:
                if self._stopping.is_set():
                    return
                self._metrics.health_duration.observe(time.monotonic() - start)
                self._metrics.health_failures.inc()
                health_log.warning('Local health request to "%s" failed: %s', url, error)
                continue
            elapsed = time.monotonic() - start
            self._metrics.health_duration.observe(elapsed)
            if elapsed > SELF_CHECK_SLOW:
                health_log.warning('Local health request to "%s" took more than 1s: %s', url, format_duration(elapsed))


def _listen_host(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    if host == "":
        return "::" if socket.has_dualstack_ipv6() else "0.0.0.0"
    return host


class _Server(socketserver.ThreadingTCPServer):
    """One listening address: a thread per request, the paths configured on it."""

    daemon_threads = True
    allow_reuse_address = True  # SO_REUSEADDR: restart while old connections linger; a listener still fails

    def __init__(self, host: str, port: int, routes: dict[str, Callable[[], Page]],
                 queries: dict[str, Explain]) -> None:
        self.routes = routes
        self.queries = queries  # the paths whose page depends on the query string
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too, as Go's ":port"
        super().server_bind()

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("HTTP request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = TIMEOUT

    def version_string(self) -> str:
        return f"dns-server/{dns_server.__version__}"

    def serve(self) -> None:
        url = urlsplit(self.path)
        route = self.server.routes.get(url.path)
        if url.path in self.server.queries:
            route = functools.partial(self.server.queries[url.path], url.query)
        if route is None:
            status, content_type, body = 404, TEXT, NOT_FOUND
        else:
            try:
                status, content_type, body = route()
            except Exception:  # a bug in a readiness check or a metrics reader: the endpoint keeps serving
                log.exception("serving %s failed", self.path)
                status, content_type, body = 500, TEXT, b"Internal Server Error"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 404:
            self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = serve

    def log_message(self, format: str, *args: object) -> None:
        """No access log: CoreDNS writes none for these endpoints."""

