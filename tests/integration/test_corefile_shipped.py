"""The Corefiles clusters ship (tests/data/corefiles/, Corefile.example) run and answer over the wire.

Real parts: the server runs as its own process from each Corefile (`python -m dns_server -conf
FILE`), answers dnspython over UDP and TCP, and forwards to the real unbound daemon
(tests/integration/upstream.py).  What cannot run here is adapted, each change listed with its
reason next to the file it applies to (`Adapted`): ports (53 is privileged and may be taken; the
HTTP ports too), the cluster's data (`fixtures DIR`, our extension, instead of in-cluster API
credentials), this machine's /etc/resolv.conf (an upstream we do not control) and addresses only
a node has.  Every adaptation must apply, so a changed test file cannot silently skip one.

NodeLocal DNSCache runs as on a node: one server is the cluster DNS (fixtures, `log`), the other
runs NodeLocal's Corefile, whose cluster.local and reverse blocks forward over TCP (`force_tcp`)
to the first; the first's query log shows `tcp`.

The Corefiles that rewrite: Gardener's (search-path `rewrite stop` rules with `answer
name` and `answer value`) and AKS's `coredns-custom` rewrite example show the rewritten name's answer
under the name asked.  OpenShift's operator Corefile forwards two server blocks over TLS to unbound's
DNS-over-TLS port (tests/certificates.py's CA; for the block with a bare `tls`, the system trust
store, which SSL_CERT_FILE in the server's environment points at that CA), counted by unbound's
`num.query.tls`, and answers `hostname.bind` in class CH from its `chaos` block.  AKS LocalDNS's
node Corefile runs on two loopback addresses in place of its link-local ones, each listener giving its
own NSID (`nsid`) to a client that asks, its `template` rules answering NXDOMAIN without asking upstream.

Corefile.example (kubeadm's Corefile, unchanged: `.:53`, in-cluster credentials, forward to
/etc/resolv.conf) runs with real in-cluster credentials: KUBERNETES_SERVICE_HOST/PORT and the
service-account files (token, ca.crt, namespace) under /var/run/secrets/kubernetes.io/serviceaccount,
which a private mount namespace (`unshare --mount`, root only) provides with a bind mount over
/run.  The API server is the stand-in (tests/kube_api_standin.py) speaking HTTPS with a self-signed
certificate made by openssl; the official kubernetes client verifies it against that ca.crt and
sends the token.  Forwarded names go to this machine's resolver there, so only cluster names are
checked.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import dns.edns
import dns.message
import pytest
import yaml

from tests.certificates import SERVER_NAME, Certificates, make_certificates
from tests.cluster_data import ZONES as CLUSTER_ZONES
from tests.integration.replies import outcome, owners, rcode, ttls, values
from tests.integration.server import ServerProcess, free_port, wait_for
from tests.integration.upstream import ZONES, Unbound
from tests.kube_api_standin import KubeApiStandIn, objects_of, self_signed_certificate

DATA = Path(__file__).resolve().parents[1] / "data" / "corefiles"
REPO = Path(__file__).resolve().parents[2]
DEADLINE = 15.0

PUGLIFE = """\
$ORIGIN puglife.local.
@    3600 IN SOA ns.puglife.local. hostmaster.puglife.local. 1 7200 1800 86400 60
@    3600 IN NS  ns.puglife.local.
ns    300 IN A   192.0.2.91
www   300 IN A   192.0.2.90
"""


@dataclass(frozen=True)
class Adapted:
    """One change to a shipped Corefile, and why it is needed here."""

    old: str
    new: str
    why: str
    count: int = 1  # occurrences it must replace


def adapt(text: str, *changes: Adapted) -> str:
    for change in changes:
        found = text.count(change.old)
        assert found == change.count, f"{change.old!r} occurs {found} times, not {change.count}: {change.why}"
        text = text.replace(change.old, change.new)
    return text


PORT = Adapted(":53 {", " {", "port 53 is privileged and may be taken: `-dns.port` gives the keys a free port")
FIXTURES = Adapted("kubernetes cluster.local in-addr.arpa ip6.arpa {",
                   "kubernetes cluster.local in-addr.arpa ip6.arpa {\n       fixtures {$ZONES}",
                   "no API server: the example cluster's manifests instead of in-cluster credentials")
RESOLV_CONF = Adapted("forward . /etc/resolv.conf", "forward . {$UNBOUND}",
                      "this machine's resolver is not ours to test with: the real unbound instead")
READY = Adapted("    ready\n", "    ready {$READY}\n", "the default :8181 may be taken")
METRICS = Adapted("prometheus :9153", "prometheus {$METRICS}", "the default :9153 may be taken")
HEALTH_BLOCK = Adapted("    health {\n", "    health {$HEALTH} {\n", "the default :8080 may be taken")
HEALTH_LINE = Adapted("    health\n", "    health {$HEALTH}\n", "the default :8080 may be taken")
LINK_LOCAL = "the node's link-local listener addresses are not this machine's: two loopback addresses instead"


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    with Unbound(tmp_path_factory.mktemp("unbound"), zones={**ZONES, "puglife.local": PUGLIFE}) as running:
        yield running


def nsid_of(reply: dns.message.Message) -> list[bytes]:
    """The NSID options of a reply's OPT record, their data."""
    return [option.to_wire() for option in reply.options if option.otype == dns.edns.NSID]


def http_env() -> dict[str, str]:
    return {name: f"127.0.0.1:{free_port()}" for name in ("HEALTH", "READY", "METRICS")}


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    """Started, and stopped with SIGINT: at once (the files' `lameduck 5s` would hold every test up)."""
    server.start()
    try:
        yield server
    finally:
        server.stop(signal.SIGINT)


def assert_serves_the_cluster(server: ServerProcess, ttl: int) -> None:
    """Cluster names over UDP and TCP, a cluster PTR, and a reverse name the cluster passes on to unbound."""
    for transport in ("udp", "tcp"):
        reply = server.ask("frontend.shop.svc.cluster.local", transport=transport)
        assert values(reply) == ["10.96.10.20"] and ttls(reply) == {ttl}
        assert sorted(values(server.ask("postgres.data.svc.cluster.local", transport=transport))) == [
            "10.244.1.10", "10.244.2.11"]
        assert outcome(server.ask("10-244-1-5.shop.pod.cluster.local", transport=transport)) == ["10.244.1.5"]
        assert rcode(server.ask("nothing.shop.svc.cluster.local", transport=transport)) == "NXDOMAIN"
    assert values(server.ask("20.10.96.10.in-addr.arpa", "PTR"), "PTR") == ["frontend.shop.svc.cluster.local."]
    assert values(server.ask("10.2.0.192.in-addr.arpa", "PTR"), "PTR") == ["www.example.com."]  # fallthrough


def assert_forwards(server: ServerProcess, unbound: Unbound) -> None:
    for transport in ("udp", "tcp"):
        assert outcome(server.ask("www.example.com", transport=transport)) == ["192.0.2.10"]
    assert unbound.has_seen("www.example.com", "A")


KUBEADM_FAMILY = ["kubeadm.Corefile", "kubeadm-before-cache-disable.Corefile", "minikube.Corefile"]


@pytest.mark.parametrize("name", KUBEADM_FAMILY)
def test_kubeadm_and_minikube(tmp_path: Path, unbound: Unbound, name: str) -> None:
    """kubeadm's Corefile (both versions) and minikube's, which adds a hosts entry and `log`."""
    text = adapt((DATA / name).read_text(), PORT, FIXTURES, RESOLV_CONF, READY, METRICS, HEALTH_BLOCK)
    env = {"ZONES": str(CLUSTER_ZONES), "UNBOUND": unbound.address, **http_env()}
    server = ServerProcess.from_corefile(tmp_path, text, env=env, ready_name="frontend.shop.svc.cluster.local",
                                         ready_type="A")
    with running(server):
        assert_serves_the_cluster(server, ttl=30)
        assert_forwards(server, unbound)
        if name == "minikube.Corefile":
            assert outcome(server.ask("host.minikube.internal")) == ["192.168.49.1"]
            wait_for(lambda: any('"A IN host.minikube.internal. udp ' in line
                                 for line in server.log_lines("[INFO] 127.0.0.1:")), DEADLINE, "its query log line")


def test_k3s(tmp_path: Path, unbound: Unbound) -> None:
    """k3s's Corefile: NodeHosts from a hosts file, the `coredns-custom` import globs matching nothing."""
    node_hosts = tmp_path / "NodeHosts"
    node_hosts.write_text("172.18.0.2 k3d-server-0\n172.18.0.3 k3d-agent-0\n")
    text = adapt((DATA / "k3s.Corefile").read_text(), PORT, RESOLV_CONF, READY, METRICS, HEALTH_LINE,
                 Adapted("kubernetes cluster.local in-addr.arpa ip6.arpa {",
                         "kubernetes cluster.local in-addr.arpa ip6.arpa {\n      fixtures {$ZONES}", FIXTURES.why),
                 Adapted("hosts /etc/coredns/NodeHosts {", "hosts {$NODE_HOSTS} {",
                         "the node's hosts file is written by k3s: one in the test's directory instead"))
    env = {"ZONES": str(CLUSTER_ZONES), "UNBOUND": unbound.address, "NODE_HOSTS": str(node_hosts), **http_env()}
    server = ServerProcess.from_corefile(tmp_path, text, env=env, ready_name="frontend.shop.svc.cluster.local",
                                         ready_type="A")
    with running(server):
        assert_serves_the_cluster(server, ttl=5)
        assert_forwards(server, unbound)
        reply = server.ask("k3d-agent-0")
        assert values(reply) == ["172.18.0.3"] and ttls(reply) == {60}
        assert values(server.ask("3.0.18.172.in-addr.arpa", "PTR"), "PTR") == ["k3d-agent-0."]
        assert "[WARNING] No files matching import glob pattern: /etc/coredns/custom/*.override" in server.log()


def test_aks_with_its_custom_imports(tmp_path: Path, unbound: Unbound) -> None:
    """AKS's Corefile with the `coredns-custom` ConfigMap mounted as custom/: a stub-domain server block
    (puglife.server) and `log` inside the main block (log.override), imported relative to the Corefile."""
    shutil.copytree(DATA / "aks", tmp_path / "etc-coredns")
    custom = tmp_path / "etc-coredns" / "custom" / "puglife.server"
    custom.write_text(adapt(custom.read_text(), PORT, Adapted(
        "forward . 192.11.0.1  # this is my test server", "forward . {$UNBOUND}",
        "the example's stub server is not here: unbound serves puglife.local instead")))
    rewrite = tmp_path / "etc-coredns" / "custom" / "test.server"
    rewrite.write_text(adapt(rewrite.read_text(), PORT, Adapted(
        "forward . /etc/resolv.conf # you can redirect this to a specific DNS server such as 10.0.0.10, but that "
        "server must be able to resolve the rewritten domain name", "forward . 127.0.0.1:{$DNS_PORT}",
        "as the page's comment says, the server asked must resolve the rewritten name: the cluster DNS itself "
        "(this server's own `.` block), not this machine's resolver")))
    text = adapt((DATA / "aks" / "Corefile").read_text(), PORT, RESOLV_CONF, READY, METRICS, HEALTH_LINE,
                 Adapted("kubernetes cluster.local in-addr.arpa ip6.arpa {",
                         "kubernetes cluster.local in-addr.arpa ip6.arpa {\n      fixtures {$ZONES}", FIXTURES.why))
    port = free_port()
    env = {"ZONES": str(CLUSTER_ZONES), "UNBOUND": unbound.address, "DNS_PORT": str(port), **http_env()}
    server = ServerProcess.from_corefile(tmp_path / "etc-coredns", text, env=env, port=port,
                                         ready_name="frontend.shop.svc.cluster.local", ready_type="A")
    with running(server):
        assert_serves_the_cluster(server, ttl=5)
        assert_forwards(server, unbound)
        assert outcome(server.ask("www.puglife.local")) == ["192.0.2.90"]
        wait_for(lambda: any('"A IN www.example.com. udp ' in line for line in server.log_lines("[INFO] 127.0.0.1:")),
                 DEADLINE, "a query log line from the imported `log`")
        # test.server: contoso.com names are the default namespace's services, answered under the name asked
        for transport in ("udp", "tcp"):
            reply = server.ask("kubernetes.contoso.com", transport=transport)
            assert values(reply) == ["10.96.0.1"] and owners(reply) == ["kubernetes.contoso.com."]
        assert rcode(server.ask("nothing.contoso.com")) == "NXDOMAIN"
        # test.server's `log` shows the name asked, the `.` block's (log.override) the rewritten one it was sent on
        wait_for(lambda: any('"A IN kubernetes.contoso.com. tcp ' in line
                             for line in server.log_lines("[INFO] 127.0.0.1:")), DEADLINE, "the name asked, logged")
        wait_for(lambda: any('"A IN kubernetes.default.svc.cluster.local. ' in line
                             for line in server.log_lines("[INFO] 127.0.0.1:")), DEADLINE, "the rewritten name, logged")


def test_gardener_rewrites_search_path_expansions(tmp_path: Path, unbound: Unbound) -> None:
    """Gardener's shoot Corefile: a name the pod's search path expanded once too often
    (`<svc>.<ns>.svc.cluster.local.svc.cluster.local`, `www.example.com.svc.cluster.local`) is answered
    as the name it meant, under the name asked (`answer name`), and a target in the data too (`answer value`)."""
    text = adapt((DATA / "gardener" / "Corefile").read_text(), RESOLV_CONF, METRICS,
                 Adapted(".:8053 {", ". {", "port 8053 may be taken: `-dns.port` gives the key a free port"),
                 Adapted("  health {\n", "  health {$HEALTH} {\n", HEALTH_BLOCK.why),
                 Adapted("  ready\n", "  ready {$READY}\n", READY.why),
                 Adapted("kubernetes cluster.local in-addr.arpa ip6.arpa {",
                         "kubernetes cluster.local in-addr.arpa ip6.arpa {\n      fixtures {$ZONES}", FIXTURES.why))
    env = {"ZONES": str(CLUSTER_ZONES), "UNBOUND": unbound.address, **http_env()}
    server = ServerProcess.from_corefile(tmp_path, text, env=env, ready_name="frontend.shop.svc.cluster.local",
                                         ready_type="A")
    with running(server):
        assert_serves_the_cluster(server, ttl=30)
        assert_forwards(server, unbound)
        for transport in ("udp", "tcp"):
            expanded = "frontend.shop.svc.cluster.local.svc.cluster.local"
            reply = server.ask(expanded, transport=transport)
            assert values(reply) == ["10.96.10.20"] and owners(reply) == [expanded + "."]
            reply = server.ask("www.example.com.svc.cluster.local", transport=transport)
            assert values(reply) == ["192.0.2.10"] and owners(reply) == ["www.example.com.svc.cluster.local."]
        mx = server.ask("www.example.com.svc.cluster.local", "MX")
        assert values(mx, "MX") == ["10 mail.example.com.svc.cluster.local."]  # answer value: the exchange too
        assert rcode(server.ask("nothing.shop.svc.cluster.local.svc.cluster.local")) == "NXDOMAIN"
        assert unbound.has_seen("www.example.com", "MX")
        assert not unbound.has_seen("www.example.com.svc.cluster.local", "A")  # the rewritten name went upstream


# -- OpenShift: forward over TLS, chaos ------------------------------------------------------------------------

FOO_COM = """\
$ORIGIN foo.com.
@    3600 IN SOA ns.foo.com. hostmaster.foo.com. 1 7200 1800 86400 60
@    3600 IN NS  ns.foo.com.
ns    300 IN A   192.0.2.51
*     300 IN A   192.0.2.50
"""
BAR_COM = FOO_COM.replace("foo.com", "bar.com").replace("192.0.2.5", "192.0.2.6")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def dot_unbound(tmp_path_factory: pytest.TempPathFactory, certs: Certificates) -> Iterator[Unbound]:
    """unbound with foo.com and bar.com too, serving DNS over TLS with the test CA's certificate."""
    with Unbound(tmp_path_factory.mktemp("unbound-dot"), zones={**ZONES, "foo.com": FOO_COM, "bar.com": BAR_COM},
                 tls=(certs.server, certs.server_key)) as running:
        yield running


def test_openshift_forwards_over_tls_and_answers_chaos(tmp_path: Path, dot_unbound: Unbound,
                                                        certs: Certificates) -> None:
    """The DNS operator's Corefile for two `servers` over TLS: foo.com with the system trust store (bare
    `tls`), bar.com with the mounted CA bundle; `.` forwards in plain DNS; `hostname.bind` is `chaos`."""
    text = adapt((DATA / "openshift" / "Corefile").read_text(), READY, HEALTH_BLOCK, RESOLV_CONF,
                 Adapted("prometheus 127.0.0.1:9153", "prometheus {$METRICS}", METRICS.why, count=3),
                 Adapted("forward . tls://1.1.1.1 tls://2.2.2.2:5353 {", "forward . tls://{$DOT} {",
                         "the example's resolvers are not ours: unbound's DNS-over-TLS port, serving foo.com and "
                         "bar.com", count=2),
                 Adapted(":5353 {", " {", "port 5353 may be taken: `-dns.port` gives the keys a free port", count=4),
                 Adapted("tls_servername dns.foo.com", f"tls_servername {SERVER_NAME}",
                         "the test certificate names dot.test"),
                 Adapted("tls_servername dns.bar.com", f"tls_servername {SERVER_NAME}",
                         "the test certificate names dot.test"),
                 Adapted("tls /etc/pki/dns.bar.com-ca-cacerts-2/ca-bundle.crt", "tls {$CA_BUNDLE}",
                         "the operator mounts the `cacerts` ConfigMap there: the test CA instead"),
                 Adapted("kubernetes cluster.local in-addr.arpa ip6.arpa {",
                         "kubernetes cluster.local in-addr.arpa ip6.arpa {\n        fixtures {$ZONES}",
                         FIXTURES.why))
    env = {"ZONES": str(CLUSTER_ZONES), "UNBOUND": dot_unbound.address, "DOT": f"127.0.0.1:{dot_unbound.tls_port}",
           "CA_BUNDLE": str(certs.ca), "SSL_CERT_FILE": str(certs.ca), **http_env()}
    server = ServerProcess.from_corefile(tmp_path, text, env=env, ready_name="frontend.shop.svc.cluster.local",
                                         ready_type="A")
    with running(server):
        assert_serves_the_cluster(server, ttl=5)
        tls = dot_unbound.stats().get("num.query.tls", 0)
        for transport in ("udp", "tcp"):
            assert outcome(server.ask(f"{transport}.foo.com", transport=transport)) == ["192.0.2.50"]
            assert outcome(server.ask(f"{transport}.bar.com", transport=transport)) == ["192.0.2.60"]
        assert dot_unbound.stats().get("num.query.tls", 0) == tls + 4  # each over TLS, the UDP clients' too
        assert_forwards(server, dot_unbound)
        assert dot_unbound.stats().get("num.query.tls", 0) == tls + 4  # `.` forwards in plain DNS
        for transport in ("udp", "tcp"):
            reply = server.ask("hostname.bind", "TXT", transport=transport, rdclass="CH")
            assert values(reply, "TXT") == [f'"{socket.gethostname()}"']


def test_aks_localdns_identifies_each_listener_and_answers_from_its_templates(tmp_path: Path,
                                                                              unbound: Unbound) -> None:
    """AKS LocalDNS's node Corefile: a client asking for the NSID gets each listener's (`localdns` on the
    node's address, `localdns-pod` on the cluster's), the `template` rules answer NXDOMAIN for
    reddog.microsoft.com and over-long internal.cloudapp.net names, the node's hosts file answers first,
    the rest is forwarded (cluster.local over TCP), and the health-check block's `whoami` answers."""
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.77 mcr.microsoft.com\n")
    text = adapt((DATA / "aks-localdns" / "localdns.corefile").read_text(),
                 Adapted(":53 {", " {", PORT.why, count=5),
                 Adapted("bind 169.254.10.10 169.254.10.11", "bind 127.0.0.1 127.0.0.2", LINK_LOCAL),
                 Adapted("bind 169.254.10.10\n", "bind 127.0.0.1\n", LINK_LOCAL, count=3),
                 Adapted("bind 169.254.10.11\n", "bind 127.0.0.2\n", LINK_LOCAL),
                 Adapted("ready 169.254.10.10:8181", "ready {$READY}", READY.why, count=3),
                 Adapted("ready 169.254.10.11:8181", "ready {$READY2}", READY.why),
                 Adapted("prometheus :9253", "prometheus {$METRICS}", METRICS.why, count=4),
                 Adapted("hosts /etc/localdns/hosts {", "hosts {$HOSTS} {",
                         "the node's hosts file is AKS's: one in the test's directory instead", count=2),
                 Adapted("forward . 168.63.129.16 {", "forward . {$UNBOUND} {",
                         "Azure's VNet resolver is not here: the real unbound instead"),
                 Adapted("forward . 10.0.0.10 {", "forward . {$UNBOUND} {",
                         "the cluster's CoreDNS service is not here: the real unbound in its place", count=3))
    env = {"UNBOUND": unbound.address, "HOSTS": str(hosts), "READY2": f"127.0.0.1:{free_port()}", **http_env()}
    node = ServerProcess.from_corefile(tmp_path, text, env=env, ready_name="mcr.microsoft.com", ready_type="A")
    with running(node):
        pod = node.at(host="127.0.0.2")
        for server, nsid in ((node, b"localdns"), (pod, b"localdns-pod")):
            for transport in ("udp", "tcp"):
                reply = server.ask("www.example.com", transport=transport, use_edns=0,
                                   options=[dns.edns.GenericOption(dns.edns.NSID, b"")])
                assert values(reply) == ["192.0.2.10"] and nsid_of(reply) == [nsid]
                assert nsid_of(server.ask("www.example.com", transport=transport, use_edns=0)) == []
            reply = server.ask("a.b.c.d.internal.cloudapp.net", use_edns=0,
                               options=[dns.edns.GenericOption(dns.edns.NSID, b"")])
            assert rcode(reply) == "NXDOMAIN" and nsid_of(reply) == [nsid]
            assert rcode(server.ask("anything.reddog.microsoft.com")) == "NXDOMAIN"
            assert values(server.ask("mcr.microsoft.com")) == ["192.0.2.77"]
        assert not unbound.has_seen("a.b.c.d.internal.cloudapp.net", "A")
        assert not unbound.has_seen("anything.reddog.microsoft.com", "A")
        tcp = unbound.stats().get("num.query.tcp", 0)
        node.ask("frontend.shop.svc.cluster.local")
        wait_for(lambda: unbound.has_seen("frontend.shop.svc.cluster.local", "A"), DEADLINE, "the forwarded query")
        assert unbound.stats().get("num.query.tcp", 0) > tcp  # force_tcp
        whoami = node.ask("health-check.localdns.local")
        assert rcode(whoami) == "NOERROR" and values(whoami, section="additional") == ["127.0.0.1"]
        wait_for(lambda: any('"A IN mcr.microsoft.com. udp ' in line for line in node.log_lines("[INFO] 127.0.0.1:")),
                 DEADLINE, "the node block's query log line")


def test_nodelocal_dns_cache_in_front_of_the_cluster_dns(tmp_path: Path, unbound: Unbound) -> None:
    """The node-local cache answers cluster names by asking the cluster DNS over TCP, caches them, and
    sends other names to unbound directly."""
    cluster_corefile = """\
. {
    log
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        fixtures {$ZONES}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    forward . {$UNBOUND}
}
"""
    (tmp_path / "cluster-dns").mkdir()
    cluster_dns = ServerProcess.from_corefile(tmp_path / "cluster-dns", cluster_corefile,
                                              env={"ZONES": str(CLUSTER_ZONES), "UNBOUND": unbound.address})
    text = adapt((DATA / "nodelocaldns.Corefile").read_text(),
                 Adapted(":53 {", " {", PORT.why, count=4),
                 Adapted("bind 169.254.20.10 10.96.0.10", "bind 127.0.0.20 127.0.0.21",
                         "the link-local address and the kube-dns Service IP exist only on a node's dummy interface: "
                         "two loopback addresses instead (Linux routes 127/8 to lo)", count=4),
                 Adapted("forward . 10.96.143.7 {", "forward . 127.0.0.1:{$CLUSTER_DNS} {",
                         "the kube-dns-upstream Service: the cluster DNS server started here", count=3),
                 Adapted("forward . /etc/resolv.conf", "forward . {$UNBOUND}", RESOLV_CONF.why),
                 Adapted("prometheus :9253", "prometheus {$METRICS}", "the default :9253 may be taken", count=4),
                 Adapted("health 169.254.20.10:8080", "health {$HEALTH}", "no link-local address here"))
    (tmp_path / "node-local").mkdir()
    node_local = ServerProcess.from_corefile(
        tmp_path / "node-local", text, host="127.0.0.20", ready_name="frontend.shop.svc.cluster.local",
        ready_type="A", env={"UNBOUND": unbound.address, "CLUSTER_DNS": str(cluster_dns.port), **http_env()})
    with cluster_dns:
        # its TCP listener too, before the node-local cache asks it (a failure would be cached for 5 s)
        assert outcome(cluster_dns.ask("frontend.shop.svc.cluster.local", transport="tcp")) == ["10.96.10.20"]
        with running(node_local):
            services = (("frontend.shop.svc.cluster.local", "10.96.10.20"), ("kubernetes.default.svc.cluster.local",
                                                                             "10.96.0.1"))
            for local in (node_local, node_local.at(host="127.0.0.21")):
                for transport in ("udp", "tcp"):
                    for name, address in services:
                        assert outcome(local.ask(name, transport=transport)) == [address]
            ptr = node_local.ask("20.10.96.10.in-addr.arpa", "PTR")
            assert values(ptr, "PTR") == ["frontend.shop.svc.cluster.local."]
            assert_forwards(node_local, unbound)
            assert outcome(node_local.ask("postgres-0.postgres.data.svc.cluster.local")) == ["10.244.1.10"]
            # the cluster DNS logs in order: once the last name asked is there, every earlier one is
            wait_for(lambda: any('"A IN postgres-0.postgres.data.svc.cluster.local. tcp ' in line
                                 for line in cluster_dns.log_lines("[INFO] 127.0.0.1:")),
                     DEADLINE, "the cluster DNS's log line for the last cluster name asked")
            asked = cluster_dns.log_lines("[INFO] 127.0.0.1:")
            kubernetes = [line for line in asked if '"A IN kubernetes.default.svc.cluster.local. ' in line]
            assert len(kubernetes) == 1, asked  # four client queries, one upstream (TTL 30): the rest were cache hits
            assert " tcp " in kubernetes[0]  # force_tcp, though the first client query came over UDP
            assert any('"PTR IN 20.10.96.10.in-addr.arpa. tcp ' in line for line in asked)  # the reverse block too
            assert not any("www.example.com" in line for line in asked)  # the `.` block goes to unbound itself


# -- Corefile.example with in-cluster credentials ------------------------------------------------------------

def _free(port: int) -> bool:
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(family, kind) as sock:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind((host, port))
                except OSError:
                    return False
    return True


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return os.system("unshare --mount --propagation private true >/dev/null 2>&1") == 0


@pytest.fixture
def in_cluster_api(tmp_path: Path) -> Iterator[tuple[KubeApiStandIn, Path]]:
    """The HTTPS stand-in with the example cluster, and a /run with its service account in it."""
    certificate, key = self_signed_certificate(tmp_path)
    api = KubeApiStandIn(tls=(certificate, key)).start()
    api.load(objects_of(d for f in sorted(CLUSTER_ZONES.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())))
    account = tmp_path / "run" / "secrets" / "kubernetes.io" / "serviceaccount"
    account.mkdir(parents=True)
    (account / "token").write_text(api.token)
    (account / "namespace").write_text("kube-system")
    shutil.copy(certificate, account / "ca.crt")
    yield api, tmp_path / "run"
    api.stop()


def test_corefile_example_unchanged_with_in_cluster_credentials(tmp_path: Path,
                                                                in_cluster_api: tuple[KubeApiStandIn, Path]) -> None:
    if not _can_unshare():
        pytest.skip("needs root and `unshare --mount`, to put the service account at /var/run/secrets/...")
    busy = [port for port in (53, 8080, 8181, 9153) if not _free(port)]
    if busy:
        pytest.skip(f"Corefile.example listens on :53, :8080, :8181 and :9153; taken here: {busy}")
    api, run = in_cluster_api
    mount = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", 'mount --bind "$0" /run && exec "$@"',
             str(run)]
    server = ServerProcess("-conf", "Corefile.example", port=53, listen=False, prefix=mount,
                           log_path=tmp_path / "server.log", ready_name="frontend.shop.svc.cluster.local",
                           ready_type="A", env={"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                                                "KUBERNETES_SERVICE_PORT": str(api.port)})
    assert (REPO / "Corefile.example").read_text().startswith(".:53 {\n")
    with running(server):
        wait_for(lambda: values(server.ask("frontend.shop.svc.cluster.local")) == ["10.96.10.20"], DEADLINE,
                 "the cluster's names, listed over HTTPS")
        for transport in ("udp", "tcp"):
            reply = server.ask("frontend.shop.svc.cluster.local", transport=transport)
            assert values(reply) == ["10.96.10.20"] and ttls(reply) == {30}
        assert outcome(server.ask("10-244-1-5.shop.pod.cluster.local")) == ["10.244.1.5"]  # pods insecure
        assert values(server.ask("20.10.96.10.in-addr.arpa", "PTR"), "PTR") == ["frontend.shop.svc.cluster.local."]
        assert rcode(server.ask("nothing.shop.svc.cluster.local")) == "NXDOMAIN"
    kinds = {request.kind for request in api.requests if request.watch}
    assert {"Namespace", "Service", "EndpointSlice"} <= kinds
    assert not re.search(r"\b401\b|Unauthorized", server.log())
