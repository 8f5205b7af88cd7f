"""Namespace scope: `--namespaces` and `--namespace-labels`, applied in the registry to every source."""

from __future__ import annotations

from dns_server.cluster.records import (
    ENDPOINT_SLICE,
    KINDS,
    NAMESPACE,
    POD,
    SERVICE,
    Endpoint,
    EndpointSlice,
    Namespace,
    Pod,
    Port,
    Service,
)
from dns_server.cluster.registry import Registry
from dns_server.cluster.scope import FixedNamespaces, SelectedNamespaces
from dns_server.cluster.updates import Put, Remove, Replace
from tests.unit.cluster.test_registry import running

HTTP = (Port("http", "TCP", 80),)


def svc(namespace: str, name: str, ip: str) -> Service:
    return Service(namespace, name, (ip,), False, "", HTTP)


def headless(namespace: str, name: str) -> Service:
    return Service(namespace, name, (), True, "", HTTP)


def eps(namespace: str, service: str, *addresses: str) -> EndpointSlice:
    return EndpointSlice(namespace, f"{service}-x", service,
                         tuple(Endpoint((a,), True, "", "") for a in addresses), HTTP)


CLUSTER = (Namespace("shop"), Namespace("data"), svc("shop", "web", "10.96.0.1"), svc("data", "db", "10.96.0.2"),
           headless("data", "pg"), eps("data", "pg", "10.244.0.9"), Pod("data", "pg-0", ("10.244.0.9",), True))


def served(registry: Registry) -> tuple[set[str], set[tuple[str, str]], set[str], set[tuple[str, str]]]:
    snapshot = registry.snapshot
    return (set(snapshot.namespaces), set(snapshot.services), set(snapshot.reverse), running(snapshot))


def test_fixed_namespaces_filter_every_update_kind() -> None:
    registry = Registry(required_kinds=KINDS, scope=FixedNamespaces(["shop"]))
    registry.apply([Replace(frozenset(KINDS), CLUSTER)])
    assert served(registry) == ({"shop"}, {("shop", "web")}, {"10.96.0.1"}, set())
    registry.apply([Put(svc("data", "late", "10.96.0.3")), Put(svc("shop", "late", "10.96.0.4")),
                    Put(Namespace("other"))])
    assert served(registry)[1] == {("shop", "web"), ("shop", "late")}
    assert served(registry)[0] == {"shop"}
    registry.apply([Remove((SERVICE, "shop", "web")), Remove((SERVICE, "data", "db"))])
    assert served(registry)[1] == {("shop", "late")}
    assert registry.snapshot.synced  # filtering never stops a kind from being marked synced


def test_fixed_namespaces_are_matched_case_insensitively() -> None:
    registry = Registry(required_kinds=KINDS, scope=FixedNamespaces(["Shop"]))
    registry.apply([Replace(frozenset(KINDS), CLUSTER)])
    assert served(registry)[1] == {("shop", "web")}


def test_selected_namespaces_follow_namespace_objects() -> None:
    """With a namespace label selector, a namespace's objects come and go with its Namespace object."""
    registry = Registry(required_kinds=KINDS, scope=SelectedNamespaces())
    selected_only_shop = tuple(r for r in CLUSTER if not isinstance(r, Namespace) or r.name == "shop")
    registry.apply([Replace(frozenset(KINDS), selected_only_shop)])
    assert served(registry) == ({"shop"}, {("shop", "web")}, {"10.96.0.1"}, set())

    registry.apply([Put(Namespace("data"))])  # data gains the label: everything held back appears
    assert served(registry) == ({"shop", "data"}, {("shop", "web"), ("data", "db"), ("data", "pg")},
                                {"10.96.0.1", "10.96.0.2", "10.244.0.9"}, {("data", "10.244.0.9")})

    registry.apply([Put(svc("data", "cache", "10.96.0.5"))])
    assert ("data", "cache") in registry.snapshot.services

    registry.apply([Remove((NAMESPACE, "", "data"))])  # data loses the label: all of it goes
    assert served(registry) == ({"shop"}, {("shop", "web")}, {"10.96.0.1"}, set())

    registry.apply([Remove((SERVICE, "data", "cache")), Put(Namespace("data"))])  # deleted while hidden
    assert served(registry)[1] == {("shop", "web"), ("data", "db"), ("data", "pg")}


def test_selected_namespaces_relist_of_namespaces_moves_other_kinds_in_and_out() -> None:
    registry = Registry(required_kinds=KINDS, scope=SelectedNamespaces())
    others = tuple(r for r in CLUSTER if not isinstance(r, Namespace))
    registry.apply([Replace(frozenset({SERVICE, ENDPOINT_SLICE, POD}), others)])
    registry.apply([Replace(frozenset({NAMESPACE}), (Namespace("shop"),))])
    assert served(registry)[1] == {("shop", "web")}
    registry.apply([Replace(frozenset({NAMESPACE}), (Namespace("data"),))])  # a relist: shop out, data in
    assert served(registry) == ({"data"}, {("data", "db"), ("data", "pg")}, {"10.96.0.2", "10.244.0.9"},
                                {("data", "10.244.0.9")})
    registry.apply([Replace(frozenset({SERVICE}), (svc("shop", "web", "10.96.0.1"), headless("data", "pg")))])
    assert served(registry)[1] == {("data", "pg")}  # db is gone; web is held back (shop not selected)
    registry.apply([Put(Namespace("shop"))])
    assert served(registry)[1] == {("data", "pg"), ("shop", "web")}
