"""Answers made ahead, on the real server process: once /ready says OK, the first query pods send for
any service's A, AAAA or named port's SRV is answered from the answer table, in one process and in
each of two workers.  Queries come from dnspython, in the form glibc's and musl's stub resolvers
send them (RD, no EDNS), each from its own source port, so the kernel spreads them over the workers.
"""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.integration.server import ServerProcess, free_port, wait_for
from tests.integration.test_workers import DEADLINE, fetch, samples

# The bundled example cluster's (zones/): ClusterIP, headless, a named port of each, IPv4 only (AAAA: NODATA)
QUESTIONS = [
    ("kubernetes.default.svc.cluster.local", "A", ["10.96.0.1"]),
    ("frontend.shop.svc.cluster.local", "A", ["10.96.10.20"]),
    ("cart.shop.svc.cluster.local", "AAAA", []),
    ("postgres.data.svc.cluster.local", "AAAA", []),
    ("_postgres._tcp.postgres.data.svc.cluster.local", "SRV", None),
    ("_redis._tcp.redis.data.svc.cluster.local", "SRV", None),
]


def table_counts(metrics: int) -> tuple[float, float]:
    """The answer table's hits and misses, summed over every listener and worker."""
    return (sum(samples(metrics, "dns_server_answer_cache_hits_total").values()),
            sum(samples(metrics, "dns_server_answer_cache_misses_total").values()))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_first_query_of_every_stub_question_is_a_table_hit_once_ready(zones_copy: Path, workers: str) -> None:
    metrics, ready = free_port(), free_port()
    with ServerProcess("--fixtures", str(zones_copy), "--workers", workers, "--metrics", f"127.0.0.1:{metrics}",
                       "--ready", f"127.0.0.1:{ready}") as server:
        wait_for(lambda: fetch(ready, "/ready") == (200, "OK"), DEADLINE, "/ready to say OK")
        before = table_counts(metrics)
        asked = 0
        for name, qtype, addresses in QUESTIONS:
            for exchange in (dns.query.udp, dns.query.tcp):
                for _ in range(3):
                    reply = exchange(dns.message.make_query(name, qtype, use_edns=False), server.host,
                                     port=server.port, timeout=5)
                    asked += 1
                    assert reply.rcode() == dns.rcode.NOERROR
                    records = [rdata.to_text() for rrset in reply.answer for rdata in rrset]
                    if addresses is not None:
                        assert records == addresses
                    else:
                        assert records and [dns.rdatatype.to_text(rrset.rdtype) for rrset in reply.answer] == [qtype]
        hits, misses = table_counts(metrics)
        assert (hits - before[0], misses - before[1]) == (asked, 0)


NEW_SERVICE = """
---
apiVersion: v1
kind: Service
metadata: {name: search, namespace: shop}
spec:
  clusterIP: 10.96.10.99
  ports:
  - {name: http, port: 80, protocol: TCP}
"""


def test_a_service_added_later_is_answered_ahead_too(zones_copy: Path) -> None:
    """The fixture files gain a service: its A, AAAA and SRV are kept before anyone asks (waited for on
    /metrics, with no query meanwhile), and the first query of each is a table hit."""
    metrics, ready = free_port(), free_port()
    with ServerProcess("--fixtures", str(zones_copy), "--metrics", f"127.0.0.1:{metrics}",
                       "--ready", f"127.0.0.1:{ready}") as server:
        wait_for(lambda: fetch(ready, "/ready") == (200, "OK"), DEADLINE, "/ready to say OK")
        entries = samples(metrics, "dns_server_answer_cache_entries")
        kept = sum(entries.values())
        with (zones_copy / "cluster.yaml").open("a") as manifests:
            manifests.write(NEW_SERVICE)
        wait_for(lambda: sum(samples(metrics, "dns_server_answer_cache_entries").values()) >= kept + 3, DEADLINE,
                 "the new service's answers to be kept")
        before = table_counts(metrics)
        for name, qtype in [("search.shop.svc.cluster.local", "A"), ("search.shop.svc.cluster.local", "AAAA"),
                            ("_http._tcp.search.shop.svc.cluster.local", "SRV")]:
            reply = dns.query.udp(dns.message.make_query(name, qtype, use_edns=False), server.host,
                                  port=server.port, timeout=5)
            assert reply.rcode() == dns.rcode.NOERROR
        assert reply.answer[0].to_text() == "_http._tcp.search.shop.svc.cluster.local. 5 IN SRV 0 100 80 " \
                                            "search.shop.svc.cluster.local."
        hits, misses = table_counts(metrics)
        assert (hits - before[0], misses - before[1]) == (3, 0)
