"""The kubernetes plugin's options, each in a server block of its own, asked over the wire.

Real parts: the server runs as its own process from a Corefile (`python -m dns_server -conf FILE
-dns.port PORT`) and reads the bundled zones/ example cluster through our `fixtures DIR`
extension (the same objects the API would list); the client is dnspython; the upstream behind
`fallthrough` is the real unbound daemon (tests/integration/upstream.py).  One process serves
every block: each option gets a zone of its own (`ttl.test`, `verified.test`, ...), so the
answers for the same object under two zones show what the option changed, and the blocks on
one port exercise the routing by zone at the same time.  Expected answers follow
../shared/DNS-BEHAVIOUR.md and CoreDNS 1.14's kubernetes plugin README.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.cluster_data import ZONES
from tests.integration.replies import outcome, rcode, ttls, values
from tests.integration.server import ServerProcess, free_port
from tests.integration.upstream import Unbound

CLUSTER = "cluster.local"

COREFILE = """\
cluster.local {
    kubernetes {
        fixtures {$ZONES}
    }
}
ttl.test {
    kubernetes {
        fixtures {$ZONES}
        ttl 60
    }
}
insecure.test {
    kubernetes {
        fixtures {$ZONES}
        pods insecure
    }
}
verified.test {
    kubernetes {
        fixtures {$ZONES}
        pods verified
    }
}
shop.test {
    kubernetes {
        fixtures {$ZONES}
        namespaces shop
    }
}
podnames.test {
    kubernetes {
        fixtures {$ZONES}
        endpoint_pod_names
    }
}
ignore.test {
    kubernetes {
        fixtures {$ZONES}
        ignore empty_service
    }
}
noendpoints.test {
    kubernetes {
        fixtures {$ZONES}
        noendpoints
    }
}
one.test two.test {
    kubernetes one.test two.test {
        fixtures {$ZONES}
    }
}
. {
    kubernetes fallthrough.test in-addr.arpa {
        fixtures {$ZONES}
        fallthrough in-addr.arpa
    }
    forward . {$UNBOUND}
}
cluster.local:{$REVERSE_PORT} 10.96.0.0/15:{$REVERSE_PORT} {
    kubernetes cluster.local 10.96.0.0/15 {
        fixtures {$ZONES}
    }
}
"""


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    with Unbound(tmp_path_factory.mktemp("unbound")) as running:
        yield running


@pytest.fixture(scope="module")
def reverse_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, unbound: Unbound, reverse_port: int) -> Iterator[ServerProcess]:
    env = {"ZONES": str(ZONES), "UNBOUND": unbound.address, "REVERSE_PORT": str(reverse_port)}
    with ServerProcess.from_corefile(tmp_path_factory.mktemp("kubernetes"), COREFILE, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def reverse(server: ServerProcess, reverse_port: int) -> ServerProcess:
    """The same process, asked on the port of the block keyed by a CIDR."""
    return server.at(port=reverse_port)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_ttl_sets_the_ttl_of_cluster_records(server: ServerProcess, transport: str) -> None:
    """`ttl 60` against the default 5, for an A and an SRV answer."""
    for zone, ttl in ((CLUSTER, 5), ("ttl.test", 60)):
        reply = server.ask(f"frontend.shop.svc.{zone}", "A", transport)
        assert values(reply) == ["10.96.10.20"] and ttls(reply) == {ttl}
        srv = server.ask(f"_http._tcp.frontend.shop.svc.{zone}", "SRV", transport)
        assert values(srv, "SRV") == [f"0 100 80 frontend.shop.svc.{zone}."] and ttls(srv) == {ttl}


@pytest.mark.parametrize("zone, name, expected", [
    (CLUSTER, "10-244-1-5.shop.pod", "NXDOMAIN"),  # pods disabled: CoreDNS's default
    ("insecure.test", "10-244-1-5.shop.pod", "10.244.1.5"),
    ("insecure.test", "10-0-0-1.shop.pod", "10.0.0.1"),  # any address, no pod needed
    ("insecure.test", "10-0-0-1.nowhere.pod", "NXDOMAIN"),  # ... in a namespace that exists
    ("verified.test", "10-244-1-5.shop.pod", "10.244.1.5"),  # frontend-6c7b9d5f4-abcde runs there
    ("verified.test", "10-0-0-1.shop.pod", "NXDOMAIN"),  # no such pod
    ("verified.test", "10-244-1-5.data.pod", "NXDOMAIN"),  # a pod with that address, in another namespace
])
def test_pods_modes(server: ServerProcess, zone: str, name: str, expected: str) -> None:
    reply = server.ask(f"{name}.{zone}")
    assert outcome(reply) == [expected]


@pytest.mark.parametrize("name, in_cluster, in_shop_only", [
    ("frontend.shop.svc", "10.96.10.20", "10.96.10.20"),
    ("kubernetes.default.svc", "10.96.0.1", "NXDOMAIN"),
    ("postgres-0.postgres.data.svc", "10.244.1.10", "NXDOMAIN"),
    ("data.svc", "NOERROR", "NXDOMAIN"),  # a namespace: NODATA while it exists
])
def test_namespaces_limits_what_is_served(server: ServerProcess, name: str, in_cluster: str, in_shop_only: str) -> None:
    """`namespaces shop`: the other namespaces do not exist."""
    for zone, expected in ((CLUSTER, in_cluster), ("shop.test", in_shop_only)):
        reply = server.ask(f"{name}.{zone}")
        assert outcome(reply) == [expected], zone


@pytest.mark.parametrize("zone, endpoint, expected", [
    (CLUSTER, "10-244-1-20", "10.244.1.20"),  # no hostname: the dashed address
    (CLUSTER, "redis-7f9c6-2mxkq", "NXDOMAIN"),
    ("podnames.test", "redis-7f9c6-2mxkq", "10.244.1.20"),  # no hostname: the pod's name
    ("podnames.test", "10-244-1-20", "NXDOMAIN"),
])
def test_endpoint_pod_names(server: ServerProcess, zone: str, endpoint: str, expected: str) -> None:
    reply = server.ask(f"{endpoint}.redis.data.svc.{zone}")
    assert outcome(reply) == [expected]


def test_endpoint_pod_names_names_srv_targets_and_keeps_hostnames(server: ServerProcess) -> None:
    redis = server.ask("_redis._tcp.redis.data.svc.podnames.test", "SRV")
    assert sorted(values(redis, "SRV")) == ["0 50 6379 redis-7f9c6-2mxkq.redis.data.svc.podnames.test.",
                                            "0 50 6379 redis-7f9c6-9zt4w.redis.data.svc.podnames.test."]
    assert values(server.ask("postgres-0.postgres.data.svc.podnames.test")) == ["10.244.1.10"]  # hostname wins


@pytest.mark.parametrize("zone, expected", [(CLUSTER, "10.96.10.21"), ("ignore.test", "NXDOMAIN")])
def test_ignore_empty_service(server: ServerProcess, zone: str, expected: str) -> None:
    """cart has a cluster IP and no endpoints: with `ignore empty_service` it has no name."""
    reply = server.ask(f"cart.shop.svc.{zone}")
    assert outcome(reply) == [expected]
    assert values(server.ask(f"frontend.shop.svc.{zone}")) == ["10.96.10.20"]  # ready endpoints: answered


@pytest.mark.parametrize("name, in_cluster, without_endpoints", [
    ("frontend.shop.svc", ["10.96.10.20"], ["10.96.10.20"]),  # a cluster IP needs no endpoints
    ("postgres.data.svc", ["10.244.1.10", "10.244.2.11"], ["NXDOMAIN"]),  # headless: only endpoints
    ("postgres-0.postgres.data.svc", ["10.244.1.10"], ["NXDOMAIN"]),
])
def test_noendpoints(server: ServerProcess, name: str, in_cluster: list[str], without_endpoints: list[str]) -> None:
    assert sorted(values(server.ask(f"{name}.{CLUSTER}"))) == in_cluster
    reply = server.ask(f"{name}.noendpoints.test")
    assert sorted(outcome(reply)) == without_endpoints


@pytest.mark.parametrize("zone", ["one.test", "two.test"])
def test_two_zones_of_one_kubernetes_directive(server: ServerProcess, zone: str) -> None:
    """Both zones answer every name, SRV targets named in the zone asked."""
    assert values(server.ask(f"frontend.shop.svc.{zone}")) == ["10.96.10.20"]
    srv = server.ask(f"_https._tcp.frontend.shop.svc.{zone}", "SRV")
    assert values(srv, "SRV") == [f"0 100 443 frontend.shop.svc.{zone}."]
    assert values(srv, "A", "additional") == ["10.96.10.20"]
    assert rcode(server.ask(f"nothing.shop.svc.{zone}")) == "NXDOMAIN"
    assert values(server.ask(f"dns-version.{zone}", "TXT"), "TXT") == ['"1.1.0"']


def test_fallthrough_passes_missing_reverse_names_to_forward(server: ServerProcess, unbound: Unbound) -> None:
    """`fallthrough in-addr.arpa`: a PTR the cluster lacks is unbound's; a missing service name is not passed on."""
    passed = server.ask("10.2.0.192.in-addr.arpa", "PTR")
    assert values(passed, "PTR") == ["www.example.com."]
    assert unbound.has_seen("10.2.0.192.in-addr.arpa", "PTR")
    known = server.ask("20.10.96.10.in-addr.arpa", "PTR")
    assert values(known, "PTR") == ["frontend.shop.svc.fallthrough.test."]
    missing = server.ask("nothing.shop.svc.fallthrough.test")
    assert rcode(missing) == "NXDOMAIN" and values(missing, "SOA", "authority")
    assert not unbound.has_seen("nothing.shop.svc.fallthrough.test", "A")


def test_without_fallthrough_a_missing_reverse_name_is_nxdomain(reverse: ServerProcess, unbound: Unbound) -> None:
    """The CIDR block has no fallthrough (and no forward): the cluster's answer is final."""
    reply = reverse.ask("99.99.96.10.in-addr.arpa", "PTR")
    assert rcode(reply) == "NXDOMAIN"
    assert values(reply, "SOA", "authority")[0].startswith("ns.dns.96.10.in-addr.arpa.")


@pytest.mark.parametrize("address, expected", [
    ("20.10.96.10", "frontend.shop.svc.cluster.local."),  # 10.96.0.0/15 -> 96.10.in-addr.arpa ...
    ("1.0.96.10", "kubernetes.default.svc.cluster.local."),
    ("1.0.97.10", "NXDOMAIN"),  # ... and 97.10.in-addr.arpa: served, nothing there
    ("1.0.98.10", "REFUSED"),  # outside the CIDR: no block on this port serves it
    ("5.1.244.10", "REFUSED"),
])
def test_a_cidr_key_serves_its_reverse_zones(reverse: ServerProcess, address: str, expected: str) -> None:
    reply = reverse.ask(f"{address}.in-addr.arpa", "PTR")
    assert outcome(reply, "PTR") == [expected]


def test_a_block_serves_only_its_port(server: ServerProcess, reverse: ServerProcess) -> None:
    """cluster.local is served on both ports; the CIDR's reverse zone and the other test zones on one each."""
    assert values(reverse.ask(f"frontend.shop.svc.{CLUSTER}")) == ["10.96.10.20"]
    assert rcode(reverse.ask("frontend.shop.svc.ttl.test")) == "REFUSED"
    assert values(server.ask("20.10.96.10.in-addr.arpa", "PTR"), "PTR") == ["frontend.shop.svc.fallthrough.test."]
