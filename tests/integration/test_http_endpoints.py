"""/health, /ready and /metrics over real HTTP on local ports (no DNS server needed).

Each test runs the real `HttpEndpoints` with its threads and sockets, asked by a real HTTP client
(http.client); readiness checks are plain functions standing in for the kubernetes plugin's.
"""

from __future__ import annotations

import http.client
import logging
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

from dns_server.config.model import Config, ZoneKey
from dns_server.observability.metrics import PROXY_NAME, Metrics
from dns_server.plugins.health import HealthSettings
from dns_server.serving.http import EndpointError, HttpEndpoints
from tests.doubles import server_block
from tests.integration.server import free_port, wait_for

HOST = "127.0.0.1"


def request(port: int, path: str, method: str = "GET") -> tuple[int, str, str]:
    """(status, content type, body) of one request."""
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


def refused(port: int) -> bool:
    try:
        request(port, "/health")
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def running() -> Iterator[list[HttpEndpoints]]:
    """Endpoints a test starts, stopped after it."""
    started: list[HttpEndpoints] = []
    yield started
    for endpoints in started:
        endpoints.stop()


def start(running: list[HttpEndpoints], endpoints: HttpEndpoints) -> HttpEndpoints:
    endpoints.start()
    running.append(endpoints)
    return endpoints


def test_health_answers_ok_and_other_paths_404(running: list[HttpEndpoints]) -> None:
    """The health endpoint: any method gets 200 `OK`; other paths get Go's 404."""
    port = free_port()
    start(running, HttpEndpoints(Metrics(), health=[HealthSettings((HOST, port))]))
    assert request(port, "/health") == (200, "text/plain; charset=utf-8", "OK")
    assert request(port, "/health?verbose=1", "POST") == (200, "text/plain; charset=utf-8", "OK")
    assert request(port, "/health", "HEAD") == (200, "text/plain; charset=utf-8", "")
    assert request(port, "/healthz") == (404, "text/plain; charset=utf-8", "404 page not found\n")
    assert request(port, "/ready")[0] == 404  # not configured on this address
    assert request(port, "/metrics")[0] == 404


def test_the_health_self_check_feeds_its_histogram(running: list[HttpEndpoints]) -> None:
    """The once-a-second local /health request is observed in coredns_health_request_duration_seconds."""
    health, scrape = free_port(), free_port()
    start(running, HttpEndpoints(Metrics(), health=[HealthSettings((HOST, health))], prometheus=[(HOST, scrape)]))

    def checked() -> bool:
        body = request(scrape, "/metrics")[2]
        return "coredns_health_request_duration_seconds_count 0.0" not in body
    wait_for(checked, 10, "a health self-check to be observed")
    assert "coredns_health_request_failures_total 0.0" in request(scrape, "/metrics")[2]


def test_every_interface_and_localhost(running: list[HttpEndpoints]) -> None:
    """Host "" listens on IPv4 and IPv6 (where the system has IPv6), "localhost" on 127.0.0.1."""
    everywhere, loopback = free_port(), free_port()
    start(running, HttpEndpoints(Metrics(), health=[HealthSettings(("", everywhere))],
                                 prometheus=[("localhost", loopback)]))
    assert request(everywhere, "/health")[2] == "OK"
    assert request(loopback, "/metrics")[0] == 200
    if socket.has_dualstack_ipv6():
        connection = http.client.HTTPConnection("::1", everywhere, timeout=5)
        connection.request("GET", "/health")
        assert connection.getresponse().read() == b"OK"
        connection.close()


def test_ready_names_the_plugins_not_ready_then_stays_ready(running: list[HttpEndpoints],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Readiness checks stand in for plugins; once a check held it is not asked again (until-ready)."""
    port = free_port()
    state = {"kubernetes": False, "hosts": False}
    checks = [("kubernetes", lambda: state["kubernetes"]), ("hosts", lambda: state["hosts"])]
    start(running, HttpEndpoints(Metrics(), ready=[(HOST, port)], readiness=checks))
    with caplog.at_level(logging.INFO, logger="dns_server.plugins.ready"):
        assert request(port, "/ready") == (503, "text/plain; charset=utf-8", "hosts,kubernetes")
    assert 'Plugins not ready: "hosts,kubernetes"' in caplog.messages
    state["hosts"] = True
    assert request(port, "/ready")[1:] == ("text/plain; charset=utf-8", "kubernetes")
    state["kubernetes"] = True
    assert request(port, "/ready") == (200, "text/plain; charset=utf-8", "OK")
    state["kubernetes"] = False  # the API went away: still ready
    assert request(port, "/ready") == (200, "text/plain; charset=utf-8", "OK")


def test_a_current_check_is_asked_at_every_request(running: list[HttpEndpoints]) -> None:
    """The supervisor's "every worker has acknowledged its data" check: unlike a plugin's, it can
    make /ready 503 again after 200, under the same name as the latched check of that plugin."""
    port = free_port()
    state = {"synced": False, "current": True}
    start(running, HttpEndpoints(Metrics(), ready=[(HOST, port)], readiness=[("kubernetes", lambda: state["synced"])],
                                 current=[("kubernetes", lambda: state["current"])]))
    assert request(port, "/ready")[::2] == (503, "kubernetes")
    state["synced"] = True
    assert request(port, "/ready")[::2] == (200, "OK")
    state["current"] = False  # a worker is late
    assert request(port, "/ready")[::2] == (503, "kubernetes")
    state["current"] = True
    assert request(port, "/ready")[::2] == (200, "OK")


def test_ready_without_checks_is_ready(running: list[HttpEndpoints]) -> None:
    """The ready endpoint with no plugin that reports readiness (CoreDNS: ready at once)."""
    port = free_port()
    start(running, HttpEndpoints(Metrics(), ready=[(HOST, port)]))
    assert request(port, "/ready") == (200, "text/plain; charset=utf-8", "OK")


def test_lameduck_health_and_metrics_answer_until_stopped_ready_says_shutting_down(
        running: list[HttpEndpoints], caplog: pytest.LogCaptureFixture) -> None:
    """Shutdown as the owner runs it: begin_shutdown(), the lameduck wait, stop()."""
    health, ready, scrape = free_port(), free_port(), free_port()
    endpoints = start(running, HttpEndpoints(Metrics(), health=[HealthSettings((HOST, health), lameduck=5.0)],
                                             ready=[(HOST, ready)], prometheus=[(HOST, scrape)]))
    assert endpoints.lameduck == 5.0
    with caplog.at_level(logging.INFO, logger="dns_server.plugins.health"):
        endpoints.begin_shutdown()
    assert "Going into lameduck mode for 5s" in caplog.messages
    assert request(health, "/health") == (200, "text/plain; charset=utf-8", "OK")
    assert request(ready, "/ready") == (503, "text/plain; charset=utf-8", "Shutting down")
    assert request(scrape, "/metrics")[0] == 200
    endpoints.stop()
    assert refused(health) and refused(ready) and refused(scrape)


def test_blocks_sharing_an_address_share_one_server(running: list[HttpEndpoints]) -> None:
    """Two server blocks with `prometheus` on one address, and `health` on it too: one listener serves all."""
    port = free_port()
    blocks = (server_block((ZoneKey("cluster.local"),), prometheus=(HOST, port)),
              server_block((ZoneKey(""),), prometheus=(HOST, port), health=HealthSettings((HOST, port))))
    metrics = Metrics()
    metrics.set_plugins(blocks)
    start(running, HttpEndpoints.for_config(Config(blocks), metrics))
    status, content_type, body = request(port, "/metrics")
    assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert 'coredns_plugin_enabled{name="prometheus",server="dns://:53",view="",zone="cluster.local."} 1.0' in body
    assert 'coredns_plugin_enabled{name="prometheus",server="dns://:53",view="",zone="."} 1.0' in body
    assert request(port, "/health")[2] == "OK"


def test_a_busy_port_is_a_clear_error_and_binds_nothing(running: list[HttpEndpoints]) -> None:
    """The first endpoints hold the port; the second set fails whole, leaving its free port unbound."""
    busy, free = free_port(), free_port()
    start(running, HttpEndpoints(Metrics(), ready=[(HOST, busy)]))
    second = HttpEndpoints(Metrics(), health=[HealthSettings((HOST, free))], prometheus=[(HOST, busy)])
    with pytest.raises(EndpointError, match=f"cannot listen on 127.0.0.1:{busy} for /metrics: Address already in use"):
        second.start()
    assert refused(free)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_the_exposition_passes_promtool(running: list[HttpEndpoints]) -> None:
    """promtool, Prometheus's own checker, reads a scrape with every family observed."""
    port = free_port()
    metrics = Metrics()
    tally = metrics.queries.tally("dns://:53", ".", "", "udp", "1", 1, 0, "forward", True, 40, 300)
    tally.count, tally.seconds = 2, 0.0101
    tally.add_slow(0.01)
    cache = metrics.cache("dns://:53", ".", lambda: (5, 1))
    cache.requests = cache.success_hits = 1
    metrics.answer_cache("dns://:53", lambda: 3).hits = 2
    metrics.snapshot("cluster.local.", lambda: 1.5, lambda: {"services": 2})
    metrics.proxy_request_duration.labels(PROXY_NAME, "10.0.0.1:53", "NOERROR").observe(0.002)
    metrics.dns_programming_duration.labels("cluster_ip").observe(1.2)
    metrics.watch_relists.labels("services").inc()
    metrics.set_reload_version("cd" * 64)
    start(running, HttpEndpoints(metrics, prometheus=[(HOST, port)]))
    body = request(port, "/metrics")[2]
    checked = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (checked.stdout + checked.stderr).strip() == ""
