"""One read of the cluster data a kubernetes block serves, for `dns-server explain`.

The server keeps only what it serves: its API lists apply the label selectors, its registry drops
other namespaces and its snapshot keeps ready endpoints only.  Explaining an answer needs what was
left out too, so this reads everything once (the fixture files, or one unfiltered list of each
resource from the API; no watch), applies the selectors itself (`cluster.selector`) noting what
each left out, and builds the snapshot the server would serve through the server's own registry
and namespace filter.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from dns_server.cluster.records import ENDPOINT_SLICE, NAMESPACE, Key, MalformedObject, Record, convert, describe
from dns_server.cluster.registry import Registry
from dns_server.cluster.selector import matches
from dns_server.cluster.snapshot import Snapshot
from dns_server.cluster.sources.fixtures import FixtureError, manifest_paths, parse_manifest
from dns_server.cluster.sources.replay import read_watch_file
from dns_server.cluster.sources.settings import SourceSettings
from dns_server.cluster.updates import Put, Remove, Replace

Conditions = tuple[Mapping[str, Any], ...]  # an EndpointSlice's endpoints' `conditions`, in order


@dataclass(frozen=True)
class ClusterData:
    """The snapshot a server serves, and the objects behind it."""

    snapshot: Snapshot
    records: tuple[Record, ...]  # what the label selectors let through, before the namespace filter
    unselected: tuple[tuple[Record, str], ...] = ()  # what a label selector left out, and the option
    conditions: Mapping[Key, Conditions] = field(default_factory=dict)  # per EndpointSlice, as listed


def read_cluster(settings: SourceSettings, now: float) -> ClusterData:
    """Read the block's source once; unreadable files and objects are reported on stderr and skipped."""
    if settings.fixtures is not None:
        overlay = read_watch_file(settings.watch_file) if settings.watch_file is not None else []
        return cluster_data(settings, _fixture_objects(settings), overlay, now)
    from dns_server.cluster.sources.kube import list_everything  # the client is heavy

    return cluster_data(settings, list_everything(settings), (), now)


def cluster_data(settings: SourceSettings, objects: Iterable[Mapping[str, Any]],
                 overlay: Sequence[Put | Remove] = (), now: float = 0) -> ClusterData:
    """The objects as the server would hold them (the label selectors applied here), and its snapshot."""
    kept: dict[Key, Record] = {}
    unselected: list[tuple[Record, str]] = []
    conditions: dict[Key, Conditions] = {}
    kinds = settings.required_kinds
    for obj in objects:
        try:
            record = convert(obj)
        except MalformedObject as error:
            print(f"dns-server explain: {describe(obj)}: {error}; skipped", file=sys.stderr)
            continue
        if record is None or record.key[0] not in kinds:
            continue
        option, selector = (("namespace_labels", settings.namespace_labels) if record.key[0] == NAMESPACE
                            else ("labels", settings.labels))
        metadata = obj.get("metadata") or {}
        if selector and not matches(selector, metadata.get("labels") or {}):
            unselected.append((record, f"{option} {selector}"))
            continue
        kept[record.key] = record
        if record.key[0] == ENDPOINT_SLICE:
            conditions[record.key] = tuple(item.get("conditions") or {} for item in obj.get("endpoints") or ()
                                           if isinstance(item, Mapping))
    for update in overlay:
        if isinstance(update, Put):
            kept[update.record.key] = update.record
        else:
            kept.pop(update.key, None)
    registry = Registry(required_kinds=kinds, endpoint_pod_names=settings.endpoint_pod_names, scope=settings.scope())
    registry.apply([Replace(kinds, tuple(kept.values()))], now=now)
    return ClusterData(registry.snapshot, tuple(kept.values()), tuple(unselected), conditions)


def _fixture_objects(settings: SourceSettings) -> list[Any]:
    assert settings.fixtures is not None
    if not settings.fixtures.is_dir():
        raise FixtureError(f"fixtures {settings.fixtures}: not a readable directory")
    objects: list[Any] = []
    for path in manifest_paths(settings.fixtures):
        try:
            objects += [obj for obj in parse_manifest(path) if isinstance(obj, Mapping)]
        except FixtureError as error:
            print(f"dns-server explain: {path}: {error}; skipped", file=sys.stderr)
    return objects
