"""Which namespaces are served: the filter every source's updates pass through in the registry.

Two ways to limit the namespaces, as CoreDNS's kubernetes plugin offers them:

- `--namespaces a,b` (`namespaces` in CoreDNS): a fixed list.  Objects in other namespaces never
  enter the registry, so their names are NXDOMAIN like any unknown name.
- `--namespace-labels SELECTOR` (`namespace_labels` in CoreDNS): the Namespace objects are listed
  and watched with that label selector, so the set of served namespaces is exactly the set of
  Namespace objects the source delivers, and it changes while running.  Objects in a namespace
  that is not (or no longer) selected are held back here and released when it becomes selected;
  they are withdrawn when it stops being selected.

The scope is pure: updates in, updates out, no I/O and no clock.  It lives in the registry's
`apply` (under its lock), so fixture files, the API watch and a recorded stream all honour it.
"""

from __future__ import annotations

from typing import Iterable

from dns_server.cluster.records import NAMESPACE, Key, Namespace, Record
from dns_server.cluster.updates import Put, Remove, Replace, Update


def _namespace_of(key: Key) -> str:
    return key[2] if key[0] == NAMESPACE else key[1]


class FixedNamespaces:
    """Serve only the listed namespaces (`--namespaces`)."""

    def __init__(self, namespaces: Iterable[str]) -> None:
        self.namespaces = frozenset(ns.lower() for ns in namespaces)

    def __call__(self, updates: Iterable[Update]) -> list[Update]:
        allowed = self.namespaces
        kept: list[Update] = []
        for update in updates:
            if isinstance(update, Put):
                if _namespace_of(update.record.key) in allowed:
                    kept.append(update)
            elif isinstance(update, Remove):
                if _namespace_of(update.key) in allowed:
                    kept.append(update)
            else:
                records = tuple(r for r in update.records if _namespace_of(r.key) in allowed)
                kept.append(Replace(update.kinds, records))
        return kept


class SelectedNamespaces:
    """Serve only namespaces whose Namespace object is present (`--namespace-labels`).

    The source lists Namespaces with the label selector, so "present" means "selected"; a
    namespace that loses its label arrives as a deletion (the API turns a watched object that
    stops matching into a DELETED event).
    """

    def __init__(self) -> None:
        self._selected: set[str] = set()
        self._records: dict[str, dict[Key, Record]] = {}  # every namespaced record seen, by namespace

    def __call__(self, updates: Iterable[Update]) -> list[Update]:
        out: list[Update] = []
        for update in updates:
            if isinstance(update, Put):
                self._put(update.record, out)
            elif isinstance(update, Remove):
                self._remove(update.key, out)
            else:
                self._replace(update, out)
        return out

    def _put(self, record: Record, out: list[Update]) -> None:
        if isinstance(record, Namespace):
            if record.name not in self._selected:
                self._selected.add(record.name)
                out.extend(Put(r) for r in self._records.get(record.name, {}).values())
            out.append(Put(record))
            return
        self._records.setdefault(record.key[1], {})[record.key] = record
        if record.key[1] in self._selected:
            out.append(Put(record))

    def _remove(self, key: Key, out: list[Update]) -> None:
        if key[0] == NAMESPACE:
            if key[2] in self._selected:
                self._selected.discard(key[2])
                out.extend(Remove(k) for k in self._records.get(key[2], {}))
            out.append(Remove(key))
            return
        held = self._records.get(key[1])
        if held is not None:
            held.pop(key, None)
            if not held:
                del self._records[key[1]]
        out.append(Remove(key))

    def _replace(self, update: Replace, out: list[Update]) -> None:
        kinds = update.kinds
        before = set(self._selected)
        if NAMESPACE in kinds:
            self._selected = {r.key[2] for r in update.records if r.key[0] == NAMESPACE}
        for held in self._records.values():
            for key in [k for k in held if k[0] in kinds]:
                del held[key]
        for record in update.records:
            if record.key[0] != NAMESPACE and record.key[0] in kinds:
                self._records.setdefault(record.key[1], {})[record.key] = record
        for namespace in [ns for ns, held in self._records.items() if not held]:
            del self._records[namespace]
        out.append(Replace(kinds, tuple(r for r in update.records if _namespace_of(r.key) in self._selected)))
        # records of the other kinds follow their namespace in or out
        for namespace in self._selected ^ before:
            entering = namespace in self._selected
            for key, record in self._records.get(namespace, {}).items():
                if key[0] not in kinds:
                    out.append(Put(record) if entering else Remove(key))
