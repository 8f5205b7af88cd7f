"""Test helpers: turn manifests into records and registries, the way a source does."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml

from dns_server.cluster.records import KINDS, Record, convert
from dns_server.cluster.registry import Registry
from dns_server.cluster.updates import Replace

ZONES = Path(__file__).resolve().parent.parent / "zones"


def manifest_objects(path: Path) -> list[dict[str, Any]]:
    """Every object in a multi-document YAML file, `kind: List` items flattened."""
    objects: list[dict[str, Any]] = []
    for document in yaml.safe_load_all(path.read_text()):
        if not document:
            continue
        objects.extend(document.get("items") or [] if document.get("kind") == "List" else [document])
    return objects


def records_from(objects: Iterable[dict[str, Any]]) -> list[Record]:
    return [r for r in (convert(o) for o in objects) if r is not None]


def example_records() -> list[Record]:
    """The records of the bundled zones/ example cluster."""
    return records_from(o for f in sorted(ZONES.glob("*.yaml")) for o in manifest_objects(f))


def registry_with(records: Iterable[Record], **options: Any) -> Registry:
    registry = Registry(required_kinds=KINDS, **options)
    registry.apply([Replace(frozenset(KINDS), tuple(records))], now=1_700_000_000)
    return registry


def headless_manifest(name: str, namespace: str, count: int) -> list[dict[str, Any]]:
    """A namespace and a headless service with `count` ready endpoints (10.200.0.1, 10.200.0.2, ...)."""
    endpoints = [{"addresses": [f"10.{200 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"],
                  "conditions": {"ready": True}} for i in range(count)]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {"name": f"{name}-abcde", "namespace": namespace,
                      "labels": {"kubernetes.io/service-name": name}},
         "endpoints": endpoints, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    ]
