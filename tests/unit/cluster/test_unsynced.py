"""Before the first sync: cluster names are SERVFAIL, never NXDOMAIN; other names are not held up.

Pipeline level, with the socket-free forwarder of tests/doubles.py.  The same over the wire,
with the real server process, a real unbound upstream and the API stand-in down:
tests/integration/test_kube_api.py::test_api_down_at_start_then_up.
"""

from __future__ import annotations

import dns.rcode

from dns_server.cluster.records import (
    ENDPOINT_SLICE,
    NAMESPACE,
    SERVICE,
    Namespace,
    Port,
    Service,
)
from dns_server.cluster.registry import Registry
from dns_server.cluster.updates import Replace
from tests.doubles import Z, ask, fakes, pipeline_for


def test_outside_names_are_answered_while_cluster_names_wait_for_the_sync() -> None:
    registry = Registry(required_kinds={NAMESPACE, SERVICE, ENDPOINT_SLICE})
    pipeline = pipeline_for(registry=registry)

    outside = ask(pipeline, "www.example.com")
    assert outside.rcode() == dns.rcode.NOERROR and outside.answer[0][0].to_text() == "192.0.2.10"
    for name in (f"web.shop.svc.{Z}", f"shop.svc.{Z}", f"10-0-0-1.shop.pod.{Z}", f"a.b.c.web.shop.svc.{Z}"):
        assert ask(pipeline, name).rcode() == dns.rcode.SERVFAIL, name
    assert ask(pipeline, f"dns-version.{Z}", "TXT").rcode() == dns.rcode.NOERROR

    # namespaces and services listed, slices not yet: what exists is served, misses are still SERVFAIL
    registry.apply([Replace(frozenset({NAMESPACE}), (Namespace("shop"),)),
                    Replace(frozenset({SERVICE}), (Service("shop", "web", ("10.96.0.1",), False, "",
                                                           (Port("http", "TCP", 80),)),))])
    assert ask(pipeline, f"web.shop.svc.{Z}").answer[0][0].to_text() == "10.96.0.1"
    assert ask(pipeline, f"nope.shop.svc.{Z}").rcode() == dns.rcode.SERVFAIL
    registry.apply([Replace(frozenset({ENDPOINT_SLICE}), ())])
    assert ask(pipeline, f"nope.shop.svc.{Z}").rcode() == dns.rcode.NXDOMAIN
    assert ask(pipeline, f"a.b.c.web.shop.svc.{Z}").rcode() == dns.rcode.NXDOMAIN  # kept SERVFAIL dropped by the sync
    assert ask(pipeline, "api.payments.example.com").answer[0][0].to_text() == "192.0.2.20"
    assert fakes(pipeline)[0].asked == ["www.example.com.", "api.payments.example.com."]
