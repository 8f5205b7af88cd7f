"""What sources produce: updates of the registry's objects, as values.

Fixture files, the Kubernetes watch and a recorded stream all emit these; a list of them is enough
to drive the registry (and its tests).
"""

from __future__ import annotations

from dataclasses import dataclass

from dns_server.cluster.records import Key, Record


@dataclass(frozen=True, slots=True)
class Put:
    """Add or replace one object."""

    record: Record


@dataclass(frozen=True, slots=True)
class Remove:
    """Delete one object by key; a missing key is not an error."""

    key: Key


@dataclass(frozen=True, slots=True)
class Replace:
    """Replace every object of these kinds with `records` (a relist or a fixture reload).

    The first Replace of a kind marks that kind synced.
    """

    kinds: frozenset[str]
    records: tuple[Record, ...]


Update = Put | Remove | Replace
