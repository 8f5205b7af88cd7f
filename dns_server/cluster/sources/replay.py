"""A recorded stream of watch events, replayed on top of the fixture files (`--watch-file FILE`).

The file holds what `kubectl get --raw '/api/v1/services?watch=1'` prints: one JSON event per
line, `{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": {...}}`, objects
carrying their `kind`; streams of several resources may be concatenated.  It reproduces an
incident (the sequence of changes a cluster went through) on a machine without that cluster.

The events become registry updates in file order, applied after every load of the fixtures in
the same batch, so a reload of the fixture files keeps the replayed changes on top.  A line that
cannot be used is logged with its line number and the reason, and skipped; BOOKMARK lines only
move a resourceVersion and ERROR lines end a live stream, so both are skipped silently.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dns_server.cluster.records import API_KINDS
from dns_server.cluster.sources.events import (
    BOOKMARK,
    ERROR,
    BadEvent,
    parse_event,
    update_for,
)
from dns_server.cluster.updates import Put, Remove
from dns_server.errors import ConfigError, MalformedInput

log = logging.getLogger(__name__)


def read_watch_file(path: Path) -> list[Put | Remove]:
    """The updates the recorded events make, in order; raises ConfigError if the file cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"--watch-file {path}: {error.strerror or error}") from None
    updates: list[Put | Remove] = []
    skipped = 0
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = parse_event(line)
            if event.type in (BOOKMARK, ERROR):
                continue
            kind = event.object.get("kind")
            if kind not in API_KINDS:
                raise BadEvent(f"kind {kind!r} is not one DNS reads" if kind else "the object has no kind")
            update = update_for(event.type, event.object)
        except MalformedInput as error:
            log.error("%s:%d: %s; line skipped", path, number, error)
            skipped += 1
            continue
        if update is not None:
            updates.append(update)
    log.info("%s: %d events to replay%s", path, len(updates), f", {skipped} bad lines skipped" if skipped else "")
    return updates
