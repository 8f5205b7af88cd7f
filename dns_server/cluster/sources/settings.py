"""What a source reads: the settings that decide one registry and its watches.

Blocks whose kubernetes settings agree on these share one registry (one set of watches).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dns_server.cluster.records import ENDPOINT_SLICE, MULTICLUSTER_KINDS, NAMESPACE, POD, SERVICE
from dns_server.cluster.scope import FixedNamespaces, SelectedNamespaces


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """The part of the kubernetes settings that decides one registry and its source."""

    endpoint: str | None
    tls: tuple[str, str, str] | None
    kubeconfig: Path | None
    context: str | None
    fixtures: Path | None
    watch_file: Path | None
    namespaces: tuple[str, ...]
    labels: str | None
    namespace_labels: str | None
    watch_pods: bool
    endpoint_pod_names: bool
    noendpoints: bool
    multicluster: bool = False  # ServiceImports and their EndpointSlices are read too

    @property
    def required_kinds(self) -> frozenset[str]:
        """The kinds whose first listing must arrive before a cluster name may be called missing."""
        kinds = {NAMESPACE, SERVICE}
        if not self.noendpoints:
            kinds.add(ENDPOINT_SLICE)
        if self.watch_pods:
            kinds.add(POD)
        if self.multicluster:
            kinds.update(MULTICLUSTER_KINDS)
        return frozenset(kinds)

    def scope(self) -> FixedNamespaces | SelectedNamespaces | None:
        """The namespace filter every update passes through, if the namespaces are limited."""
        if self.namespaces:
            return FixedNamespaces(self.namespaces)
        if self.namespace_labels:
            return SelectedNamespaces()
        return None
