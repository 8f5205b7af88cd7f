"""records.py: API objects (as `kubectl get -o yaml` prints them) into slim records, and what is refused.

Tables of objects and the records they become, field by field, including the defaults the API
leaves out (namespace `default`, protocol TCP, ready when the condition is absent); then every
malformed object with the reason a person would read in the log.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dns_server.cluster.records import (
    ENDPOINT_SLICE,
    NAMESPACE,
    POD,
    SERVICE,
    Endpoint,
    EndpointSlice,
    MalformedObject,
    Namespace,
    Pod,
    Port,
    Service,
    convert,
    describe,
    key_of,
    normalize_ip,
)


def service(spec: dict[str, Any], name: str = "Web", namespace: str | None = "Shop") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name} | ({"namespace": namespace} if namespace is not None else {})
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


def endpoint_slice(endpoints: list[Any], ports: Any = None, address_type: str = "IPv4",
                   labels: Any = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": address_type,
        "metadata": {"name": "web-abcde", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "Web"} if labels is None else labels},
        "endpoints": endpoints}
    if ports is not None:
        obj["ports"] = ports
    return obj


def pod(status: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "shop"}, "status": status}


HTTP = Port("http", "TCP", 80)

CONVERTED = [
    ("namespace", {"kind": "Namespace", "metadata": {"name": "Shop"}}, Namespace("shop")),
    ("a namespace's own namespace field is not read",
     {"kind": "Namespace", "metadata": {"name": "shop", "namespace": ["x"]}}, Namespace("shop")),
    # services
    ("ClusterIP", service({"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                           "ports": [{"name": "HTTP", "port": 80, "protocol": "tcp"}]}),
     Service("shop", "web", ("10.96.0.1",), False, "", (HTTP,))),
    ("no type: ClusterIP", service({"clusterIPs": ["10.96.0.1"]}),
     Service("shop", "web", ("10.96.0.1",), False, "", ())),
    ("NodePort", service({"type": "NodePort", "clusterIPs": ["10.96.0.1"]}),
     Service("shop", "web", ("10.96.0.1",), False, "", ())),
    ("only clusterIP", service({"clusterIP": "10.96.0.1"}), Service("shop", "web", ("10.96.0.1",), False, "", ())),
    ("clusterIPs first", service({"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.1"]}),
     Service("shop", "web", ("10.96.0.1",), False, "", ())),
    ("dual-stack, addresses normalised", service({"clusterIPs": ["10.96.0.1", "FD00:0::0a30"]}),
     Service("shop", "web", ("10.96.0.1", "fd00::a30"), False, "", ())),
    ("headless", service({"clusterIP": "None", "clusterIPs": ["None"]}), Service("shop", "web", (), True, "", ())),
    ("headless, only clusterIP None", service({"clusterIP": "None"}), Service("shop", "web", (), True, "", ())),
    ("no address at all: headless", service({}), Service("shop", "web", (), True, "", ())),
    ("no spec", {"kind": "Service", "metadata": {"name": "web", "namespace": "shop"}},
     Service("shop", "web", (), True, "", ())),
    ("no namespace: default", service({"clusterIPs": ["10.96.0.1"]}, namespace=None),
     Service("default", "web", ("10.96.0.1",), False, "", ())),
    ("ExternalName", service({"type": "ExternalName", "externalName": " API.Example.com. ", "clusterIP": "10.9.9.9",
                              "ports": [{"name": "http", "port": 80}]}),
     Service("shop", "web", (), False, "api.example.com", (HTTP,))),
    ("ExternalName, one letter in upper case", service({"type": "ExternalName", "externalName": "X."}),
     Service("shop", "web", (), False, "x", ())),
    ("ports: unnamed, UDP, defaults", service({"clusterIPs": ["10.96.0.1"], "ports": [
        {"port": 53, "protocol": "UDP"}, {"name": "", "port": 65535, "protocol": "SCTP"}, {"name": "a", "port": 1}]}),
     Service("shop", "web", ("10.96.0.1",), False, "", (Port("", "UDP", 53), Port("", "SCTP", 65535),
                                                          Port("a", "TCP", 1)))),
    # external addresses (k8s_external): spec.externalIPs, then each ingress ip; a hostname only without any ip
    ("externalIPs, then ingress ips, distinct and normalised",
     service({"type": "LoadBalancer", "clusterIPs": ["10.96.0.1"], "externalIPs": ["198.51.100.1", "FD00:0::1"]})
     | {"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.2", "hostname": "lb.example.com"},
                                                {"hostname": "Other.Example.com."}, {"ip": "fd00::1"}, {}]}}},
     Service("shop", "web", ("10.96.0.1",), False, "", (), ("198.51.100.1", "fd00::1", "198.51.100.2"))),
    ("an ingress hostname, the first, when there is no ip",
     service({"type": "LoadBalancer", "clusterIPs": ["10.96.0.1"]})
     | {"status": {"loadBalancer": {"ingress": [{"hostname": "LB-1.Example.com."}, {"hostname": "lb-2.example.com"}]}}},
     Service("shop", "web", ("10.96.0.1",), False, "", (), (), "lb-1.example.com")),
    ("a headless service's externalIPs", service({"clusterIP": "None", "externalIPs": ["198.51.100.1"]}),
     Service("shop", "web", (), True, "", (), ("198.51.100.1",))),
    ("a pending load balancer", service({"type": "LoadBalancer", "clusterIPs": ["10.96.0.1"]})
     | {"status": {"loadBalancer": {}}}, Service("shop", "web", ("10.96.0.1",), False, "", ())),
    # endpoint slices
    ("EndpointSlice", endpoint_slice(
        [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}, "hostname": "Web-0",
          "targetRef": {"kind": "Pod", "name": "Web-7f9c6", "namespace": "shop"}},
         {"addresses": ["10.244.1.6", "10.244.1.7"], "conditions": {"ready": False}},
         {"addresses": ["10.244.1.8"]},
         {"addresses": ["10.244.1.9"], "conditions": {"ready": None}},
         {"addresses": ["10.244.1.10"], "conditions": None, "targetRef": {"kind": "Node", "name": "node-1"}},
         {"addresses": ["10.244.1.11"], "conditions": ["ready"], "targetRef": {"kind": "Pod"}}],
        [{"name": "all", "protocol": "UDP"}, {"name": "HTTP", "port": 80, "protocol": "TCP"}]),
     EndpointSlice("shop", "web-abcde", "web", (
         Endpoint(("10.244.1.5",), True, "web-0", "web-7f9c6"),
         Endpoint(("10.244.1.6", "10.244.1.7"), False, "", ""),
         Endpoint(("10.244.1.8",), True, "", ""),
         Endpoint(("10.244.1.9",), True, "", ""),
         Endpoint(("10.244.1.10",), True, "", ""),
         Endpoint(("10.244.1.11",), True, "", "")), (HTTP,))),
    ("EndpointSlice, IPv6 normalised", endpoint_slice([{"addresses": ["FD00:0:0::1"]}], address_type="IPv6"),
     EndpointSlice("shop", "web-abcde", "web", (Endpoint(("fd00::1",), True, "", ""),), ())),
    ("EndpointSlice, FQDN: no endpoints", endpoint_slice([{"addresses": ["web.example.com"]}], address_type="FQDN"),
     EndpointSlice("shop", "web-abcde", "web", (), ())),
    ("EndpointSlice, no addressType: IPv4", {k: v for k, v in endpoint_slice([{"addresses": ["10.0.0.1"]}]).items()
                                             if k != "addressType"},
     EndpointSlice("shop", "web-abcde", "web", (Endpoint(("10.0.0.1",), True, "", ""),), ())),
    ("EndpointSlice without its service's label", endpoint_slice([], labels={"app": "web"}),
     EndpointSlice("shop", "web-abcde", "", (), ())),
    ("EndpointSlice with labels that are not a map", endpoint_slice([], labels=["x"]),
     EndpointSlice("shop", "web-abcde", "", (), ())),
    ("EndpointSlice, no endpoints field", {"kind": "EndpointSlice", "metadata": {"name": "s", "namespace": "shop"}},
     EndpointSlice("shop", "s", "", (), ())),
    # pods
    ("pod, podIPs", pod({"phase": "Running", "podIP": "10.244.1.5",
                         "podIPs": [{"ip": "10.244.1.5"}, {"ip": "FD00::0005"}]}),
     Pod("shop", "web-0", ("10.244.1.5", "fd00::5"), True)),
    ("pod, podIPs as plain strings", pod({"phase": "Running", "podIPs": ["10.244.1.5"]}),
     Pod("shop", "web-0", ("10.244.1.5",), True)),
    ("pod, only podIP", pod({"phase": "Pending", "podIP": "10.244.1.5"}), Pod("shop", "web-0", ("10.244.1.5",), True)),
    ("pod, no address yet", pod({"phase": "Pending"}), Pod("shop", "web-0", (), True)),
    ("pod, no status", {"kind": "Pod", "metadata": {"name": "web-0"}}, Pod("default", "web-0", (), True)),
    ("pod Succeeded", pod({"phase": "Succeeded", "podIP": "10.244.1.5"}), Pod("shop", "web-0", ("10.244.1.5",), False)),
    ("pod Failed", pod({"phase": "Failed"}), Pod("shop", "web-0", (), False)),
    ("pod Unknown", pod({"phase": "Unknown"}), Pod("shop", "web-0", (), False)),
]


@pytest.mark.parametrize("what, obj, record", CONVERTED, ids=[row[0] for row in CONVERTED])
def test_convert(what: str, obj: dict[str, Any], record: Any) -> None:
    assert convert(obj) == record


@pytest.mark.parametrize("obj", [
    {"kind": "ConfigMap", "metadata": {"name": "x"}},
    {"metadata": {"name": "x"}},
    {"kind": 5},
    {"kind": ["Service"]},  # not even hashable
    {"kind": "service", "metadata": {"name": "x"}},  # kinds are case-sensitive
])
def test_kinds_dns_does_not_read_are_none(obj: dict[str, Any]) -> None:
    assert convert(obj) is None


MALFORMED = [
    ("no metadata", {"kind": "Namespace"}, "metadata is missing"),
    ("metadata not a map", {"kind": "Service", "metadata": "web"}, "metadata is missing"),
    ("no name", {"kind": "Service", "metadata": {"namespace": "shop"}}, "metadata.name is missing"),
    ("an empty name", {"kind": "Namespace", "metadata": {"name": ""}}, "metadata.name is missing"),
    ("a name that is not a string", {"kind": "Pod", "metadata": {"name": 7}}, "metadata.name is missing"),
    ("a namespace that is not a string", {"kind": "Service", "metadata": {"name": "web", "namespace": ["shop"]}},
     "metadata.namespace is not a string"),
    ("spec not a map", {"kind": "Service", "metadata": {"name": "web"}, "spec": ["x"]}, "spec is not an object"),
    ("ExternalName without a name", service({"type": "ExternalName"}),
     "spec.externalName is missing for an ExternalName service"),
    ("ExternalName of dots", service({"type": "ExternalName", "externalName": " . "}),
     "spec.externalName is missing for an ExternalName service"),
    ("ExternalName not a string", service({"type": "ExternalName", "externalName": 5}),
     "spec.externalName is missing for an ExternalName service"),
    ("clusterIPs not a list", service({"clusterIPs": "10.96.0.1"}), "spec.clusterIPs is not a list"),
    ("a bad cluster IP", service({"clusterIPs": ["10.96.0.1", "10.96.0.300"]}),
     "spec.clusterIPs[1] '10.96.0.300' is not an IP address"),
    ("a cluster IP that is not a string", service({"clusterIPs": [167772161]}), "spec.clusterIPs[0] is not a string"),
    ("ports not a list", service({"clusterIPs": ["10.96.0.1"], "ports": {"port": 80}}), "spec.ports is not a list"),
    ("a port not a map", service({"ports": [{"port": 80}, 80]}), "spec.ports[1] is not an object"),
    ("a port without a number", service({"ports": [{"name": "http"}]}), "spec.ports[0].port None is not a port number"),
    ("port 0", service({"ports": [{"port": 0}]}), "spec.ports[0].port 0 is not a port number"),
    ("port 65536", service({"ports": [{"port": 65536}]}), "spec.ports[0].port 65536 is not a port number"),
    ("a port number as text", service({"ports": [{"port": "80"}]}), "spec.ports[0].port '80' is not a port number"),
    ("a port number true", service({"ports": [{"port": True}]}), "spec.ports[0].port True is not a port number"),
    ("a port name that is not a string", service({"ports": [{"port": 80, "name": 5}]}),
     "spec.ports[0] name or protocol is not a string"),
    ("a protocol that is not a string", service({"ports": [{"port": 80, "protocol": 6}]}),
     "spec.ports[0] name or protocol is not a string"),
    ("ExternalName ports checked too", service({"type": "ExternalName", "externalName": "a.b", "ports": [{"port": 0}]}),
     "spec.ports[0].port 0 is not a port number"),
    ("externalIPs not a list", service({"externalIPs": "198.51.100.1"}), "spec.externalIPs is not a list"),
    ("a bad external IP", service({"externalIPs": ["198.51.100.1", "198.51.100"]}),
     "spec.externalIPs[1] '198.51.100' is not an IP address"),
    ("a service status not a map", service({}) | {"status": "ready"}, "status is not an object"),
    ("loadBalancer not a map", service({}) | {"status": {"loadBalancer": ["x"]}},
     "status.loadBalancer is not an object"),
    ("ingress not a list", service({}) | {"status": {"loadBalancer": {"ingress": {"ip": "198.51.100.1"}}}},
     "status.loadBalancer.ingress is not a list"),
    ("an ingress not a map", service({}) | {"status": {"loadBalancer": {"ingress": ["198.51.100.1"]}}},
     "status.loadBalancer.ingress[0] is not an object"),
    ("a bad ingress ip", service({}) | {"status": {"loadBalancer": {"ingress": [{"ip": "lb.example.com"}]}}},
     "status.loadBalancer.ingress[0].ip 'lb.example.com' is not an IP address"),
    ("a bad ingress hostname", service({}) | {"status": {"loadBalancer": {"ingress": [{}, {"hostname": "a..b"}]}}},
     "status.loadBalancer.ingress[1].hostname 'a..b' is not a host name"),
    ("an ingress hostname not a string", service({}) | {"status": {"loadBalancer": {"ingress": [{"hostname": 5}]}}},
     "status.loadBalancer.ingress[0].hostname is not a string"),
    ("endpoints not a list", endpoint_slice({"addresses": []}), "endpoints is not a list"),  # type: ignore[arg-type]
    ("an endpoint not a map", endpoint_slice(["10.0.0.1"]), "endpoints[0] is not an object"),
    ("an FQDN endpoint not a map", endpoint_slice([{"addresses": ["a.example.com"]}, "b"], address_type="FQDN"),
     "endpoints[1] is not an object"),
    ("addresses not a list", endpoint_slice([{"addresses": "10.0.0.1"}]), "endpoints[0].addresses is not a list"),
    ("a bad endpoint address", endpoint_slice([{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "x"]}]),
     "endpoints[1].addresses[1] 'x' is not an IP address"),
    ("slice ports not a list", endpoint_slice([], ports="http"), "ports is not a list"),
    ("a slice port out of range", endpoint_slice([], ports=[{"port": 80}, {"port": -1}]),
     "ports[1].port -1 is not a port number"),
    ("status not a map", pod({"podIP": "x"}) | {"status": "Running"}, "status is not an object"),
    ("podIPs not a list", pod({"podIPs": "10.0.0.1"}), "status.podIPs is not a list"),
    ("a bad pod IP", pod({"podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0"}]}),
     "status.podIPs[1] '10.0.0' is not an IP address"),
    ("a bad podIP", pod({"podIP": "nope"}), "status.podIPs[0] 'nope' is not an IP address"),
    ("a pod IP entry without an ip", pod({"podIPs": [{}]}), "status.podIPs[0] is not a string"),
    ("a phase that is not a string", pod({"phase": ["Running"]}), "status.phase is not a string"),
]


@pytest.mark.parametrize("what, obj, reason", MALFORMED, ids=[row[0] for row in MALFORMED])
def test_malformed_objects_say_which_field_and_why(what: str, obj: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedObject) as raised:
        convert(obj)
    assert str(raised.value) == reason


@pytest.mark.parametrize("obj, key", [
    ({"kind": "Namespace", "metadata": {"name": "Shop", "namespace": "x"}}, ("Namespace", "", "shop")),
    ({"kind": "Service", "metadata": {"name": "Web", "namespace": "Shop"}}, ("Service", "shop", "web")),
    ({"kind": "Service", "metadata": {"name": "web", "namespace": "shop"}}, ("Service", "shop", "web")),
    ({"kind": "Service", "metadata": {"name": "web"}}, ("Service", "default", "web")),
    ({"kind": "Pod", "metadata": {"name": "web-0", "namespace": ""}}, ("Pod", "default", "web-0")),
    ({"kind": "EndpointSlice", "metadata": {"name": "s", "namespace": "shop"}, "endpoints": "x"},
     ("EndpointSlice", "shop", "s")),  # malformed, yet it has a key: its last good version can be found
    ({"kind": "ConfigMap", "metadata": {"name": "x"}}, None),
    ({"kind": "Service"}, None),
    ({"kind": "Service", "metadata": "x"}, None),
    ({"kind": "Service", "metadata": {"name": 5}}, None),
])
def test_key_of(obj: dict[str, Any], key: tuple[str, str, str] | None) -> None:
    assert key_of(obj) == key
    record = convert(obj) if key is not None and obj.get("kind") != "EndpointSlice" else None
    assert record is None or record.key == key  # the key a record of the object is stored under


@pytest.mark.parametrize("obj, text", [
    ({"kind": "Service", "metadata": {"name": "web", "namespace": "shop"}}, "Service shop/web"),
    ({"kind": "Namespace", "metadata": {"name": "shop"}}, "Namespace shop"),
    ({"kind": "Service", "metadata": {"namespace": "shop"}}, "Service shop/?"),
    ({"kind": "Service"}, "Service ?"),
    ({"metadata": {"name": "web", "namespace": "shop"}}, "? shop/web"),
    ({"metadata": {"name": "web"}}, "? web"),
    ({"kind": "Pod", "metadata": "nonsense"}, "Pod ?"),
])
def test_describe(obj: dict[str, Any], text: str) -> None:
    assert describe(obj) == text


@pytest.mark.parametrize("text, address", [
    ("10.96.0.1", "10.96.0.1"), (" 10.96.0.1\n", "10.96.0.1"), ("FD00:0:0::A30", "fd00::a30"), ("::", "::"),
])
def test_normalize_ip(text: str, address: str) -> None:
    assert normalize_ip(text) == address


@pytest.mark.parametrize("text", ["", "10.96.0", "10.96.0.256", "fd00:::1", "example.com"])
def test_normalize_ip_refuses_what_is_not_an_address(text: str) -> None:
    with pytest.raises(ValueError):
        normalize_ip(text)


def test_records_know_their_keys() -> None:
    assert Namespace("shop").key == ("Namespace", "", "shop")
    assert Service("shop", "web", (), True, "", ()).key == ("Service", "shop", "web")
    assert EndpointSlice("shop", "web-abcde", "web", (), ()).key == ("EndpointSlice", "shop", "web-abcde")
    assert Pod("shop", "web-0", (), True).key == ("Pod", "shop", "web-0")


# -- normalize_ip: IPv4's common case on a fast path ------------------------------------------------
@pytest.mark.parametrize("text, canonical", [("10.244.1.7", "10.244.1.7"), ("0.0.0.0", "0.0.0.0"),
                                             ("255.255.255.255", "255.255.255.255"), (" 10.0.0.1 ", "10.0.0.1"),
                                             ("fd00:0::1", "fd00::1"), ("FD00::A30", "fd00::a30")])
def test_addresses_come_out_canonical(text: str, canonical: str) -> None:
    assert normalize_ip(text) == canonical


@pytest.mark.parametrize("text", ["010.1.1.1", "256.1.1.1", "1.2.3", "1.2.3.4.5", "a.b.c.d", "", "10.0.0.-1"])
def test_what_is_no_address_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        normalize_ip(text)


@given(st.ip_addresses())
def test_the_fast_path_agrees_with_ipaddress(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert normalize_ip(str(address)) == str(address)
    assert normalize_ip(address.exploded) == str(address)


# -- one object of each kind, as a list page carries it (also read by sources/test_pages.py) ------------
LIST_ITEMS = {
    NAMESPACE: {"kind": "Namespace", "metadata": {"name": "shop"}},
    SERVICE: service({"clusterIP": "10.96.0.1", "ports": [{"name": "http", "port": 80}],
                      "externalIPs": ["198.51.100.1"]})
    | {"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.2", "ipMode": "VIP"}]}}},
    ENDPOINT_SLICE: endpoint_slice([{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}],
                                   ports=[{"name": "http", "port": 80}]),
    POD: pod({"phase": "Running", "podIP": "10.244.1.5"}),
}


# -- any shape -----------------------------------------------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=6)


def shapes(value: Any) -> st.SearchStrategy[Any]:
    """`value` with any part of it (itself, a field, an item) replaced by arbitrary JSON."""
    if isinstance(value, dict):
        return st.one_of(JSON, st.fixed_dictionaries({k: shapes(v) for k, v in value.items()}))
    if isinstance(value, list):
        return st.one_of(JSON, st.tuples(*map(shapes, value)).map(list))
    return st.one_of(st.just(value), JSON)


@pytest.mark.parametrize("obj", [*LIST_ITEMS.values(), service({"type": "ExternalName", "externalName": "a.b"}),
                                 pod({"podIPs": [{"ip": "10.0.0.1"}]}),
                                 endpoint_slice([{"addresses": ["10.0.0.1"], "hostname": "a",
                                                  "targetRef": {"kind": "Pod", "name": "p"}}])],
                         ids=["namespace", "service", "slice", "pod", "externalname", "pod-ips", "slice-target"])
def test_an_object_of_any_shape_converts_or_is_malformed_nothing_else(obj: dict[str, Any]) -> None:
    """The sources catch MalformedObject alone: any other exception from a converter is a bug."""

    @given(shapes({k: v for k, v in obj.items() if k != "kind"}))
    def check(fields: Any) -> None:
        try:
            convert({**fields, "kind": obj["kind"]} if isinstance(fields, dict) else {"kind": obj["kind"]})
        except MalformedObject:
            pass

    check()


def test_a_pod_keeps_what_autopath_decides_an_address_by() -> None:
    """hostNetwork, a deletionTimestamp and the creation time (seconds) say which pod an address is."""
    obj = pod({"phase": "Running", "podIP": "10.0.0.9"})
    obj["metadata"].update(creationTimestamp="2024-05-01T10:00:00Z", deletionTimestamp="2024-05-02T00:00:00Z")
    obj["spec"] = {"hostNetwork": True}
    assert convert(obj) == Pod("shop", "web-0", ("10.0.0.9",), True, True, True, 1714557600)
    assert convert(pod({"phase": "Running"})) == Pod("shop", "web-0", (), True, False, False, 0)


@pytest.mark.parametrize("change, reason", [
    ({"spec": {"hostNetwork": "yes"}}, "spec.hostNetwork is not a boolean"),
    ({"metadata": {"name": "web-0", "creationTimestamp": "yesterday"}}, "metadata.creationTimestamp is not a time"),
])
def test_malformed_autopath_fields_say_which(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedObject, match=reason):
        convert({**pod({"phase": "Running"}), **change})


def test_objects_of_one_namespace_share_its_name_string() -> None:
    """150,000 pods in 50 namespaces hold 50 namespace strings, not 150,000 (8 MB)."""
    first, second = (convert({"kind": "Pod", "metadata": {"name": name, "namespace": "".join(["Sh", "op"])}})
                     for name in ("web-0", "web-1"))
    assert first is not None and second is not None and first.namespace is second.namespace
