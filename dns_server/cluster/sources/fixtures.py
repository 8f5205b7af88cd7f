"""Cluster data from Kubernetes manifests on disk, reloaded when the files change.

Every `*.yaml`, `*.yml` and `*.json` file under the directory holds API objects: multi-document
YAML, a `kind: List` (what `kubectl get ... -o yaml` prints) or a typed list such as `ServiceList`
(what `kubectl get --raw` prints, whose items carry no `kind`).  Hidden files and directories are
skipped: editors' swap files, and the `..data` / `..2024_...` entries of a ConfigMap volume, whose
visible files are symlinks into them.

Theory of operation.  Each poll stats every file (following symlinks) into a signature.  Nothing
is read while the directory is still changing: a change is read only once the whole set of
signatures has stayed the same for `settle` seconds, so a file being truncated and written in
pieces, or several files swapped one after another, is read once, complete, and applied as one
snapshot (a Replace of every kind).  A change that never settles is read anyway after
`max_wait` seconds.  (That is the `Window` of `sources/applier.py`, the rule the API source
batches its watch events by.)

A file that cannot be read or parsed keeps its last good records; a malformed object keeps its
last good version from that file.  Either is logged once per change, naming the file, the object
and the reason.  Nothing that was loaded is lost because one input was bad.

An `overlay` (the updates of a replayed watch stream, `sources/replay.py`) is applied on top of
every load, in the same batch, so a reload never drops it.

Only the objects of `kinds` reach the registry, as the API source watches only those: with the
kubernetes plugin's `noendpoints`, the manifests' EndpointSlices are not served.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import yaml_rs

from dns_server.cluster.records import (
    KINDS,
    Key,
    MalformedObject,
    Record,
    convert,
    describe,
    key_of,
)
from dns_server.cluster.registry import Registry
from dns_server.cluster.sources.applier import Window
from dns_server.cluster.updates import Put, Remove, Replace
from dns_server.errors import ConfigError, MalformedInput

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")
POLL_INTERVAL = 0.25  # seconds between directory scans
SETTLE = 0.5  # a change is read once nothing has changed for this long
MAX_WAIT = 1.5  # ... or once it has waited this long: changes show within 2 s

# Characters YAML does not allow in a stream (YAML 1.2 5.1, c-printable): the check PyYAML makes, kept
# because yaml-rs takes a NUL for the end of the input, and a file being written may hold NULs.
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
# yaml-rs returns a lone document as itself and several as a list: one more (empty) document at the
# end makes every stream "several", so a document that is itself a list is never mistaken for a stream.
_LAST_DOCUMENT = "--- ~\n"

Signature = tuple[int, int, int, int]  # device, inode, size, mtime (ns) of the file's target


class FixtureError(MalformedInput):
    """A whole file that cannot be used; the message says why."""


@dataclass
class _File:
    """What was last read from one file."""

    signature: Signature
    records: dict[Key, Record] = field(default_factory=dict)


class FixtureSource:
    """Feeds the registry from a directory of manifests; `run()` keeps it in sync."""

    def __init__(self, directory: Path, registry: Registry, *, poll_interval: float = POLL_INTERVAL,
                 settle: float = SETTLE, max_wait: float = MAX_WAIT,
                 clock: Callable[[], float] = time.monotonic, overlay: Sequence[Put | Remove] = (),
                 kinds: frozenset[str] = frozenset(KINDS)) -> None:
        self.directory = directory
        self.registry = registry
        self.kinds = kinds
        self.overlay = tuple(u for u in overlay if (u.record.key if isinstance(u, Put) else u.key)[0] in kinds)
        self.poll_interval = poll_interval
        self._window = Window(settle, max_wait, clock)  # the directory's latest burst of changes
        self._files: dict[Path, _File] = {}
        self._seen: dict[Path, Signature] = {}  # the signatures of the latest scan

    def load(self) -> None:
        """The first full load; raises ConfigError if the directory cannot be read at all."""
        if not self.directory.is_dir():
            raise ConfigError(f"--fixtures {self.directory}: not a readable directory")
        try:
            scan = self._scan()
        except OSError as error:
            raise ConfigError(f"--fixtures {self.directory}: {error.strerror or error}") from None
        self._seen = scan
        self._reload(scan)

    def poll(self) -> bool:
        """One scan; reads and applies what changed once it has settled.  True if it applied."""
        try:
            scan = self._scan()
        except OSError as error:
            log.error("cannot list %s: %s; serving the data loaded before", self.directory, error)
            return False
        if scan != self._seen:
            self._seen = scan
            self._window.changed()
        if scan == {path: f.signature for path, f in self._files.items()}:
            self._window.reset()  # changed back to what is loaded
            return False
        if not self._window.due():
            return False
        self._window.reset()
        self._reload(scan)
        return True

    async def run(self) -> None:
        """Poll for changes until cancelled."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await asyncio.to_thread(self.poll)
            except Exception:  # a bug must not stop reloading for good
                log.exception("reloading %s failed; serving the data loaded before", self.directory)

    def summary(self) -> str:
        counts = Counter(key[0] for f in self._files.values() for key in f.records)
        return (f"{self.directory} ({len(self._files)} files): {counts['Namespace']} namespaces, "
                f"{counts['Service']} services, "
                f"{counts['EndpointSlice']} endpoint slices, {counts['Pod']} pods"
                + (f", {len(self.overlay)} replayed events on top" if self.overlay else ""))

    # -- scanning and reading -----------------------------------------------------------------------
    def _scan(self) -> dict[Path, Signature]:
        signatures: dict[Path, Signature] = {}
        for path in manifest_paths(self.directory):
            try:
                st = path.stat()
            except OSError:
                continue  # gone between listing and stat (or a dangling link): as if absent
            signatures[path] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        return signatures

    def _reload(self, scan: dict[Path, Signature]) -> None:
        files: dict[Path, _File] = {}
        for path, signature in scan.items():
            previous = self._files.get(path)
            if previous is not None and previous.signature == signature:
                files[path] = previous
                continue
            last_good = previous.records if previous is not None else {}
            files[path] = _File(signature, self._read(path, last_good))
        self._files = files
        records: dict[Key, Record] = {}
        origin: dict[Key, Path] = {}
        for path in sorted(files):
            for key, record in files[path].records.items():
                if key in origin:
                    log.warning("%s: %s %s/%s is also defined in %s; using the one in %s",
                                path, key[0], key[1], key[2], origin[key], path)
                records[key] = record
                origin[key] = path
        served = tuple(record for key, record in records.items() if key[0] in self.kinds)
        self.registry.apply([Replace(self.kinds, served), *self.overlay])

    def _read(self, path: Path, last_good: dict[Key, Record]) -> dict[Key, Record]:
        """The records of one file; on any problem, what it held before."""
        try:
            objects = parse_manifest(path)
        except FixtureError as error:
            kept = f"keeping its {len(last_good)} objects loaded before" if last_good else "nothing loaded from it"
            log.error("%s: %s; %s", path, error, kept)
            return last_good
        records: dict[Key, Record] = {}
        for obj in objects:
            if not isinstance(obj, Mapping):
                log.error("%s: an item is a %s, not a Kubernetes object; skipped", path, type(obj).__name__)
                continue
            try:
                record = convert(obj)
            except MalformedObject as error:
                key = key_of(obj)
                kept_record = last_good.get(key) if key is not None else None
                if key is not None and kept_record is not None:
                    records[key] = kept_record
                log.error("%s: %s: %s; %s", path, describe(obj), error,
                          "keeping its last good version" if kept_record else "skipped")
                continue
            if record is not None:
                records[record.key] = record
        return records


def manifest_paths(directory: Path) -> Iterator[Path]:
    """Manifest files under `directory`, hidden entries skipped, symlinks followed once."""
    visited: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(directory, followlinks=True):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.endswith(SUFFIXES):
                yield Path(root) / name


def parse_manifest(path: Path) -> list[Any]:
    """The API objects in one file, lists flattened; raises FixtureError."""
    try:
        text = path.read_bytes()
    except OSError as error:
        raise FixtureError(f"cannot read: {error.strerror or error}") from None
    try:
        if path.suffix == ".json":
            documents = [json.loads(text)] if text.strip() else []
        else:
            documents = load_yaml(text)
    except ValueError as error:  # json.JSONDecodeError, yaml_rs.YAMLDecodeError, UnicodeDecodeError
        raise FixtureError(f"cannot parse: {' '.join(str(error).split())}") from None
    objects: list[Any] = []
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, Mapping):
            raise FixtureError(f"a document is a {type(document).__name__}, not a Kubernetes object")
        objects.extend(_flatten(document))
    return objects


def load_yaml(raw: bytes) -> list[Any]:
    """The documents of a YAML stream (YAML 1.2, with yaml-rs); raises ValueError saying why.

    yaml-rs (Rust) parses a 10 MB `kubectl get -o yaml` dump of 11,000 objects in 0.35 s and 145 MB
    where PyYAML's libyaml loader takes 7 s and 490 MB.
    """
    encoding = "utf-16" if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    text = raw.decode(encoding)
    bad = _NON_PRINTABLE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise ValueError(f"unacceptable character #x{ord(bad.group()):04x} on line {line}")
    separator = "" if not text or text.endswith("\n") else "\n"
    loaded = yaml_rs.loads(text + separator + _LAST_DOCUMENT, parse_datetime=False,
                           duplicate_key_policy=yaml_rs.DuplicateKeyPolicy.LastWins)
    return loaded[:-1] if isinstance(loaded, list) else []


def _flatten(document: Any) -> list[Any]:
    """A list's items (recursively), or the document itself; non-objects are left for the caller."""
    if not isinstance(document, Mapping):
        return [document]
    kind = document.get("kind")
    items = document.get("items")
    if not (isinstance(kind, str) and kind.endswith("List") and isinstance(items, list)):
        return [document]
    item_kind = kind[: -len("List")]  # `ServiceList` items carry no kind of their own
    flat: list[Any] = []
    for item in items:
        if isinstance(item, Mapping) and "kind" not in item and item_kind:
            item = {**item, "kind": item_kind}
        flat.extend(_flatten(item))
    return flat
