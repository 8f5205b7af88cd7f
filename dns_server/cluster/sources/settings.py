"""What a source reads: the settings that decide one registry and its watches.

Blocks whose kubernetes settings agree on these share one registry (one set of watches).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
